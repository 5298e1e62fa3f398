"""The rule mapper: ordered rules applied before (and around) any router's learned decision.

A rule has a name, conditions (``when``, all must hold) and an action (``then``)::

    rules:
      - name: code-to-large
        when: {code: true}                  # regex / keywords / min_chars / max_chars / math / code / custom
        then: {model: large}                # route there: the learned decision is skipped
      - name: long-prompts-only-big-context
        when: {min_chars: 20000}
        then: {models: [large, long-context]}   # restrict the candidates; later rules still run
      - name: frugal-on-chit-chat
        when: {keywords: [hello, thanks, "how are you"]}
        then: {policy: threshold, knob: 0.8}    # override the policy/knob for this prompt

Rules run in order. Every rule whose conditions hold *fires* and is recorded in the decision
(``details["rules"]``, and its name in ``reason``); a ``model`` action ends the evaluation. ``custom`` names a
function by dotted path (``package.module:function``) taking the prompt text and returning a bool: it is
operator code from the operator's own config, never from a router directory.

Conditions: ``regex`` (Python regex, searched, case-insensitive unless ``case_sensitive``), ``keywords``
(any of them as a whole word or phrase, case-insensitive), ``min_chars``/``max_chars``, ``math`` (digits with
an operator, LaTeX, or math words such as *integral*, *solve*, *equation*), ``code`` (fenced code blocks,
common keywords and syntax such as ``def``/``class``/``#include``/``;`` line endings), ``custom``.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from routerforge.errors import ConfigError

_MATH = re.compile(
    r"(\d\s*[-+*/^=<>]\s*\d)|(\\frac|\\sum|\\int|\$[^$]+\$)|"
    r"\b(integral|derivative|equation|solve for|probability|theorem|prove that|matrix|polynomial)\b",
    re.IGNORECASE,
)
_CODE = re.compile(
    r"(```)|(^\s*(def|class|import|from|function|public|private|return|#include|SELECT|CREATE TABLE)\b)|"
    r"(;\s*$)|(\{\s*$)|(\w+\([^)]*\)\s*\{)|(=>)",
    re.IGNORECASE | re.MULTILINE,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleWhen(_Strict):
    regex: str | None = None
    case_sensitive: bool = False
    keywords: list[str] | None = None
    min_chars: int | None = Field(default=None, ge=0)
    max_chars: int | None = Field(default=None, ge=0)
    math: bool | None = None
    code: bool | None = None
    custom: str | None = Field(default=None, description="package.module:function(text) -> bool")

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex {value!r}: {exc}") from exc
        return value

    @field_validator("custom")
    @classmethod
    def _dotted(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", value):
            raise ValueError(f"custom must be 'package.module:function', got {value!r}")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> RuleWhen:
        if all(
            getattr(self, f) is None
            for f in ("regex", "keywords", "min_chars", "max_chars", "math", "code", "custom")
        ):
            raise ValueError("a rule needs at least one condition under 'when'")
        return self


class RuleThen(_Strict):
    model: str | None = Field(default=None, description="Route to this model (ends the rules).")
    models: list[str] | None = Field(default=None, description="Restrict the candidates to these.")
    exclude: list[str] | None = Field(default=None, description="Remove these candidates.")
    policy: str | None = Field(default=None, description="threshold | wtp | tolerance for this prompt.")
    knob: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _not_empty(self) -> RuleThen:
        if all(getattr(self, f) is None for f in ("model", "models", "exclude", "policy", "knob")):
            raise ValueError("a rule needs an action under 'then' (model, models, exclude, policy or knob)")
        if self.knob is not None and self.policy is None:
            raise ValueError("'knob' needs 'policy' (threshold, wtp or tolerance)")
        return self


class Rule(_Strict):
    name: str = Field(min_length=1, max_length=128)
    when: RuleWhen
    then: RuleThen


@dataclass
class RuleOutcome:
    """What the rules made of one prompt."""

    fired: list[str] = field(default_factory=list)
    model: str | None = None
    candidates: list[str] | None = None
    policy: str | None = None
    knob: float | None = None

    def key(self) -> tuple[Any, ...]:
        return (self.model, tuple(self.candidates or ()), self.policy, self.knob)


class RuleSet:
    """An ordered, validated list of rules (``RuleSet.parse`` / ``RuleSet.from_file``)."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)
        names = [r.name for r in self.rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(
                f"Duplicate rule names: {', '.join(dup)}.", hint="Give every rule its own name."
            )
        self._checks = [_compile(r.when) for r in self.rules]

    def __len__(self) -> int:
        return len(self.rules)

    @classmethod
    def parse(cls, raw: Any, origin: str = "rules") -> RuleSet:
        if raw is None:
            return cls([])
        if isinstance(raw, Mapping) and "rules" in raw:
            raw = raw["rules"]
        if not isinstance(raw, list):
            raise ConfigError(f"{origin} must be a list of rules (name, when, then).")
        rules = []
        for i, item in enumerate(raw):
            try:
                rules.append(Rule.model_validate(item))
            except PydanticValidationError as exc:
                parts = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
                raise ConfigError(f"{origin}, rule {i + 1}: " + "; ".join(parts)) from exc
        return cls(rules)

    @classmethod
    def from_file(cls, path: str | Path) -> RuleSet:
        p = Path(path)
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"Rules file {p} does not exist.") from exc
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"Cannot read rules file {p}: {exc}") from exc
        return cls.parse(raw, origin=str(p))

    def check_models(self, models: Sequence[str]) -> None:
        """Every model a rule names must be a candidate."""
        known = set(models)
        for r in self.rules:
            named = [r.then.model] if r.then.model else []
            named += list(r.then.models or []) + list(r.then.exclude or [])
            bad = [m for m in named if m not in known]
            if bad:
                raise ConfigError(
                    f"Rule {r.name!r} names unknown model(s) {bad}.", hint=f"Candidates: {', '.join(models)}."
                )

    def apply(self, text: str, candidates: Sequence[str]) -> RuleOutcome:
        """Run the rules on ``text`` over ``candidates`` (in order; a ``model`` action stops)."""
        out = RuleOutcome()
        current = list(candidates)
        for rule, check in zip(self.rules, self._checks, strict=True):
            if not check(text):
                continue
            out.fired.append(rule.name)
            act = rule.then
            if act.model is not None:
                out.model = act.model
                break
            if act.models is not None:
                current = [m for m in current if m in set(act.models)]
            if act.exclude is not None:
                current = [m for m in current if m not in set(act.exclude)]
            if act.policy is not None:
                out.policy, out.knob = act.policy, act.knob
        if current != list(candidates):
            out.candidates = current
        return out


