"""The gateway configuration (``gateway.yaml``), validated once at start with clear errors.

```yaml
models:                       # real candidate models (pass through by id)
  - id: small
    provider: openai           # "openai" = any OpenAI-compatible base URL; or a LiteLLM string "openai/gpt-4o-mini"
    base_url: http://127.0.0.1:9000/v1
    api_key_env: SMALL_API_KEY # the *name* of an environment variable, never the key itself
    input_usd_per_mtok: 0.15
    output_usd_per_mtok: 0.60
    context_window: 128000
    capabilities: [tools, json]
synthetic_models:
  - name: smart
    router: knn                # a directory under $ROUTERFORGE_HOME/routers (or an absolute path)
    models: [small, large]
    policy: {kind: wtp, knob: 0.5}   # threshold | wtp | tolerance; omit: the router's calibrated knob
    fallbacks: [small]
tenants:
  - name: acme
    daily_usd: 5
    monthly_usd: 100
    training_opt_out: true
limits: {requests_per_minute: 600, max_prompt_chars: 200000, oversize: reject, max_body_bytes: 1048576}
counters: {backend: auto}      # auto | memory | sql | redis
metrics: {access: admin, token_env: METRICS_TOKEN}   # /metrics: admin keys or this token; or access: open
logging: {store_messages: true, redact: [api_key]}
```
"""

from __future__ import annotations

import hmac
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic import ValidationError as PydanticValidationError

from routerforge.backends.balance import BalanceConfig, DeploymentConfig, deployment_options
from routerforge.backends.spec import ModelSpec
from routerforge.config import env_value
from routerforge.errors import ConfigError
from routerforge.gateway.telemetry import TelemetryConfig

PolicyKind = Literal["threshold", "wtp", "tolerance"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(ModelSpec):
    """One real candidate model the gateway can call: a :class:`~routerforge.backends.spec.ModelSpec` (the one
    candidate-model type: id, provider, base_url, prices in USD per million tokens, context window,
    capabilities, timeouts) plus the *name* of the environment variable that holds its key and its fallbacks.
    A key written into the file itself is refused."""

    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable holding the key."
    )
    fallbacks: list[str] = Field(
        default_factory=list, description="Models tried, in order, when this one fails."
    )
    deployments: list[DeploymentConfig] = Field(
        default_factory=list,
        description="Several deployments of this model (base_url, api_key_env, weight), load-balanced "
        "(backends/balance.py); instead of base_url.",
    )
    balance: BalanceConfig = Field(
        default_factory=BalanceConfig, description="Strategy and cooldowns across deployments."
    )

    @model_validator(mode="after")
    def _no_inline_key(self) -> ModelConfig:
        if self.api_key is not None:
            raise ValueError(
                f"model {self.id!r}: do not write the API key into the config; put it in an environment "
                "variable and name that variable with api_key_env"
            )
        if self.deployments and self.base_url is not None:
            raise ValueError(
                f"model {self.id!r}: give either base_url or deployments (each with its base_url), not both"
            )
        return self

    def to_spec(self) -> ModelSpec:
        """The :class:`ModelSpec` the backends call, with the key read from ``api_key_env``; a model with
        deployments becomes one of backend kind ``balanced`` (each deployment's key read the same way)."""
        key = env_value(self.api_key_env) if self.api_key_env else None
        values = self.model_dump(exclude={"api_key_env", "fallbacks", "api_key", "deployments", "balance"})
        if self.deployments:
            keys = []
            for d in self.deployments:
                value = env_value(d.api_key_env) if d.api_key_env else key
                keys.append(SecretStr(value) if value else None)
            values["options"] = {
                **values["options"],
                **deployment_options(self.deployments, self.balance, keys, self.kind),
            }
            values["kind"] = "balanced"
        return ModelSpec(**values, api_key=SecretStr(key) if key else None)


