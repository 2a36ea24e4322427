"""Late binding as an attacker sees it (issue 19): a waiting job is moved to another pool with room
— can that move carry it anywhere its own limits, its tenant's quota or the pool's state forbid?
In every case below the only pool with room is one the job must never run on: it stays."""

from __future__ import annotations

from dataclasses import replace

from suanli.domain.enums import CenterStatus, Policy
from suanli.domain.task import Constraints
from suanli.scheduling import PoolState, QueuedJob, schedule

from ..unit.test_late_binding import busy
from ..unit.test_scheduler import NOW, job, pool, req, spec


class OneUnitQuota:
    """A tenant quota of 2 units in all (the engine's `Quotas` answers the same way)."""

    def __init__(self) -> None:
        self.used = 0
        self.checked: list[int] = []

    def check(self, job: QueuedJob, pool: PoolState) -> str | None:
        self.checked.append(pool.pool_id)
        units = job.req.resources.units
        return None if self.used + units <= 2 else f"tenant quota: {self.used} of 2 gpu units in use"

    def take(self, job: QueuedJob, pool: PoolState) -> str | None:
        refused = self.check(job, pool)
        if refused is None:
            self.used += job.req.resources.units
        return refused


def test_a_move_never_takes_a_job_where_it_may_not_run() -> None:
    home = busy(1)
    free = pool(2)
    cases: list[tuple[str, dict[str, object], PoolState]] = [
        ("excluded center", {"constraints": Constraints(exclude_centers=("c2",))}, free),
        ("not one of its centers", {"constraints": Constraints(centers=("c1",))}, free),
        ("excluded pool", {"constraints": Constraints(exclude_centers=("c2/p",))}, free),
        ("over its budget", {"budget_fen": 3000}, pool(2, spec(price_fen_per_unit_hour=10_000))),
        ("another district", {"district": "黄岛区"}, free),
        ("domestic only", {"domestic_only": True}, free),
        ("offline center", {}, replace(free, center_status=CenterStatus.OFFLINE)),
        ("draining center", {}, replace(free, center_status=CenterStatus.DRAINING)),
        ("withdrawn peer pool", {}, replace(free, peer=True, withdrawn=True)),
        ("a peer's pool (the peer answers for its own queue)", {}, replace(free, peer=True)),
        ("walltime over the pool's limit", {}, pool(2, spec(max_walltime_s=60))),
    ]
    for what, limits, other in cases:
        kw: dict[str, object] = {"policy": Policy.FASTEST, **limits}
        if what in ("another district",):
            home = replace(busy(1), district="黄岛区")
        elif what == "domestic only":
            home = busy(1, domestic=True)
        else:
            home = busy(1)
        (d,) = schedule([home, other], [job(1, req(2, **kw))], NOW, targets={1: 1})
        assert not d.placed and d.moved_from is None and d.target_pool_id == 1, what


def test_a_move_never_passes_the_tenants_quota_and_never_oversubscribes() -> None:
    quota = OneUnitQuota()
    # three waiting 2-unit jobs of one tenant at a busy pool, an idle pool beside it
    jobs = [job(i, req(2, policy=Policy.FASTEST), at=i) for i in (1, 2, 3)]
    ds = schedule([busy(1), pool(2)], jobs, NOW, targets={1: 1, 2: 1, 3: 1}, admit=quota)
    moved = [d for d in ds if d.placed]
    assert len(moved) == 1 and quota.used == 2  # only what the quota allows, counted once
    assert all(not d.placed and d.target_pool_id == 1 for d in ds if d is not moved[0])


def test_a_job_cannot_be_moved_twice_or_split_between_pools() -> None:
    # Two pools with room: the job goes to one of them, whole, once.
    ds = schedule([busy(1), pool(2), pool(3)], [job(1, req(8, nodes=1, policy=Policy.FASTEST))], NOW,
                  targets={1: 1})
    (d,) = ds
    assert d.pool_id in (2, 3) and d.target_pool_id == d.pool_id and len(set(d.devices)) == 8
    node = d.nodes[0]
    assert all(dev // 8 == node for dev in d.devices)
