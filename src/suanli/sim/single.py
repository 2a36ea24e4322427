"""One trace on one center: the `suanli simulate trace` run.

The center is one pool sized from the trace header (`MaxProcs`) or by the caller. Jobs arrive at
their submit times, wait in the pool's queue, and start when the real queue planner
(`scheduling.backfill.plan`, FCFS or classic EASY) says so; they hold their units for their true run
time while the planner sees only their requested time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..scheduling.backfill import Busy
from .kernel import ARRIVE, FINISH, Kernel, gc_paused
from .metrics import JobRecord, summarize
from .pool import SimPool
from .workload import Workload

if TYPE_CHECKING:
    from .report import BackgroundPlots


@dataclass(slots=True)
class TraceRun:
    records: list[JobRecord]
    capacity: int
    scheduler: str
    skipped: int
    events: int

    def summary(self) -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {"scheduler": self.scheduler, "capacity": self.capacity}
        out.update(summarize(self.records, self.capacity, skipped=self.skipped))
        return out


def run_trace(workload: Workload, *, scheduler: str = "easy", procs: int | None = None,
              progress: Callable[[int], None] | None = None) -> TraceRun:
    """Simulate `workload` on one pool of `procs` units (default: the trace's MaxProcs)."""
    capacity = procs or workload.max_procs
    if not capacity:
        raise ValueError(f"{workload.name}: the trace does not say how many processors the machine has; "
                         "give --procs")
    jobs = workload.jobs
    skipped = workload.skipped + sum(1 for j in jobs if j.procs > capacity)
    jobs = [j for j in jobs if j.procs <= capacity]
    pool = SimPool("center", capacity, scheduler)
    kernel = Kernel(jobs[0].submit if jobs else 0.0)
    starts: list[float] = [0.0] * len(jobs)
    ends: list[float] = [0.0] * len(jobs)
    done = [0]

    def arrive(k: int) -> None:
        # Every job submitted at this instant joins the queue, then the next instant is booked:
        # the heap holds one arrival at a time, not the whole trace.
        t = jobs[k].submit
        while k < n and jobs[k].submit == t:
            j = jobs[k]
            pool.enqueue(k, j.procs, j.requested)
            k += 1
        if k < n:
            kernel.at(jobs[k].submit, ARRIVE, arrive, k)
        kernel.at_end_of_instant(schedule)

    def finish(hold: Busy) -> None:
        pool.release(hold)
        done[0] += 1
        if progress is not None and done[0] % 1000 == 0:
            progress(done[0])
        if pool.queue:
            kernel.at_end_of_instant(schedule)

    def schedule() -> None:
        now = kernel.now
        for k, hold in pool.schedule(now):
            starts[k] = now
            end = now + jobs[k].runtime
            ends[k] = end
            kernel.at(end, FINISH, finish, hold)

    n = len(jobs)
    if n:
        kernel.at(jobs[0].submit, ARRIVE, arrive, 0)
    with gc_paused():
        kernel.run()
        records = [JobRecord(j.id, j.submit, s, e, j.procs, str(j.user))
                   for j, s, e in zip(jobs, starts, ends, strict=True)]
    if progress is not None:
        progress(len(jobs))
    return TraceRun(records, capacity, scheduler, skipped, kernel.events)


def write_trace_run(out: Path, run: TraceRun, *, trace: str, plots: bool = True,
                    plotter: BackgroundPlots | None = None) -> dict[str, object]:
    """`out/summary.json`, `out/jobs.csv` and (with `plots`) utilization.png and wait_cdf.png —
    drawn by `plotter` in the background when given (the caller waits for it), else here."""
    from .report import plot_runs, write_jobs_csv, write_summary

    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {"trace": trace, **run.summary()}
    if plots:  # first: a background plotter draws while the files below are written
        label = f"{trace} · {run.scheduler.upper()} · {run.capacity} procs"
        plot_runs(out, {run.scheduler: (run.records, run.capacity)}, label, label, plotter)
    write_summary(out / "summary.json", summary)
    write_jobs_csv(out / "jobs.csv", run.records)
    return summary
