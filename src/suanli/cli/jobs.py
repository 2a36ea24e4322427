"""`suanli job ...`: submit, list, show, logs, cancel, watch, placement."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from ..client import ApiError, Client
from ..domain.errors import InvalidInput
from ..domain.task import check_env
from .common import (
    Output,
    OutputOpt,
    api_errors,
    center_slugs,
    client,
    console,
    emit_json,
    err_console,
    fail,
    patiently,
    run,
    submitted,
    tenant_name,
    tenant_names,
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
from .tasks import (
    TaskSpec,
    dag_specs,
    dry_run,
    fill_artifacts,
    packed,
    print_events,
    send,
    show_failure,
    submit_task_file,
    uploads_of,
    watch_dag,
)

job_app = typer.Typer(help="Jobs. 作业")
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}
STATE_STYLE = {"QUEUED": "yellow", "PLACED": "cyan", "RUNNING": "blue", "COMPLETED": "green",
               "FAILED": "red", "CANCELLED": "magenta", "TIMEOUT": "red"}


def task_lines(job: dict[str, Any]) -> list[str]:
    """What the job brought and keeps (its task file's keys), for `job show`; none for a plain
    command."""
    lines = []
    if job.get("array_id") is not None:
        lines.append(f"  array:    task {job.get('array_index')} of array {job['array_id']} "
                     "(SUANLI_ARRAY_INDEX)")
    if job.get("workdir"):
        lines.append(f"  workdir:  artifact {job['workdir'][:12]}")
    for item in job.get("inputs") or []:
        src = (f"dataset {item['dataset']}" if item.get("dataset") else
               f"artifact {str(item.get('artifact', ''))[:12]}")
        lines.append(f"  input:    {src} at {item.get('path') or '.'}")
    if job.get("environment"):
        lines.append(f"  environment: {job['environment']}")
    cons = job.get("constraints") or {}
    if cons:
        parts = ([f"arch {cons['arch']}"] if cons.get("arch") else []) + \
            [f"feature {f}" for f in cons.get("features") or []]
        lines.append("  requires: " + ", ".join(parts))
    if job.get("env_names"):
        lines.append("  env:      " + ", ".join(job["env_names"]))
    if job.get("setup"):
        first = job["setup"].strip().splitlines() or [""]
        lines.append(f"  setup:    {first[0][:100]}" + (" …" if len(first) > 1 else ""))
    if job.get("outputs"):
        keep = ", ".join(job["outputs"])
        lines.append(f"  outputs:  {keep}" + (f"  (suanli job download {job['id']})"
                                             if job["state"] in TERMINAL else ""))
    return lines


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
    file: Path | None = typer.Option(None, "--file", "-f", help="submit the task in this YAML "
                                     "file (see docs/tasks.md), as `suanli run FILE`"),
    env: list[str] = typer.Option([], "--env", help="NAME=value for the job (repeatable)"),
    workdir: Path | None = typer.Option(None, "--workdir", help="with -f: the folder to upload "
                                        "as the work folder"),
    array: str | None = typer.Option(None, "--array", help="with -f: one job per index, e.g. "
                                     "0-99%10 (at most 10 at once)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="with -f: print what would be "
                                 "uploaded, where it would go and what it would cost; submit "
                                 "nothing"),
    center: list[str] = typer.Option([], "--center", help="run only at this center (slug) or "
                                     "pool (center/pool); repeatable"),
    exclude_center: list[str] = typer.Option([], "--exclude-center", help="never at this center "
                                             "or pool; repeatable"),
    output: Output = OutputOpt,
) -> None:
    """Submit a job: suanli job submit [OPTIONS] -- COMMAND [ARGS]...  or  -f task.yaml  or
    --dag dag.yaml"""
    if file is not None:
        if command or dag is not None:
            fail("give either -f FILE, --dag FILE or a command, not two of them")
        given = {"--name": name is not None, "--device": device != "cpu", "--model": model is not None,
                 "--units": units != 1, "--nodes": nodes != 1, "--memory-gb": memory_gb is not None,
                 "--walltime": walltime != "1h", "--precision": precision != "fp32",
                 "--policy": policy != "balanced", "--priority": priority != 0,
                 "--domestic-only": domestic_only, "--district": district is not None,
                 "--deadline": deadline is not None, "--budget-fen": budget_fen is not None,
                 "--data-site": data_site is not None, "--data-gb": data_gb is not None,
                 "--no-requeue": no_requeue, "--center": bool(center),
                 "--exclude-center": bool(exclude_center)}
        if any(given.values()):
            flags = ", ".join(f for f, on in given.items() if on)
            fail(f"with -f, set {flags} in the task file (only --env, --workdir, --array, "
                 "--dry-run and --wait go with it)")
        return submit_task_file(file, env=env, workdir=workdir, array=array, dry=dry_run,
                                wait=wait, output=output)
    if workdir is not None or array is not None or (dry_run and dag is None):
        fail("--workdir and --array go with a task file (-f task.yaml); --dry-run with -f or "
             "--dag")
    if dag is not None:
        if command:
            fail("give either --dag FILE or a command, not both")
        return submit_dag_file(dag, wait=wait, output=output, dry=dry_run)
    if not command:
        fail("give the command to run after --, or -f task.yaml, or --dag FILE")
    if any("=" not in item for item in env):
        fail("--env: give NAME=value")
    try:
        env_map = check_env(dict(item.partition("=")[::2] for item in env), field_name="--env")
    except InvalidInput as exc:
        fail(exc.message)
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
    if center:
        body["centers"] = center
    if exclude_center:
        body["exclude_centers"] = exclude_center
    if env_map:
        body["env"] = env_map
    job = run(lambda c: submitted(c, body))
    finish_submitted(job, wait=wait, output=output, note=f"job {job['id']} submitted")


def finish_submitted(job: dict[str, Any], *, wait: bool, output: Output, note: str = "") -> None:
    """After a submission: print the new job's id (or its JSON), or with `wait` follow it to its
    end and exit with its exit code."""
    if not wait:
        if output is Output.json:
            return emit_json(job)
        print(job["id"])
        return
    progress = console if output is Output.table else err_console
    if note:
        progress.print(note, style="dim")
    final = follow(job["id"], logs=output is Output.table, out=progress)
    if output is Output.json:
        emit_json(final)
    raise typer.Exit(exit_code_of(final))


DAG_TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


def dag_body(path: Path) -> tuple[dict[str, Any], list[tuple[str, TaskSpec]]]:
    """The API body from a DAG file (YAML) and its stages' tasks. A stage takes a task file's
    keys (docs/tasks.md), and `depends_on`; `command` is a list, or a string run by `sh -c`;
    `run` is a bash script; an input `{stage: NAME, path: DIR}` is the outputs of NAME, a stage
    it depends on; `workdir` at the top is every stage's work folder:

        name: pipeline
        workdir: .
        stages:
          - name: preprocess
            run: python3 prep.py
            units: 8
            walltime: 30m
          - name: train
            depends_on: [preprocess]
            inputs: [{stage: preprocess, path: .}]
            run: python3 train.py
            walltime: 4h
    """
    head, specs = dag_specs(path)
    return {**head, "stages": [spec.body for _, spec in specs]}, specs


def _dag_table(dag: dict[str, Any]) -> Table:
    t = Table(title=f"DAG {dag['id']} {dag['name']}  {_state(dag['state'])}  [dim]{dag['reason']}[/]")
    for col in ("stage", "depends on", "state", "job", "device", "units", "center"):
        t.add_column(col)
    for st in dag["stages"]:
        job = str(st["job_id"] or "-")
        if st.get("array"):  # an array stage: its array and how many of its tasks completed
            job = (f"array {st['array_id']}, " if st.get("array_id") else "") + \
                f"{st.get('done', 0)}/{st.get('tasks', 0)} done"
        t.add_row(st["name"], ", ".join(st["depends_on"]) or "-", _state(st["state"]),
                  job, st["device"], str(st["units"]), st.get("center") or "-")
    return t


def submit_dag_file(path: Path, *, wait: bool, output: Output, dry: bool = False) -> None:
    body, specs = dag_body(path)
    uploads = uploads_of([spec for _, spec in specs])
    progress = console if output is Output.table else err_console
    with packed(uploads), api_errors(), client() as c:
        for _, spec in specs:
            fill_artifacts(spec)
        if dry:
            return dry_run(c, [(f"stage {name}", spec) for name, spec in specs], uploads)
        send(c, uploads, progress)
        dag = c.submit_dag(body)
    if wait:
        progress.print(f"DAG {dag['id']} submitted", style="dim")
        with api_errors(), client() as c:
            dag = watch_dag(c, dag, progress)
            failed = [st for st in dag["stages"] if st.get("jobs")
                      and st["state"] in ("FAILED", "TIMEOUT")]
            for st in failed[:1]:  # an array stage: its first task that failed
                job = next((j for j in (c.get_job(i) for i in st["jobs"])
                            if j["state"] in ("FAILED", "TIMEOUT")), None)
                if job is not None:
                    show_failure(c, job, progress)
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


def follow(job_id: int, *, logs: bool = True, poll_s: float = 0.5,
           out: Console | None = None) -> dict[str, Any]:
    """Report each state change (with its time, and where it runs) to `out`, stream the job's
    stdout to ours when `logs`, until the job ends; after a failure, the end of its stderr."""
    out = out or console
    offsets: dict[int, int] = {}
    seen = 0
    place: list[str] = []
    with api_errors(), client() as c:
        while True:
            job = patiently(lambda: c.get_job(job_id))  # a database restart: wait it out
            seen = print_events(job, seen, out, place)
            if logs and job.get("current_run_id"):
                _pump_logs(c, job_id, job["current_run_id"], offsets)
            if job["state"] in TERMINAL:
                if logs and job.get("current_run_id"):
                    _pump_logs(c, job_id, job["current_run_id"], offsets)
                show_failure(c, job, out)
                return dict(job)
            time.sleep(poll_s)


def _pump_logs(c: Client, job_id: int, run_id: int, offsets: dict[int, int]) -> None:
    while True:
        chunk = patiently(lambda: c.job_logs(job_id, offset=offsets.get(run_id, 0), run_id=run_id))
        if chunk["data"]:
            sys.stdout.write(chunk["data"])
            sys.stdout.flush()
        offsets[run_id] = chunk["next_offset"]
        if chunk["next_offset"] == chunk["offset"]:
            return


def _jobs_table(items: list[dict[str, Any]], title: str = "jobs 作业",
               tenants: dict[int, str] | None = None) -> Table:
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
                  str(res["units"]), tenant_name(tenants or {}, j["tenant_id"]),
                  when(j["submitted_at"]),
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
    console.print(_jobs_table(page["items"],
                              tenants=run(tenant_names) if page["items"] else {}))
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
    for line in task_lines(job):
        console.print(line, highlight=False, markup=False)
    console.print(f"  needs:    {res['units']} {res['device']}"
                  f"{' ' + res['model'] if res.get('model') else ''} on {res['nodes']} node(s), "
                  f"walltime {duration(job['walltime_s'])}, {job['precision']}, "
                  f"policy {job['policy']}, priority {job['priority']}"
                  f"{', domestic only' if job['domestic_only'] else ''}")
    limits = [f"budget {yuan(job['budget_fen'])}" if job.get("budget_fen") is not None else "",
              f"deadline {when(job['deadline'])}" if job.get("deadline") else ""]
    if any(limits):
        console.print("  limits:   " + ", ".join(x for x in limits if x), highlight=False)
    part = [f"DAG {job['dag_id']}, stage {job['dag_stage']}" if job.get("dag_id") else "",
            f"array {job['array_id']}, task {job['array_index']}" if job.get("array_id") else ""]
    if any(part):  # suanli dag show N / GET /api/v1/arrays/N
        console.print("  part of:  " + ", ".join(x for x in part if x), highlight=False)
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


@job_app.command("resubmit")
def resubmit(job_id: int = typer.Argument(...),
             wait: bool = typer.Option(False, "--wait", help="follow the new job to its end"),
             output: Output = OutputOpt) -> None:
    """Submit the same task again as a new job (after a failure, say)."""
    job = run(lambda c: c.resubmit_job(job_id))
    finish_submitted(job, wait=wait, output=output,
                     note=f"job {job['id']} submitted (again from job {job_id})")


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
