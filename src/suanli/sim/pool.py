"""A simulated pool: units, a queue and running jobs, scheduled by the real `scheduling.backfill`.

The pool does not know about time or events; the kernel drives it. `schedule(now)` asks the real
queue planner which queued jobs start now and returns them; the caller schedules their ends.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass, field

from ..scheduling.backfill import Busy, Waiting, backfill_from, by_end, conservative, plan

SCHEDULERS = ("fcfs", "easy", "conservative")


@dataclass(slots=True)
class SimPool:
    name: str
    capacity: int
    scheduler: str = "easy"
    speed: float = 1.0  # run time divides by this
    free: int = 0
    running: list[Busy] = field(default_factory=list)  # sorted by estimated end
    queue: list[Waiting] = field(default_factory=list)
    queued_ids: list[int] = field(default_factory=list)
    queued_units: int = 0
    queued_unit_s: float = 0.0  # Σ units × estimate over the queue (placement's view of the backlog)
    easy: bool = True
    # How many queued jobs ask for each unit count, and the smallest such count: when fewer units
    # are free than that, no job can start and the planner is not asked.
    _sizes: dict[int, int] = field(default_factory=dict)
    _smallest: int = 0
    # After a plan that left the head blocked, and until a job ends: the head's shadow time, the
    # extra units left, and how many queued jobs that plan saw (later ones are new).
    _blocked: tuple[float, int, int] | None = None

    def __post_init__(self) -> None:
        if self.capacity <= 0:
            raise ValueError(f"pool {self.name!r}: capacity must be positive, not {self.capacity}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"pool {self.name!r}: scheduler must be one of {SCHEDULERS}, "
                             f"not {self.scheduler!r}")
        self.free = self.capacity
        self.easy = self.scheduler == "easy"

    def enqueue(self, job: int, units: int, estimate_s: float) -> None:
        if units > self.capacity:
            raise ValueError(f"job {job} asks for {units} units; pool {self.name!r} has {self.capacity}")
        self.queue.append(Waiting(units, estimate_s))
        self.queued_ids.append(job)
        self.queued_units += units
        self.queued_unit_s += units * estimate_s
        sizes = self._sizes
        sizes[units] = sizes.get(units, 0) + 1
        if units < self._smallest or self._smallest == 0:
            self._smallest = units

    def schedule(self, now: float) -> list[tuple[int, Busy]]:
        """Start what the planner says; returns (job, its hold on the units) per started job."""
        queue = self.queue
        if not queue or self.free < self._smallest:
            return []
        easy = self.easy
        if self.scheduler == "fcfs" and queue[0].units > self.free:
            return []  # FCFS: nothing starts while the head does not fit
        starts: list[int] = []
        if self.scheduler == "conservative":  # every job's reservation, replanned at every pass
            starts = conservative(self.free, self.running, queue, now).starts
        elif self._blocked is not None:
            # Nothing ended since the last plan: only the jobs queued since then may start.
            if not easy:
                return []
            shadow_time, extra, seen = self._blocked
            _, extra = backfill_from(self.queue, seen, self.free, shadow_time, extra, now, starts)
            self._blocked = (shadow_time, extra, len(self.queue) - len(starts))
        else:
            p = plan(self.free, self.running, self.queue, now, backfill=easy)
            starts = p.starts
            if p.head is not None and p.shadow_time is not None:
                self._blocked = (p.shadow_time, p.extra_left, len(self.queue) - len(starts))
        if not starts:
            return []
        ids = self.queued_ids
        out: list[tuple[int, Busy]] = []
        for i in starts:
            w = queue[i]
            hold = Busy(w.units, now + w.estimate_s)
            insort(self.running, hold, key=by_end)
            self.free -= w.units
            self.queued_units -= w.units
            self.queued_unit_s -= w.units * w.estimate_s
            self._forget_size(w.units)
            out.append((ids[i], hold))
        if len(starts) == starts[-1] + 1:  # a prefix (FCFS, or EASY before the head)
            del queue[: len(starts)]
            del ids[: len(starts)]
        else:
            for k in reversed(starts):
                del queue[k]
                del ids[k]
        if not queue:
            self.queued_unit_s = 0.0  # no float drift survives an empty queue
        return out

    def remove(self, job: int) -> None:
        """Take a queued job out of the queue (it moves to another pool)."""
        k = self.queued_ids.index(job)
        w = self.queue.pop(k)
        del self.queued_ids[k]
        self.queued_units -= w.units
        self.queued_unit_s -= w.units * w.estimate_s
        self._forget_size(w.units)
        if not self.queue:
            self.queued_unit_s = 0.0
        if self._blocked is not None:
            if k == 0:  # the head's reservation goes with it
                self._blocked = None
            elif k < self._blocked[2]:
                shadow_time, extra, seen = self._blocked
                self._blocked = (shadow_time, extra, seen - 1)

    def _forget_size(self, units: int) -> None:
        sizes = self._sizes
        left = sizes[units] - 1
        if left:
            sizes[units] = left
        else:
            del sizes[units]
            if units == self._smallest:
                self._smallest = min(sizes) if sizes else 0

    @property
    def reservation(self) -> tuple[float, int] | None:
        """The blocked head's (shadow time, extra units) from the last plan, while still valid."""
        if self._blocked is None and self.queue and 0 < self.free < self._smallest:
            # A job ended, and no queued job fits the free units, so no pass will plan this pool
            # before something arrives; placement wants the head's reservation now (a job that
            # arrives in the same instant as the end may backfill): plan now (it can start
            # nothing, so the answer is the pass's answer) and keep it.
            p = plan(self.free, self.running, self.queue, 0.0, backfill=False)
            if p.shadow_time is not None:
                self._blocked = (p.shadow_time, p.extra_units, len(self.queue))
        return None if self._blocked is None else self._blocked[:2]

    def release(self, hold: Busy) -> None:
        running = self.running
        k = bisect_left(running, hold.ends_at, key=by_end)
        while running[k] is not hold:
            k += 1
        del running[k]
        self.free += hold.units
        self._blocked = None
