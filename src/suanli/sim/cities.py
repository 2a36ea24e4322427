"""Random cities for the digital twin: a scenario drawn from a seed, to test placement on cities
nobody tuned it on.

A city (`make_city(seed)`) has 3 to 12 pools of very different sizes (32 to 16,384 units; an
accelerator pool 32 to 4,096), speeds (0.5 to 2×), prices and PUEs; CPU pools and, in most
cities with five pools or more, accelerator (GPU/NPU) pools. Each pool's own demand is a random
window of a bundled trace (HPC2N or KTH for CPUs, a cluster of the ITP GPU trace for
accelerators) or a synthetic workload, scaled to a load on its home pool drawn from light to
saturated (0.15 to 1.1); some pools have no demand of their own (a new center), some two
workloads. The same seed always gives the same city (`random.Random(f"city:{seed}")`), and the
scenario is a plain dict: `to_toml` writes it as a file `suanli simulate compare` reads.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

from .workload import Workload, gpu_cluster_names, load, window

TRACES = Path(__file__).resolve().parents[3] / "data" / "traces"
CPU_TRACES = ("HPC2N-2002-2.2-cln.swf.gz", "KTH-SP2-1996-2.1-cln.swf.gz")
GPU_TRACE = "microsoft-itp-elasticflow-2021.csv.gz"
CPU_DEVICES = ["cpu"]
ACCEL_DEVICES = ["gpu", "npu"]


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _gpu_clusters(traces: Path) -> dict[str, Workload]:
    path = traces / GPU_TRACE
    return {name: load(path, "gpu", cluster=name) for name in gpu_cluster_names(path)}


def _trace_workload(rng: random.Random, w: Workload, trace: str, pool: dict[str, Any], days: float,
                    load_target: float, extra: dict[str, Any]) -> dict[str, Any] | None:
    span_days = (w.jobs[-1].submit - w.jobs[0].submit) / 86400
    if span_days < days + 1:
        return None
    for _ in range(8):  # a window with some jobs in it
        start_day = round(rng.uniform(0, span_days - days), 1)
        _, jobs = window(w, start_day, days)
        work = sum(j.procs * j.runtime for j in jobs)
        if len(jobs) >= 20 and work > 0:
            break
    else:
        return None
    biggest = max(j.procs for j in jobs)
    # The scale that gives the target load on the home pool, kept so that at most the largest
    # jobs of the window outgrow it (they are skipped, as in every scenario).
    scale = load_target * pool["units"] * days * 86400 / work
    scale = min(scale, 2.0 * pool["units"] / biggest)
    return {"trace": trace, "home": f"{pool['center']}/{pool['name']}", "start_day": start_day,
            "scale": round(scale, 6), **extra}


def make_city(seed: int, traces: Path = TRACES) -> dict[str, Any]:
    """A random city scenario (a dict in the scenario file's shape, traces relative to
    `traces`)."""
    rng = random.Random(f"city:{seed}")
    n = rng.randint(3, 12)
    n_accel = rng.randint(2, n - 3) if n >= 5 and rng.random() < 0.6 else 0
    days = rng.choice((7, 14, 21, 30))
    pools: list[dict[str, Any]] = []
    for i in range(n):
        accel = i >= n - n_accel
        pool: dict[str, Any] = {
            "center": f"c{i + 1}", "name": ("npu" if rng.random() < 0.4 else "gpu") if accel else "cpu",
            "units": max(32, round(_log_uniform(rng, 32, 4096 if accel else 16384))),
            "speed": round(_log_uniform(rng, 0.5, 2.0), 2),
            "price_fen_per_unit_hour": round(rng.uniform(300, 2000) if accel else rng.uniform(2, 10), 2),
            "watts_per_unit": round(rng.uniform(250, 700) if accel else rng.uniform(2, 6), 1),
            "pue": round(rng.uniform(1.1, 1.6), 2),
        }
        pool["device"] = pool["name"]
        pools.append(pool)
    gpu = _gpu_clusters(traces)
    workloads: list[dict[str, Any]] = []
    for pool in pools:
        accel = pool["device"] != "cpu"
        r = rng.random()
        count = 0 if r < 0.15 else 2 if r > 0.8 else 1
        for k in range(count):
            target = _log_uniform(rng, 0.15, 1.1) / count
            devices = ACCEL_DEVICES if accel else CPU_DEVICES
            prefix = f"{pool['center']}-w{k + 1}"
            extra = {"devices": devices, "tenants": rng.randint(2, 8), "tenant_prefix": prefix}
            wl: dict[str, Any] | None = None
            if rng.random() >= 0.25:
                if accel:
                    name = rng.choice(sorted(gpu))
                    wl = _trace_workload(rng, gpu[name], f"{GPU_TRACE}", pool, days, target,
                                         {**extra, "cluster": name})
                else:
                    trace = rng.choice(CPU_TRACES)
                    wl = _trace_workload(rng, load(traces / trace), trace, pool, days, target, extra)
            if wl is None:
                wl = _synthetic(rng, pool, days, target, accel, extra)
            workloads.append(wl)
    if not workloads:  # every pool new: the first one gets demand
        pool = pools[0]
        workloads.append(_synthetic(rng, pool, days, 0.5, pool["device"] != "cpu",
                                    {"devices": ACCEL_DEVICES if pool["device"] != "cpu" else CPU_DEVICES,
                                     "tenants": 4, "tenant_prefix": f"{pool['center']}-w1"}))
    return {"name": f"random city {seed}", "seed": seed, "scheduler": "easy", "window_days": days,
            "pools": pools, "workloads": workloads}


def _synthetic(rng: random.Random, pool: dict[str, Any], days: float, target: float, accel: bool,
               extra: dict[str, Any]) -> dict[str, Any]:
    max_units = max(1, min(pool["units"], 64 if accel else round(pool["units"] * rng.uniform(0.05, 0.5))))
    lo, hi = 60.0, _log_uniform(rng, 3600, 3 * 86400)
    mean_units = (max_units - 1) / math.log(max_units) if max_units > 1 else 1.0
    mean_run = (hi - lo) / math.log(hi / lo)
    rate_per_h = target * pool["units"] * 3600 / (mean_units * mean_run)
    jobs = max(20, round(rate_per_h * days * 24))
    return {"synthetic": {"jobs": jobs, "rate_per_h": round(rate_per_h, 6), "max_units": max_units,
                          "min_runtime_s": lo, "max_runtime_s": round(hi),
                          "overestimate": round(rng.uniform(1.2, 5.0), 2),
                          "seed": rng.randrange(1 << 30)},
            "home": f"{pool['center']}/{pool['name']}", **extra}


def to_toml(city: dict[str, Any], traces: Path = TRACES) -> str:
    """The city as a scenario file (trace paths absolute, so it runs from anywhere)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return repr(v)

    lines = [f"{k} = {value(city[k])}" for k in ("name", "seed", "scheduler", "window_days")]
    for table in ("pools", "workloads"):
        for item in city[table]:
            lines += ["", f"[[{table}]]"]
            for k, v in item.items():
                if k == "trace":
                    v = str(traces / v)
                lines.append(f"{k} = {value(v)}")
    return "\n".join(lines) + "\n"
