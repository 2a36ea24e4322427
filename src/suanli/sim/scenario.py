"""A digital-twin scenario: the city's pools, the workloads that feed them, a seed (TOML or YAML).

    name = "Qingdao demo city"
    seed = 7
    scheduler = "easy"          # each pool's queue: easy or fcfs
    window_days = 30            # every workload replays this many days of its trace

    [[pools]]
    center = "qd-sc"            # pools are named center/name
    name = "x86"
    device = "cpu"              # cpu, gpu, npu, ...
    units = 12800
    speed = 1.0                 # run time divides by it (default 1)
    price_fen_per_unit_hour = 6
    watts_per_unit = 4
    pue = 1.3
    domestic = false            # domestic chips (a voucher rule may subsidise them more)

    [[workloads]]
    trace = "../traces/HPC2N-2002-2.2-cln.swf.gz"   # relative to this file
    format = "swf"              # swf or gpu (default: from the file name)
    cluster = "cluster3"        # GPU CSV only: one cluster's jobs
    home = "qd-sc/x86"          # the center this demand belongs to (isolated runs it there)
    start_day = 0               # the window starts this many days after the trace's first job
    scale = "auto"              # units × (home units / trace MaxProcs, or / its largest job); or a number
    # or, instead of a trace, a what-if workload (Poisson arrivals, log-uniform sizes and run times):
    # synthetic = { jobs = 5000, rate_per_h = 20, max_units = 64, min_runtime_s = 60,
    #               max_runtime_s = 86400, overestimate = 2.0 }
    devices = ["cpu"]           # the device kinds its jobs may run on (default: the home pool's)
    tenants = 4                 # trace users map onto this many tenants: <tenant_prefix>-<user mod n>
    tenant_prefix = "hpc2n"
    policy = "fastest"          # the jobs' placement policy

Every workload's window is shifted to start at t = 0, so the traces are time-aligned.
"""

from __future__ import annotations

import math
import random
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..scheduling.network import POLICIES
from .pool import SCHEDULERS
from .workload import Workload, load, synthetic, window


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message says where and why."""


@dataclass(frozen=True, slots=True)
class PoolSpec:
    center: str
    name: str
    device: str
    units: int
    speed: float = 1.0
    price_fen_per_unit_hour: float = 0.0
    watts_per_unit: float = 0.0
    pue: float = 1.0
    domestic: bool = False  # domestic chips (voucher rules may subsidise them more)

    @property
    def label(self) -> str:
        return f"{self.center}/{self.name}"


@dataclass(frozen=True, slots=True)
class SimJob:
    """A job of the scenario, on the shared clock (seconds from the start of the window)."""

    id: int  # unique in the scenario
    trace_id: int
    submit: float
    runtime: float  # on a speed-1 pool
    units: int
    estimate: float
    tenant: str
    home: int  # index of the home pool
    devices: frozenset[str]
    policy: str = "fastest"
    workload: str = ""
    parents: tuple[int, ...] = ()  # ids of the stages it waits for (a DAG stage)
    dag: str = ""  # the DAG instance it belongs to


@dataclass(slots=True)
class Scenario:
    name: str
    seed: int
    scheduler: str
    window_days: float
    pools: list[PoolSpec]
    jobs: list[SimJob] = field(default_factory=list)
    skipped: int = 0
    source: str = ""

    def pool_index(self, label: str) -> int:
        for i, p in enumerate(self.pools):
            if p.label == label:
                return i
        raise ScenarioError(f"no pool {label!r} (pools: {', '.join(p.label for p in self.pools)})")


def _get(d: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    if key not in d:
        if default is ...:
            raise ScenarioError(f"{where}: missing '{key}'")
        return default
    value = d[key]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ScenarioError(f"{where}: '{key}' must be {names}, not {value!r}")
    return value


def _positive(value: float, key: str, where: str) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ScenarioError(f"{where}: '{key}' must be positive, not {value!r}")


def read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'TOML'}: "
                            f"{exc}") from exc
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario is a table of settings")
    return data


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file, and load its workloads' jobs."""
    return build(read_file(path), base=path.parent, source=path.name)


