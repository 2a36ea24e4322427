"""`suanli simulate trace` as a user runs it: a real process, files on disk, clear errors."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
from pathlib import Path

from suanli.sim.workload import load

ROOT = Path(__file__).resolve().parents[2]
SUANLI = str(Path(sys.executable).with_name("suanli"))
KTH = ROOT / "data" / "traces" / "KTH-SP2-1996-2.1-cln.swf.gz"


def _suanli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SUANLI, *args], capture_output=True, text=True, timeout=120)


def _small_swf(tmp: Path, n: int = 3000) -> Path:
    """The first n jobs of KTH with its header, plus two jobs the trace marks as bad."""
    lines = gzip.decompress(KTH.read_bytes()).decode().splitlines()
    head = [line for line in lines if line.startswith(";")]
    body = [line for line in lines if line and not line.startswith(";")][:n]
    bad = ["999998 5 -1 0 4 -1 -1 4 100 -1 1 1 1 -1 1 -1 -1 -1",     # run time 0
           "999999 6 -1 50 -1 -1 -1 -1 100 -1 1 1 1 -1 1 -1 -1 -1"]   # no processors
    path = tmp / "small.swf"
    path.write_text("\n".join([*head, *body, *bad]) + "\n")
    return path


def test_trace_writes_summary_and_jobs_csv(tmp_path: Path) -> None:
    swf = _small_swf(tmp_path)
    out = tmp_path / "out"
    r = _suanli("simulate", "trace", str(swf), "--scheduler", "easy", "--out", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    w = load(swf)
    assert summary["jobs"] == len(w.jobs) and summary["skipped"] == w.skipped >= 2
    assert summary["capacity"] == 100  # from the header's MaxProcs
    for key in ("mean_wait_s", "mean_bsld", "utilization", "makespan_s"):
        assert isinstance(summary[key], (int, float))
    assert 0 < summary["utilization"] <= 1 and summary["mean_bsld"] >= 1
    rows = list(csv.DictReader((out / "jobs.csv").open()))
    assert list(rows[0]) == ["id", "submit", "start", "end", "procs"]
    assert len(rows) == summary["jobs"]
    by_id = {j.id: j for j in w.jobs}
    for row in rows:
        job = by_id[int(row["id"])]
        assert float(row["submit"]) == job.submit and int(row["procs"]) == job.procs
        assert float(row["start"]) >= job.submit
        assert float(row["end"]) - float(row["start"]) == job.runtime
    mean_wait = sum(float(r["start"]) - float(r["submit"]) for r in rows) / len(rows)
    assert round(mean_wait, 3) == summary["mean_wait_s"]
    assert (out / "utilization.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "wait_cdf.png").stat().st_size > 1000


def test_same_input_gives_byte_identical_output(tmp_path: Path) -> None:
    swf = _small_swf(tmp_path, 1500)
    for name in ("a", "b"):
        r = _suanli("simulate", "trace", str(swf), "--scheduler", "fcfs", "--procs", "128",
                    "--out", str(tmp_path / name))
        assert r.returncode == 0, r.stderr
    for f in ("summary.json", "jobs.csv", "utilization.png", "wait_cdf.png"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["capacity"] == 128


def test_fcfs_and_easy_differ_and_easy_waits_less(tmp_path: Path) -> None:
    swf = _small_swf(tmp_path, 2000)
    res = {}
    for s in ("fcfs", "easy"):
        assert _suanli("simulate", "trace", str(swf), "--scheduler", s, "--no-plots",
                       "--out", str(tmp_path / s)).returncode == 0
        res[s] = json.loads((tmp_path / s / "summary.json").read_text())
        assert not (tmp_path / s / "utilization.png").exists()
    assert res["easy"]["mean_wait_s"] < res["fcfs"]["mean_wait_s"]


def test_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    swf = _small_swf(tmp_path, 10)
    broken = tmp_path / "broken.swf"
    broken.write_text("1 0 -1 10 4\n")
    headerless = tmp_path / "headerless.swf"
    headerless.write_text("1 0 -1 10 4 -1 -1 4 20 -1 1 1 1 -1 1 -1 -1 -1\n")
    cases = [
        (["--scheduler", "sjf"], swf, "--scheduler must be fcfs, easy or conservative"),
        (["--procs", "0"], swf, "--procs must be a positive"),
        (["--format", "csv"], swf, "--format must be swf or gpu"),
        ([], tmp_path / "missing.swf", "no such trace file"),
        ([], broken, "an SWF line has 18 fields"),
        ([], headerless, "give --procs"),
    ]
    for extra, path, message in cases:
        r = _suanli("simulate", "trace", str(path), *extra, "--out", str(tmp_path / "o"))
        assert r.returncode != 0
        assert message in r.stderr, (extra, r.stderr)
        assert "Traceback" not in r.stderr
