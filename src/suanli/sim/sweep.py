"""Parameter sweeps: one scenario, every combination of a few parameters, every point a twin run.

    suanli simulate sweep city.toml --param pools.qd-ai/ascend-910b.units=160,320,640 --param seed=1..10

A parameter is a path into the scenario file and its values:

* `seed`, `window_days`, `scheduler` — the scenario's own settings;
* `pools.<center/name>.<field>` — a pool's field (units, speed, price_fen_per_unit_hour, …);
* `workloads.<n>.<field>` — the n-th workload (from 1), e.g. `workloads.2.scale`, or a field of
  its synthetic generator: `workloads.1.synthetic.rate_per_h`.

Values are comma-separated; `a..b` is every integer from a to b. Each point is the scenario with
those values, built and run under every policy asked for (`run_point`, the one function the
local workers and the Ray jobs call). The points run in parallel on local cores
(`run_local`), or as Ray jobs (`services.sweep_ray`). `aggregate` gives the table and
`plot_sweep` the plot: the metric against one parameter, the mean over the others with their
range.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .scenario import PoolSpec, ScenarioError, build, read_file
from .twin import POLICY_NAMES, compare

RESULT_MARK = "SUANLI-SWEEP-RESULT "  # a Ray job's stdout line carrying its point's result
TOP_KEYS = ("seed", "window_days", "scheduler")
POOL_KEYS = tuple(PoolSpec.__dataclass_fields__)
WORKLOAD_KEYS = ("trace", "format", "cluster", "home", "start_day", "scale", "devices", "tenants",
                 "tenant_prefix", "policy", "synthetic")
SYNTHETIC_KEYS = ("jobs", "rate_per_h", "max_units", "min_runtime_s", "max_runtime_s", "overestimate",
                  "seed")
METRICS = ("mean_bsld", "mean_wait_s", "median_wait_s", "p95_wait_s", "utilization", "makespan_s",
           "throughput_per_h", "jain_fairness", "cost_fen", "energy_kwh")
MAX_POINTS = 10_000


class SweepError(ValueError):
    """A sweep that cannot run; the message says which parameter and why."""


@dataclass(frozen=True, slots=True)
class Param:
    path: str
    values: tuple[Any, ...]


@dataclass(slots=True)
class Sweep:
    scenario: dict[str, Any]  # the file's settings, trace paths made absolute
    params: list[Param]
    policies: list[str]
    points: list[dict[str, Any]] = field(default_factory=list)  # path → value, per combination


def _value(text: str) -> Any:
    t = text.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    for kind in (int, float):
        try:
            return kind(t)
        except ValueError:
            pass
    return t


def parse_param(text: str) -> Param:
    """`path=v1,v2,a..b` → Param (values in order, integer ranges expanded)."""
    path, eq, raw = text.partition("=")
    path = path.strip()
    if not eq or not path or not raw.strip():
        raise SweepError(f"--param {text!r}: use PATH=VALUES, e.g. seed=1..10 or "
                         "pools.qd-ai/ascend-910b.units=160,320")
    values: list[Any] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            raise SweepError(f"--param {path}: an empty value in {raw!r}")
        m = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", item)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if b < a:
                raise SweepError(f"--param {path}: the range {item} is empty (write the smaller end first)")
            if b - a >= MAX_POINTS:
                raise SweepError(f"--param {path}: the range {item} has over {MAX_POINTS:,} values")
            values.extend(range(a, b + 1))
        else:
            values.append(_value(item))
    if len(set(map(repr, values))) != len(values):
        raise SweepError(f"--param {path}: a value is given twice")
    return Param(path, tuple(values))


def _target(data: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    """The table inside the scenario that `path` names, and the key in it (SweepError if none)."""
    if path in TOP_KEYS:
        return data, path
    head, _, rest = path.partition(".")
    if head == "pools":
        labels = [f"{p.get('center')}/{p.get('name')}" for p in data.get("pools", [])]
        for label, pool in sorted(zip(labels, data.get("pools", []), strict=True), key=lambda x: -len(x[0])):
            if rest.startswith(label + "."):
                return pool, _field(path, "a pool", rest[len(label) + 1:], POOL_KEYS)
        raise SweepError(f"--param {path}: no such pool (pools: {', '.join(labels)}); "
                         "write pools.<center/name>.<field>")
    if head == "workloads":
        n, _, key = rest.partition(".")
        workloads = data.get("workloads", [])
        if not n.isdigit() or not 1 <= int(n) <= len(workloads) or not key:
            raise SweepError(f"--param {path}: write workloads.<n>.<field>, n from 1 to {len(workloads)}")
        wl = workloads[int(n) - 1]
        if key.startswith("synthetic."):
            sub = key.removeprefix("synthetic.")
            if not isinstance(wl.get("synthetic"), dict) or sub not in SYNTHETIC_KEYS:
                raise SweepError(f"--param {path}: workload {n} has no synthetic field {sub!r}")
            return wl["synthetic"], sub
        return wl, _field(path, "a workload", key, WORKLOAD_KEYS)
    raise SweepError(f"--param {path}: not a parameter of the scenario (seed, window_days, scheduler, "
                     "pools.<center/name>.<field>, workloads.<n>.<field>)")


def _field(path: str, what: str, key: str, known: Sequence[str]) -> str:
    if key not in known:
        raise SweepError(f"--param {path}: {what} has no field {key!r} (one of {', '.join(known)})")
    return key


def apply(data: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """A copy of the scenario with the point's values set."""
    out = copy.deepcopy(data)
    for path, value in point.items():
        table, key = _target(out, path)
        table[key] = value
    return out


