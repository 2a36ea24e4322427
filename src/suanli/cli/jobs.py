"""`suanli job ...`: submit, list, show, logs, cancel, watch, placement."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.live import Live
from rich.table import Table

from ..client import ApiError, Client
from .common import (
    Output,
    OutputOpt,
    api_errors,
    center_slugs,
    client,
    console,
    emit_json,
    fail,
    run,
)
from .format import (
    duration,
    fen_from_yuan,
    hours,
    kwh,
    number,
    parse_time,
    parse_walltime_text,
    pfh,
    when,
    yuan,
)

job_app = typer.Typer(help="Jobs. 作业")
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}
STATE_STYLE = {"QUEUED": "yellow", "PLACED": "cyan", "RUNNING": "blue", "COMPLETED": "green",
               "FAILED": "red", "CANCELLED": "magenta", "TIMEOUT": "red"}


def _state(s: str) -> str:
    return f"[{STATE_STYLE.get(s, 'white')}]{s}[/]"


def exit_code_of(job: dict[str, Any]) -> int:
    """The process exit code a `--wait` caller gets: the job's own, or 124/130/1 like a shell."""
    if job["state"] == "COMPLETED":
        return 0
    if job["state"] == "TIMEOUT":
        return 124
    if job["state"] == "CANCELLED":
        return 130
    code = job.get("exit_code")
    if isinstance(code, int) and 0 < code < 256:
        return code
    return 1


@job_app.command("submit", context_settings={"allow_interspersed_args": False})
def submit(
    command: list[str] | None = typer.Argument(None, help="the program and its arguments, after --"),
    dag: Path | None = typer.Option(None, "--dag", help="submit a DAG job from this YAML file "
                                    "(stages with depends_on) instead of one command"),
    name: str | None = typer.Option(None, help="job name (default: the program)"),
    device: str = typer.Option("cpu", help="cpu, gpu or npu"),
    model: str | None = typer.Option(None, help="device model, e.g. 'Ascend 910B'"),
    units: int = typer.Option(1, help="units in total (cores, GPUs or NPUs)"),
    nodes: int = typer.Option(1, help="nodes (a gang job gets all of them at once)"),
    memory_gb: int | None = typer.Option(None, help="memory per node in GB"),
    walltime: str = typer.Option("1h", help="time limit: 3600 (seconds), 30m, 2h, 1h30m, or "
                                 "Slurm's 01:00:00, 1-12:00:00"),
    precision: str = typer.Option("fp32", help="fp64, fp32, fp16 or int8"),
    policy: str = typer.Option("balanced", help="fastest, cheapest, greenest or balanced"),
    priority: int = typer.Option(0, help="higher runs first (±1000)"),
    domestic_only: bool = typer.Option(False, "--domestic-only", help="only 国产 devices"),
    district: str | None = typer.Option(None, help="only centers in this district"),
    deadline: str | None = typer.Option(None, help="finish by: 2026-12-01T18:00 (in the display "
                                        "zone, CST unless --tz) or with a zone, e.g. ...T00:00Z"),
    budget: str | None = typer.Option(None, "--budget", help="spending cap in yuan, e.g. 120 or "
                                      "120.50 (at most 2 decimals)"),
    budget_fen: int | None = typer.Option(None, "--budget-fen", hidden=True,
                                          help="spending cap in fen (old flag; use --budget)"),
    data_site: str | None = typer.Option(None, help="the center (slug) holding the input data"),
    data_gb: float | None = typer.Option(None, help="the input data's size in GB (with --data-site)"),
    no_requeue: bool = typer.Option(False, "--no-requeue", help="fail instead of re-placing "
                                    "when the center fails"),
    wait: bool = typer.Option(False, "--wait", help="follow the job to its end and exit with "
                              "its exit code"),
    output: Output = OutputOpt,
) -> None:
    """Submit a job: suanli job submit [OPTIONS] -- COMMAND [ARGS]...  or  --dag dag.yaml"""
    if dag is not None:
        if command:
            fail("give either --dag FILE or a command, not both")
        return submit_dag_file(dag, wait=wait, output=output)
    if not command:
        fail("give the command to run after --, or --dag FILE")
    try:
        walltime_s = parse_walltime_text(walltime)
        if budget is not None:
            if budget_fen is not None:
                raise ValueError("give --budget (yuan) or --budget-fen, not both")
            budget_fen = fen_from_yuan(budget, "--budget")
        deadline = parse_time(deadline, "--deadline").isoformat() if deadline else None
    except ValueError as exc:
        fail(str(exc))
    body = {
        "name": name or command[0].rsplit("/", 1)[-1],
        "command": command,
        "resources": {"device": device, "model": model, "units": units, "nodes": nodes,
                      "memory_gb": memory_gb},
        "walltime_s": walltime_s, "precision": precision, "policy": policy,
        "priority": priority, "domestic_only": domestic_only, "district": district,
        "deadline": deadline, "budget_fen": budget_fen, "requeue": not no_requeue,
        "data_site": data_site, "data_gb": data_gb,
    }
    job = run(lambda c: c.submit_job(body))
    if not wait:
        if output is Output.json:
            return emit_json(job)
        print(job["id"])
        return
    err = console if output is Output.table else None
    if err is not None:
        console.print(f"job {job['id']} submitted", style="dim")
    final = follow(job["id"], logs=output is Output.table)
    if output is Output.json:
        emit_json(final)
    raise typer.Exit(exit_code_of(final))


