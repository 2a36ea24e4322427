"""What a simulation run is judged by: waits, bounded slowdown, utilization, fairness.

Definitions (Feitelson, "Metrics for parallel job scheduling"):

* wait = start − submit; response = end − submit.
* bounded slowdown (τ = 10 s) = max(1, response / max(run, τ)).
* utilization = Σ units × run / (capacity × span), span = last end − first submit.
* Jain's fairness index over tenants of x_i (here each tenant's mean bounded slowdown, inverted so
  that "better served" is larger): (Σx)² / (n Σx²), 1 when all are served alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

TAU_S = 10.0


class JobRecord(NamedTuple):
    id: int
    submit: float
    start: float
    end: float
    units: int
    tenant: str = ""
    center: str = ""
    cost_fen: int = 0
    energy_wh: float = 0.0

    @property
    def wait(self) -> float:
        return self.start - self.submit

    @property
    def run(self) -> float:
        return self.end - self.start

    @property
    def bsld(self) -> float:
        return max(1.0, (self.end - self.submit) / max(self.end - self.start, TAU_S))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    k = max(0, math.ceil(q / 100 * len(sorted_values)) - 1)
    return float(sorted_values[k])


def jain(values: Iterable[float]) -> float:
    xs = [v for v in values]
    if not xs:
        return 1.0
    sq = sum(x * x for x in xs)
    return (sum(xs) ** 2) / (len(xs) * sq) if sq else 1.0


def _r(x: float, nd: int = 3) -> float:
    return round(float(x), nd)


def summarize(records: Sequence[JobRecord], capacity: int, *, skipped: int = 0) -> dict[str, float | int]:
    """The headline figures of a set of finished jobs on `capacity` units."""
    n = len(records)
    if n == 0:
        return {"jobs": 0, "skipped": skipped, "mean_wait_s": 0.0, "median_wait_s": 0.0,
                "p95_wait_s": 0.0, "mean_bsld": 0.0, "utilization": 0.0, "makespan_s": 0.0,
                "throughput_per_h": 0.0}
    waits = sorted(r.wait for r in records)
    first = min(r.submit for r in records)
    last = max(r.end for r in records)
    span = last - first
    work = sum(r.units * (r.end - r.start) for r in records)
    return {
        "jobs": n,
        "skipped": skipped,
        "mean_wait_s": _r(sum(waits) / n),
        "median_wait_s": _r(percentile(waits, 50)),
        "p95_wait_s": _r(percentile(waits, 95)),
        "mean_bsld": _r(sum(r.bsld for r in records) / n, 4),
        "utilization": _r(work / (capacity * span), 4) if span > 0 and capacity > 0 else 0.0,
        "makespan_s": _r(span),
        "throughput_per_h": _r(n / span * 3600, 4) if span > 0 else 0.0,
    }


def utilization_series(records: Sequence[JobRecord], capacity: int,
                       bins: int = 200) -> list[tuple[float, float]]:
    """(bin start, busy fraction) over the run, for the plot."""
    if not records or capacity <= 0:
        return []
    t0 = min(r.submit for r in records)
    t1 = max(r.end for r in records)
    width = (t1 - t0) / bins or 1.0
    busy = [0.0] * bins
    for r in records:
        s, e = r.start, r.end
        b = int((s - t0) / width)
        while s < e and b < bins:
            edge = t0 + (b + 1) * width
            busy[b] += r.units * (min(e, edge) - s)
            s = edge
            b += 1
    return [(_r(t0 + i * width), _r(busy[i] / (capacity * width), 4)) for i in range(bins)]
