"""``llm-policy``: a small causal LM reads the policies and the query and names a policy; each policy maps
to a model.

Origin: Gemma-2B-style policy routers (Arch-Router and the like): the routing model answers
``[REASONING] … [DECISION] <policy>`` over user-defined policies (default ``Standard_Query``,
``Complex_Query``, ``Ambiguous_Query``), and config maps each policy to a model
(``policy_models``). ``predict_scores`` gives the mapped model 1.0 and the others 0.0, so every decision
policy of ``policy/`` applies unchanged (a large enough λ still picks the cheapest model).

Stages (``stage``):

* ``prompted``: the packaged SmolLM2-135M-Instruct through llama.cpp, prompted with the policies'
  descriptions; ``fit`` only resolves the medium/large models and the policy → model map;
* ``sft``: LoRA supervised fine-tuning of that model on (prompt → templated reasoning + oracle label),
  labels from the 9-cell oracle matrix (``judges/oracle.py``) over the medium and large models' scores;
* ``dpo``: ``sft``, then DPO on chosen (the oracle policy) vs rejected (another policy) answers.

``sft`` and ``dpo`` need the ``train`` extra (torch, transformers, peft, gguf; imported only inside
``fit``); the merged model is written as a GGUF file (``policy.gguf`` in the router directory) and served by
llama.cpp like the prompted one, so serving never imports torch. Answers are parsed by
``routers/llm_policy_text.parse_decision``; an unparsable answer falls back to ``fallback_policy`` and
is counted (``fallbacks_``). Answers are cached by prompt hash in ``cache_dir``, else (after ``load``) in the
router directory, else in memory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from routerforge.errors import ArtifactError, ConfigError, ValidationError
from routerforge.judges.oracle import COMPLEX, OUTCOMES, Outcome, oracle_labels
from routerforge.routers.base import Explanation, PromptBatch, Router
from routerforge.routers.llm_policy_text import (
    DEFAULT_POLICIES,
    DEFAULT_REASONING,
    ParsedDecision,
    messages_for,
    parse_decision,
)
from routerforge.routers.registry import register_router

Generator = Callable[[list[dict[str, str]]], str]
"""Chat messages in, the model's answer text out (a llama.cpp model, or any stand-in)."""

STAGES = ("prompted", "sft", "dpo")
GGUF_FILE = "policy.gguf"
CACHE_FILE = "llm_policy_cache.jsonl"
BASE_MODEL = "smollm2-135m"