class PolicyConfig(_Strict):
    """The policy of a synthetic model. Unset fields come from the router's calibration
    (``routerforge calibrate``), else the defaults (threshold 0.5 for two candidates, else λ = 0)."""

    kind: PolicyKind | None = Field(
        default=None, description="threshold | wtp | tolerance (default: the calibrated policy)."
    )
    knob: float | None = Field(
        default=None,
        description="threshold t ≥ 0, λ (quality points per USD, ≥ 0) or δ (score tolerance, ≥ 0); "
        "default: the router's calibrated knob.",
    )

    latency_weight: float = Field(
        default=0.0,
        ge=0,
        description="Score points per second of a model's mean latency, subtracted in the wtp/tolerance policies.",
    )

    @model_validator(mode="after")
    def _check(self) -> PolicyConfig:
        if self.knob is not None:
            if self.kind is None:
                raise ValueError("a knob needs a policy kind (threshold, wtp or tolerance)")
            if not math.isfinite(self.knob) or self.knob < 0:
                raise ValueError(f"the {self.kind} knob must be a finite number ≥ 0, got {self.knob}")
        return self


class CascadeConfig(_Strict):
    """A live cascade: try the candidates cheapest first, escalate while the verifier scores the answer
    below ``threshold`` (non-streaming requests; see gateway/cascade.py)."""

    verifier: Literal["numeric", "json", "nonempty"] = Field(
        description="numeric: the answer holds a number; json: it parses; nonempty: not empty nor a refusal."
    )
    threshold: float = Field(default=0.5, ge=0, le=1)
    order: list[str] | None = Field(default=None, description="Order to try (default: cheapest first).")


class CandidateRouterConfig(_Strict):
    """A candidate router beside a synthetic model's serving one (``shadow:`` or ``canary:``; docs/review.md).

    It decides over the synthetic model's candidates with its rules; only the router and the policy differ."""

    router: str = Field(description="Router directory name under the routers dir, or a path.")
    share: float = Field(
        default=1.0, ge=0, le=1, description="Share of requests (chosen by a hash of the request id)."
    )
    kind: PolicyKind | None = Field(
        default=None, description="Policy kind (default: the synthetic model's, else calibrated)."
    )
    knob: float | None = Field(default=None, ge=0, description="Policy knob (default: calibrated).")
    wait_s: float = Field(
        default=0.25,
        ge=0,
        le=10,
        description="shadow: how long a request that ends before its shadow decision waits for it "
        "(then logged as a timeout); 0: never wait.",
    )


class ReloadConfig(_Strict):
    """Hot reload (gateway/reload.py): what every gateway process polls, and how often."""

    enabled: bool = Field(default=True, description="Poll for promotions and config changes.")
    interval_s: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="Seconds between polls of the state version (one indexed row) and the config file.",
    )


class SyntheticModelConfig(_Strict):
    """A named synthetic model: a router artifact + candidate models + a policy."""

    name: str
    router: str = Field(description="Router directory name under the routers dir, or a path.")
    models: list[str] | None = Field(
        default=None, description="Candidate models (default: the router's models)."
    )
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    fallbacks: list[str] = Field(default_factory=list)
    tenant: str | None = Field(
        default=None, description="Only this tenant may use it (default: every tenant)."
    )
    cascade: CascadeConfig | None = Field(default=None, description="Answer through a live cascade.")
    rules: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Ordered rules applied before the router (name, when, then); see docs/policies.md.",
    )
    shadow: CandidateRouterConfig | None = Field(
        default=None, description="A candidate that decides alongside, logged only (decision.shadow)."
    )
    canary: CandidateRouterConfig | None = Field(
        default=None, description="A candidate whose decision serves `share` of requests."
    )

    @model_validator(mode="after")
    def _check_rules(self) -> SyntheticModelConfig:
        from routerforge.policy.rules import RuleSet

        try:
            ruleset = RuleSet.parse(self.rules, origin=f"synthetic model {self.name!r} rules")
            if self.models:
                ruleset.check_models(self.models)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        if self.cascade is not None and self.cascade.order and self.models:
            bad = [m for m in self.cascade.order if m not in self.models]
            if bad:
                raise ValueError(f"cascade.order names {bad}, which are not among models {self.models}")
        return self

    @model_validator(mode="after")
    def _check_candidates(self) -> SyntheticModelConfig:
        for arm in ("shadow", "canary"):
            cand = getattr(self, arm)
            if cand is not None and cand.knob is not None and (cand.kind or self.policy.kind) is None:
                raise ValueError(
                    f"{arm}.knob needs a policy kind: set {arm}.kind (threshold, wtp or tolerance)"
                )
        return self

    def ruleset(self) -> Any:
        """The validated :class:`~routerforge.policy.rules.RuleSet` of this synthetic model."""
        from routerforge.policy.rules import RuleSet

        return RuleSet.parse(self.rules, origin=f"synthetic model {self.name!r} rules")


