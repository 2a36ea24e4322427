"""The twin forecasts a voucher programme's burn: the same rules as the platform, the pool's month
of exhaustion, caps, and the CLI's answer."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from suanli.sim.burn import Programme, forecast
from suanli.sim.scenario import build
from suanli.sim.twin import TwinRun, run_twin
from suanli.vouchers import Rules, period_of

ROOT = Path(__file__).resolve().parents[2]
SUANLI = str(Path(sys.executable).with_name("suanli"))
WHAT_IF = {
    "name": "vouchers", "seed": 5, "scheduler": "easy", "window_days": 60,
    "pools": [
        {"center": "a", "name": "npu", "device": "npu", "units": 64, "price_fen_per_unit_hour": 800,
         "domestic": True},
        {"center": "b", "name": "gpu", "device": "gpu", "units": 64, "price_fen_per_unit_hour": 1500},
    ],
    "workloads": [
        {"synthetic": {"jobs": 600, "rate_per_h": 0.4, "max_units": 16, "min_runtime_s": 600,
                       "max_runtime_s": 36000}, "home": "a/npu", "devices": ["npu", "gpu"], "tenants": 4},
    ],
}
RULES = Rules.from_dict({"overrides": [{"domestic": True, "ratio_bp": 3000}]})


def twin() -> TwinRun:
    return run_twin(build(json.loads(json.dumps(WHAT_IF)), base=ROOT), "suanli")


def expected_subsidy(run: TwinRun) -> dict[str, int]:
    """Independently: every job ending in the year, bill × its pool's ratio, by month."""
    out: dict[str, int] = defaultdict(int)
    window = 60 * 86400
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for k in range(7):  # 7 × 60 days covers 365
        for r in run.records:
            t = k * window + r.end
            if t < 365 * 86400:
                ratio = 3000 if r.center == "a/npu" else 2000
                out[period_of(start + timedelta(seconds=t), "monthly")] += r.cost_fen * ratio // 10_000
    return out


def test_an_ample_pool_pays_every_bill_at_its_ratio() -> None:
    run = twin()
    f = forecast(run, Programme(10**13, Rules.from_dict({**RULES.to_dict(), "tenant_cap_fen": 10**12}), 2026))
    want = expected_subsidy(run)
    assert {m["month"]: m["subsidy_fen"] for m in f["months"]} == {f"2026-{i:02d}": want[f"2026-{i:02d}"]
                                                                   for i in range(1, 13)}
    assert f["runs_out_month"] is None and f["replays"] == 7
    assert f["left_at_year_end_fen"] == 10**13 - sum(want.values())


def test_a_small_pool_runs_out_in_the_month_its_running_total_crosses_the_budget() -> None:
    run = twin()
    want = expected_subsidy(run)
    total_by = 0
    budget = sum(want.values()) // 3
    crossing = None
    for i in range(1, 13):
        total_by += want[f"2026-{i:02d}"]
        if crossing is None and total_by >= budget:
            crossing = i
    f = forecast(run, Programme(budget, Rules.from_dict({**RULES.to_dict(), "tenant_cap_fen": 10**12}), 2026))
    assert f["runs_out_in_month_n"] == crossing
    assert sum(m["subsidy_fen"] for m in f["months"]) == budget and f["months"][-1]["left_fen"] == 0


def test_tenant_caps_bound_what_each_receives() -> None:
    run = twin()
    f = forecast(run, Programme(10**13, Rules.from_dict({**RULES.to_dict(), "tenant_cap_fen": 50_000}), 2026))
    assert f["tenants_at_cap"] == f["tenants"] == 4
    assert sum(m["subsidy_fen"] for m in f["months"]) == 4 * 50_000


def test_burn_cli(tmp_path: Path) -> None:
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps(WHAT_IF))
    yaml_file = tmp_path / "s.yaml"
    yaml_file.write_text(json.dumps(WHAT_IF))  # JSON is YAML
    r = subprocess.run([SUANLI, "simulate", "burn", str(yaml_file), "--budget-yuan", "1000",
                        "--rules", '{"ratio_bp": 5000}', "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "runs out in month 1 (2026-01)" in r.stdout
    assert json.loads((tmp_path / "o" / "burn.json").read_text())["runs_out_in_month_n"] == 1
    bad = subprocess.run([SUANLI, "simulate", "burn", str(yaml_file), "--rules", '{"ratio": 1}'],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "unknown rule 'ratio'" in bad.stderr and "Traceback" not in bad.stderr
