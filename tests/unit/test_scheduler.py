"""Scheduler v1: filters, policies, gang allocation, priority order, explanations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from suanli.domain.enums import CenterStatus, DeviceKind, Policy, Precision
from suanli.domain.model import JobRequirements, PoolSpec, Resources
from suanli.scheduling import PoolState, QueuedJob, RunningAllocation, explain_job, schedule

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def spec(**kw: object) -> PoolSpec:
    base: dict[str, object] = dict(device_kind=DeviceKind.GPU, device_model="A100-80G",
                                   domestic=False, units_per_node=8, nodes=2,
                                   memory_gb_per_node=512, price_fen_per_unit_hour=1000,
                                   tflops_fp64=9.7, tflops_fp32=19.5, tflops_fp16=312.0,
                                   tflops_int8=624.0, watts_per_unit=400, max_walltime_s=86400)
    base.update(kw)
    return PoolSpec(**base)  # type: ignore[arg-type]


def pool(pid: int, sp: PoolSpec | None = None, **kw: object) -> PoolState:
    return PoolState.idle(pid, pid, f"c{pid}", "p", sp or spec(), **kw)  # type: ignore[arg-type]


def req(units: int = 1, device: DeviceKind = DeviceKind.GPU, **kw: object) -> JobRequirements:
    nodes = int(kw.pop("nodes", 1))  # type: ignore[call-overload]
    model = kw.pop("model", None)
    mem = kw.pop("memory_gb", None)
    base: dict[str, object] = dict(walltime_s=3600, precision=Precision.FP16)
    base.update(kw)
    return JobRequirements(resources=Resources(device, units, nodes, model, mem),  # type: ignore[arg-type]
                           **base)  # type: ignore[arg-type]


def job(jid: int, r: JobRequirements, at: int = 0) -> QueuedJob:
    return QueuedJob(jid, 1, NOW + timedelta(seconds=at), r)


def only(decisions: list) -> object:  # type: ignore[type-arg]
    assert len(decisions) == 1
    return decisions[0]


def test_filters_report_every_reason() -> None:
    pools = [
        pool(1, spec(device_kind=DeviceKind.CPU, device_model="Xeon", tflops_fp16=None)),
        pool(2, spec(device_model="Ascend 910B", device_kind=DeviceKind.NPU, domestic=True)),
        pool(3, spec(units_per_node=4)),
        pool(4, spec(max_walltime_s=60)),
        pool(5, center_status=CenterStatus.OFFLINE),
        pool(6, center_status=CenterStatus.DRAINING),
        pool(7, district="黄岛区"),
        pool(8, spec(tflops_fp16=None), district="黄岛区"),
    ]
    d = explain_job(req(8, domestic_only=False, district="黄岛区"), pools, NOW)
    by = {c.pool_id: c for c in d.candidates}
    assert "device is cpu, job needs gpu" in by[1].reasons
    assert not any("fp16" in r for r in by[1].reasons)  # the device kind already rules it out
    assert "device is npu, job needs gpu" in by[2].reasons
    assert "needs 8 units per node, pool has 4 per node (ask for nodes=2 to spread it)" \
        in by[3].reasons
    assert any("walltime" in r for r in by[4].reasons)
    assert "center is offline" in by[5].reasons
    assert any("draining" in r for r in by[6].reasons)
    assert by[7].feasible and by[7].chosen
    assert by[8].reasons == ["A100-80G has no fp16 capability"]
    assert any("district" in r for r in by[3].reasons)


def test_a_spread_is_suggested_only_when_the_pool_has_the_nodes() -> None:
    small = pool(1, spec(units_per_node=4, nodes=2))
    d = explain_job(req(8, domestic_only=False), [small], NOW)
    assert "(ask for nodes=2 to spread it)" in d.candidates[0].reasons[0]
    d = explain_job(req(16, domestic_only=False), [small], NOW)
    (reason,) = d.candidates[0].reasons
    assert "nodes=4" not in reason and "(the pool has 2 nodes × 4 = 8 units at most)" in reason


def test_a_run_time_beyond_the_walltime_is_flagged() -> None:
    fast = pool(1, spec(tflops_fp16=312.0))
    slow = pool(2, spec(tflops_fp16=104.0))  # a third as fast: 3× the walltime's work time
    d = explain_job(req(1, domestic_only=False), [fast, slow], NOW)
    by = {c.pool_id: c for c in d.candidates}
    assert by[1].runtime_s == 3600 and not by[1].beyond_walltime
    assert by[2].runtime_s == 10800 and by[2].beyond_walltime
    assert by[2].as_dict()["beyond_walltime"] is True


def test_domestic_only_and_model() -> None:
    pools = [pool(1), pool(2, spec(device_kind=DeviceKind.GPU, device_model="DCU K100",
                                   domestic=True))]
    d = only(schedule(pools, [job(1, req(1, domestic_only=True))], NOW))
    assert d.pool_id == 2  # type: ignore[attr-defined]
    d = only(schedule(pools, [job(1, req(1, model="a100-80g"))], NOW))
    assert d.pool_id == 1  # type: ignore[attr-defined]


def test_policies_pick_their_pool() -> None:
    fast = spec(tflops_fp16=624.0, price_fen_per_unit_hour=3000, watts_per_unit=700)
    cheap = spec(tflops_fp16=156.0, price_fen_per_unit_hour=200, watts_per_unit=300)
    green = spec(tflops_fp16=312.0, price_fen_per_unit_hour=1500, watts_per_unit=100)
    pools = [pool(1, fast), pool(2, cheap), pool(3, green)]
    picks = {pol: only(schedule(pools, [job(1, req(1, policy=pol))], NOW)).pool_id  # type: ignore[attr-defined]
             for pol in Policy}
    assert picks[Policy.FASTEST] == 1
    assert picks[Policy.CHEAPEST] == 2
    assert picks[Policy.GREENEST] == 3


def test_runtime_scales_with_speed_and_cost_follows() -> None:
    pools = [pool(1, spec(tflops_fp16=300.0)), pool(2, spec(tflops_fp16=150.0,
                                                           price_fen_per_unit_hour=1000))]
    d = explain_job(req(2, policy=Policy.FASTEST), pools, NOW)
    by = {c.pool_id: c for c in d.candidates}
    assert by[1].runtime_s == 3600 and by[2].runtime_s == 7200
    assert by[2].cost_fen == 2 * 1000 * 2  # 2 units × ¥10/h × 2 h
    assert by[1].chosen


def test_gang_job_gets_whole_nodes_or_waits() -> None:
    p = pool(1, spec(units_per_node=4, nodes=3))
    # Two nodes × 4 units, on distinct nodes, all devices distinct.
    d = only(schedule([p], [job(1, req(8, nodes=2))], NOW))
    assert d.pool_id == 1 and len(d.nodes) == 2  # type: ignore[attr-defined]
    assert len(set(d.devices)) == 8  # type: ignore[attr-defined]
    # With one unit used on each of two nodes, a 2×4 gang job cannot start (never partial).
    busy = PoolState(1, 1, "c1", "p", spec(units_per_node=4, nodes=3), 1.3, "",
                     CenterStatus.ONLINE,
                     (frozenset({1, 2, 3}), frozenset({5, 6, 7}), frozenset({8, 9, 10, 11})),
                     (512, 512, 512), (RunningAllocation(2, NOW + timedelta(hours=1), (0, 4)),))
    d = only(schedule([busy], [job(1, req(8, nodes=2))], NOW))
    assert d.pool_id is None and "waiting" in d.message  # type: ignore[attr-defined]
    # The estimate says when enough units come back: the running job's walltime end.
    assert explain_job(req(8, nodes=2), [busy], NOW).estimated_start == NOW + timedelta(hours=1)


def test_priority_orders_the_queue_and_pool_is_not_oversubscribed() -> None:
    p = pool(1, spec(units_per_node=8, nodes=1))
    jobs = [job(1, req(6), at=0), job(2, req(6, priority=10), at=5), job(3, req(2), at=9)]
    ds = {d.job_id: d for d in schedule([p], jobs, NOW)}
    assert ds[2].placed and not ds[1].placed and ds[3].placed
    assert not set(ds[2].devices) & set(ds[3].devices)


def test_memory_per_node_is_a_filter_and_is_tracked() -> None:
    p = pool(1, spec(units_per_node=8, nodes=1, memory_gb_per_node=100))
    d = explain_job(req(1, memory_gb=200), [p], NOW)
    assert not d.candidates[0].feasible
    ds = schedule([p], [job(1, req(1, memory_gb=60)), job(2, req(1, memory_gb=60))], NOW)
    assert ds[0].placed and not ds[1].placed


def test_explanation_is_serialisable_and_marks_the_choice() -> None:
    d = only(schedule([pool(1), pool(2, spec(price_fen_per_unit_hour=10))],
                      [job(1, req(1, policy=Policy.BALANCED))], NOW))
    exp = d.explanation()  # type: ignore[attr-defined]
    assert exp["policy"] == "balanced" and exp["weights"]
    chosen = [c for c in exp["candidates"] if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["pool_id"] == 2


def _busy_home(pid: int, ends_in_s: int) -> PoolState:
    """A home pool whose 16 units are all held for `ends_in_s` more seconds."""
    from dataclasses import replace as _replace

    idle = pool(pid)
    return _replace(idle, free_devices=tuple(frozenset() for _ in idle.free_devices),
                    running=(RunningAllocation(16, NOW + timedelta(seconds=ends_in_s),
                                               tuple(range(16))),))


def test_home_first_sends_a_job_to_a_peer_only_when_it_is_earlier_by_the_margin() -> None:
    """Federation: with the rule "peers only when more than X s earlier", a peer platform's
    idle pool wins only when the home pool would make the job wait longer than X; a cheaper
    peer never wins by price alone, and without the rule the policy decides as usual."""
    from dataclasses import replace as _replace

    peer = _replace(pool(2, spec(price_fen_per_unit_hour=100)), peer=True)
    for wait_s, rule, expect in [(300, 600.0, 1), (900, 600.0, 2), (0, 0.0, 1), (0, None, 2)]:
        home = _busy_home(1, wait_s) if wait_s else pool(1)
        r = req(1, policy=Policy.CHEAPEST if rule is None else Policy.FASTEST,
                peer_earlier_by_s=rule)
        d = explain_job(r, [home, peer], NOW)
        chosen = [c.pool_id for c in d.candidates if c.chosen]
        assert chosen == [expect], (wait_s, rule, d.explanation())
        peer_c = next(c for c in d.candidates if c.pool_id == 2)
        if expect == 1 and rule is not None:
            assert not peer_c.feasible and any("home first" in x for x in peer_c.reasons)
    # no home pool can run it: the peer, whatever the rule
    d = explain_job(req(1, peer_earlier_by_s=600.0),
                    [pool(1, spec(device_kind=DeviceKind.NPU)), peer], NOW)
    assert [c.pool_id for c in d.candidates if c.chosen] == [2]


def test_a_peer_pool_is_weighed_by_the_peers_own_quote() -> None:
    """Negotiation: with quotes in hand, a peer's pool without one is not a candidate yet, one
    the peer refused carries its reason, and a quoted wait (the peer's other users) counts even
    when our own view of that pool says it is idle."""
    from dataclasses import replace as _replace

    from suanli.scheduling import Quote, shape_key

    home = _busy_home(1, 600)
    peer = _replace(pool(2), peer=True)
    r = req(1, policy=Policy.FASTEST)
    key = (shape_key(r), 2)
    waiting = explain_job(r, [home, peer], NOW, quotes={})
    cand = {c.pool_id: c for c in waiting.candidates}
    assert not cand[2].feasible and cand[2].reasons == ["awaiting the peer's quote"]
    refused = explain_job(r, [home, peer], NOW, quotes={key: Quote(None, reason="full")})
    assert "the peer cannot run it now: full" in refused.candidates[1].reasons
    soon = explain_job(r, [home, peer], NOW, quotes={key: Quote(60.0, 3660.0, 1000)})
    assert [c.pool_id for c in soon.candidates if c.chosen] == [2]
    assert soon.candidates[1].wait_s == 60.0
    assert soon.explanation()["candidates"][1]["quote"]["cost_fen"] == 1000
    late = explain_job(r, [home, peer], NOW, quotes={key: Quote(1800.0, 5400.0, 1000)})
    assert [c.pool_id for c in late.candidates if c.chosen] == [1]  # home frees up sooner
    # schedule(): the same, through the nominator; while the peer has not answered, the job is
    # committed nowhere (committed at home, it would stay there however good the answer)
    d = only(schedule([home, peer], [job(1, r)], NOW, quotes={}))
    assert d.target_pool_id is None and d.message == "awaiting the peer's quote"  # type: ignore[attr-defined]
    d = only(schedule([home, peer], [job(1, r)], NOW, quotes={key: Quote(60.0)}))
    assert d.target_pool_id == 2 and d.candidates[0].quote == Quote(60.0)  # type: ignore[attr-defined]
