"""Workloads for the digital twin: real traces (SWF, the GPU CSV) and synthetic generators.

SWF conventions (Parallel Workloads Archive, v2.2; see README "The digital twin"):

* processors: field 8 (requested) when positive, else field 5 (allocated); a job with neither is
  skipped. A job asking for more than the machine has is skipped too.
* run time: field 4 (true wall-clock seconds). A job with run time < 0 is skipped; run time 0 is kept
  only when `keep_zero_runtime` (the issue's `simulate trace` skips non-positive run times).
* requested time (the estimate backfilling uses): field 9 when positive, else the run time. A run
  longer than its request is kept with its true run time (the estimate is then wrong, as in reality).
* submit time: field 2, seconds from the log's start; the log is sorted by it.
* user: field 12 (tenants are mapped from users by the scenario).
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import math
import random
import re
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

from .kernel import gc_paused


class TraceJob(NamedTuple):
    """One job of a workload, in trace time (seconds)."""

    id: int
    submit: float
    runtime: float
    procs: int
    requested: float  # the user's runtime estimate (walltime), ≥ 0
    user: int = 0


@dataclass(slots=True)
class Workload:
    jobs: list[TraceJob]
    max_procs: int | None = None  # the machine's size, from the trace header when it says
    skipped: int = 0  # jobs the trace marks as bad
    header: dict[str, str] = field(default_factory=dict)
    name: str = ""


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", errors="replace")


HEADER_RE = re.compile(r"^;\s*([A-Za-z][\w ]*?)\s*:\s*(.*)$")


def load_swf(path: Path, *, keep_zero_runtime: bool = False) -> Workload:
    """Read a Standard Workload Format file (plain or gzip)."""
    w = _load_swf_cached(path, keep_zero_runtime, *_stamp(path))
    return Workload(list(w.jobs), w.max_procs, w.skipped, dict(w.header), w.name)


@functools.lru_cache(maxsize=4)
def _load_swf_cached(path: Path, keep_zero_runtime: bool, _mtime: int, _size: int) -> Workload:
    """Read once per file version: a scenario may feed several pools from one trace."""
    with gc_paused():
        return _load_swf(path, keep_zero_runtime)


def _load_swf(path: Path, keep_zero_runtime: bool) -> Workload:
    jobs: list[TraceJob] = []
    header: dict[str, str] = {}
    skipped = 0
    append = jobs.append
    new = tuple.__new__
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        if not line or line[0] == ";" or line.isspace():
            if line.startswith(";"):
                m = HEADER_RE.match(line.strip())
                if m and m.group(1) not in header:
                    header[m.group(1)] = m.group(2).strip()
            continue
        fields = line.split()
        if len(fields) < 18:
            if not fields:
                continue
            raise ValueError(f"{path}:{lineno}: an SWF line has 18 fields, this one {len(fields)}")
        submit: float
        runtime: float
        req_time: float
        try:  # the archive's cleaned logs are all integers: the fast path
            job_id, submit, runtime, alloc, req_procs, req_time, user = (
                int(fields[0]), int(fields[1]), int(fields[3]), int(fields[4]), int(fields[7]),
                int(fields[8]), int(fields[11]))
        except ValueError:
            try:
                job_id = int(fields[0])
                submit, runtime, req_time = float(fields[1]), float(fields[3]), float(fields[8])
                alloc, req_procs, user = int(float(fields[4])), int(float(fields[7])), int(float(fields[11]))
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: not a number in an SWF line: {exc}") from exc
        procs = req_procs if req_procs > 0 else alloc
        if procs <= 0 or runtime < 0 or (runtime == 0 and not keep_zero_runtime):
            skipped += 1
            continue
        # tuple.__new__ skips the NamedTuple's Python-level constructor (a third of the read time)
        append(new(TraceJob, (job_id, submit, runtime, procs, req_time if req_time > 0 else runtime, user)))
    max_procs = _leading_int(header.get("MaxProcs")) or _leading_int(header.get("MaxNodes"))
    if max_procs:
        too_big = [j for j in jobs if j.procs > max_procs]
        if too_big:
            skipped += len(too_big)
            jobs = [j for j in jobs if j.procs <= max_procs]
    _sort(jobs)
    return Workload(jobs, max_procs, skipped, header, path.name)


def _order(j: TraceJob) -> tuple[float, int]:
    return j.submit, j.id


def _sort(jobs: list[TraceJob]) -> None:
    """By submit time, then id (a log is nearly always in order already: check first)."""
    if any(a.submit > b.submit or (a.submit == b.submit and a.id > b.id) for a, b in pairwise(jobs)):
        jobs.sort(key=_order)


def _leading_int(value: str | None) -> int | None:
    m = re.match(r"\s*(\d+)", value or "")
    return int(m.group(1)) if m and int(m.group(1)) > 0 else None


def load_gpu_csv(path: Path, *, cluster: str | None = None) -> Workload:
    """The GPU trace (`cluster,job_id,submission_time,duration,num_gpu`): one job per row.

    It has no runtime estimates: the requested time is the true duration (a perfect estimate).
    `cluster` keeps one cluster's jobs only; the user of a job is its cluster's number."""
    clusters, skipped = _gpu_clusters(path, *_stamp(path))
    if cluster is None:
        jobs = [j for js in clusters.values() for j in js]
        _sort(jobs)
    elif cluster in clusters:
        jobs = list(clusters[cluster])
    else:
        raise ValueError(f"{path}: no cluster {cluster!r} (clusters: {', '.join(sorted(clusters))})")
    return Workload(jobs, None, skipped if cluster is None else 0, {},
                    path.name + (f"[{cluster}]" if cluster else ""))


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=4)
def _gpu_clusters(path: Path, _mtime: int, _size: int) -> tuple[dict[str, list[TraceJob]], int]:
    """Every cluster's jobs, read once per file version (a scenario feeds several pools from it)."""
    out: dict[str, list[TraceJob]] = {}
    skipped = 0
    reader = csv.DictReader(io.StringIO(_read_text(path)))
    needed = {"submission_time", "duration", "num_gpu"}
    if not needed <= set(reader.fieldnames or []):
        raise ValueError(f"{path}: a GPU trace needs the columns {sorted(needed)}")
    for i, row in enumerate(reader, 1):
        try:
            submit, runtime, gpus = (float(row["submission_time"]), float(row["duration"]),
                                     int(row["num_gpu"]))
        except (ValueError, TypeError):
            skipped += 1
            continue
        if runtime <= 0 or gpus <= 0:
            skipped += 1
            continue
        name = str(row.get("cluster") or "")
        number = name.removeprefix("cluster")
        out.setdefault(name, []).append(TraceJob(i, submit, runtime, gpus, runtime,
                                                 int(number) if number.isdigit() else 0))
    for jobs in out.values():
        _sort(jobs)
    return out, skipped


