"""Run AccaSim 1.1.3 (a published HPC simulator, PyPI `accasim`) on one of our workloads.

Used by the cross-check test and by `bench/sim.py`; AccaSim lives in the dev dependency group only.

The workload is written back as a plain SWF with our conventions already applied (processors,
requested time, skipped jobs — see `suanli.sim.workload`), so that both simulators read the same
jobs: field 8 is the processor count we chose, field 9 the requested time we chose, memory -1.
The machine is `capacity` nodes of one core each, so a job of p processors takes p cores anywhere,
as in our unit-count model. AccaSim 1.1.3 imports `collections.Mapping`, removed in Python 3.10:
it is aliased to `collections.abc.Mapping` before the import.
"""

from __future__ import annotations

import collections
import collections.abc
import contextlib
import io
import json
import logging
import time
import warnings
from pathlib import Path

from suanli.sim.workload import Workload


def _import_accasim() -> None:
    if not hasattr(collections, "Mapping"):
        collections.Mapping = collections.abc.Mapping  # type: ignore[attr-defined]


def write_swf(w: Workload, path: Path) -> None:
    with path.open("w") as f:
        f.write(f"; MaxProcs: {w.max_procs}\n")
        for j in w.jobs:
            f.write(f"{j.id} {int(j.submit)} -1 {int(j.runtime)} {j.procs} -1 -1 {j.procs} "
                    f"{int(j.requested)} -1 1 {j.user} -1 -1 -1 -1 -1 -1\n")


# Start and end as plain integers (the default writes local-time date strings).
SCHEDULE_FORMAT = {
    "format": "{job_id};{start_time};{end_time}",
    "attributes": {"job_id": ("id", "str"), "start_time": ("start_time", "int"),
                   "end_time": ("end_time", "int")},
}


def run_accasim(w: Workload, capacity: int, scheduler: str, workdir: Path) -> tuple[dict[int, float], float]:
    """Simulate with AccaSim (`fcfs` → FirstInFirstOut, `easy` → EASYBackfilling, FirstFit
    allocator). Returns (job id → start time, seconds the simulation took)."""
    _import_accasim()
    with warnings.catch_warnings():  # its docstrings have invalid escape sequences
        warnings.simplefilter("ignore", DeprecationWarning)
        from accasim.base.allocator_class import FirstFit
        from accasim.base.scheduler_class import EASYBackfilling, FirstInFirstOut
        from accasim.base.simulator_class import Simulator

    workdir.mkdir(parents=True, exist_ok=True)
    swf = workdir / "workload.swf"
    write_swf(w, swf)
    sys_cfg = workdir / "sys.json"
    sys_cfg.write_text(json.dumps({"groups": {"g": {"core": 1}}, "resources": {"g": capacity},
                                   "equivalence": {"processor": {"core": 1}}, "start_time": 0}))
    allocator = FirstFit()
    dispatcher = FirstInFirstOut(allocator) if scheduler == "fcfs" else EASYBackfilling(allocator)
    results = workdir / "results"
    sim = Simulator(str(swf), str(sys_cfg), dispatcher, RESULTS_FOLDER_PATH=str(results),
                    statistics_output=False, show_statistics=False, pprint_output=False,
                    scheduling_output=True, SCHEDULE_OUTPUT=SCHEDULE_FORMAT)
    logging.getLogger("accasim").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        sim.start_simulation()
    elapsed = time.perf_counter() - t0
    return _read_schedule(results), elapsed


def _read_schedule(results: Path) -> dict[int, float]:
    """AccaSim's dispatching plan, one `id;start;end` line per job."""
    starts: dict[int, float] = {}
    files = sorted(results.rglob("sched-*"))
    if not files:
        raise RuntimeError(f"AccaSim wrote no schedule under {results}")
    for line in files[0].read_text().splitlines():
        jid, start, _ = line.split(";")
        starts[int(jid)] = float(start)
    return starts
