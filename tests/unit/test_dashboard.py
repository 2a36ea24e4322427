"""The city dashboard's figures from the platform's data (the page draws these)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from suanli.domain.enums import Precision
from suanli.domain.errors import Forbidden, NotFound
from suanli.services.centers import units_in_use
from suanli.services.context import Platform
from suanli.services.dashboard import center_load, city_dashboard
from suanli.store import models as m

from ..conftest import World
from ..money import START, bill, finished_run, fixed_world


@pytest.fixture
def fw(platform: Platform) -> World:
    w, _ = fixed_world(platform, START + timedelta(hours=6))
    return w


def test_utilization_spreads_each_run_over_its_hours_and_finds_the_peak(fw: World) -> None:
    w = fw
    cpu = next(pl for pl in w.alpha.pools if pl.name == "cpu")
    p_of = cpu.spec().peak_pflops(Precision.FP32, 4)  # P of 4 units
    # 4 units for 2 h from 08:00, and 4 more for 30 min from 08:30: 08:00-09:00 averages 1.5x
    bill(w, finished_run(w, w.t2.id, w.alpha, "cpu", units=4, seconds=7200, start=START),
         finished_run(w, w.t2.id, w.alpha, "cpu", units=4, seconds=1800,
                      start=START + timedelta(minutes=30)))
    d = city_dashboard(w.p, w.admin)
    by_hour = {u["hour"][:13]: u["pflops"] for u in d["utilization"]}
    assert by_hour["2026-03-02T08"] == pytest.approx(1.5 * p_of, rel=1e-4)
    assert by_hour["2026-03-02T09"] == pytest.approx(p_of, rel=1e-4)
    assert d["peak"]["hour"].startswith("2026-03-02T08")
    units = sum(pl.units_per_node * pl.nodes for c in (w.alpha, w.beta) for pl in c.pools)
    share = {u["hour"][:13]: u["percent"] for u in d["utilization"]}
    assert share["2026-03-02T08"] == pytest.approx(100 * 6 / units, abs=1e-3)  # 6 units of the city's
    assert d["peak"]["pflops"] == pytest.approx(1.5 * p_of, rel=1e-4)
    assert d["jobs_total"] == 2 and d["enterprises_served"]["all_time"] == 1
    assert d["pflops_hours"] == pytest.approx(2.5 * p_of, rel=1e-3)
    assert d["domestic_share"] == 0.0  # alpha's cpu pool is not a domestic chip
    assert {c["slug"] for c in d["centers"]} >= {w.alpha.slug}
    with pytest.raises(Forbidden):
        city_dashboard(w.p, w.u2)
    # one center's load: both runs were on alpha, so the same hours
    alpha = center_load(w.p, w.admin, w.alpha.id)
    assert len(alpha["hours"]) == 7 * 24 + 1 == len(alpha["pflops"])  # every hour, zeros too
    load = {h[:13]: v for h, v in zip(alpha["hours"], alpha["pflops"], strict=True) if v}
    assert load == by_hour
    # per pool: average units in use each hour, and their share of the pool's units
    pools = {pl["name"]: pl for pl in alpha["pools"]}
    assert set(pools) == {"cpu", "npu"} and not any(pools["npu"]["busy"])
    at = {h[:13]: i for i, h in enumerate(alpha["hours"])}
    cpu_units = pools["cpu"]["units"]
    assert pools["cpu"]["busy"][at["2026-03-02T08"]] == pytest.approx(6.0)  # 4 + 4 × 1/2
    assert pools["cpu"]["busy"][at["2026-03-02T09"]] == pytest.approx(4.0)
    assert pools["cpu"]["percent"][at["2026-03-02T08"]] == pytest.approx(600 / cpu_units, abs=0.01)
    assert sum(pools["cpu"]["busy"]) == pytest.approx(10.0)  # 4 × 2 h + 4 × 0.5 h unit-hours
    assert not any(center_load(w.p, w.admin, w.beta.id)["pflops"])
    with pytest.raises(Forbidden):
        center_load(w.p, w.u2, w.alpha.id)
    bill(w, finished_run(w, w.t2.id, w.alpha, "npu", units=4, seconds=3600))  # Ascend: domestic
    d2 = city_dashboard(w.p, w.admin)
    npu_pfh = d2["pflops_hours"] - d["pflops_hours"]
    assert npu_pfh > 0 and d2["domestic_share"] == pytest.approx(npu_pfh / d2["pflops_hours"], abs=1e-4)


def test_units_in_use_are_a_centers_own(fw: World) -> None:
    w = fw
    with w.p.db.session() as s:  # a run going on alpha's npu pool
        npu = next(pl.id for pl in w.alpha.pools if pl.name == "npu")
        job = m.Job(tenant_id=w.t2.id, user_id=w.u2.user_id, name="r", command=["true"],
                    device_kind="npu", units=4, walltime_s=60, state="RUNNING",
                    submitted_at=START, updated_at=START)
        s.add(job)
        s.flush()
        place = m.Placement(job_id=job.id, pool_id=npu, center_id=w.alpha.id, decided_at=START,
                            policy="balanced", explanation={})
        s.add(place)
        s.flush()
        s.add(m.Run(job_id=job.id, placement_id=place.id, center_id=w.alpha.id, pool_id=npu,
                    attempt=1, run_key="u-1", state="running", units=4, nodes=[0], devices=[],
                    walltime_s=60, created_at=START, started_at=START))
    assert units_in_use(w.p, w.op_alpha, w.alpha.id) == {npu: 4}
    # a run still going counts on the dashboard up to now: 4 units in each hour since it began
    d = city_dashboard(w.p, w.admin)
    units = sum(pl.total_units for c in (w.alpha, w.beta) for pl in c.pools)
    by_hour = {u["hour"][:13]: u for u in d["utilization"]}
    assert by_hour["2026-03-02T09"]["percent"] == pytest.approx(100 * 4 / units, abs=1e-3)
    assert by_hour["2026-03-02T09"]["pflops"] > 0
    assert units_in_use(w.p, w.admin, w.beta.id) == {}
    with pytest.raises(NotFound):  # an operator sees its own center only
        units_in_use(w.p, w.op_alpha, w.beta.id)