def build(data: dict[str, Any], *, base: Path, source: str = "") -> Scenario:
    where = source or "scenario"
    scheduler = _get(data, "scheduler", str, where, "easy")
    if scheduler not in SCHEDULERS:
        raise ScenarioError(f"{where}: 'scheduler' must be one of {', '.join(SCHEDULERS)}, not {scheduler!r}")
    days = _get(data, "window_days", (int, float), where, 30)
    _positive(days, "window_days", where)
    raw_pools = _get(data, "pools", list, where)
    if not raw_pools:
        raise ScenarioError(f"{where}: no pools")
    pools: list[PoolSpec] = []
    for i, rp in enumerate(raw_pools):
        w = f"{where}: pools[{i}]"
        if not isinstance(rp, dict):
            raise ScenarioError(f"{w}: a pool is a table")
        spec = PoolSpec(
            center=_get(rp, "center", str, w), name=_get(rp, "name", str, w),
            device=_get(rp, "device", str, w, "cpu"), units=_get(rp, "units", int, w),
            speed=float(_get(rp, "speed", (int, float), w, 1.0)),
            price_fen_per_unit_hour=float(_get(rp, "price_fen_per_unit_hour", (int, float), w, 0)),
            watts_per_unit=float(_get(rp, "watts_per_unit", (int, float), w, 0)),
            pue=float(_get(rp, "pue", (int, float), w, 1.0)),
            domestic=_get(rp, "domestic", bool, w, False))
        _positive(spec.units, "units", w)
        _positive(spec.speed, "speed", w)
        _positive(spec.pue, "pue", w)
        if spec.label in {p.label for p in pools}:
            raise ScenarioError(f"{w}: a second pool named {spec.label!r}")
        pools.append(spec)
    sc = Scenario(name=_get(data, "name", str, where, source or "scenario"),
                  seed=_get(data, "seed", int, where, 0), scheduler=scheduler,
                  window_days=float(days), pools=pools, source=source)
    raw_workloads = _get(data, "workloads", list, where)
    if not raw_workloads:
        raise ScenarioError(f"{where}: no workloads")
    for i, rw in enumerate(raw_workloads):
        _add_workload(sc, rw, base, f"{where}: workloads[{i}]")
    for i, rd in enumerate(_get(data, "dags", list, where, [])):
        _add_dags(sc, rd, f"{where}: dags[{i}]")
    sc.jobs.sort(key=lambda j: (j.submit, j.id))
    return sc


def _synthetic(syn: dict[str, Any], home: PoolSpec, sc: Scenario, w: str) -> Workload:
    """A what-if workload: `jobs` jobs arriving as a Poisson stream (`rate_per_h`), sizes
    log-uniform up to `max_units` (default: the home pool's), run times log-uniform in
    [`min_runtime_s`, `max_runtime_s`], estimates up to `overestimate` × the run time."""
    ws = f"{w}.synthetic"
    n = _get(syn, "jobs", int, ws)
    rate = float(_get(syn, "rate_per_h", (int, float), ws))
    max_units = _get(syn, "max_units", int, ws, home.units)
    lo = float(_get(syn, "min_runtime_s", (int, float), ws, 60))
    hi = float(_get(syn, "max_runtime_s", (int, float), ws, 86_400))
    over = float(_get(syn, "overestimate", (int, float), ws, 2.0))
    for key, value in (("jobs", n), ("rate_per_h", rate), ("max_units", max_units), ("min_runtime_s", lo),
                       ("max_runtime_s", hi), ("overestimate", over)):
        _positive(value, key, ws)
    if lo > hi or over < 1 or max_units > home.units:
        raise ScenarioError(f"{ws}: needs min_runtime_s ≤ max_runtime_s, overestimate ≥ 1 and "
                            f"max_units ≤ the home pool's {home.units}")
    seed = _get(syn, "seed", int, ws, sc.seed)
    return synthetic(n, seed=seed, rate_per_s=rate / 3600, max_procs=max_units, min_runtime=lo,
                     max_runtime=hi, overestimate=over)


def _add_dags(sc: Scenario, rd: Any, w: str) -> None:
    """`count` instances of one DAG, arriving as a Poisson stream (`every_s` apart on average,
    from the scenario's seed); each stage has its home pool, devices, units, run time and
    walltime, and the stages it depends on."""
    if not isinstance(rd, dict):
        raise ScenarioError(f"{w}: a DAG is a table")
    name = _get(rd, "name", str, w)
    count = _get(rd, "count", int, w, 1)
    _positive(count, "count", w)
    every = float(_get(rd, "every_s", (int, float), w, 3600))
    _positive(every, "every_s", w)
    tenant = _get(rd, "tenant", str, w, name)
    policy = _get(rd, "policy", str, w, "fastest")
    if policy not in POLICIES:
        raise ScenarioError(f"{w}: 'policy' must be one of {', '.join(POLICIES)}, not {policy!r}")
    raw_stages = _get(rd, "stages", list, w)
    if not raw_stages:
        raise ScenarioError(f"{w}: no stages")
    stages: list[dict[str, Any]] = []
    names: list[str] = []
    for k, st in enumerate(raw_stages):
        ws = f"{w}.stages[{k}]"
        if not isinstance(st, dict):
            raise ScenarioError(f"{ws}: a stage is a table")
        sname = _get(st, "name", str, ws)
        if sname in names:
            raise ScenarioError(f"{ws}: a second stage named {sname!r}")
        deps = _get(st, "depends_on", list, ws, [])
        for d in deps:
            if d not in names:
                raise ScenarioError(f"{ws}: depends on {d!r}, which is not an earlier stage")
        home = sc.pool_index(_get(st, "home", str, ws))
        devices = _get(st, "devices", list, ws, [sc.pools[home].device])
        units = _get(st, "units", int, ws)
        runtime = float(_get(st, "runtime_s", (int, float), ws))
        walltime = float(_get(st, "walltime_s", (int, float), ws, runtime))
        for key, value in (("units", units), ("runtime_s", runtime), ("walltime_s", walltime)):
            _positive(value, key, ws)
        if units > sc.pools[home].units or sc.pools[home].device not in devices:
            raise ScenarioError(f"{ws}: its home pool {sc.pools[home].label} cannot run it")
        names.append(sname)
        stages.append({"name": sname, "deps": deps, "home": home, "devices": frozenset(devices),
                       "units": units, "runtime": runtime, "estimate": max(walltime, runtime)})
    rng = random.Random(f"{sc.seed}:{name}")
    next_id = max((j.id for j in sc.jobs), default=0) + 1
    t = 0.0
    horizon = sc.window_days * 86400
    for n in range(count):
        t += rng.expovariate(1 / every)
        if t >= horizon:
            break
        ids: dict[str, int] = {}
        for st in stages:
            jid = next_id
            next_id += 1
            ids[st["name"]] = jid
            sc.jobs.append(SimJob(
                id=jid, trace_id=n + 1, submit=round(t, 3), runtime=st["runtime"], units=st["units"],
                estimate=st["estimate"], tenant=tenant, home=st["home"], devices=st["devices"],
                policy=policy, workload=f"dag:{name}", parents=tuple(ids[d] for d in st["deps"]),
                dag=f"{name}#{n + 1}"))



