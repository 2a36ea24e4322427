"""Late binding (issue 19): a job waiting at its pool starts now at another pool with room for it,
by the rule the digital twin uses too (`scheduling.network.pick_opening`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from suanli.domain.enums import Policy
from suanli.scheduling import PoolState, RunningAllocation, schedule
from suanli.scheduling.network import Opening, Option, pick_opening, rank_options

from .test_scheduler import NOW, job, pool, req, spec


def busy(pid: int, held: int = 16, ends_in_s: int = 3600, **kw: object) -> PoolState:
    """A pool of 2 nodes × 8 units with `held` units (whole nodes first) running for `ends_in_s`."""
    idle = pool(pid, spec(**kw) if kw else None)
    taken = list(range(held))
    free = tuple(frozenset(d for d in range(n * 8, n * 8 + 8) if d not in taken) for n in range(2))
    return replace(idle, free_devices=free,
                   running=(RunningAllocation(held, NOW + timedelta(seconds=ends_in_s), tuple(taken)),))


def test_a_waiting_job_starts_now_at_another_pool_and_says_so() -> None:
    pools = [busy(1), pool(2)]
    (d,) = schedule(pools, [job(7, req(4, policy=Policy.FASTEST))], NOW, targets={7: 1})
    assert d.placed and d.pool_id == 2 and d.target_pool_id == 2 and d.moved_from == 1
    assert d.message == "moved from c1/p to c2/p: it starts now there (best by fastest)"
    assert d.explanation()["moved_from_pool_id"] == 1
    assert len(d.devices) == 4 and d.estimated_start == NOW


def test_a_job_its_own_pool_starts_stays_and_a_waiting_one_moves_only_into_room() -> None:
    pools = [pool(1), busy(2, held=12)]  # pool 2: 4 units free on its second node
    jobs = [job(1, req(4, policy=Policy.FASTEST)), job(2, req(8, policy=Policy.FASTEST)),
            job(3, req(8, policy=Policy.FASTEST))]
    ds = {d.job_id: d for d in schedule(pools, jobs, NOW, targets={1: 2, 2: 2, 3: 1})}
    assert ds[3].pool_id == 1 and ds[3].moved_from is None  # its own pool starts it
    assert ds[1].pool_id == 2 and ds[1].moved_from is None
    # job 2 waits at pool 2 (#1): pool 1 has 8 units left after job 3 — it moves there
    assert ds[2].pool_id == 1 and ds[2].moved_from == 2
    assert not set(ds[2].devices) & set(ds[3].devices)  # never oversubscribed


def test_a_move_never_delays_the_receiving_pools_own_head() -> None:
    # Pool 2: 8 units free for an hour; its own 16-unit head waits for the running job's end.
    receiving = busy(2, held=8, ends_in_s=3600)
    for walltime, moves in ((7200, False), (1800, True)):
        ds = {d.job_id: d for d in schedule(
            [busy(1), receiving], [job(1, req(16, nodes=2, policy=Policy.FASTEST)),
                                   job(2, req(8, policy=Policy.FASTEST, walltime_s=walltime))],
            NOW, targets={1: 2, 2: 1})}
        assert not ds[1].placed and ds[1].target_pool_id == 2
        # ends after the head's reserved start: it would delay the head, so it stays
        assert (ds[2].pool_id == 2) is moves, walltime


def test_cheapest_and_greenest_wait_for_their_pool_fastest_moves() -> None:
    pools = [busy(1, price_fen_per_unit_hour=10, watts_per_unit=100),
             pool(2, spec(price_fen_per_unit_hour=5000, watts_per_unit=900))]
    for policy, moves in ((Policy.CHEAPEST, False), (Policy.GREENEST, False), (Policy.FASTEST, True),
                          (Policy.BALANCED, True)):
        (d,) = schedule(pools, [job(1, req(2, policy=policy))], NOW, targets={1: 1})
        assert d.placed is moves and (d.moved_from == 1) is moves, policy
    # a cheaper pool with room: cheapest moves too
    cheaper = [busy(1, price_fen_per_unit_hour=5000), pool(2, spec(price_fen_per_unit_hour=10))]
    (d,) = schedule(cheaper, [job(1, req(2, policy=Policy.CHEAPEST))], NOW, targets={1: 1})
    assert d.pool_id == 2


def test_fcfs_pools_with_a_queue_take_nothing_from_elsewhere() -> None:
    receiving = busy(2, held=8, ends_in_s=3600)
    ds = {d.job_id: d for d in schedule(
        [busy(1), receiving], [job(1, req(16, nodes=2, policy=Policy.FASTEST)),
                               job(2, req(2, policy=Policy.FASTEST, walltime_s=60))],
        NOW, targets={1: 2, 2: 1}, queue_mode="fcfs")}
    assert not ds[2].placed


def test_pick_opening_is_the_rule_and_prunes_pools_without_room() -> None:
    ranked = rank_options("fastest", [Option(1, 100.0), Option(2, 50.0), Option(3, 80.0)])
    assert [o.key for o in ranked] == [2, 3, 1]
    openings = {2: Opening(4), 3: Opening(16, shadow_time=1000.0, extra=0)}
    here = Option(9, 60.0)
    # pool 2 has 4 units only; pool 3 admits a job ending by its head's shadow time
    assert pick_opening("fastest", 8, here, ranked, openings, 0.0).key == 3  # type: ignore[union-attr]
    assert [o.key for o in ranked] == [3, 1]  # pool 2 (no room for 8) dropped, 1 not looked at
    assert pick_opening("fastest", 8, here, [Option(3, 2000.0)], openings, 0.0) is None


# --- found by an attacker's review ---------------------------------------------------------------

def running(pid: int, runs: list[tuple[tuple[int, ...], int]], **kw: object) -> PoolState:
    """A 2 × 8-unit pool with these runs: (devices, seconds until their walltime's end)."""
    idle = pool(pid, spec(**kw) if kw else None)
    taken = {d for devs, _ in runs for d in devs}
    free = tuple(frozenset(d for d in range(n * 8, n * 8 + 8) if d not in taken) for n in range(2))
    return replace(idle, free_devices=free, running=tuple(
        RunningAllocation(len(devs), NOW + timedelta(seconds=end), devs) for devs, end in runs))


def test_a_pool_whose_head_moves_away_takes_no_one_under_the_old_reservation() -> None:
    """Pool 2's head (16 units) leaves for idle pool 3; the room pool 2 offered under that head's
    reservation (until t=1000) must not go to a job from pool 1: it would delay pool 2's new
    head, which can start at t=100."""
    f = Policy.FASTEST
    ds = {d.job_id: d for d in schedule(
        [busy(1, ends_in_s=7200), running(2, [(tuple(range(13)), 1000), ((13,), 100)]), pool(3)],
        [job(10, req(16, nodes=2, policy=f), at=0), job(11, req(3, policy=f), at=1),
         job(12, req(2, policy=f, walltime_s=500), at=2)],
        NOW, targets={10: 2, 11: 2, 12: 1})}
    assert ds[10].pool_id == 3 and ds[10].moved_from == 2
    assert not ds[12].placed and ds[12].target_pool_id == 1


def test_units_the_planner_kept_for_a_job_without_whole_nodes_are_not_given_away() -> None:
    """Pool 2 has 4 + 4 free units on two nodes; its own 8-unit job got them from the planner but
    has no whole node: those units are its, first in line, in every queue mode."""
    for mode in ("easy", "fcfs", "conservative"):
        ds = {d.job_id: d for d in schedule(
            [busy(1, ends_in_s=7200), running(2, [((0, 1, 2, 3), 100), ((8, 9, 10, 11), 7200)])],
            [job(1, req(8, policy=Policy.FASTEST), at=0),
             job(2, req(4, policy=Policy.FASTEST, walltime_s=7200), at=1)],
            NOW, targets={1: 2, 2: 1}, queue_mode=mode)}
        assert ds[1].deferred and not ds[2].placed, mode


def test_a_job_over_its_budget_everywhere_does_not_stop_an_alike_job_without_one() -> None:
    cheap = busy(1, ends_in_s=7200, price_fen_per_unit_hour=100)
    dear = pool(2, spec(price_fen_per_unit_hour=10_000))
    ds = {d.job_id: d for d in schedule(
        [cheap, dear], [job(1, req(2, policy=Policy.FASTEST, budget_fen=1000), at=0),
                        job(2, req(2, policy=Policy.FASTEST), at=1)], NOW, targets={1: 1, 2: 1})}
    assert not ds[1].placed and ds[2].pool_id == 2


def test_a_cheapest_job_still_weighs_its_own_pool_after_an_alike_job_found_it_full() -> None:
    """Job 1 (at pool 1, 100 fen) looks at cheaper pool 2, full, and that pool leaves the shape's
    list; job 2 waits at pool 2 (50 fen): an idle pool at 1,000 fen costs more than its own, so
    it waits there — its own pool's price is still known."""
    ds = {d.job_id: d for d in schedule(
        [busy(1, ends_in_s=7200, price_fen_per_unit_hour=100),
         busy(2, ends_in_s=7200, price_fen_per_unit_hour=50),
         pool(3, spec(price_fen_per_unit_hour=1000))],
        [job(1, req(2, policy=Policy.CHEAPEST), at=0), job(2, req(2, policy=Policy.CHEAPEST), at=1)],
        NOW, targets={1: 1, 2: 2})}
    assert not ds[1].placed and not ds[2].placed and ds[2].target_pool_id == 2