DAG_TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
STAGE_KEYS = {"name", "depends_on", "command", "device", "model", "units", "nodes", "memory_gb",
              "walltime", "walltime_s", "precision", "policy", "priority", "domestic_only",
              "district", "deadline", "budget", "budget_fen", "requeue", "resources", "data_site",
              "data_gb"}


def dag_body(path: Path) -> dict[str, Any]:
    """The API body from a DAG file (YAML). A stage takes the `job submit` options as keys;
    `command` is a list, or a string run by `sh -c`; `walltime` accepts 30m, 2h, ...:

        name: pipeline
        stages:
          - name: preprocess
            command: ["python", "prep.py"]
            device: cpu
            units: 8
            walltime: 30m
          - name: train
            depends_on: [preprocess]
            command: python train.py
            device: npu
            units: 8
            walltime: 4h
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    except yaml.YAMLError as exc:
        fail(f"{path}: not valid YAML: {exc}")
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list) or not data["stages"]:
        fail(f"{path}: a DAG file has a name and a list of stages")
    stages = []
    for i, st in enumerate(data["stages"]):
        if not isinstance(st, dict):
            fail(f"{path}: stages[{i}] is not a table of options")
        unknown = sorted(set(st) - STAGE_KEYS)
        if unknown:
            fail(f"{path}: stages[{i}] has unknown keys {unknown}")
        cmd = st.get("command")
        if isinstance(cmd, str):
            cmd = ["sh", "-c", cmd]
        body: dict[str, Any] = {"name": st.get("name"), "command": cmd,
                                "depends_on": st.get("depends_on") or []}
        res = dict(st.get("resources") or {})
        for key in ("device", "model", "units", "nodes", "memory_gb"):
            if key in st:
                res[key] = st[key]
        res.setdefault("device", "cpu")
        body["resources"] = res
        if "walltime" in st:
            try:
                body["walltime_s"] = parse_walltime_text(str(st["walltime"]),
                                                         f"stages[{i}].walltime")
            except ValueError as exc:
                fail(f"{path}: {exc}")
        if "budget" in st:
            try:
                body["budget_fen"] = fen_from_yuan(str(st["budget"]), f"stages[{i}].budget")
            except ValueError as exc:
                fail(f"{path}: {exc}")
        for key in ("walltime_s", "precision", "policy", "priority", "domestic_only", "district",
                    "deadline", "budget_fen", "requeue", "data_site", "data_gb"):
            if key in st:
                body[key] = st[key]
        stages.append(body)
    return {"name": data.get("name") or path.stem, "stages": stages}


def _dag_table(dag: dict[str, Any]) -> Table:
    t = Table(title=f"DAG {dag['id']} {dag['name']}  {_state(dag['state'])}  [dim]{dag['reason']}[/]")
    for col in ("stage", "depends on", "state", "job", "device", "units", "center"):
        t.add_column(col)
    for st in dag["stages"]:
        t.add_row(st["name"], ", ".join(st["depends_on"]) or "-", _state(st["state"]),
                  str(st["job_id"] or "-"), st["device"], str(st["units"]), st.get("center") or "-")
    return t


def submit_dag_file(path: Path, *, wait: bool, output: Output) -> None:
    body = dag_body(path)
    dag = run(lambda c: c.submit_dag(body))
    if wait:
        with api_errors(), client() as c:
            while dag["state"] not in DAG_TERMINAL:
                time.sleep(0.5)
                dag = c.get_dag(dag["id"])
    if output is Output.json:
        emit_json(dag)
    else:
        console.print(_dag_table(dag))
    if wait and dag["state"] != "COMPLETED":
        raise typer.Exit(1)


dag_app = typer.Typer(help="DAG jobs: stages with dependencies. 工作流", no_args_is_help=True)


@dag_app.command("list")
def dag_list(limit: int = typer.Option(20, help="how many"), output: Output = OutputOpt) -> None:
    """List DAG jobs, newest first."""
    page = run(lambda c: c.list_dags(limit=limit))
    if output is Output.json:
        return emit_json(page)
    t = Table(title="DAG jobs 工作流")
    for col in ("id", "name", "state", "stages", "submitted", "reason"):
        t.add_column(col)
    for d in page["items"]:
        done = sum(1 for st in d["stages"] if st["state"] == "COMPLETED")
        t.add_row(str(d["id"]), d["name"], _state(d["state"]), f"{done}/{len(d['stages'])}",
                  when(d["submitted_at"]), d["reason"])
    console.print(t)


@dag_app.command("show")
def dag_show(dag_id: int = typer.Argument(...), output: Output = OutputOpt) -> None:
    """Show a DAG job and every stage's state."""
    dag = run(lambda c: c.get_dag(dag_id))
    if output is Output.json:
        return emit_json(dag)
    console.print(_dag_table(dag))