def load(path: Path, fmt: str | None = None, **kw: object) -> Workload:
    """By format name (`swf`, `gpu`) or by the file name."""
    fmt = fmt or ("gpu" if ".csv" in path.name else "swf")
    if fmt == "swf":
        return load_swf(path, **kw)  # type: ignore[arg-type]
    if fmt == "gpu":
        return load_gpu_csv(path, **kw)  # type: ignore[arg-type]
    raise ValueError(f"unknown trace format {fmt!r} (swf or gpu)")


def synthetic(n: int, *, seed: int, rate_per_s: float, max_procs: int, min_runtime: float = 60,
              max_runtime: float = 86_400, overestimate: float = 2.0) -> Workload:
    """Poisson arrivals, log-uniform sizes and run times; estimates up to `overestimate`× long."""
    rng = random.Random(seed)
    t = 0.0
    jobs: list[TraceJob] = []
    for i in range(1, n + 1):
        t += rng.expovariate(rate_per_s)
        procs = max(1, min(max_procs, round(math.exp(rng.uniform(0, math.log(max_procs))))))
        runtime = round(math.exp(rng.uniform(math.log(min_runtime), math.log(max_runtime))))
        requested = round(runtime * rng.uniform(1.0, overestimate))
        jobs.append(TraceJob(i, round(t, 3), runtime, procs, requested, rng.randint(1, 20)))
    return Workload(jobs, max_procs, 0, {}, f"synthetic(seed={seed})")


def window(w: Workload, start_day: float, days: float) -> tuple[float, list[TraceJob]]:
    """The jobs submitted in `days` days from `start_day` days after the trace's first job, and
    when that window starts (trace time)."""
    t0 = w.jobs[0].submit + start_day * 86400
    t1 = t0 + days * 86400
    return t0, [j for j in w.jobs if t0 <= j.submit < t1]


def gpu_cluster_names(path: Path) -> list[str]:
    """The clusters of a GPU CSV trace."""
    return sorted(_gpu_clusters(path, *_stamp(path))[0])


def clear_cache() -> None:
    """Forget the traces read so far (benchmarks time a cold read)."""
    _load_swf_cached.cache_clear()
    _gpu_clusters.cache_clear()