class TenantConfig(_Strict):
    name: str
    daily_usd: float | None = Field(default=None, ge=0)
    monthly_usd: float | None = Field(default=None, ge=0)
    training_opt_out: bool = False
    requests_per_minute: int | None = Field(
        default=None, ge=1, description="Requests per minute of the whole tenant (all its keys together)."
    )
    tokens_per_minute: int | None = Field(
        default=None, ge=1, description="Tokens (prompt + completion) per minute of the whole tenant."
    )
    organisation: str | None = Field(
        default=None, description="The organisation (`organisations:`) whose budget this tenant shares."
    )


class OrganisationConfig(_Strict):
    """An organisation: several tenants sharing one budget (every level is enforced; docs/gateway.md)."""

    name: str
    daily_usd: float | None = Field(default=None, ge=0)
    monthly_usd: float | None = Field(default=None, ge=0)
    tenants: list[str] = Field(default_factory=list, description="Tenants of this organisation.")


class BudgetsConfig(_Strict):
    """How a request's cost is reserved before the upstream call (gateway/budgets.py)."""

    default_output_tokens: int = Field(
        default=256,
        ge=1,
        description="Output tokens assumed by the reservation when a request sets no max_tokens "
        "(max_completion_tokens); capped by the model's max_output_tokens.",
    )
    lease_s: float = Field(
        default=900.0,
        gt=0,
        description="A reservation not settled within this time (its replica was killed) expires and "
        "frees its budget; keep it above the longest request (timeouts × retries × fallbacks).",
    )


class LimitsConfig(_Strict):
    """What one request may hold and how long it may take to arrive (docs/gateway.md, Limits and security)."""

    requests_per_minute: int = Field(default=600, ge=1, description="Per API key, fixed one-minute windows.")
    tokens_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="Per API key (unless the key sets its own): prompt + completion tokens per one-minute "
        "window, reserved before the upstream call and settled after (None: no limit).",
    )
    max_prompt_chars: int = Field(
        default=200_000,
        ge=1,
        description="Characters of a chat request (message text plus tools, other message fields and extra "
        "fields, as JSON) or of a /v1/route prompt; checked before routing or embedding.",
    )
    oversize: Literal["reject", "truncate"] = Field(
        default="reject",
        description="Over max_prompt_chars: reject (400 context_length_exceeded), or truncate the message "
        "text (oldest turns first; tools and extra fields are never cut).",
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Request body bytes (Content-Length and the bytes read, chunked bodies included); over: 413.",
    )
    max_messages: int = Field(default=1000, ge=1, description="Messages in one chat or route request.")
    max_json_depth: int = Field(default=64, ge=2, le=500, description="Nesting depth of a JSON request body.")
    max_feedback_labels_chars: int = Field(
        default=8192, ge=2, description="Feedback `labels`, measured as compact JSON."
    )
    max_feedback_comment_chars: int = Field(default=4000, ge=1, description="Feedback `comment`.")
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="The whole request body must arrive within this time; else 408."
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="routerforge serve: a request's headers must arrive within this time of its first byte "
        "(or of the connection opening); else 408 and the connection is closed.",
    )
    max_header_bytes: int = Field(
        default=65_536,
        ge=1024,
        description="routerforge serve: request line plus headers; over: 431 and the connection is closed.",
    )
    idle_timeout_s: int = Field(
        default=5, ge=1, description="routerforge serve: a kept-alive connection idle this long is closed."
    )
    low_budget_fraction: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Below this share of budget left, policies shift to cheaper models.",
    )