def _add_workload(sc: Scenario, rw: Any, base: Path, w: str) -> None:
    if not isinstance(rw, dict):
        raise ScenarioError(f"{w}: a workload is a table")
    syn = _get(rw, "synthetic", dict, w, None)
    if syn is None:
        trace = base / _get(rw, "trace", str, w)
    fmt = _get(rw, "format", str, w, None)
    if fmt is not None and fmt not in ("swf", "gpu"):
        raise ScenarioError(f"{w}: 'format' must be swf or gpu, not {fmt!r}")
    home = sc.pool_index(_get(rw, "home", str, w))
    home_pool = sc.pools[home]
    devices = _get(rw, "devices", list, w, [home_pool.device])
    if not devices or not all(isinstance(d, str) for d in devices):
        raise ScenarioError(f"{w}: 'devices' is a list of device kinds")
    policy = _get(rw, "policy", str, w, "fastest")
    if policy not in POLICIES:
        raise ScenarioError(f"{w}: 'policy' must be one of {', '.join(POLICIES)}, not {policy!r}")
    n_tenants = _get(rw, "tenants", int, w, 1)
    _positive(n_tenants, "tenants", w)
    prefix = _get(rw, "tenant_prefix", str, w,
                  "synthetic" if syn is not None else trace.name.split("-")[0].lower())
    start_day = float(_get(rw, "start_day", (int, float), w, 0))
    if start_day < 0:
        raise ScenarioError(f"{w}: 'start_day' must be ≥ 0")
    kw: dict[str, Any] = {}
    if syn is not None:
        wl = _synthetic(syn, home_pool, sc, w)
    else:
        if (fmt or ("gpu" if ".csv" in trace.name else "swf")) == "gpu" and "cluster" in rw:
            kw["cluster"] = _get(rw, "cluster", str, w)
        if not trace.is_file():
            raise ScenarioError(f"{w}: no such trace file {trace}")
        try:
            wl = load(trace, fmt, **kw)
        except ValueError as exc:
            raise ScenarioError(f"{w}: {exc}") from exc
    if not wl.jobs:
        raise ScenarioError(f"{w}: the trace has no jobs{' in cluster ' + kw['cluster'] if kw else ''}")
    t0, picked = window(wl, start_day, sc.window_days)
    if not picked:
        raise ScenarioError(f"{w}: no jobs in days {start_day:g}–{start_day + sc.window_days:g} of the trace")
    scale_raw = rw.get("scale", 1 if syn is not None else "auto")
    if scale_raw == "auto":
        reference = wl.max_procs or max(j.procs for j in wl.jobs)
        scale = home_pool.units / reference
    elif isinstance(scale_raw, (int, float)) and not isinstance(scale_raw, bool):
        scale = float(scale_raw)
        _positive(scale, "scale", w)
    else:
        raise ScenarioError(f"{w}: 'scale' must be \"auto\" or a number, not {scale_raw!r}")
    if home_pool.device not in devices:
        raise ScenarioError(f"{w}: its home pool {home_pool.label} has {home_pool.device}, "
                            f"not one of the devices {devices}")
    kinds = frozenset(devices)
    first_id = len(sc.jobs)
    for k, j in enumerate(picked):
        units = max(1, round(j.procs * scale))
        if units > home_pool.units:  # every policy must be able to run every job: isolated at home
            sc.skipped += 1
            continue
        sc.jobs.append(SimJob(
            id=first_id + k + 1, trace_id=j.id, submit=j.submit - t0, runtime=j.runtime, units=units,
            estimate=max(j.requested, 1.0), tenant=f"{prefix}-{j.user % n_tenants}", home=home,
            devices=kinds, policy=policy, workload=wl.name))
