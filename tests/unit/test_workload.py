"""Trace loaders of the digital twin: the SWF conventions and the GPU CSV, on real files."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from suanli.sim.workload import load, load_gpu_csv, load_swf, synthetic

DATA = Path(__file__).resolve().parents[2] / "data" / "traces"
SWF_HEAD = """; Version: 2.2
; MaxProcs: 8 (batch partition; 10 total)
; UnixStartTime: 843480031
"""


def swf(tmp_path: Path, lines: list[str], gz: bool = False) -> Path:
    text = SWF_HEAD + "\n".join(lines) + "\n"
    path = tmp_path / ("t.swf.gz" if gz else "t.swf")
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return path


def row(job: int, submit: int, run: int, alloc: int, req: int, req_t: int, user: int = 1) -> str:
    return f"{job} {submit} 5 {run} {alloc} -1 -1 {req} {req_t} -1 1 {user} 1 1 1 1 -1 -1"


def test_swf_conventions(tmp_path: Path) -> None:
    w = load_swf(swf(tmp_path, [
        row(1, 10, 100, 4, -1, 200),  # requested procs -1: the allocated count
        row(2, 5, 50, 4, 2, -1),  # requested 2 wins; no requested time: the run time
        row(3, 20, 0, 1, 1, 10),  # run time 0: skipped
        row(4, 30, 10, -1, -1, 10),  # no processors: skipped
        row(5, 40, 10, 9, 9, 10),  # more than MaxProcs: skipped
        row(6, 40, 500, 1, 1, 100, user=7),  # overran its request: kept with its true run time
    ], gz=True))
    assert w.max_procs == 8 and w.skipped == 3 and w.header["UnixStartTime"] == "843480031"
    assert [(j.id, j.submit, j.procs, j.runtime, j.requested) for j in w.jobs] == [
        (2, 5, 2, 50, 50), (1, 10, 4, 100, 200), (6, 40, 1, 500, 100)]
    assert w.jobs[-1].user == 7


def test_swf_bad_line_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="18 fields"):
        load_swf(swf(tmp_path, ["1 2 3"]))
    with pytest.raises(ValueError, match="not a number"):
        load_swf(swf(tmp_path, [row(1, 10, 100, 4, 4, 200).replace("100", "x", 1)]))


def test_real_kth_trace_as_its_readme_describes() -> None:
    w = load(DATA / "KTH-SP2-1996-2.1-cln.swf.gz")
    # 28,476 lines: one without processors (job 27313) and 8 with run time 0 are skipped
    assert (len(w.jobs), w.skipped, w.max_procs) == (28_467, 9, 100)
    assert w.jobs[0].submit == 599_850 and all(a.submit <= b.submit
                                               for a, b in zip(w.jobs, w.jobs[1:], strict=False))


def test_gpu_csv(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    path.write_text("cluster,job_id,submission_time,duration,num_gpu\n"
                    "cluster02,a,20,100,8\ncluster01,b,10,50,1\ncluster01,c,30,0,1\n")
    w = load_gpu_csv(path)
    assert [(j.submit, j.runtime, j.procs, j.user) for j in w.jobs] == [(10, 50, 1, 1),
                                                                        (20, 100, 8, 2)]
    assert w.skipped == 1 and w.max_procs is None
    assert [j.procs for j in load_gpu_csv(path, cluster="cluster02").jobs] == [8]
    with pytest.raises(ValueError, match="columns"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        load_gpu_csv(tmp_path / "bad.csv")


def test_synthetic_is_deterministic_by_seed() -> None:
    a, b = synthetic(200, seed=3, rate_per_s=0.01, max_procs=64), synthetic(
        200, seed=3, rate_per_s=0.01, max_procs=64)
    assert a.jobs == b.jobs and a.jobs != synthetic(200, seed=4, rate_per_s=0.01,
                                                    max_procs=64).jobs
    assert all(1 <= j.procs <= 64 and j.requested >= j.runtime > 0 for j in a.jobs)
