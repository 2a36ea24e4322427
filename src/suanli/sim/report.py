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

from .metrics import JobRecord


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


Points = list[tuple[float, float]]


def draw_utilization(path: Path, series: Mapping[str, Points], title: str) -> None:
    """The utilization plot from its points (name → [(time, busy fraction)])."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
    for name, pts in series.items():
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
    fig.subplots_adjust(left=0.07, right=0.985, top=0.9, bottom=0.14)  # fixed: tight_layout is half the cost
    fig.savefig(path, metadata=_PNG_META)
    plt.close(fig)


def wait_cdf_points(records: Sequence[JobRecord], most: int = 2000) -> Points:
    """The waits' cumulative distribution, down-sampled to about `most` steps (waits under 1 s
    at 1 s, for the log axis)."""
    waits = sorted(max(r.wait, 1.0) for r in records)
    if not waits:
        return []
    n = len(waits)
    step = max(1, n // most)
    xs = [*waits[::step], waits[-1]]
    ys = [*(min(1.0, (i * step + 1) / n) for i in range(len(xs) - 1)), 1.0]
    return list(zip(xs, ys, strict=True))


def plot_wait_cdf(path: Path, series: Mapping[str, Sequence[JobRecord]], title: str) -> None:
    """Cumulative distribution of waits, one line per run, log time axis."""
    draw_wait_cdf(path, {name: wait_cdf_points(records) for name, records in series.items()}, title)


def draw_wait_cdf(path: Path, series: Mapping[str, Points], title: str) -> None:
    """The wait CDF plot from its points (name → [(wait, fraction)])."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4), dpi=100)
    for name, pts in series.items():
        if not pts:
            continue
        ax.step([x for x, _ in pts], [y for _, y in pts], where="post", label=name, linewidth=1.2)
    ax.set_xscale("log")
    ax.set_xlabel("wait (s, waits under 1 s shown at 1 s)")
    ax.set_ylabel("fraction of jobs")
    ax.set_ylim(0, 1.02)
    ax.set_title(_drawable(title))
    ax.grid(alpha=0.3, which="both")
    if any(series.values()):
        ax.legend(loc="lower right", fontsize=8)
    fig.subplots_adjust(left=0.11, right=0.97, top=0.91, bottom=0.12)
    fig.savefig(path, metadata=_PNG_META)
    plt.close(fig)


class BackgroundPlots:
    """The plots of a run, drawn by a child process beside the parent's work.

    Importing matplotlib and drawing two PNGs takes longer than simulating a large trace; a child
    forked before the simulation imports matplotlib while the parent reads and simulates, then
    draws from the few thousand points the parent sends it (`draw`) while the parent writes the
    CSV and the summary. `wait()` returns when the files are written (an error in the child is
    raised here). With `fork=False` (or where fork is unavailable) the plots are drawn in-process
    at `wait()`."""

    def __init__(self, *, fork: bool = True) -> None:
        import multiprocessing

        self._queued: list[tuple[str, Path, Mapping[str, Points], str]] = []
        self._proc: Any = None
        self._conn: Any = None
        if not fork or "fork" not in multiprocessing.get_all_start_methods():
            return
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_plot_worker, args=(child,), daemon=True)
        self._proc.start()
        child.close()

    def draw(self, kind: str, path: Path, series: Mapping[str, Points], title: str) -> None:
        """Queue a plot: kind "utilization" or "wait_cdf"."""
        task = (kind, path, dict(series), title)
        if self._conn is None:
            self._queued.append(task)
        else:
            self._conn.send(task)

    def wait(self) -> None:
        if self._conn is None:
            for task in self._queued:
                _draw(*task)
            self._queued.clear()
            return
        self._conn.send(None)
        try:
            error = self._conn.recv()
        except EOFError:
            error = f"the plotting process ended (exit code {self._proc.exitcode})"
        self._proc.join()
        self._conn.close()
        self._conn = None
        if error:
            raise RuntimeError(f"drawing the plots failed: {error}")

    def close(self) -> None:
        """Stop the child without drawing (the run failed)."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
            self._proc.join()


def plot_runs(out: Path, runs: Mapping[str, tuple[Sequence[JobRecord], int]], utilization_title: str,
              waits_title: str, plotter: BackgroundPlots | None = None) -> None:
    """`out/utilization.png` and `out/wait_cdf.png`, one line per run (name → (records,
    capacity)): drawn by `plotter` in the background when given (its owner waits for it), else
    here and now."""
    from .metrics import utilization_series

    target = plotter or BackgroundPlots(fork=False)
    target.draw("utilization", out / "utilization.png",
                {name: utilization_series(records, capacity) for name, (records, capacity) in runs.items()},
                utilization_title)
    target.draw("wait_cdf", out / "wait_cdf.png",
                {name: wait_cdf_points(records) for name, (records, _) in runs.items()}, waits_title)
    if plotter is None:
        target.wait()


def _draw(kind: str, path: Path, series: Mapping[str, Points], title: str) -> None:
    (draw_utilization if kind == "utilization" else draw_wait_cdf)(path, series, title)


def _plot_worker(conn: Any) -> None:
    error = ""
    try:
        _pyplot()  # the import, while the parent simulates
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    try:
        while (task := conn.recv()) is not None:
            if not error:
                try:
                    _draw(*task)
                except Exception as exc:  # reported to the parent, which fails the command
                    error = f"{type(exc).__name__}: {exc}"
    except EOFError:  # the parent went away
        return
    conn.send(error)
