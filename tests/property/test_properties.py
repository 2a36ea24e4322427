"""Properties: the state machine, the scheduler's safety, the credit-code check."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.domain.credit_code import ALPHABET, check_character, validate_credit_code
from suanli.domain.enums import CenterStatus, DeviceKind, Policy, Precision
from suanli.domain.errors import IllegalTransition, InvalidInput
from suanli.domain.jobstate import ALLOWED, JobState, check_transition
from suanli.domain.model import JobRequirements, PoolSpec, Resources
from suanli.scheduling import PoolState, QueuedJob, schedule, static_reasons

NOW = datetime(2026, 11, 1, tzinfo=UTC)


@given(st.lists(st.sampled_from(list(JobState)), max_size=30))
def test_state_machine_accepts_exactly_the_allowed_steps(targets: list[JobState]) -> None:
    state = JobState.QUEUED
    for target in targets:
        if target in ALLOWED[state]:
            state = check_transition(state, target)
        else:
            with pytest.raises(IllegalTransition):
                check_transition(state, target)
    if state.is_terminal:
        assert not ALLOWED[state]


pools_st = st.lists(
    st.builds(
        lambda kind, upn, nodes, mem, price, f16, status, dom: PoolSpec(
            device_kind=kind, device_model=f"m-{kind}", domestic=dom, units_per_node=upn,
            nodes=nodes, memory_gb_per_node=mem, price_fen_per_unit_hour=price,
            tflops_fp32=1.0, tflops_fp16=f16, max_walltime_s=7200),
        st.sampled_from(list(DeviceKind)), st.integers(1, 8), st.integers(1, 4),
        st.integers(16, 256), st.integers(0, 2000),
        st.one_of(st.none(), st.floats(1, 500)), st.sampled_from(list(CenterStatus)),
        st.booleans(),
    ),
    min_size=1, max_size=6,
)

jobs_st = st.lists(
    st.builds(
        lambda kind, per, nodes, mem, wall, prec, pol, prio, dom: JobRequirements(
            resources=Resources(kind, per * nodes, nodes, None, mem), walltime_s=wall,
            precision=prec, policy=pol, priority=prio, domestic_only=dom),
        st.sampled_from(list(DeviceKind)), st.integers(1, 8), st.integers(1, 3),
        st.one_of(st.none(), st.integers(1, 300)), st.integers(1, 10_000),
        st.sampled_from([Precision.FP32, Precision.FP16]), st.sampled_from(list(Policy)),
        st.integers(-5, 5), st.booleans(),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(pools_st, st.lists(st.sampled_from(list(CenterStatus)), min_size=6, max_size=6), jobs_st)
def test_scheduler_never_oversubscribes_and_places_only_feasible_jobs(
    specs: list[PoolSpec], statuses: list[CenterStatus], reqs: list[JobRequirements]
) -> None:
    pools = [PoolState.idle(i + 1, i + 1, f"c{i}", "p", sp, center_status=statuses[i])
             for i, sp in enumerate(specs)]
    queue = [QueuedJob(j + 1, 1, NOW + timedelta(seconds=j), r) for j, r in enumerate(reqs)]
    decisions = schedule(pools, queue, NOW)
    assert len(decisions) == len(queue)
    by_id = {p.pool_id: p for p in pools}
    reqs_by_job = {q.job_id: q.req for q in queue}
    used_devices: dict[int, set[int]] = defaultdict(set)
    used_mem: dict[tuple[int, int], int] = defaultdict(int)
    for d in decisions:
        if not d.placed:
            continue
        assert d.pool_id is not None
        pool, req = by_id[d.pool_id], reqs_by_job[d.job_id]
        assert not static_reasons(req, pool)
        assert pool.center_status is CenterStatus.ONLINE
        res = req.resources
        assert len(d.nodes) == res.nodes == len(set(d.nodes))
        assert len(d.devices) == res.units
        upn = pool.spec.units_per_node
        for n in d.nodes:
            on_node = [x for x in d.devices if x // upn == n]
            assert len(on_node) == res.units_per_node  # gang: an equal share on every node
            used_mem[(pool.pool_id, n)] += res.memory_gb or 0
        assert not used_devices[pool.pool_id] & set(d.devices)  # never oversubscribed
        used_devices[pool.pool_id] |= set(d.devices)
        assert all(0 <= x < pool.spec.total_units for x in d.devices)
    for (pid, _node), mem in used_mem.items():
        assert mem <= by_id[pid].spec.memory_gb_per_node


@given(st.integers(-10, 10))
def test_priority_wins_on_a_single_unit_pool(low: int) -> None:
    sp = PoolSpec(device_kind=DeviceKind.CPU, device_model="x", domestic=False, units_per_node=1,
                  nodes=1, memory_gb_per_node=8, price_fen_per_unit_hour=1, tflops_fp32=1.0)
    reqs = [JobRequirements(Resources(DeviceKind.CPU), 60, priority=low),
            JobRequirements(Resources(DeviceKind.CPU), 60, priority=low + 1)]
    queue = [QueuedJob(i + 1, 1, NOW + timedelta(seconds=i), r) for i, r in enumerate(reqs)]
    placed = [d.job_id for d in schedule([PoolState.idle(1, 1, "c", "p", sp)], queue, NOW)
              if d.placed]
    assert placed == [2]


prefix_st = st.tuples(
    st.text(alphabet=ALPHABET, min_size=2, max_size=2),
    st.text(alphabet="0123456789", min_size=6, max_size=6),
    st.text(alphabet=ALPHABET, min_size=9, max_size=9),
).map("".join)


@given(prefix_st)
def test_any_code_with_its_check_character_is_valid(prefix: str) -> None:
    assert validate_credit_code(prefix + check_character(prefix)) == prefix + check_character(
        prefix)


@given(prefix_st, st.integers(0, 17), st.sampled_from(ALPHABET))
def test_every_single_character_change_is_detected(prefix: str, pos: int, ch: str) -> None:
    code = prefix + check_character(prefix)
    changed = code[:pos] + ch + code[pos + 1:]
    if changed == code:
        return
    with pytest.raises(InvalidInput):
        validate_credit_code(changed)
