"""Per-tenant hard budgets in USD per UTC day and per UTC month, on the shared counters.

Before a request: :meth:`Budgets.state` says how much of the tightest budget is left. Below
``limits.low_budget_fraction`` the router's policy shifts to cheaper models (see ``routing.shift_policy``);
at zero the request is refused with :class:`BudgetExceededError` (HTTP 429, ``insufficient_quota``).
After a request its cost is added to both windows (spend can overshoot by at most the requests in flight).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from routerforge.errors import BudgetExceededError
from routerforge.gateway.config import GatewayConfig
from routerforge.gateway.ratelimit import Counters


@dataclass(frozen=True)
class BudgetState:
    tenant: str
    daily_usd: float | None
    monthly_usd: float | None
    spent_day_usd: float
    spent_month_usd: float

    @property
    def fraction_left(self) -> float | None:
        """Share left of the tightest budget (``None`` when the tenant has no budget)."""
        fractions = []
        if self.daily_usd is not None:
            fractions.append(1.0 - self.spent_day_usd / self.daily_usd if self.daily_usd > 0 else 0.0)
        if self.monthly_usd is not None:
            fractions.append(1.0 - self.spent_month_usd / self.monthly_usd if self.monthly_usd > 0 else 0.0)
        return max(0.0, min(fractions)) if fractions else None

    @property
    def usd_left(self) -> float | None:
        lefts = []
        if self.daily_usd is not None:
            lefts.append(self.daily_usd - self.spent_day_usd)
        if self.monthly_usd is not None:
            lefts.append(self.monthly_usd - self.spent_month_usd)
        return max(0.0, min(lefts)) if lefts else None


def _keys(tenant: str, now: dt.datetime | None = None) -> tuple[str, str]:
    now = now or dt.datetime.now(dt.UTC)
    return f"spend:{tenant}:d:{now:%Y%m%d}", f"spend:{tenant}:m:{now:%Y%m}"


class Budgets:
    def __init__(self, config: GatewayConfig, counters: Counters) -> None:
        self.config = config
        self.counters = counters

    def has_budget(self, tenant: str) -> bool:
        t = self.config.tenant(tenant)
        return t.daily_usd is not None or t.monthly_usd is not None

    async def state(self, tenant: str) -> BudgetState:
        t = self.config.tenant(tenant)
        if t.daily_usd is None and t.monthly_usd is None:
            return BudgetState(tenant, None, None, 0.0, 0.0)
        day, month = await self.counters.get(list(_keys(tenant)))
        return BudgetState(tenant, t.daily_usd, t.monthly_usd, day, month)

    async def check(self, tenant: str) -> BudgetState:
        """The tenant's state; raises :class:`BudgetExceededError` when a budget is used up."""
        st = await self.state(tenant)
        frac = st.fraction_left
        if frac is not None and frac <= 0.0:
            which = "daily" if st.daily_usd is not None and st.spent_day_usd >= st.daily_usd else "monthly"
            limit = st.daily_usd if which == "daily" else st.monthly_usd
            raise BudgetExceededError(
                f"Tenant {tenant!r} has used its {which} budget of ${limit:g}.",
                hint="Wait for the next window or raise the budget in gateway.yaml.",
            )
        return st

    async def record(self, tenant: str, cost_usd: float) -> None:
        if cost_usd <= 0 or not self.has_budget(tenant):
            return
        day, month = _keys(tenant)
        await self.counters.add(day, cost_usd, 2 * 86400.0)
        await self.counters.add(month, cost_usd, 32 * 86400.0)
