"""Text preparation before embedding: boilerplate stripping and token-level truncation.

Benchmark prompts are often wrapped in text that many prompts share: RouterBench's ARC and Winogrande
prompts open with the same few-shot preamble (1-2 k characters) and only the last lines hold the
question; MMLU prompts may share a fixed instruction or a trailing ``Answer:``. An embedding of the
whole prompt is dominated by the shared part (and a 256-token model never even sees the question), so
:class:`BoilerplateStripper` learns the shared prefixes and suffixes from a corpus and removes them.

Its state is plain JSON (a router saves it with its artifact) and applying it to one prompt costs a
few hash computations per line.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from routerforge.errors import ArtifactError, ValidationError

TruncationStrategy = Literal["head", "tail", "head_tail"]
TRUNCATION_STRATEGIES: tuple[str, ...] = ("head", "tail", "head_tail")

STRIPPER_FORMAT_VERSION = 1

# A segment ends after a newline, or after sentence punctuation followed by spaces (the spaces stay
# with the segment so that joining segments gives back the exact text).
_BOUNDARY = re.compile(r"\n|(?<=[.!?])[ \t]+")


def split_segments(text: str) -> list[str]:
    """Split ``text`` into line/sentence segments; ``"".join(split_segments(t)) == t``."""
    out: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.end()
        if end > start:
            out.append(text[start:end])
            start = end
    if start < len(text):
        out.append(text[start:])
    return out


def _chain(prev: bytes, segment: str) -> bytes:
    """Hash of a segment sequence, built one segment at a time (whitespace-insensitive at the ends)."""
    return hashlib.blake2b(prev + segment.strip().encode("utf-8"), digest_size=10).digest()


_ROOT = b""


@dataclass
class BoilerplateStripper:
    """Removes long prefixes and suffixes that many prompts of a corpus share.

    ``fit(corpus)`` counts every prefix (and suffix) of whole line/sentence segments; a prefix is
    *boilerplate* when at least ``min_count`` prompts and at least ``min_share`` of the corpus start with
    it and it is at least ``min_chars`` long. ``apply(text)`` removes the longest boilerplate prefix and
    then the longest boilerplate suffix, but never everything: when nothing distinctive would remain the
    text is returned unchanged.

    Parameters
    ----------
    min_share, min_count:
        How many prompts must share a prefix/suffix for it to count as boilerplate.
    min_chars:
        Shorter shared prefixes/suffixes are kept. The default (200) strips few-shot preambles (ARC
        ~2,000 characters, Winogrande ~1,000) but keeps a category's fixed question stem such as MMLU
        moral scenarios' 170-character "For which of these two scenarios ..." (6 % of MMLU), which is
        exactly the signal a router needs. Lower it to strip short shared instructions too.
    max_segments:
        Only the first/last this many segments of a prompt are examined.
    suffixes:
        Also strip shared suffixes (e.g. a trailing instruction such as ``Answer:``).
    """

    min_share: float = 0.05
    min_count: int = 20
    min_chars: int = 200
    max_segments: int = 400
    suffixes: bool = True
    prefixes_: set[bytes] = field(default_factory=set, repr=False)
    suffixes_: set[bytes] = field(default_factory=set, repr=False)
    n_fitted_: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_share <= 1.0:
            raise ValidationError(f"min_share must be in [0, 1], got {self.min_share}.")
        if self.min_count < 2:
            raise ValidationError(f"min_count must be at least 2, got {self.min_count}.")
        if self.max_segments < 1:
            raise ValidationError(f"max_segments must be positive, got {self.max_segments}.")

    # -- fitting -----------------------------------------------------------------------------------
    def fit(self, texts: Iterable[str]) -> BoilerplateStripper:
        """Learn the boilerplate of ``texts`` (replaces any earlier state). Returns self."""
        prefix_counts: Counter[bytes] = Counter()
        suffix_counts: Counter[bytes] = Counter()
        prefix_len: dict[bytes, int] = {}
        suffix_len: dict[bytes, int] = {}
        n = 0
        for text in texts:
            n += 1
            segments = split_segments(text)
            self._count(segments, prefix_counts, prefix_len)
            if self.suffixes:
                self._count(segments[::-1], suffix_counts, suffix_len)
        threshold = max(self.min_count, math.ceil(self.min_share * n))
        self.prefixes_ = {
            h for h, c in prefix_counts.items() if c >= threshold and prefix_len[h] >= self.min_chars
        }
        self.suffixes_ = {
            h for h, c in suffix_counts.items() if c >= threshold and suffix_len[h] >= self.min_chars
        }
        self.n_fitted_ = n
        return self

    def _count(self, segments: Sequence[str], counts: Counter[bytes], lengths: dict[bytes, int]) -> None:
        h = _ROOT
        chars = 0
        for seg in segments[: self.max_segments]:
            h = _chain(h, seg)
            chars += len(seg.strip())
            counts[h] += 1
            lengths[h] = chars

    # -- applying ----------------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.n_fitted_ > 0

    def apply(self, text: str) -> str:
        """``text`` without its boilerplate prefix and suffix (unchanged when nothing was learned)."""
        if not self.prefixes_ and not self.suffixes_:
            return text
        segments = split_segments(text)
        start = self._longest(segments, self.prefixes_)
        rest = segments[start:]
        end = len(rest) - self._longest(rest[::-1], self.suffixes_) if self.suffixes_ else len(rest)
        if start == 0 and end == len(rest):
            return text
        core = "".join(rest[:end]).strip()
        if core:
            return core
        # Only boilerplate on one side: keep what the other side leaves, else the whole text.
        only_prefix = "".join(rest).strip()
        return only_prefix or text

    def apply_many(self, texts: Iterable[str]) -> list[str]:
        return [self.apply(t) for t in texts]

    def _longest(self, segments: Sequence[str], known: set[bytes]) -> int:
        """How many leading ``segments`` form the longest prefix in ``known``."""
        if not known:
            return 0
        best = 0
        h = _ROOT
        chars = 0
        for i, seg in enumerate(segments[: self.max_segments], start=1):
            h = _chain(h, seg)
            chars += len(seg.strip())
            if h in known:
                best = i
            elif chars >= self.min_chars:
                break  # long enough but too rare: every longer prefix is rarer still
        return best

    # -- persistence -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON state (parameters plus learned hashes, hex)."""
        return {
            "format_version": STRIPPER_FORMAT_VERSION,
            "params": {
                "min_share": self.min_share,
                "min_count": self.min_count,
                "min_chars": self.min_chars,
                "max_segments": self.max_segments,
                "suffixes": self.suffixes,
            },
            "n_fitted": self.n_fitted_,
            "prefixes": sorted(h.hex() for h in self.prefixes_),
            "suffixes": sorted(h.hex() for h in self.suffixes_),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BoilerplateStripper:
        version = data.get("format_version")
        if version != STRIPPER_FORMAT_VERSION:
            raise ArtifactError(
                f"Boilerplate-stripper state has format version {version!r}; this routerforge reads "
                f"version {STRIPPER_FORMAT_VERSION}.",
                hint="Retrain the router with this routerforge version.",
            )
        try:
            stripper = cls(**data["params"])
            stripper.prefixes_ = {bytes.fromhex(h) for h in data["prefixes"]}
            stripper.suffixes_ = {bytes.fromhex(h) for h in data["suffixes"]}
            stripper.n_fitted_ = int(data["n_fitted"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"Boilerplate-stripper state is malformed: {exc}") from exc
        return stripper


def truncate_ids(
    ids: Sequence[int], limit: int, strategy: TruncationStrategy = "head_tail", head_share: float = 0.25
) -> list[int]:
    """Cut a token-id sequence (without special tokens) to at most ``limit`` ids.

    ``head`` keeps the beginning, ``tail`` the end (where benchmark prompts put the question), and
    ``head_tail`` keeps ``head_share`` of the budget from the beginning and the rest from the end.
    """
    if limit < 0:
        raise ValidationError(f"Token limit must be non-negative, got {limit}.")
    if len(ids) <= limit:
        return list(ids)
    if limit == 0:
        return []
    if strategy == "head":
        return list(ids[:limit])
    if strategy == "tail":
        return list(ids[len(ids) - limit :])
    if strategy == "head_tail":
        head = min(limit, max(0, round(limit * head_share)))
        tail = limit - head
        return list(ids[:head]) + (list(ids[len(ids) - tail :]) if tail else [])
    raise ValidationError(
        f"Unknown truncation strategy {strategy!r}. Use one of: {', '.join(TRUNCATION_STRATEGIES)}."
    )