@dag_app.command("cancel")
def dag_cancel(dag_id: int = typer.Argument(...), output: Output = OutputOpt) -> None:
    """Cancel a DAG job: its stages that have not ended are cancelled."""
    dag = run(lambda c: c.cancel_dag(dag_id))
    if output is Output.json:
        return emit_json(dag)
    console.print(_dag_table(dag))


def follow(job_id: int, *, logs: bool = True, poll_s: float = 0.5) -> dict[str, Any]:
    """Stream a job's stdout to ours and report state changes until it ends."""
    offsets: dict[int, int] = {}
    last_state = ""
    with api_errors(), client() as c:
        while True:
            job = c.get_job(job_id)
            if job["state"] != last_state:
                last_state = job["state"]
                where = f" on {job['center']}" if job.get("center") else ""
                if logs:
                    console.print(f"[dim]job {job_id}:[/] {_state(last_state)}{where} "
                                  f"[dim]{job['state_reason']}[/]")
            if logs and job.get("current_run_id"):
                _pump_logs(c, job_id, job["current_run_id"], offsets)
            if job["state"] in TERMINAL:
                if logs and job.get("current_run_id"):
                    _pump_logs(c, job_id, job["current_run_id"], offsets)
                return dict(job)
            time.sleep(poll_s)


def _pump_logs(c: Client, job_id: int, run_id: int, offsets: dict[int, int]) -> None:
    while True:
        chunk = c.job_logs(job_id, offset=offsets.get(run_id, 0), run_id=run_id)
        if chunk["data"]:
            sys.stdout.write(chunk["data"])
            sys.stdout.flush()
        offsets[run_id] = chunk["next_offset"]
        if chunk["next_offset"] == chunk["offset"]:
            return


def _jobs_table(items: list[dict[str, Any]], title: str = "jobs 作业") -> Table:
    t = Table(title=title)
    for col in ("id", "name", "state", "center", "device", "units", "tenant", "submitted",
                "ran", "queue · est. start"):
        t.add_column(col, no_wrap=col == "submitted")
    for j in items:
        ran = None
        if j["started_at"]:
            from datetime import UTC, datetime

            end = datetime.fromisoformat(j["finished_at"]) if j["finished_at"] \
                else datetime.now(UTC)
            ran = (end - datetime.fromisoformat(j["started_at"])).total_seconds()
        res = j["resources"]
        dev = res["device"] + (f" {res['model']}" if res.get("model") else "")
        t.add_row(str(j["id"]), j["name"], _state(j["state"]), j.get("center") or "-", dev,
                  str(res["units"]), str(j["tenant_id"]), when(j["submitted_at"]),
                  duration(ran), _queue_text(j))
    return t