def prepare(scenario_file: Path, params: Sequence[str], policies: Sequence[str]) -> Sweep:
    """Read the scenario, parse and check the parameters (every combination builds), list the
    points."""
    data = read_file(scenario_file)
    base = scenario_file.resolve().parent
    for wl in data.get("workloads", []) if isinstance(data.get("workloads"), list) else []:
        if isinstance(wl, dict) and isinstance(wl.get("trace"), str):
            wl["trace"] = str((base / wl["trace"]).resolve())
    unknown = [p for p in policies if p not in POLICY_NAMES]
    if unknown or not policies:
        raise SweepError(f"unknown policy {', '.join(unknown) or '(none)'}; choose from "
                         f"{', '.join(POLICY_NAMES)}")
    if not params:
        raise SweepError("give at least one --param PATH=VALUES")
    parsed = [parse_param(p) for p in params]
    paths = [p.path for p in parsed]
    if len(set(paths)) != len(paths):
        raise SweepError("a parameter is given twice")
    total = math.prod(len(p.values) for p in parsed)
    if total > MAX_POINTS:
        raise SweepError(f"{total:,} combinations: more than {MAX_POINTS:,}")
    sweep = Sweep(data, parsed, list(policies))
    sweep.points = [dict(zip(paths, combo, strict=True))
                    for combo in itertools.product(*(p.values for p in parsed))]
    for p in parsed:  # every value must give a scenario that builds (checked before any run)
        for v in p.values:
            try:
                build(apply(data, {p.path: v}), base=base, source=scenario_file.name)
            except ScenarioError as exc:
                raise SweepError(f"--param {p.path}={v}: {exc}") from exc
    return sweep


def run_point(data: dict[str, Any], policies: Sequence[str], base: str = ".") -> dict[str, Any]:
    """Build one point's scenario and run it under each policy: {policy: summary}."""
    sc = build(data, base=Path(base), source="sweep point")
    out = {}
    for r in compare(sc, policies):
        summary = r.summary()
        out[r.policy] = {k: summary[k] for k in ("jobs", *METRICS)}
    return out