class CountersConfig(_Strict):
    backend: Literal["auto", "memory", "sql", "redis"] = Field(
        default="auto",
        description="auto: sql whenever there is a store (budgets and rate limits survive restarts), "
        "memory without one.",
    )
    redis_url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "routerforge"


class LoggingConfig(_Strict):
    store_messages: bool = True
    redact_patterns: list[str] = Field(
        default_factory=lambda: [r"sk-[A-Za-z0-9_\-]{8,}", r"rf-[A-Za-z0-9_\-]{8,}"],
        description="Regexes replaced by [REDACTED] in logged messages and responses.",
    )
    durability: Literal["commit", "async"] = Field(
        default="commit",
        description="commit: a response is sent only after its log row has committed (group commit; "
        "survives kill -9 and, on SQLite with synchronous=FULL, power loss). async: rows are written in "
        "the background every flush_interval_s; rows still queued are lost if the process is killed.",
    )
    batch_size: int = Field(default=200, ge=1, description="Most log rows written in one transaction.")
    flush_interval_s: float = Field(
        default=0.2, gt=0, description="async durability: how often queued rows are written."
    )
    retention_days: float | None = Field(
        default=None,
        gt=0,
        description="Delete logged requests (with their attempts and feedback) older than this many days, "
        "in small batches every prune_interval_s; unset: keep everything (see `routerforge prune-logs`).",
    )
    prune_interval_s: float = Field(
        default=3600.0, ge=1, description="With retention_days: how often the gateway prunes the log."
    )
    prune_batch_size: int = Field(
        default=2000, ge=1, le=100_000, description="Requests deleted per pruning transaction."
    )
    partition: Literal["none", "monthly", "daily"] = Field(
        default="none",
        description="PostgreSQL only: partition the request log (requests and attempts) by time, so "
        "retention drops whole partitions instead of deleting rows. Applied when the log is empty (a new "
        "store); convert an existing log with `routerforge partition-logs`. Ignored (with a warning) on SQLite.",
    )

    def compiled(self) -> list[re.Pattern[str]]:
        return [re.compile(p) for p in self.redact_patterns]


class RoutingConfig(_Strict):
    """How routers run inside the gateway (the router's saved embedding settings, with these overrides)."""

    embed_threads: int | None = Field(
        default=1,
        ge=0,
        description="onnxruntime threads of the router's embedder (1 leaves a core to the event loop; "
        "None keeps the router's saved setting).",
    )
    embed_cache: bool = Field(
        default=False,
        description="Cache request embeddings on disk (off: production prompts would grow the cache forever).",
    )
    max_batch: int = Field(default=32, ge=1, le=1024, description="Most prompts embedded in one batch.")
    predict_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Threads per router embedding batches concurrently (1 measured best on 2 cores).",
    )


class ReliabilityConfig(_Strict):
    """Retry backoff and circuit breaker of every upstream (retry counts are per model: max_retries)."""

    retry_base_s: float = Field(default=0.25, ge=0)
    retry_cap_s: float = Field(default=8.0, ge=0)
    breaker_failures: int = Field(default=5, ge=1, description="Consecutive failures that open a breaker.")
    breaker_window_s: float = Field(default=60.0, gt=0)
    breaker_cooldown_s: float = Field(default=30.0, gt=0)


