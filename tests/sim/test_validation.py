"""The twin's FCFS and EASY equal an independent implementation, job by job (issue 5)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.sim.single import run_trace
from suanli.sim.workload import TraceJob, Workload, load

from .reference import simulate

TRACES = Path(__file__).resolve().parents[2] / "data" / "traces"


def _starts(w: Workload, scheduler: str) -> dict[int, float]:
    return {r.id: r.start for r in run_trace(w, scheduler=scheduler).records}


def _reference(w: Workload, easy: bool) -> dict[int, float]:
    assert w.max_procs
    return simulate([(j.id, j.submit, j.runtime, j.procs, j.requested) for j in w.jobs], w.max_procs, easy)


@pytest.mark.parametrize("scheduler", ["fcfs", "easy"])
def test_kth_every_start_time_equals_the_reference(scheduler: str) -> None:
    w = load(TRACES / "KTH-SP2-1996-2.1-cln.swf.gz")
    ours = _starts(w, scheduler)
    ref = _reference(w, scheduler == "easy")
    assert len(ours) == len(ref) == 28_467
    differ = [(i, ours[i], ref[i]) for i in ours if ours[i] != ref[i]]
    assert differ == []


def test_hpc2n_first_20000_jobs_easy_equal_the_reference() -> None:
    w = load(TRACES / "HPC2N-2002-2.2-cln.swf.gz")
    w.jobs = w.jobs[:20_000]
    ours, ref = _starts(w, "easy"), _reference(w, True)
    assert [i for i in ours if ours[i] != ref[i]] == []


# Random small workloads: simultaneous submissions, estimates both too long and too short.
job = st.tuples(st.integers(0, 50), st.integers(1, 40), st.integers(1, 8), st.integers(-20, 40))


@settings(max_examples=300, deadline=None)
@given(st.lists(job, min_size=1, max_size=40), st.booleans())
def test_random_workloads_equal_the_reference(raw: list[tuple[int, int, int, int]], easy: bool) -> None:
    jobs = sorted((TraceJob(i + 1, float(sub), float(run), procs, float(max(1, run + err)))
                   for i, (sub, run, procs, err) in enumerate(raw)), key=lambda j: (j.submit, j.id))
    w = Workload(jobs, 8)
    ours = _starts(w, "easy" if easy else "fcfs")
    assert ours == _reference(w, easy)


def test_conservative_on_kth_waits_between_fcfs_and_never_delays_reservations() -> None:
    w = load(TRACES / "KTH-SP2-1996-2.1-cln.swf.gz")
    w.jobs = w.jobs[:3000]
    res = {s: run_trace(w, scheduler=s).summary() for s in ("fcfs", "easy", "conservative")}
    assert res["conservative"]["mean_wait_s"] < res["fcfs"]["mean_wait_s"]
    assert res["conservative"]["jobs"] == res["easy"]["jobs"] == 3000