def _compile(when: RuleWhen) -> Callable[[str], bool]:
    checks: list[Callable[[str], bool]] = []
    if when.regex is not None:
        pattern = re.compile(when.regex, 0 if when.case_sensitive else re.IGNORECASE)
        checks.append(lambda t: pattern.search(t) is not None)
    if when.keywords:
        words = "|".join(re.escape(k.strip()) for k in when.keywords if k.strip())
        kw = re.compile(rf"(?<!\w)(?:{words})(?!\w)", re.IGNORECASE)
        checks.append(lambda t: kw.search(t) is not None)
    if when.min_chars is not None:
        lo = when.min_chars
        checks.append(lambda t: len(t) >= lo)
    if when.max_chars is not None:
        hi = when.max_chars
        checks.append(lambda t: len(t) <= hi)
    if when.math is not None:
        want_math = when.math
        checks.append(lambda t: (_MATH.search(t) is not None) == want_math)
    if when.code is not None:
        want_code = when.code
        checks.append(lambda t: (_CODE.search(t) is not None) == want_code)
    if when.custom is not None:
        fn = _custom(when.custom)
        checks.append(lambda t: bool(fn(t)))
    return lambda t: all(c(t) for c in checks)


@functools.cache
def _custom(path: str) -> Callable[[str], Any]:
    module, _, name = path.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"Custom rule function {path!r} cannot be imported: {exc}",
            hint="Give an importable 'package.module:function' on the gateway's Python path.",
        ) from exc
    if not callable(fn):
        raise ConfigError(f"Custom rule {path!r} is not callable.")
    return fn  # type: ignore[no-any-return]