def _queue_text(job: dict[str, Any]) -> str:
    """`center/pool #3 · ~12:40` for a queued job committed to a pool, else empty."""
    q = job.get("queue")
    if not q:
        return ""
    start = when(q["estimated_start"]) if q.get("estimated_start") else "?"
    return f"{q['pool']} #{q['position']} · ~{start}"


@job_app.command("list")
def list_jobs(state: str | None = typer.Option(None, help="only jobs in this state: queued, "
                                               "placed, running, completed, failed, cancelled, "
                                               "timeout"),
              name: str | None = typer.Option(None, help="only jobs whose name contains this, or "
                                              "matches it with * and ? (e.g. 'train-*')"),
              limit: int = typer.Option(20, help="how many"),
              offset: int = typer.Option(0, help="skip this many"),
              output: Output = OutputOpt) -> None:
    """List jobs, newest first (filtered by the server)."""
    if state is not None and state.upper() not in STATE_STYLE:
        fail(f"--state: {state!r} is not a job state; choose from "
             f"{', '.join(s.lower() for s in STATE_STYLE)}")
    page = run(lambda c: c.list_jobs(state=state.upper() if state else None, name=name,
                                     limit=limit, offset=offset))
    if output is Output.json:
        return emit_json(page)
    console.print(_jobs_table(page["items"]))
    console.print(f"[dim]{len(page['items'])} of {page['total']}[/]")


@job_app.command("show")
def show(job_id: int = typer.Argument(...), output: Output = OutputOpt) -> None:
    """Show a job: its request, state, history and runs."""
    job = run(lambda c: c.get_job(job_id))
    if output is Output.json:
        return emit_json(job)
    res = job["resources"]
    console.print(f"[bold]job {job['id']}[/] {job['name']}  {_state(job['state'])}  "
                  f"[dim]{job['state_reason']}[/]")
    console.print(f"  command:  {' '.join(job['command'])}")
    console.print(f"  needs:    {res['units']} {res['device']}"
                  f"{' ' + res['model'] if res.get('model') else ''} on {res['nodes']} node(s), "
                  f"walltime {duration(job['walltime_s'])}, {job['precision']}, "
                  f"policy {job['policy']}, priority {job['priority']}"
                  f"{', domestic only' if job['domestic_only'] else ''}")
    limits = [f"budget {yuan(job['budget_fen'])}" if job.get("budget_fen") is not None else "",
              f"deadline {when(job['deadline'])}" if job.get("deadline") else ""]
    if any(limits):
        console.print("  limits:   " + ", ".join(x for x in limits if x), highlight=False)
    console.print(f"  center:   {job.get('center') or '-'}   exit code: "
                  f"{job['exit_code'] if job['exit_code'] is not None else '-'}")
    if job.get("queue"):
        q = job["queue"]
        est = when(q["estimated_start"]) if q.get("estimated_start") else "unknown (far back in the queue)"
        console.print(f"  queued:   at {q['pool']}, #{q['position']} in its queue; estimated start {est} "
                      "(if running jobs use their whole walltime) 预计开始")
    h = Table(title="history 历史")
    for col in ("at", "from", "to", "reason"):
        h.add_column(col)
    for e in job["history"]:
        h.add_row(when(e["at"]), e["from_state"] or "", _state(e["to_state"]), e["reason"])
    console.print(h)
    if job["runs"]:
        slugs = run(center_slugs)
        r = Table(title="runs 运行")
        for col in ("run", "attempt", "center", "state", "devices", "started", "ended", "exit"):
            r.add_column(col)
        for x in job["runs"]:
            r.add_row(str(x["id"]), str(x["attempt"]), slugs.get(x["center_id"], "?"), x["state"],
                      ",".join(map(str, x["devices"][:16])) + ("…" if len(x["devices"]) > 16
                                                               else ""),
                      when(x["started_at"]), when(x["ended_at"]),
                      str(x["exit_code"]) if x["exit_code"] is not None else "-")
        console.print(r)


