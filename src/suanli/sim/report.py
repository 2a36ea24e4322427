"""What a simulation writes: summary.json, jobs.csv and PNG plots — byte-identical for the same input.

No wall-clock time, host name or version goes into these files, so two runs of the same scenario
and seed can be compared with `cmp`.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .metrics import JobRecord, utilization_series


def _num(x: float) -> int | float:
    """Trace times are whole seconds: write 12 rather than 12.0."""
    return int(x) if float(x).is_integer() else round(x, 3)


def write_summary(path: Path, summary: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                    encoding="utf-8")


def write_jobs_csv(path: Path, records: Sequence[JobRecord], *, extra: bool = False) -> None:
    """`id,submit,start,end,procs` per job (plus `tenant,center` when `extra`), in trace time."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        head = ["id", "submit", "start", "end", "procs"]
        w.writerow([*head, "tenant", "center"] if extra else head)
        for r in records:
            row = [r.id, _num(r.submit), _num(r.start), _num(r.end), r.units]
            w.writerow([*row, r.tenant, r.center] if extra else row)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "suanli"
    return plt


_PNG_META = {"Software": None}  # no matplotlib version in the file: same bytes on every install


def _drawable(title: str) -> str:
    """The title without the characters matplotlib's bundled font cannot draw (Chinese): a
    parenthesised Chinese name is dropped with its brackets."""
    kept = "".join(c for c in title if ord(c) < 0x2E80)
    return re.sub(r"\s*[(（]\s*[)）]", "", kept).strip()


def plot_utilization(path: Path, series: Mapping[str, tuple[Sequence[JobRecord], int]],
                     title: str) -> None:
    """Utilization over time, one line per run (name → (records, capacity))."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
    for name, (records, capacity) in series.items():
        pts = utilization_series(records, capacity)
        if not pts:
            continue
        t0 = pts[0][0]
        ax.plot([(t - t0) / 86400 for t, _ in pts], [u * 100 for _, u in pts], label=name, linewidth=1.2)
    ax.set_xlabel("days since the first submission")
    ax.set_ylabel("utilization (%)")
    ax.set_ylim(0, 105)
    ax.set_title(_drawable(title))
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata=_PNG_META)
    plt.close(fig)


def plot_wait_cdf(path: Path, series: Mapping[str, Sequence[JobRecord]], title: str) -> None:
    """Cumulative distribution of waits, one line per run, log time axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4), dpi=100)
    for name, records in series.items():
        waits = sorted(max(r.wait, 1.0) for r in records)
        if not waits:
            continue
        n = len(waits)
        step = max(1, n // 2000)
        xs = [*waits[::step], waits[-1]]
        ys = [*(min(1.0, (i * step + 1) / n) for i in range(len(xs) - 1)), 1.0]
        ax.step(xs, ys, where="post", label=name, linewidth=1.2)
    ax.set_xscale("log")
    ax.set_xlabel("wait (s, waits under 1 s shown at 1 s)")
    ax.set_ylabel("fraction of jobs")
    ax.set_ylim(0, 1.02)
    ax.set_title(_drawable(title))
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata=_PNG_META)
    plt.close(fig)
