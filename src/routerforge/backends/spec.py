"""``ModelSpec``: one candidate model and everything needed to call it reliably.

Plain validated data (pydantic, ``extra="forbid"``), so the gateway config, evaluation runs and the
Python API describe models the same way. ``build_backend(spec)`` in ``backends/registry.py`` turns a
spec into a :class:`~routerforge.backends.base.ChatBackend`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from routerforge.data.records import CandidateModel

Capability = Literal["tools", "json", "vision"]
CAPABILITIES: tuple[Capability, ...] = ("tools", "json", "vision")


class ModelSpec(BaseModel):
    """A candidate model: identity, how to call it, what it costs, what it can do, how patiently.

    - ``provider``: ``"openai"`` for any OpenAI-compatible ``base_url`` (the default), another registered
      backend kind (``"litellm"``, ``"llamacpp"``), or a LiteLLM provider string such as
      ``"anthropic/claude-3-haiku"`` (anything with a ``/`` goes to LiteLLM).
    - ``kind`` forces the backend kind when the provider string alone is ambiguous.
    - ``capabilities``: ``None`` means unknown (assumed to fit every request); a list means exactly these.
    - prices: USD per million tokens; ``None`` means unknown (no cost is computed).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, description="The model id clients and routers use.")
    provider: str = Field(default="openai", min_length=1)
    kind: str | None = Field(default=None, description="Backend kind; default: derived from provider.")
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL (…/v1) or LiteLLM api_base."
    )
    upstream_model: str | None = Field(default=None, description="Model name sent upstream (default: id).")
    api_key: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers sent upstream.")
    input_usd_per_mtok: float | None = Field(default=None, ge=0)
    output_usd_per_mtok: float | None = Field(default=None, ge=0)
    context_window: int | None = Field(default=None, ge=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    capabilities: frozenset[Capability] | None = None
    timeout_s: float = Field(default=60.0, gt=0, description="Per-attempt timeout.")
    max_retries: int = Field(default=2, ge=0, le=10, description="Retries after the first attempt.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Kind-specific options (e.g. model_path)."
    )

    @property
    def upstream_name(self) -> str:
        """The model name the upstream expects (``upstream_model``, else the LiteLLM string or the id)."""
        if self.upstream_model:
            return self.upstream_model
        if "/" in self.provider:
            return self.provider
        return self.id

    def supports(self, capability: Capability) -> bool:
        """Whether the model can serve requests needing ``capability`` (unknown counts as yes)."""
        return self.capabilities is None or capability in self.capabilities

    @classmethod
    def from_candidate(cls, model: CandidateModel, **overrides: Any) -> ModelSpec:
        """A spec from the data layer's :class:`CandidateModel` (plus explicit overrides)."""
        caps = frozenset(c for c, on in model.capabilities.items() if on and c in CAPABILITIES)
        values: dict[str, Any] = {
            "id": model.id,
            "provider": model.provider or "openai",
            "base_url": model.base_url,
            "input_usd_per_mtok": model.input_usd_per_mtok,
            "output_usd_per_mtok": model.output_usd_per_mtok,
            "context_window": model.context_window,
            "capabilities": caps if model.capabilities else None,
        }
        values.update(overrides)
        return cls(**values)

    def __repr__(self) -> str:  # pydantic already masks SecretStr; keep the repr short
        return f"ModelSpec(id={self.id!r}, provider={self.provider!r}, base_url={self.base_url!r})"