@job_app.command("placement")
def placement(job_id: int = typer.Argument(...), output: Output = OutputOpt) -> None:
    """Why the job went where it went: every candidate pool and its score."""
    data = run(lambda c: c.job_placement(job_id))
    if output is Output.json:
        return emit_json(data)
    cur = data.get("current")
    if not cur:
        console.print("no placement yet")
        return
    console.print(f"[bold]job {job_id}[/] policy [bold]{cur['policy']}[/]: {cur['message']}")
    walltime = run(lambda c: c.get_job(job_id))["walltime_s"]
    slow = False
    t = Table(title="candidates 候选资源池")
    for col in ("pool", "feasible", "fits now", "wait", "run", "cost", "kWh", "score", "why not"):
        t.add_column(col)
    cands = sorted(cur["candidates"], key=lambda x: (not x["feasible"],
                                                     x["score"] if x["score"] is not None
                                                     else float("inf")))
    for x in cands:
        mark = "[bold green]→ " if x["chosen"] else ""
        over = bool(x.get("beyond_walltime")) or (x["runtime_s"] is not None
                                                  and x["runtime_s"] > walltime)
        slow = slow or over
        t.add_row(mark + x["pool"], "yes" if x["feasible"] else "[red]no[/]",
                  "yes" if x["fits_now"] else "", duration(x["wait_s"]),
                  duration(x["runtime_s"]) + ("*" if over else ""), yuan(x["cost_fen"]),
                  kwh(x["energy_wh"]), number(x["score"], sig=4),
                  "; ".join(x["reasons"]))
    console.print(t)
    if slow:
        console.print(f"[dim]* beyond the walltime {duration(walltime)}: the walltime is read as "
                      "the run time on the fastest pool that could run the job; a slower device "
                      "needs longer for the same work, and the job is stopped at its walltime "
                      "there.[/]", highlight=False)


@job_app.command("logs")
def logs(job_id: int = typer.Argument(...),
         stderr: bool = typer.Option(False, "--stderr", help="stderr instead of stdout"),
         follow_: bool = typer.Option(False, "--follow", "-f", help="keep following"),
         offset: int = typer.Option(0, help="start at this byte offset"),
         output: Output = OutputOpt,
         ) -> None:
    """Print a job's log (with -o json: one chunk and its next offset)."""
    stream = "stderr" if stderr else "stdout"
    if output is Output.json:
        return emit_json(run(lambda c: c.job_logs(job_id, stream=stream, offset=offset)))
    with api_errors(), client() as c:
        while True:
            chunk = c.job_logs(job_id, stream=stream, offset=offset)
            sys.stdout.write(chunk["data"])
            sys.stdout.flush()
            offset = chunk["next_offset"]
            if chunk["next_offset"] > chunk["offset"]:
                continue
            if not follow_ or chunk["eof"]:
                return
            time.sleep(0.5)


@job_app.command("cancel")
def cancel(job_id: int = typer.Argument(...)) -> None:
    """Cancel a job (a running job gets SIGTERM, then SIGKILL after a grace period)."""
    job = run(lambda c: c.cancel_job(job_id))
    console.print(f"job {job_id}: {_state(job['state'])} [dim]{job['state_reason']}[/]")


@job_app.command("watch")
def watch(job_id: int = typer.Argument(...), interval: float = typer.Option(1.0)) -> None:
    """A live view of a job until it ends."""
    def render(job: dict[str, Any], usage: dict[str, Any] | None) -> Table:
        t = Table(title=f"job {job['id']} {job['name']}", show_header=False)
        t.add_row("state", _state(job["state"]))
        t.add_row("reason", job["state_reason"])
        t.add_row("center", job.get("center") or "-")
        t.add_row("started", when(job["started_at"]))
        t.add_row("finished", when(job["finished_at"]))
        if usage:
            tot = usage["totals"]
            t.add_row("metered", f"{hours(tot['unit_hours'])} unit·h, "
                      f"{pfh(tot['pflops_hours'])} P·h, {yuan(tot['amount_fen'])}")
        return t

    with api_errors(), client() as c, Live(console=console, auto_refresh=False) as live:
        while True:
            job = c.get_job(job_id)
            try:
                use = c.usage(job_id=job_id) if job["state"] in TERMINAL else None
            except ApiError:
                use = None
            live.update(render(job, use), refresh=True)
            if job["state"] in TERMINAL:
                break
            time.sleep(interval)
    raise typer.Exit(exit_code_of(job))