class MetricsConfig(_Strict):
    """Who may read ``GET /metrics`` (it shows tenants, models and spend)."""

    access: Literal["admin", "open"] = Field(
        default="admin",
        description="admin: an admin API key or the metrics token (Authorization: Bearer …); "
        "open: anyone who can reach the port.",
    )
    token_env: str | None = Field(
        default=None,
        description="Env var holding a token that may read /metrics (for a Prometheus scraper) besides admin keys.",
    )

    def token_matches(self, token: str | None) -> bool:
        """True when ``token`` is the metrics token (compared in constant time; an unset token never matches)."""
        expected = env_value(self.token_env) if self.token_env else None
        if not token or not expected:
            return False
        return hmac.compare_digest(token.encode(), expected.encode())


class DriftConfig(_Strict):
    """Drift and quality alerts per synthetic model (gateway/drift.py; thresholds explained in docs/drift.md)."""

    enabled: bool = Field(default=True, description="Compute drift in the background of the gateway.")
    interval_s: float = Field(default=600.0, ge=1, description="Seconds between background computations.")
    window_hours: float = Field(default=24.0, gt=0, description="Recent traffic: requests of the last hours.")
    max_requests: int = Field(
        default=1000, ge=1, le=100_000, description="…and at most this many of the newest of them."
    )
    max_reference: int = Field(
        default=2000,
        ge=10,
        le=50_000,
        description="Training (and held-out) prompts sampled as the reference (embedded once, cached).",
    )
    low_percentile: float = Field(
        default=5.0,
        gt=0,
        lt=50,
        description="A prompt is poorly covered when its nearest training neighbour is less similar than "
        "this percentile of the training prompts' own (leave-one-out) nearest-neighbour similarity.",
    )
    min_requests: int = Field(
        default=50,
        ge=5,
        description="Fewer prompts in the window: coverage and share say 'insufficient data'.",
    )
    min_reference: int = Field(default=30, ge=5, description="Fewer reference prompts: 'insufficient data'.")
    min_feedback: int = Field(default=30, ge=3, description="Fewer rated requests: 'insufficient data'.")
    p_value: float = Field(
        default=0.01, gt=0, lt=0.5, description="warn/alert also need the test's p-value (or CI) below this."
    )
    coverage_warn: float = Field(default=0.10, gt=0, le=1, description="Poorly covered share for warn.")
    coverage_alert: float = Field(default=0.20, gt=0, le=1, description="Poorly covered share for alert.")
    share_warn: float = Field(default=0.15, gt=0, le=1, description="Chosen-model share TVD for warn.")
    share_alert: float = Field(default=0.30, gt=0, le=1, description="Chosen-model share TVD for alert.")
    feedback_warn: float = Field(default=0.10, gt=0, le=1, description="|feedback − predicted| for warn.")
    feedback_alert: float = Field(default=0.20, gt=0, le=1, description="|feedback − predicted| for alert.")

    @model_validator(mode="after")
    def _ordered(self) -> DriftConfig:
        for name in ("coverage", "share", "feedback"):
            warn, alert = getattr(self, f"{name}_warn"), getattr(self, f"{name}_alert")
            if alert < warn:
                raise ValueError(f"drift.{name}_alert ({alert}) must be ≥ drift.{name}_warn ({warn})")
        return self