def run_local(sweep: Sweep, workers: int,
              progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Every point on local cores (a process each, `workers` at once), results in point order."""
    tasks = [(apply(sweep.scenario, pt), sweep.policies) for pt in sweep.points]
    if workers <= 1 or len(tasks) == 1:
        out = []
        for i, t in enumerate(tasks):
            out.append(run_point(*t))
            if progress is not None:
                progress(i + 1)
        return out
    import multiprocessing

    results: list[dict[str, Any] | None] = [None] * len(tasks)
    with multiprocessing.get_context("fork").Pool(min(workers, len(tasks))) as pool:
        for done, (i, r) in enumerate(pool.imap_unordered(_indexed, list(enumerate(tasks))), 1):
            results[i] = r
            if progress is not None:
                progress(done)
    return [r for r in results if r is not None]


def _indexed(item: tuple[int, tuple[dict[str, Any], list[str]]]) -> tuple[int, dict[str, Any]]:
    return item[0], run_point(*item[1])


def x_param(sweep: Sweep, chosen: str | None = None) -> str:
    """The parameter the table and the plot are laid out along: `chosen`, else the first that is
    not `seed` (seeds are what the mean is taken over), else the first."""
    paths = [p.path for p in sweep.params]
    if chosen is not None:
        if chosen not in paths:
            raise SweepError(f"--x {chosen}: not one of the parameters ({', '.join(paths)})")
        return chosen
    return next((p for p in paths if p != "seed"), paths[0])


def aggregate(sweep: Sweep, results: Sequence[dict[str, Any]], metric: str,
              x: str) -> list[dict[str, Any]]:
    """Per value of `x` (in the order given) and policy: the metric's mean, min and max over the
    other parameters' combinations."""
    if metric not in METRICS:
        raise SweepError(f"--metric {metric}: one of {', '.join(METRICS)}")
    rows = []
    for value in next(p.values for p in sweep.params if p.path == x):
        row: dict[str, Any] = {"x": value, "points": 0}
        for policy in sweep.policies:
            vals = [float(r[policy][metric]) for pt, r in zip(sweep.points, results, strict=True)
                    if pt[x] == value]
            row["points"] = len(vals)
            row[policy] = {"mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals)}
        rows.append(row)
    return rows


def point_rows(sweep: Sweep, results: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """One flat row per (point, policy): the parameters, the policy and every metric."""
    for pt, r in zip(sweep.points, results, strict=True):
        for policy in sweep.policies:
            yield {**pt, "policy": policy, **r[policy]}


def write(out: Path, sweep: Sweep, results: Sequence[dict[str, Any]], metric: str, x: str) -> None:
    """`sweep.json` (every point), `sweep.csv` (one row per point and policy) and `sweep.png`."""
    import csv

    out.mkdir(parents=True, exist_ok=True)
    rows = list(point_rows(sweep, results))
    by_x = aggregate(sweep, results, metric, x)
    doc: dict[str, Any] = {"params": {p.path: list(p.values) for p in sweep.params},
                           "policies": sweep.policies, "metric": metric, "x": x, "points": rows,
                           "by_x": by_x}
    (out / "sweep.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with (out / "sweep.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    plot_sweep(out / "sweep.png", sweep, by_x, metric, x)


def plot_sweep(path: Path, sweep: Sweep, by_x: Sequence[dict[str, Any]], metric: str, x: str) -> None:
    """The metric against the parameter: one line per policy (the mean over the other
    parameters), shaded between their min and max."""
    from .report import _PNG_META, _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    numeric = all(isinstance(r["x"], int | float) and not isinstance(r["x"], bool) for r in by_x)
    xs = [r["x"] if numeric else i for i, r in enumerate(by_x)]
    for policy in sweep.policies:
        means = [r[policy]["mean"] for r in by_x]
        ax.plot(xs, means, marker="o", linewidth=1.4, label=policy)
        if any(r["points"] > 1 for r in by_x):
            ax.fill_between(xs, [r[policy]["min"] for r in by_x], [r[policy]["max"] for r in by_x],
                            alpha=0.15)
    if not numeric:
        ax.set_xticks(xs, [str(r["x"]) for r in by_x])
    ax.set_xlabel(x)
    others = [p.path for p in sweep.params if p.path != x]
    ax.set_ylabel(metric + (" (mean; band: min–max)" if others else ""))
    ax.set_title(f"{metric} against {x}" + (f", over {', '.join(others)}" if others else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.12, right=0.97, top=0.9, bottom=0.13)
    fig.savefig(path, metadata=_PNG_META)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    """A Ray job's entrypoint: `python -m suanli.sim.sweep points.json K` runs point K of the
    file and prints its result on one marked line."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    doc = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    point = doc["points"][int(args[1])]
    result = run_point(point, doc["policies"], doc.get("base", "."))
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
