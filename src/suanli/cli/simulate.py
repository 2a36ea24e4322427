"""`suanli simulate ...`: the digital twin (数字孪生) from the command line."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .common import console, fail

if TYPE_CHECKING:  # the twin is imported only when a simulate command runs
    from ..sim.report import BackgroundPlots
    from ..sim.scenario import Scenario

simulate_app = typer.Typer(
    help="The digital twin: replay traces and scenarios on the real scheduler. 数字孪生",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar over `total` jobs; yields `update(done)`."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)


def _fmt(v: object, key: str = "") -> str:
    """A summary figure for people: money keys (…_fen) in yuan, numbers in fixed point."""
    from .format import number, yuan

    if key.endswith("_fen") and isinstance(v, int | float):
        return yuan(round(v))
    if isinstance(v, float) and v.is_integer():
        return f"{v:,.0f}"
    if isinstance(v, float):
        return number(v, sig=4, min_decimals=1 if abs(v) >= 10 else 4)
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


@simulate_app.command("trace")
def trace(
    file: Path = typer.Argument(..., help="a trace: SWF (.swf, .swf.gz) or the GPU CSV"),
    fmt: str | None = typer.Option(None, "--format", help="swf or gpu (default: from the file name)"),
    scheduler: str = typer.Option("easy", "--scheduler",
                                  help="fcfs, easy (classic EASY backfilling) or conservative"),
    procs: int | None = typer.Option(None, "--procs", help="the center's size (default: MaxProcs)"),
    out: Path = typer.Option(..., "--out", help="directory for summary.json, jobs.csv and the plots"),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="write utilization.png and wait_cdf.png"),
) -> None:
    """Replay one trace on one center. 单中心回放: jobs.csv + summary.json."""
    from ..sim.single import run_trace, write_trace_run
    from ..sim.workload import load

    if scheduler not in ("fcfs", "easy", "conservative"):
        fail(f"--scheduler must be fcfs, easy or conservative, not {scheduler!r}")
    if fmt is not None and fmt not in ("swf", "gpu"):
        fail(f"--format must be swf or gpu, not {fmt!r}")
    if procs is not None and procs <= 0:
        fail(f"--procs must be a positive number of processors, not {procs}")
    if not file.is_file():
        fail(f"no such trace file: {file}")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a directory")
    with background_plots(plots) as plotter:  # it imports matplotlib beside the read and the run
        try:
            workload = load(file, fmt)
        except ValueError as exc:  # names the file and line itself
            fail(str(exc))
        except OSError as exc:
            fail(f"cannot read {file}: {exc}")
        if not workload.jobs:
            fail(f"{file}: no valid jobs in the trace ({workload.skipped} skipped)")
        t0 = time.perf_counter()
        try:
            with progress_bar(len(workload.jobs), f"simulating {file.name}") as update:
                run = run_trace(workload, scheduler=scheduler, procs=procs, progress=update)
        except ValueError as exc:
            fail(str(exc))
        elapsed = time.perf_counter() - t0
        summary = write_trace_run(out, run, trace=file.name, plots=plots, plotter=plotter)
        table = Table(title=f"{file.name} · {scheduler.upper()} · {run.capacity} procs", show_header=False)
        for key in ("jobs", "skipped", "mean_wait_s", "median_wait_s", "p95_wait_s", "mean_bsld",
                    "utilization", "makespan_s"):
            table.add_row(key, _fmt(summary[key], key))
        console.print(table)
    console.print(f"{len(run.records):,} jobs in {elapsed:.2f} s ({len(run.records) / elapsed:,.0f} jobs/s) "
                  f"→ {out}/summary.json, {out}/jobs.csv"
                  + (", utilization.png, wait_cdf.png" if plots else ""), highlight=False)


@contextmanager
def background_plots(plots: bool) -> Iterator[BackgroundPlots | None]:
    """With `plots`, a child process that imports matplotlib while this one reads and simulates,
    and draws the plots while this one writes the CSV and prints (`sim.report.BackgroundPlots`);
    the block's end waits for them (a drawing that failed is one error line), a block that fails
    stops it. None without plots."""
    if not plots:
        yield None
        return
    from ..sim.report import BackgroundPlots

    plotter = BackgroundPlots()
    try:
        yield plotter
    except BaseException:
        plotter.close()
        raise
    try:
        plotter.wait()
    except RuntimeError as exc:
        fail(str(exc))

# One row per figure, each with one number format for every policy: (summary key, label, format).
# Costs in yuan, energy in MWh, the makespan in hours, so that six policies fit 80 columns.
COMPARE_ROWS: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("jobs", "jobs", lambda v: f"{v:,.0f}"),
    ("mean_wait_s", "mean wait s", lambda v: f"{v:,.0f}"),
    ("median_wait_s", "p50 wait s", lambda v: f"{v:,.0f}"),
    ("p95_wait_s", "p95 wait s", lambda v: f"{v:,.0f}"),
    ("mean_bsld", "mean BSLD", lambda v: f"{v:,.2f}"),
    ("utilization", "utilization", lambda v: f"{v:.3f}"),
    ("makespan_s", "makespan h", lambda v: f"{v / 3600:,.1f}"),
    ("throughput_per_h", "jobs per h", lambda v: f"{v:,.1f}"),
    ("jain_fairness", "Jain index", lambda v: f"{v:.3f}"),
    ("cost_fen", "cost yuan 元", lambda v: f"{v / 100:,.0f}"),
    ("energy_kwh", "energy MWh", lambda v: f"{v / 1000:,.1f}"),
)
DAG_ROWS: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("dags", "DAG instances", lambda v: f"{v:,.0f}"),
    ("mean_dag_makespan_s", "DAG makespan s", lambda v: f"{v:,.0f}"),
)
# Column headers short enough for six policies side by side; the table's legend names them.
POLICY_HEADERS = {"isolated": "iso", "random": "rand", "round-robin": "rr", "least-loaded": "least",
                  "suanli": "suanli", "merged": "merged"}


def compare_table(title: str, summaries: list[dict[str, object]]) -> tuple[Table, str]:
    """Policies side by side (one column each, short headers) and the legend for the headers."""
    from rich import box

    policies = [str(s["policy"]) for s in summaries]
    short = len(policies) > 3
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  title_justify="left")
    table.add_column("metric 指标")
    for p in policies:
        table.add_column(POLICY_HEADERS.get(p, p) if short else p, justify="right")
    rows = COMPARE_ROWS + (DAG_ROWS if "dags" in summaries[0] else ())
    for key, label, fmt in rows:
        table.add_row(label, *(fmt(float(s[key])) for s in summaries))  # type: ignore[arg-type]
    legend = ", ".join(f"{POLICY_HEADERS[p]} = {p}" for p in policies
                       if short and POLICY_HEADERS.get(p, p) != p)
    return table, legend


def _load_scenario(path: Path) -> Scenario:
    from ..sim.scenario import ScenarioError, load_scenario

    if not path.is_file():
        fail(f"no such scenario file: {path}")
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        fail(str(exc))


def _run_policies(scenario_file: Path, policies: list[str], out: Path | None, plots: bool) -> None:
    from ..sim.scenario import ScenarioError
    from ..sim.twin import POLICY_NAMES, compare, write_runs

    unknown = [p for p in policies if p not in POLICY_NAMES]
    if unknown or not policies:
        fail(f"unknown policy {', '.join(unknown) or '(none)'}; choose from {', '.join(POLICY_NAMES)}")
    if len(set(policies)) != len(policies):
        fail("a policy is named twice")
    if out is not None and out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a directory")
    with background_plots(plots and out is not None) as plotter:
        sc = _load_scenario(scenario_file)
        total = len(sc.jobs) * len(policies)
        t0 = time.perf_counter()
        with progress_bar(total, f"simulating {sc.name}") as update:
            done_before: dict[str, int] = {}

            def step(policy: str, done: int) -> None:
                done_before[policy] = done
                update(sum(done_before.values()))

            try:
                runs = compare(sc, policies, progress=step)
            except ScenarioError as exc:
                fail(str(exc))
        elapsed = time.perf_counter() - t0
        summaries = [r.summary() for r in runs]
        table, legend = compare_table(f"{sc.name} · {len(sc.jobs):,} jobs · {sc.window_days:g} days · "
                                      f"seed {sc.seed}", summaries)
        console.print(table)
        if legend:
            console.print(legend, highlight=False)
        if out is not None:
            write_runs(out, runs, plots=plots, plotter=plotter)
    if out is not None:
        console.print(f"→ {out}/summary.json, {out}/jobs-<policy>.csv"
                      + (", utilization.png, wait_cdf.png" if plots else ""), highlight=False)
    console.print(f"{total:,} simulated jobs in {elapsed:.2f} s", highlight=False)


@simulate_app.command("compare")
def compare_cmd(
    scenario: Path = typer.Argument(..., help="a scenario file (TOML or YAML)"),
    policies: str = typer.Option("isolated,suanli,merged", "--policies",
                                 help="comma-separated: isolated, random, round-robin, least-loaded, "
                                      "suanli, merged"),
    out: Path | None = typer.Option(None, "--out", help="also write summary.json, jobs CSVs and plots here"),
    plots: bool = typer.Option(True, "--plots/--no-plots"),
) -> None:
    """Compare placement policies on one scenario, side by side. 策略对比"""
    _run_policies(scenario, [p.strip() for p in policies.split(",") if p.strip()], out, plots)


@simulate_app.command("run")
def run_cmd(
    scenario: Path = typer.Argument(..., help="a scenario file (TOML or YAML)"),
    policy: str = typer.Option("suanli", "--policy", help="isolated, random, round-robin, least-loaded, "
                                                          "suanli or merged"),
    out: Path | None = typer.Option(None, "--out", help="write summary.json, the jobs CSV and plots here"),
    plots: bool = typer.Option(True, "--plots/--no-plots"),
) -> None:
    """Run one scenario under one policy. 单策略运行"""
    _run_policies(scenario, [policy], out, plots)


@simulate_app.command("sweep")
def sweep_cmd(
    scenario: Path = typer.Argument(..., help="a scenario file (TOML or YAML)"),
    param: list[str] = typer.Option(..., "--param", help="PATH=VALUES, e.g. seed=1..10 or "
                                    "pools.qd-ai/ascend-910b.units=160,320,640 (repeatable)"),
    policies: str = typer.Option("suanli", "--policies", help="comma-separated placement policies"),
    metric: str = typer.Option("mean_bsld", "--metric", help="what the table and the plot show: "
                               "mean_bsld, mean_wait_s, p95_wait_s, utilization, cost_fen, …"),
    x: str | None = typer.Option(None, "--x", help="the parameter along the table and the plot's x axis "
                                 "(default: the first that is not seed)"),
    out: Path = typer.Option(..., "--out", help="directory for sweep.json, sweep.csv and sweep.png"),
    workers: int = typer.Option(0, "--workers", help="local processes at once (default: every core)"),
    ray: str | None = typer.Option(None, "--ray", help="run the points as jobs on the Ray cluster whose "
                                   "Jobs API (dashboard) is at this address, e.g. http://ray-head:8265"),
    ray_python: str = typer.Option("python3", "--ray-python",
                                   help="the Python on the Ray nodes (needs PyYAML, as Ray itself does)"),
) -> None:
    """Run a scenario at every combination of some parameters. 参数扫描

    Each point is the scenario with those values, under each policy; the points run in parallel
    on local cores, or on a Ray cluster with --ray. Prints the metric against the parameter
    (mean, min and max over the other parameters) and writes sweep.json, sweep.csv and sweep.png."""
    import os

    from rich.markup import escape

    from ..sim.sweep import METRICS, SweepError, aggregate, prepare, run_local, write, x_param

    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a directory")
    if metric not in METRICS:
        fail(f"--metric must be one of {', '.join(METRICS)}, not {metric!r}")
    if workers < 0:
        fail("--workers must be 0 (every core) or more")
    if not scenario.is_file():
        fail(f"no such scenario file: {scenario}")
    try:
        sweep = prepare(scenario, param, [p.strip() for p in policies.split(",") if p.strip()])
        xp = x_param(sweep, x)
    except SweepError as exc:
        fail(str(exc))
    n = len(sweep.points)
    where = f"Ray at {ray}" if ray else f"{workers or os.cpu_count() or 1} local processes"
    t0 = time.perf_counter()
    try:
        with progress_bar(n, f"{n} points on {where}") as update:
            if ray:
                from ..services.sweep_ray import run_on_ray

                results = run_on_ray(ray, sweep, python=ray_python, progress=update)
            else:
                results = run_local(sweep, workers or os.cpu_count() or 1, progress=update)
    except SweepError as exc:
        fail(str(exc))
    elapsed = time.perf_counter() - t0
    rows = aggregate(sweep, results, metric, xp)
    others = [p.path for p in sweep.params if p.path != xp]
    table = Table(title=escape(f"{metric} against {xp}" + (f" (mean [min–max] over {', '.join(others)})"
                                                           if others else "")), title_justify="left")
    table.add_column(escape(xp), overflow="fold")
    table.add_column("points", justify="right")
    for policy in sweep.policies:
        table.add_column(policy, justify="right")
    def fmt(v: float) -> str:
        return f"{v / 100:,.0f}" if metric == "cost_fen" else f"{v:,.3f}"

    for r in rows:
        cells = []
        for policy in sweep.policies:
            m = r[policy]
            cells.append(escape(fmt(m["mean"]) + (f" [{fmt(m['min'])}–{fmt(m['max'])}]"
                                                  if r["points"] > 1 else "")))
        table.add_row(escape(str(r["x"])), str(r["points"]), *cells)
    console.print(table)
    if metric == "cost_fen":
        console.print("cost in yuan 元", highlight=False)
    write(out, sweep, results, metric, xp)
    console.print(f"{n} points × {len(sweep.policies)} policies in {elapsed:.1f} s on {where} "
                  f"→ {out}/sweep.json, sweep.csv, sweep.png", highlight=False)


@simulate_app.command("burn")
def burn_cmd(
    scenario: Path = typer.Argument(..., help="a scenario file (TOML or YAML)"),
    policy: str = typer.Option("suanli", "--policy", help="the placement policy the twin runs"),
    budget: str = typer.Option("20000000", "--budget", "--budget-yuan",
                               help="the programme's pool in yuan"),
    rules: str | None = typer.Option(None, help="voucher rules as JSON (default: 20 %, cap 1,000,000 "
                                     "yuan), e.g. '{\"ratio_bp\": 3000}'"),
    year: int = typer.Option(2026, help="the programme's year"),
    out: Path | None = typer.Option(None, "--out", help="write burn.json here"),
) -> None:
    """Forecast a voucher programme's burn on the twin: the month its pool runs out. 算力券消耗预测"""
    import json

    from ..sim.burn import Programme, forecast
    from ..sim.scenario import ScenarioError
    from ..sim.twin import POLICY_NAMES, run_twin
    from ..vouchers import Rules, RulesError
    from .format import yuan
    from .money import fen_of

    if policy not in POLICY_NAMES:
        fail(f"unknown policy {policy}; choose from {', '.join(POLICY_NAMES)}")
    try:
        parsed = Rules.from_dict(json.loads(rules) if rules else {})
    except (ValueError, RulesError) as exc:
        fail(f"rules: {exc}")
    prog = Programme(fen_of(budget, flag="--budget"), parsed, year)
    sc = _load_scenario(scenario)
    with progress_bar(len(sc.jobs), f"simulating {sc.name}") as update:
        try:
            run = run_twin(sc, policy, progress=update)
        except ScenarioError as exc:
            fail(str(exc))
    data = forecast(run, prog)
    t = Table(title=f"voucher burn 算力券消耗 · {sc.name} · {policy} · budget {yuan(prog.budget_fen)}")
    for col in ("month", "bills", "subsidy", "jobs subsidised", "pool left"):
        t.add_column(col, justify="right")
    for m in data["months"]:
        t.add_row(m["month"], yuan(m["bills_fen"]), yuan(m["subsidy_fen"]), f"{m['subsidised_jobs']:,}",
                  yuan(m["left_fen"]))
    console.print(t)
    if data["runs_out_month"]:
        console.print(f"with this trace and these rules, the pool runs out in month "
                      f"{data['runs_out_in_month_n']} ({data['runs_out_month']})", highlight=False)
    else:
        console.print(f"the pool lasts the year: {yuan(data['left_at_year_end_fen'])} left", highlight=False)
    console.print(f"{data['tenants']} tenants subsidised, {data['tenants_at_cap']} at their cap; the "
                  f"{sc.window_days:g}-day window replayed {data['replays']}× to fill the year",
                  highlight=False)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "burn.json").write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
