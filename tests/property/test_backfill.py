"""EASY backfilling never delays the head job's reservation; FCFS starts only a prefix."""

from __future__ import annotations

import math
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.scheduling.backfill import Busy, Waiting, conservative, forecast, plan, shadow

CAP = 16
busy = st.lists(st.builds(Busy, st.integers(1, 8), st.integers(1, 1000).map(float)), max_size=6)
waiting = st.lists(st.builds(Waiting, st.integers(1, CAP), st.integers(1, 2000).map(float)),
                   max_size=12)


@settings(max_examples=400, deadline=None)
@given(busy, waiting, st.booleans())
def test_plan_properties(running: list[Busy], queue: list[Waiting], backfill: bool) -> None:
    used = sum(b.units for b in running)
    if used > CAP:
        running = []
        used = 0
    running = sorted(running, key=lambda b: b.ends_at)  # plan's precondition
    free, now = CAP - used, 0.0
    p = plan(free, running, queue, now, backfill=backfill)
    assert sum(queue[i].units for i in p.starts) <= free  # never oversubscribed
    assert len(set(p.starts)) == len(p.starts)
    prefix = list(range(p.head if p.head is not None else len(queue)))
    assert p.starts[: len(prefix)] == prefix  # queue order first
    if not backfill:
        assert p.starts == prefix
    if p.head is None:
        return
    after = sorted([*running, *(Busy(queue[i].units, now + queue[i].estimate_s)
                                for i in p.starts)], key=lambda b: b.ends_at)
    free_after = free - sum(queue[i].units for i in p.starts)
    head = queue[p.head]
    assert head.units > free_after
    # The head can still start at its reservation, with the backfilled jobs running.
    assert shadow(free_after, after, head.units)[0] <= p.shadow_time  # type: ignore[operator]


def test_classic_easy_example() -> None:
    # 10 units; a job of 6 runs until t=100; the head wants 8 (shadow 100, 2 extra).
    running = [Busy(6, 100.0)]
    queue = [Waiting(8, 50), Waiting(3, 200), Waiting(2, 500), Waiting(2, 80), Waiting(1, 10)]
    p = plan(4, running, queue, 0.0)
    assert (p.head, p.shadow_time, p.extra_units) == (0, 100.0, 2)
    # 3×200 would pass the shadow with more than the extra 2; 2×500 uses the extra; 2×80 ends
    # before the shadow; then nothing is free for the last one.
    assert p.starts == [2, 3]
    assert plan(4, running, queue, 0.0, backfill=False).starts == []


def test_extra_units_count_every_job_ending_at_the_shadow_time() -> None:
    # Two jobs end together at t=100: at the shadow time all of their units are free, whichever
    # of the two the sort put first.
    for running in ([Busy(2, 100.0), Busy(5, 100.0)], [Busy(5, 100.0), Busy(2, 100.0)]):
        assert shadow(1, running, 4) == (100.0, 4)


def test_forecast_replays_the_planner_with_estimates() -> None:
    # 10 units: 6 busy until t=100. Queue: 8 units × 50 s (the head: shadow 100, 2 extra),
    # 2 × 500 s (backfills into the extra units), 4 × 30 s (only 2 free: waits for the head to
    # end at 150), 10 × 10 s (waits for the 2-unit job to end at 500).
    running = [Busy(6, 100.0)]
    queue = [Waiting(8, 50), Waiting(2, 500), Waiting(4, 30), Waiting(10, 10)]
    assert forecast(4, running, queue, 0.0) == [100.0, 0.0, 150.0, 500.0]
    # FCFS: the 2-unit job follows the head at 100 and holds 2 units until 600
    assert forecast(4, running, queue, 0.0, backfill=False) == [100.0, 100.0, 150.0, 600.0]
    assert forecast(4, running, [Waiting(11, 1)], 0.0) == [math.inf]
    assert forecast(4, running, queue, 0.0, upto=1)[0] == 100.0


@settings(max_examples=300, deadline=None)
@given(busy, waiting, st.booleans())
def test_forecast_starts_where_plan_starts_and_never_before_now(running: list[Busy], queue: list[Waiting],
                                                                backfill: bool) -> None:
    used = sum(b.units for b in running)
    if used > CAP:
        running = []
        used = 0
    running = sorted(running, key=lambda b: b.ends_at)
    starts = forecast(CAP - used, running, queue, 0.0, backfill=backfill)
    now_starts = plan(CAP - used, running, queue, 0.0, backfill=backfill).starts
    assert [i for i, t in enumerate(starts) if t == 0.0] == sorted(now_starts)
    assert all(t >= 0 for t in starts)
    assert all(t < math.inf for t, w in zip(starts, queue, strict=True) if w.units <= CAP)
    if not backfill:  # FCFS: starts never go backwards in queue order
        assert all(a <= b for a, b in pairwise(starts))


def test_conservative_reserves_every_job() -> None:
    # 10 units, 6 busy until 100. Queue: 8×50 (reserved at 100), 2×500 (now: fits beside it? it
    # would hold 2 units past 100 while the head needs 8 of 10: yes, 2 spare), 4×30 (needs 4 now,
    # only 2 free beside the 2-unit job: reserved at 150), 10×10 (after the 2-unit job: 500).
    running = [Busy(6, 100.0)]
    queue = [Waiting(8, 50), Waiting(2, 500), Waiting(4, 30), Waiting(10, 10)]
    p = conservative(4, running, queue, 0.0)
    assert p.reservations == [100.0, 0.0, 150.0, 500.0] and p.starts == [1]
    assert (p.head, p.shadow_time) == (0, 100.0)


@settings(max_examples=300, deadline=None)
@given(busy, waiting)
def test_conservative_never_lets_a_later_job_delay_an_earlier_one(running: list[Busy],
                                                                  queue: list[Waiting]) -> None:
    used = sum(b.units for b in running)
    if used > CAP:
        running, used = [], 0
    full = conservative(CAP - used, running, queue, 0.0).reservations
    assert full is not None
    for k in range(len(queue)):
        alone = conservative(CAP - used, running, queue[: k + 1], 0.0).reservations
        assert alone is not None and alone[k] == full[k]  # jobs behind it change nothing
    starts = conservative(CAP - used, running, queue, 0.0).starts
    assert sum(queue[i].units for i in starts) <= CAP - used  # never oversubscribed now