class GatewayConfig(_Strict):
    models: list[ModelConfig] = Field(default_factory=list)
    synthetic_models: list[SyntheticModelConfig] = Field(default_factory=list)
    tenants: list[TenantConfig] = Field(default_factory=list)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    counters: CountersConfig = Field(default_factory=CountersConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    reliability: ReliabilityConfig = Field(default_factory=ReliabilityConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    require_auth: bool = Field(
        default=True, description="When false, requests without a key use tenant 'default'."
    )
    key_pepper_env: str | None = Field(
        default=None,
        description="Env var with the API-key pepper (default: a 0600 file in the home directory).",
    )
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    reload: ReloadConfig = Field(default_factory=ReloadConfig)
    organisations: list[OrganisationConfig] = Field(default_factory=list)
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    telemetry: TelemetryConfig = Field(
        default_factory=TelemetryConfig, description="OpenTelemetry traces and metrics (off by default)."
    )

    @model_validator(mode="after")
    def _cross_check(self) -> GatewayConfig:
        ids = [m.id for m in self.models]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate model ids: {sorted(dup)}")
        known = set(ids)
        for m in self.models:
            bad = [f for f in m.fallbacks if f not in known]
            if bad:
                raise ValueError(f"model {m.id!r}: unknown fallbacks {bad}; known models: {sorted(known)}")
        names = [s.name for s in self.synthetic_models]
        for s in self.synthetic_models:
            if names.count(s.name) > 1:
                raise ValueError(f"duplicate synthetic model name {s.name!r}")
            if s.name in known:
                raise ValueError(f"synthetic model {s.name!r} has the same name as a real model")
            bad = [m for m in [*(s.models or []), *s.fallbacks] if m not in known]
            if bad:
                raise ValueError(f"synthetic model {s.name!r}: unknown models {bad}; known: {sorted(known)}")
        tnames = [t.name for t in self.tenants]
        if len(set(tnames)) != len(tnames):
            raise ValueError("duplicate tenant names")
        self._check_organisations()
        return self

    def _check_organisations(self) -> None:
        onames = [o.name for o in self.organisations]
        if len(set(onames)) != len(onames):
            raise ValueError("duplicate organisation names")
        member: dict[str, str] = {}
        for o in self.organisations:
            for name in o.tenants:
                if member.setdefault(name, o.name) != o.name:
                    raise ValueError(
                        f"tenant {name!r} is in two organisations: {member[name]!r} and {o.name!r}"
                    )
        for t in self.tenants:
            if t.organisation is None:
                continue
            if t.organisation not in onames:
                raise ValueError(
                    f"tenant {t.name!r}: unknown organisation {t.organisation!r}; known: {sorted(onames)}"
                )
            if member.setdefault(t.name, t.organisation) != t.organisation:
                raise ValueError(
                    f"tenant {t.name!r} names organisation {t.organisation!r} but is listed under "
                    f"{member[t.name]!r}"
                )

    def organisation_of(self, tenant: str) -> OrganisationConfig | None:
        """The organisation of ``tenant`` (``tenant.organisation`` or an ``organisations[].tenants`` entry)."""
        name = self.tenant(tenant).organisation
        for o in self.organisations:
            if o.name == name or (name is None and tenant in o.tenants):
                return o
        return None

    def model(self, model_id: str) -> ModelConfig | None:
        for m in self.models:
            if m.id == model_id:
                return m
        return None

    def tenant(self, name: str) -> TenantConfig:
        for t in self.tenants:
            if t.name == name:
                return t
        return TenantConfig(name=name)


def load_gateway_config(path: str | Path | None) -> GatewayConfig:
    """Read and validate ``gateway.yaml``; ``None`` gives an empty config (no models)."""
    if path is None:
        return GatewayConfig()
    p = Path(path).expanduser()
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError(
            f"Gateway config {p} does not exist.", hint="Check the path given to --config."
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"Gateway config {p} is not UTF-8 text (byte {exc.start}).", hint="Pass the gateway's YAML file."
        ) from exc
    except OSError as exc:  # a directory, no permission, ...
        raise ConfigError(f"Cannot read the gateway config {p}: {exc.strerror or exc}.") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"Gateway config {p} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"Gateway config {p} must hold a mapping at the top level.")
    return parse_gateway_config(raw, origin=str(p))


def parse_gateway_config(raw: dict[str, object], origin: str = "gateway config") -> GatewayConfig:
    try:
        return GatewayConfig.model_validate(raw)
    except PydanticValidationError as exc:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"])
            parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
        raise ConfigError(f"Invalid {origin}: " + "; ".join(parts)) from exc