def outcomes_from_scores(scores: np.ndarray, threshold: float) -> list[Outcome]:
    """``correct`` / ``incorrect`` per score (a score matrix has no "don't know": see ``dont_know``)."""
    return ["correct" if s >= threshold else "incorrect" for s in scores]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class AnswerCache:
    """Model answers by prompt hash, in memory and (when ``path`` is set) appended to a JSONL file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, str] = {}
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self._data[str(row["key"])] = str(row["text"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a torn last line from an interrupted run: recomputed on demand
        self.hits = 0

    def get(self, key: str) -> str | None:
        text = self._data.get(key)
        self.hits += text is not None
        return text

    def put(self, key: str, text: str) -> None:
        with self._lock:
            self._data[key] = text
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"key": key, "text": text}) + "\n")


@register_router
class LlmPolicyRouter(Router):
    """A causal LM names a policy per prompt; ``policy_models`` maps it to a model."""

    name = "llm-policy"
    _requires_dense = False

    def __init__(
        self,
        *,
        stage: str = "prompted",
        policies: dict[str, str] | str | None = None,
        policy_models: dict[str, str] | None = None,
        fallback_policy: str | None = None,
        medium: str | None = None,
        large: str | None = None,
        correct_threshold: float = 0.5,
        model: str = BASE_MODEL,
        max_tokens: int = 48,
        n_threads: int = 1,
        cache_dir: str | None = None,
        train_examples: int = 300,
        epochs: int = 1,
        learning_rate: float = 3e-4,
        lora_rank: int = 16,
        lora_layers: int = 10,
        dpo_beta: float = 0.1,
        dpo_learning_rate: float = 1e-4,
        random_state: int = 0,
    ) -> None:
        self.stage = stage
        self.policies = policies
        self.policy_models = policy_models
        self.fallback_policy = fallback_policy
        self.medium = medium
        self.large = large
        self.correct_threshold = correct_threshold
        self.model = model
        self.max_tokens = max_tokens
        self.n_threads = n_threads
        self.cache_dir = cache_dir
        self.train_examples = train_examples
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.lora_rank = lora_rank
        self.lora_layers = lora_layers
        self.dpo_beta = dpo_beta
        self.dpo_learning_rate = dpo_learning_rate
        self.random_state = random_state

    # -- configuration ----------------------------------------------------------------------------
    def policy_set(self) -> dict[str, str]:
        """The policies (name → description): ``policies`` as a mapping, a YAML file of one, or the defaults."""
        if getattr(self, "policies_", None):
            return dict(self.policies_)
        raw: Any = DEFAULT_POLICIES if self.policies is None else self.policies
        if isinstance(raw, str):
            import yaml

            try:
                raw = yaml.safe_load(Path(raw).read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"llm-policy: cannot read the policies file {raw}: {exc}") from exc
        if (
            not isinstance(raw, dict)
            or not raw
            or not all(isinstance(k, str) and k.strip() and isinstance(v, str) for k, v in raw.items())
        ):
            raise ConfigError(
                "llm-policy: `policies` must map policy names to descriptions, e.g. "
                "{Standard_Query: 'a routine request …', Complex_Query: '…'} (inline or in a YAML file)."
            )
        return dict(raw)

    def _resolve(self, scores: np.ndarray) -> None:
        """Pick medium/large (the two best mean training scores unless given) and the policy map."""
        models = list(self.models_ or [])
        for role, value in (("medium", self.medium), ("large", self.large)):
            if value is not None and value not in models:
                raise ConfigError(f"llm-policy: {role} model {value!r} is not one of {models}.")
        order = [models[j] for j in np.argsort(-np.nanmean(scores, axis=0), kind="stable")]
        large = self.large or next(m for m in order if m != self.medium)
        medium = self.medium or next(m for m in order if m != large)
        if medium == large:
            raise ConfigError(f"llm-policy: the medium and large models must differ (both are {medium!r}).")
        policies = self.policy_set()
        mapping = dict(
            self.policy_models
            or {"Standard_Query": "medium", "Complex_Query": "large", "Ambiguous_Query": "large"}
        )
        roles = {"medium": medium, "large": large}
        resolved = {p: roles.get(m, m) for p, m in mapping.items()}
        unknown = sorted(m for m in resolved.values() if m not in models)
        missing = sorted(set(policies) - set(resolved))
        if unknown or missing or set(resolved) - set(policies):
            raise ConfigError(
                f"llm-policy: policy_models {mapping} must map every policy ({', '.join(policies)}) to one of "
                f"{models} (or 'medium'/'large'); unknown models {unknown}, unmapped policies {missing}."
            )
        fallback = self.fallback_policy or (COMPLEX if COMPLEX in policies else next(reversed(policies)))
        if fallback not in policies:
            raise ConfigError(f"llm-policy: fallback_policy {fallback!r} is not one of {list(policies)}.")
        if self.stage not in STAGES:
            raise ConfigError(f"llm-policy: unknown stage {self.stage!r}; use one of {', '.join(STAGES)}.")
        self.medium_, self.large_ = medium, large
        self.policy_models_ = resolved
        self.fallback_ = fallback

    # -- learning ---------------------------------------------------------------------------------
    def labels_for(self, scores: np.ndarray, dont_know: np.ndarray | None = None) -> list[str | None]:
        """Oracle policy per training row (``None`` where the medium or large score is missing).

        ``dont_know`` (optional, ``(n, n_models)`` bool) marks the records whose verdict was "don't know"
        (tag ``verdict:dont_know``); a score matrix alone only tells correct from incorrect.
        """
        models = list(self.models_ or [])
        jm, jl = models.index(self.medium_), models.index(self.large_)
        ok = ~np.isnan(scores[:, jm]) & ~np.isnan(scores[:, jl])
        med: list[Outcome] = outcomes_from_scores(np.nan_to_num(scores[:, jm]), self.correct_threshold)
        lrg: list[Outcome] = outcomes_from_scores(np.nan_to_num(scores[:, jl]), self.correct_threshold)
        if dont_know is not None:
            med = ["dont_know" if dk else o for o, dk in zip(med, dont_know[:, jm], strict=True)]
            lrg = ["dont_know" if dk else o for o, dk in zip(lrg, dont_know[:, jl], strict=True)]
        labels = oracle_labels(med, lrg)
        return [lab if keep else None for lab, keep in zip(labels, ok, strict=True)]

    def fit_with_verdicts(
        self, X: PromptBatch, scores: np.ndarray, models: list[str], dont_know: np.ndarray
    ) -> LlmPolicyRouter:
        """:meth:`fit` with a ``dont_know`` mask (from the eval records' verdicts) for the oracle labels."""
        self._dont_know = np.asarray(dont_know, dtype=bool)
        try:
            return self.fit(X, scores, models)
        finally:
            del self._dont_know

    def _fit(self, X: PromptBatch, scores: np.ndarray) -> None:
        self.policies_: dict[str, str] = {}
        self._resolve(scores)
        self.policies_ = self.policy_set()
        self.fallbacks_: Counter[str] = Counter()
        self._cache: AnswerCache | None = None
        self._generator: Generator | None = getattr(self, "_generator", None)
        self.gguf_sha256_ = ""
        dont_know = getattr(self, "_dont_know", None)
        labels = self.labels_for(scores, dont_know)
        counts = Counter(lab for lab in labels if lab is not None)
        self.label_counts_ = dict(sorted(counts.items()))
        if self.stage == "prompted":
            self.gguf_path_: Path | None = None
            return
        unknown = sorted(set(counts) - set(self.policy_set()))
        if unknown:
            raise ConfigError(
                f"llm-policy: training labels {unknown} are not among the policies {list(self.policy_set())}.",
                hint="Keep the default policy names (or add them) to train the sft/dpo stages.",
            )
        from routerforge.routers import llm_policy_train

        rows = [i for i, lab in enumerate(labels) if lab is not None]
        rng = np.random.default_rng(self.random_state)
        if len(rows) > self.train_examples:
            rows = sorted(rng.choice(rows, size=int(self.train_examples), replace=False).tolist())
        examples = [(X.texts[i], str(labels[i])) for i in rows]
        self._tmp = llm_policy_train.workdir()
        self.gguf_path_ = llm_policy_train.train_policy_model(
            examples,
            self.policy_set(),
            DEFAULT_REASONING,
            out_path=Path(self._tmp.name) / GGUF_FILE,
            base_model=self.model,
            dpo=self.stage == "dpo",
            epochs=int(self.epochs),
            learning_rate=float(self.learning_rate),
            lora_rank=int(self.lora_rank),
            top_layers=int(self.lora_layers),
            dpo_beta=float(self.dpo_beta),
            dpo_learning_rate=float(self.dpo_learning_rate),
            seed=int(self.random_state),
        )
        self.gguf_sha256_ = file_sha256(self.gguf_path_)
        self._generator = None

    # -- generating -------------------------------------------------------------------------------
    def use_generator(self, generator: Generator | None) -> LlmPolicyRouter:
        """Answer with ``generator`` instead of the llama.cpp model (another backend, or a stand-in)."""
        self._generator = generator
        return self

    def _model_key(self) -> str:
        if self.gguf_path_ is not None:
            return f"gguf:{self.gguf_sha256_}"
        if self.model.endswith(".gguf"):  # a GGUF by path (e.g. fine-tuned elsewhere): keyed by its content
            if not getattr(self, "_model_sha256", ""):
                self._model_sha256 = file_sha256(Path(self.model).expanduser())
            return f"gguf:{self._model_sha256}"
        return f"local:{self.model}"

    def _llama_generator(self) -> Generator:
        from routerforge.backends.base import ChatRequest
        from routerforge.backends.llamacpp import LlamaCppBackend

        spec: Any = str(self.gguf_path_) if self.gguf_path_ is not None else self.model
        backend = LlamaCppBackend(
            spec, n_threads=int(self.n_threads), n_ctx=1024, seed=int(self.random_state)
        )

        def generate(messages: list[dict[str, str]]) -> str:
            request = ChatRequest(
                model=backend.name, messages=messages, max_tokens=int(self.max_tokens), temperature=0.0
            )
            return backend.complete_sync(request).text

        return generate

    def answer(self, text: str) -> tuple[str, bool]:
        """The model's raw answer for one prompt, and whether it came from the cache."""
        messages = messages_for(text, self.policy_set())
        key = hashlib.sha256(
            json.dumps([self._model_key(), self.max_tokens, messages], sort_keys=True).encode("utf-8")
        ).hexdigest()
        if self._cache is None:
            where = Path(self.cache_dir) if self.cache_dir else getattr(self, "_directory", None)
            self._cache = AnswerCache(where / CACHE_FILE if where is not None else None)
        cached = self._cache.get(key)
        if cached is not None:
            return cached, True
        if self._generator is None:
            self._generator = self._llama_generator()
        out = self._generator(messages)
        self._cache.put(key, out)
        return out, False

    def decide_policy(self, text: str) -> ParsedDecision:
        """The parsed policy decision for one prompt (fallbacks counted in ``fallbacks_``)."""
        raw, _ = self.answer(text)
        parsed = parse_decision(raw, list(self.policy_set()), self.fallback_)
        if parsed.fallback:
            self.fallbacks_[parsed.how] += 1
        return parsed

    def _predict(self, X: PromptBatch) -> np.ndarray:
        models = list(self.models_ or [])
        out = np.zeros((len(X), len(models)))
        for i, text in enumerate(X.texts):
            policy = self.decide_policy(text).policy
            out[i, models.index(self.policy_models_[policy])] = 1.0
        return out

    def _explain(self, X: PromptBatch) -> Explanation:
        parsed = self.decide_policy(X.texts[0])
        model = self.policy_models_[parsed.policy]
        info = {"policy": parsed.policy, "reasoning": parsed.reasoning, "parsed": parsed.how, "model": model}
        return Explanation(
            router=self.name,
            reason=f"llm-policy ({self.stage}) chose {parsed.policy} → {model}"
            + (f" (fallback: {parsed.how})" if parsed.fallback else ""),
            details={**info, "fallbacks": dict(self.fallbacks_)},
        )

    # -- state ------------------------------------------------------------------------------------
    def _state_meta(self) -> dict[str, Any]:
        return {
            "policies": [[name, desc] for name, desc in self.policies_.items()],  # ordered: the prompt
            "medium": self.medium_,
            "large": self.large_,
            "policy_models": self.policy_models_,
            "fallback": self.fallback_,
            "label_counts": self.label_counts_,
            "gguf": GGUF_FILE if self.gguf_path_ is not None else None,
            "gguf_sha256": self.gguf_sha256_,
        }

    def _save_extra(self, directory: Path) -> None:
        if self.gguf_path_ is not None and self.gguf_path_.resolve() != (directory / GGUF_FILE).resolve():
            shutil.copyfile(self.gguf_path_, directory / GGUF_FILE)

    def _restore_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], directory: Path) -> None:
        self.policies_ = {str(name): str(desc) for name, desc in meta["policies"]}
        self.medium_, self.large_ = str(meta["medium"]), str(meta["large"])
        self.policy_models_ = {str(k): str(v) for k, v in dict(meta["policy_models"]).items()}
        self.fallback_ = str(meta["fallback"])
        self.label_counts_ = dict(meta.get("label_counts") or {})
        self.gguf_sha256_ = str(meta.get("gguf_sha256") or "")
        self.gguf_path_ = directory / GGUF_FILE if meta.get("gguf") else None
        if self.gguf_path_ is not None and not self.gguf_path_.is_file():
            raise ArtifactError(
                f"{directory} lacks {GGUF_FILE}, the fine-tuned policy model; train it again."
            )
        self._directory = directory
        self.fallbacks_ = Counter()
        self._cache = None
        self._generator = None


def policy_accuracy(predicted: list[str], labels: list[str]) -> float:
    """Share of prompts whose predicted policy equals the oracle label."""
    if len(predicted) != len(labels) or not labels:
        raise ValidationError(f"{len(predicted)} predictions for {len(labels)} labels.")
    return float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)]))


__all__ = ["OUTCOMES", "Generator", "LlmPolicyRouter", "outcomes_from_scores", "policy_accuracy"]
