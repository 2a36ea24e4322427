"""The voucher programme's burn in the digital twin: "with this trace and these rules, the pool
runs out in month N".

Every job the twin ran is billed at its pool's price (its `cost_fen`); the voucher pays its part
under the programme's rules (the same `vouchers.Rules` the platform applies: ratio, overrides,
centers) up to each tenant's cap and while the pool lasts, first come first served by the time
each job ends. A window shorter than the programme's year is replayed back to back to fill it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..vouchers import Rules, period_of, subsidy
from .twin import TwinRun

YEAR_S = 365 * 86400


@dataclass(frozen=True, slots=True)
class Programme:
    budget_fen: int
    rules: Rules
    year: int

    @property
    def start(self) -> datetime:
        return datetime(self.year, 1, 1, tzinfo=UTC)


def forecast(run: TwinRun, prog: Programme) -> dict[str, Any]:
    sc = run.scenario
    pools = {p.label: p for p in sc.pools}
    window = sc.window_days * 86400
    repeats = max(1, math.ceil(YEAR_S / window)) if window > 0 else 1
    by_end = sorted(run.records, key=lambda r: r.end)
    left = prog.budget_fen
    used: dict[str, int] = defaultdict(int)
    months: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # bills, subsidy, jobs
    runs_out: str | None = None
    for k in range(repeats):
        for r in by_end:
            t = k * window + r.end
            if t >= YEAR_S:
                break
            month = period_of(prog.start + timedelta(seconds=t), "monthly")
            pool = pools.get(r.center)
            m = months[month]
            m[0] += r.cost_fen
            if pool is None or not prog.rules.center_allowed(pool.center) or left <= 0:
                continue
            ratio = prog.rules.ratio_for(domestic=pool.domestic, device_kind=pool.device, center=pool.center)
            v = subsidy(r.cost_fen, ratio, left, prog.rules.tenant_cap_fen - used[r.tenant])
            if v > 0:
                left -= v
                used[r.tenant] += v
                m[1] += v
                m[2] += 1
                if left == 0 and runs_out is None:
                    runs_out = month
    rows, spent = [], 0
    for i in range(12):
        key = f"{prog.year}-{i + 1:02d}"
        bills, paid, jobs = months.get(key, [0, 0, 0])
        spent += paid
        rows.append({"month": key, "bills_fen": bills, "subsidy_fen": paid, "subsidised_jobs": jobs,
                     "left_fen": prog.budget_fen - spent})
    capped = sum(1 for v in used.values() if v >= prog.rules.tenant_cap_fen)
    return {"policy": run.policy, "budget_fen": prog.budget_fen, "rules": prog.rules.to_dict(),
            "window_days": sc.window_days, "replays": repeats, "months": rows,
            "runs_out_month": runs_out,
            "runs_out_in_month_n": int(runs_out[-2:]) if runs_out else None,
            "left_at_year_end_fen": left, "tenants": len(used), "tenants_at_cap": capped}
