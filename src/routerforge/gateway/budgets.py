"""Budgets in USD per UTC day and month at three levels — API key, tenant, organisation — and tokens per
minute per key and per tenant, all enforced by one reservation on the shared ledger (``gateway/ledger.py``).

Before the upstream call the request's cost is *estimated* (:func:`estimate_request`): prompt tokens
(``policy.pricing.estimate_tokens``: characters / 4) × the input price plus ``max_tokens`` (else
``budgets.default_output_tokens``, capped by the model's ``max_output_tokens``) × the output price, ×
``n`` choices; the most expensive model of the fallback chain is assumed (a cascade: the sum of its steps).
:meth:`Budgets.reserve` then reserves that amount on every window that applies — key, tenant and
organisation, daily and monthly, plus the token-per-minute windows — all or nothing; any window that would
go over refuses the request (HTTP 429: ``insufficient_quota`` for money, ``rate_limit_error`` for tokens).
After the call :meth:`Budgets.settle` adds the actual cost and tokens and frees the reservation (a failed
call settles 0). So concurrent requests through any number of replicas can overshoot a budget only by the
estimation error of the requests in flight (actual − estimated, when the estimate was low).

Before routing, :meth:`Budgets.state` gives the share left of the tightest budget (spent + reserved);
below ``limits.low_budget_fraction`` the policy shifts to cheaper models (``routing.shift_policy``).
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from routerforge.backends.spec import ModelSpec
from routerforge.data.records import cost_usd
from routerforge.errors import BudgetExceededError, RateLimitError
from routerforge.gateway.auth import Principal
from routerforge.gateway.config import GatewayConfig
from routerforge.gateway.ledger import Ledger, Refusal, Window
from routerforge.policy.pricing import CHARS_PER_TOKEN

DAY_TTL_S = 2 * 86400.0
MONTH_TTL_S = 32 * 86400.0
MINUTE_TTL_S = 120.0


@dataclass(frozen=True)
class Estimate:
    """What a request is expected to use at most: USD and tokens (prompt + completion)."""

    usd: float
    tokens_in: int
    tokens_out: int

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


def estimate_request(
    models: Sequence[ModelSpec],
    prompt_chars: int,
    max_tokens: int | None,
    *,
    default_output_tokens: int,
    n: int = 1,
    cascade: bool = False,
) -> Estimate:
    """The reservation of one request over ``models`` (its fallback chain, or a cascade's steps)."""
    tokens_in = math.ceil(prompt_chars / CHARS_PER_TOKEN)  # policy.pricing.estimate_tokens, on a length
    worst_out = 0
    costs: list[float] = []
    for m in models:
        out = max_tokens if max_tokens is not None else default_output_tokens
        if max_tokens is None and m.max_output_tokens is not None:
            out = min(out, m.max_output_tokens)
        out *= max(1, n)
        worst_out = max(worst_out, out)
        c = cost_usd(m.input_usd_per_mtok or 0.0, m.output_usd_per_mtok or 0.0, tokens_in, out)
        costs.append(float(c or 0.0))
    if not models:
        worst_out = (max_tokens or default_output_tokens) * max(1, n)
    usd = (sum(costs) if cascade else max(costs)) if costs else 0.0
    return Estimate(usd=usd, tokens_in=tokens_in, tokens_out=worst_out)


@dataclass
class Reservation:
    """A request's reservation: settle it once (``Budgets.settle``), or it expires after ``budgets.lease_s``."""

    lease_id: str
    windows: tuple[Window, ...]
    estimate: Estimate
    settled: bool = False


@dataclass(frozen=True)
class Level:
    """One budget window of a principal: its key, label and limit, and what it held when read."""

    key: str
    label: str
    limit: float
    spent: float
    reserved: float

    @property
    def left(self) -> float:
        return self.limit - self.spent - self.reserved


@dataclass(frozen=True)
class BudgetState:
    """The budgets of a caller (key, tenant, organisation) as last read; the tenant's own spend is kept in
    ``daily_usd``/``spent_day_usd``… for reports."""

    tenant: str
    daily_usd: float | None
    monthly_usd: float | None
    spent_day_usd: float
    spent_month_usd: float
    levels: tuple[Level, ...] = ()

    @property
    def fraction_left(self) -> float | None:
        """Share left of the tightest budget, reservations counted (``None``: no budget applies)."""
        if not self.levels:
            return None
        fractions = [lv.left / lv.limit if lv.limit > 0 else 0.0 for lv in self.levels]
        return max(0.0, min(fractions))

    @property
    def usd_left(self) -> float | None:
        if not self.levels:
            return None
        return max(0.0, min(lv.left for lv in self.levels))


def _as_principal(who: Principal | str) -> Principal:
    return who if isinstance(who, Principal) else Principal(tenant=who, key_id=None)


class Budgets:
    def __init__(self, config: GatewayConfig, ledger: Ledger) -> None:
        self.config = config
        self.ledger = ledger

    # -- which windows apply ------------------------------------------------------------------------
    def usd_windows(
        self, who: Principal | str, now: dt.datetime | None = None
    ) -> list[tuple[str, str, float, float]]:
        """``(key, label, limit_usd, ttl_s)`` of every money budget that applies to ``who``."""
        p = _as_principal(who)
        levels: list[tuple[str, str, float | None, float | None]] = []
        if p.key_id is not None:
            levels.append((f"k:{p.key_id}", f"key {p.key_id!r}", p.daily_usd, p.monthly_usd))
        t = self.config.tenant(p.tenant)
        levels.append((f"t:{p.tenant}", f"tenant {p.tenant!r}", t.daily_usd, t.monthly_usd))
        org = self.config.organisation_of(p.tenant)
        if org is not None:
            levels.append((f"o:{org.name}", f"organisation {org.name!r}", org.daily_usd, org.monthly_usd))
        out: list[tuple[str, str, float, float]] = []
        if all(daily is None and monthly is None for _, _, daily, monthly in levels):
            return out  # no budget at all (the common case): no clock read or date formatting per request
        now = now or dt.datetime.now(dt.UTC)
        day, month = f"d:{now:%Y%m%d}", f"m:{now:%Y%m}"
        for prefix, label, daily, monthly in levels:
            if daily is not None:
                out.append((f"b:{prefix}:{day}", f"{label} daily budget", float(daily), DAY_TTL_S))
            if monthly is not None:
                out.append((f"b:{prefix}:{month}", f"{label} monthly budget", float(monthly), MONTH_TTL_S))
        return out

    def token_windows(self, who: Principal, now: float | None = None) -> list[tuple[str, str, float]]:
        """``(key, label, limit_tokens)`` of the tokens-per-minute limits of ``who`` (this minute)."""
        minute = int((now if now is not None else time.time()) // 60)
        out = []
        key_tpm = who.tokens_per_minute or self.config.limits.tokens_per_minute
        if who.key_id is not None and key_tpm is not None:
            out.append((f"tpm:k:{who.key_id}:{minute}", f"key {who.key_id!r}", float(key_tpm)))
        tenant_tpm = self.config.tenant(who.tenant).tokens_per_minute
        if tenant_tpm is not None:
            out.append((f"tpm:t:{who.tenant}:{minute}", f"tenant {who.tenant!r}", float(tenant_tpm)))
        return out

    def has_budget(self, who: Principal | str) -> bool:
        return bool(self.usd_windows(who))

    # -- reading ------------------------------------------------------------------------------------
    async def state(self, who: Principal | str) -> BudgetState:
        p = _as_principal(who)
        windows = self.usd_windows(p)
        t = self.config.tenant(p.tenant)
        if not windows:
            return BudgetState(p.tenant, t.daily_usd, t.monthly_usd, 0.0, 0.0)
        usage = await self.ledger.usage([w[0] for w in windows])
        levels = tuple(
            Level(key, label, limit, spent, reserved)
            for (key, label, limit, _), (spent, reserved) in zip(windows, usage, strict=True)
        )
        tenant_day = next((lv.spent for lv in levels if lv.key.startswith(f"b:t:{p.tenant}:d:")), 0.0)
        tenant_month = next((lv.spent for lv in levels if lv.key.startswith(f"b:t:{p.tenant}:m:")), 0.0)
        return BudgetState(p.tenant, t.daily_usd, t.monthly_usd, tenant_day, tenant_month, levels)

    async def check(self, who: Principal | str) -> BudgetState:
        """The caller's state; raises :class:`BudgetExceededError` when any budget is used up."""
        st = await self.state(who)
        for lv in st.levels:
            if lv.left <= 0.0:
                raise BudgetExceededError(
                    f"The {lv.label} of ${lv.limit:g} is used up (${lv.spent:.4f} spent, "
                    f"${lv.reserved:.4f} reserved by requests in flight).",
                    hint="Wait for the next window or raise the budget (gateway.yaml, or the key's own).",
                )
        return st

    # -- reserving and settling ---------------------------------------------------------------------
    def windows_for(self, who: Principal, est: Estimate) -> tuple[Window, ...]:
        out = [
            Window(key, limit, est.usd, ttl, label, "usd") for key, label, limit, ttl in self.usd_windows(who)
        ]
        out += [
            Window(key, limit, float(est.tokens), MINUTE_TTL_S, label, "tokens")
            for key, label, limit in self.token_windows(who)
        ]
        return tuple(out)

    async def reserve(self, who: Principal, est: Estimate) -> Reservation | None:
        """Reserve ``est`` on every window of ``who`` (all or nothing); ``None`` when no limit applies.
        Raises :class:`BudgetExceededError` / :class:`RateLimitError` (429) when a window would go over."""
        windows = self.windows_for(who, est)
        if not windows:
            return None
        lease_id = secrets.token_hex(12)
        refusal = await self.ledger.reserve(lease_id, windows, self.config.budgets.lease_s)
        if refusal is not None:
            raise _refusal_error(refusal, est)
        return Reservation(lease_id, windows, est)

    async def settle(
        self, res: Reservation, cost: float | None, tokens_in: int | None, tokens_out: int | None
    ) -> None:
        """Add the actual cost and tokens to every window and free the reservation (once)."""
        if res.settled:
            return
        res.settled = True
        tokens = float((tokens_in or 0) + (tokens_out or 0))
        actual = [float(cost or 0.0) if w.unit == "usd" else tokens for w in res.windows]
        await self.ledger.settle(res.lease_id, res.windows, actual)

    async def release(self, res: Reservation) -> None:
        """Free the reservation of a request that cost nothing (refused or failed upstream)."""
        await self.settle(res, 0.0, 0, 0)

    async def record(self, who: Principal | str, cost_usd: float) -> None:
        """Add ``cost_usd`` to the spend of ``who`` without a reservation (imports, tests)."""
        windows = self.windows_for(_as_principal(who), Estimate(0.0, 0, 0))
        usd = [w for w in windows if w.unit == "usd"]
        if cost_usd > 0 and usd:
            await self.ledger.settle(secrets.token_hex(12), usd, [cost_usd] * len(usd))


def _refusal_error(refusal: Refusal, est: Estimate) -> BudgetExceededError | RateLimitError:
    w = refusal.window
    if w.unit == "tokens":
        retry = 60 - int(time.time() % 60)
        if w.amount > w.limit:
            return RateLimitError(
                f"This request may use up to {int(w.amount)} tokens (estimated: prompt + max_tokens), more "
                f"than the {w.label} limit of {int(w.limit)} tokens per minute.",
                hint="Lower max_tokens or shorten the prompt, or ask for a higher tokens-per-minute limit.",
            )
        return RateLimitError(
            f"The {w.label} limit of {int(w.limit)} tokens per minute is reached ({int(refusal.spent)} used, "
            f"{int(refusal.reserved)} reserved by requests in flight; this request may use up to "
            f"{int(w.amount)}).",
            hint=f"Retry in {retry} s, lower max_tokens, or ask for a higher limit.",
        )
    if w.amount > w.limit:
        return BudgetExceededError(
            f"This request may cost up to ${w.amount:.4f} (estimated from the prompt and max_tokens), more "
            f"than the whole {w.label} of ${w.limit:g}.",
            hint="Lower max_tokens, or raise the budget (gateway.yaml, or the key's own).",
        )
    return BudgetExceededError(
        f"The {w.label} of ${w.limit:g} would be exceeded: ${refusal.spent:.4f} spent and "
        f"${refusal.reserved:.4f} reserved by requests in flight; this request may cost up to "
        f"${w.amount:.4f} (estimated).",
        hint="Wait for the next window, lower max_tokens, or raise the budget (gateway.yaml, or the key's own).",
    )
