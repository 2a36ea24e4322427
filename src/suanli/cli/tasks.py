"""Task files: `suanli run task.yaml` (and `job submit -f`). A task is a job that brings its own
work: a folder packed and uploaded once (by content), inputs, outputs to keep, variables, a setup
script and a `run` script. The reference is docs/tasks.md."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console

from ..artifacts.archive import PackedFile
from ..client import ApiError, Client
from ..client.uploads import Packed, pack_local, send_packed
from ..domain.errors import InvalidInput
from ..domain.money import parse_yuan, yuan
from ..domain.sizes import plural
from ..domain.task import (
    check_constraints,
    check_env,
    check_relative_path,
    parse_array,
    parse_walltime,
)
from .common import (
    Output,
    api_errors,
    client,
    console,
    emit_json,
    err_console,
    fail,
    submitted,
)
from .format import duration, parse_duration, when

RESOURCE_KEYS = ("device", "model", "units", "nodes", "memory_gb")
# The `job submit` options, by the name a file uses (walltime and budget are converted).
OPTION_KEYS = ("walltime", "precision", "policy", "priority", "domestic_only", "district",
               "deadline", "budget", "requeue", "data_site", "data_gb", "centers",
               "exclude_centers")
TASK_KEYS = frozenset({"name", "resources", "workdir", "inputs", "outputs", "env", "setup", "run",
                       "command", "array", "constraints", "environment",
                       *RESOURCE_KEYS, *OPTION_KEYS})
# A DAG stage: the same keys, plus its dependencies; and two older spellings.
STAGE_KEYS = TASK_KEYS | {"depends_on", "walltime_s", "budget_fen"}
DAG_KEYS = frozenset({"name", "stages", "workdir"})
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}
STDERR_TAIL = 20


@dataclass
class Upload:
    """A local folder to pack and store as an artifact (the work folder or an input)."""

    label: str  # workdir, inputs[0]
    folder: Path
    kind: str  # workdir: a packed folder, unpacked where it goes
    packed: Packed | None = None
    sha256: str = ""
    size: int = 0
    files: list[PackedFile] = field(default_factory=list)


@dataclass
class TaskSpec:
    """A task file read: the API body without its artifacts, and what to upload for them."""

    body: dict[str, Any]
    workdir: Upload | None = None
    inputs: dict[int, Upload] = field(default_factory=dict)  # inputs[i] given as a local path


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    except yaml.YAMLError as exc:
        fail(f"{path}: not valid YAML: {exc}")
    if not isinstance(data, dict):
        fail(f"{path}: a task file is a map of keys (name, resources, run, ...; see docs/tasks.md)")
    return data


def _unknown(where: str, data: dict[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(str(k) for k in set(data) - known)
    if unknown:
        fail(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
             f"(known: {', '.join(sorted(known))})")


def _folder(where: str, value: object, base: Path) -> Path:
    if not isinstance(value, str) or not value.strip():
        fail(f"{where}: a local folder (relative to the file's folder), not {value!r}")
    folder = (base / value).resolve()
    if not folder.is_dir():
        fail(f"{where}: {folder} is not a folder")
    return folder


def task_spec(data: dict[str, Any], *, where: str, base: Path, known: frozenset[str] = TASK_KEYS,
              default_workdir: object = ".", default_name: str = "task",
              stage_inputs: bool = False) -> TaskSpec:
    """The API body of one task (or DAG stage) from its file's keys; `base` is the folder paths
    are relative to. Every problem names the key (`where.key`) and stops the command. With
    `stage_inputs` (a DAG stage) an input may be `{stage: NAME, path: DIR}`."""
    _unknown(where, data, known)

    def bad(exc: InvalidInput) -> None:
        fail(f"{where}: {exc.message}")

    body: dict[str, Any] = {"name": str(data.get("name") or default_name)}
    run_, command = data.get("run"), data.get("command")
    if run_ is not None and command is not None:
        fail(f"{where}: give run (a shell script) or command, not both")
    if run_ is not None:
        if not isinstance(run_, str) or not run_.strip():
            fail(f"{where}.run: a shell script (text)")
        body["command"] = ["/bin/bash", "-c", run_]
    elif isinstance(command, str):
        body["command"] = ["sh", "-c", command]
    elif isinstance(command, list) and command:
        body["command"] = [str(a) for a in command]
    else:
        fail(f"{where}: give run (a shell script) or command (a list or a string)")
    res = data.get("resources") or {}
    if not isinstance(res, dict):
        fail(f"{where}.resources: a map of {', '.join(RESOURCE_KEYS)}")
    _unknown(f"{where}.resources", res, frozenset(RESOURCE_KEYS))
    res = dict(res)
    for key in RESOURCE_KEYS:
        if key in data:
            res[key] = data[key]
    res.setdefault("device", "cpu")
    body["resources"] = res
    try:
        if "walltime" in data:
            body["walltime_s"] = walltime_of(data["walltime"], f"{where}.walltime")
        elif "walltime_s" in data:
            body["walltime_s"] = data["walltime_s"]
        if "env" in data:
            body["env"] = check_env(data["env"] or {}, field_name=f"{where}.env")
        if "constraints" in data:
            body["constraints"] = check_constraints(
                data["constraints"], field_name=f"{where}.constraints").as_dict()
        outputs = data.get("outputs") or []
        if isinstance(outputs, str):
            outputs = [outputs]
        if not isinstance(outputs, list):
            fail(f"{where}.outputs: a list of paths or globs in the work folder")
        body["outputs"] = [check_relative_path(o, field_name=f"{where}.outputs[{i}]", glob=True)
                           for i, o in enumerate(outputs)]
        if "array" in data:
            body["array"] = parse_array(str(data["array"]), field_name=f"{where}.array").text
    except InvalidInput as exc:
        fail(exc.message)
    if "budget" in data:
        value = data["budget"]
        try:
            if isinstance(value, bool):
                raise ValueError("a number of yuan")
            body["budget_fen"] = parse_yuan(str(value), zero=True)
        except ValueError as exc:
            fail(f"{where}.budget: {exc} (yuan, e.g. 120 or 35.50)")
    elif "budget_fen" in data:
        body["budget_fen"] = data["budget_fen"]
    for key in ("precision", "policy", "priority", "domestic_only", "district", "deadline",
                "requeue", "data_site", "data_gb", "setup", "environment", "centers",
                "exclude_centers"):
        if key in data:
            body[key] = data[key]
    if isinstance(body.get("deadline"), date):  # YAML reads an unquoted time as a datetime
        body["deadline"] = body["deadline"].isoformat()
    spec = TaskSpec(body)
    workdir = data.get("workdir", default_workdir)
    if workdir is not None and workdir is not False:
        spec.workdir = Upload("workdir", _folder(f"{where}.workdir", workdir, base), "workdir")
    inputs = data.get("inputs") or []
    kinds = ("from", "artifact", "dataset", "stage") if stage_inputs else \
        ("from", "artifact", "dataset")
    if not isinstance(inputs, list):
        fail(f"{where}.inputs: a list of " + ", ".join(f"{{path, {k}}}" for k in kinds))
    body["inputs"] = []
    for i, item in enumerate(inputs):
        at = f"{where}.inputs[{i}]"
        if not isinstance(item, dict):
            fail(f"{at}: a map with path and one of {', '.join(kinds)}")
        _unknown(at, item, frozenset({"path", *kinds}))
        sources = [k for k in kinds if k in item]
        if len(sources) != 1:
            fail(f"{at}: give exactly one of from (a local folder), artifact (a SHA-256) or "
                 "dataset (a name)" + (", or stage (a stage it depends on)" if stage_inputs
                                       else ""))
        try:
            path = check_relative_path(str(item.get("path", "")), field_name=f"{at}.path")
        except InvalidInput as exc:
            fail(exc.message)
        if "stage" in item:
            if not isinstance(item["stage"], str) or not item["stage"]:
                fail(f"{at}.stage: the name of a stage it depends on, not {item['stage']!r}")
            body["inputs"].append({"stage": item["stage"], "path": path})
        elif "from" in item:
            # a packed folder, stored as kind workdir: staging unpacks it at `path`
            spec.inputs[i] = Upload(f"inputs[{i}]", _folder(f"{at}.from", item["from"], base),
                                    "workdir")
            body["inputs"].append({"artifact": "", "path": path})
        else:
            body["inputs"].append({sources[0]: item[sources[0]], "path": path})
    return spec


def walltime_of(value: object, where: str) -> int:
    """Seconds from Slurm's forms or suanli's (`30m`, `1h30m`)."""
    try:
        return parse_walltime(value, field_name=where)
    except InvalidInput:
        if isinstance(value, str):
            try:
                seconds = parse_duration(value)
                if seconds >= 1:
                    return seconds
            except ValueError:
                pass
        raise


def apply_flags(spec: TaskSpec, *, env: list[str], workdir: Path | None,
                array: str | None) -> None:
    """Flags given with the file win over its keys."""
    if env:
        pairs: dict[str, str] = {}
        for item in env:
            key, eq, value = item.partition("=")
            if not eq:
                fail(f"--env {item!r}: give NAME=value")
            pairs[key] = value
        try:
            spec.body["env"] = {**spec.body.get("env", {}), **check_env(pairs, field_name="--env")}
        except InvalidInput as exc:
            fail(exc.message)
    if workdir is not None:
        spec.workdir = Upload("workdir", _folder("--workdir", str(workdir), Path.cwd()), "workdir")
    if array is not None:
        try:
            spec.body["array"] = parse_array(array, field_name="--array").text
        except InvalidInput as exc:
            fail(exc.message)


def uploads_of(specs: list[TaskSpec]) -> list[Upload]:
    """Every distinct folder to upload (a work folder shared by DAG stages is packed once)."""
    seen: dict[tuple[Path, str], Upload] = {}
    for spec in specs:
        for up in [spec.workdir, *spec.inputs.values()]:
            if up is not None:
                key = (up.folder, up.kind)
                if key in seen:
                    if up is spec.workdir:
                        spec.workdir = seen[key]
                    else:
                        spec.inputs = {i: seen[key] if u is up else u
                                       for i, u in spec.inputs.items()}
                else:
                    seen[key] = up
    return list(seen.values())


@contextmanager
def packed(uploads: list[Upload]) -> Iterator[None]:
    """Pack each folder (git ignore rules and .suanliignore apply) to learn its SHA-256; a small
    archive stays in memory, a folder unchanged since its last packing here is not read
    (client.uploads). Nothing is written to disk."""
    for up in uploads:
        try:
            up.packed = pack_local(up.folder)
        except OSError as exc:
            fail(f"{up.label}: cannot pack {up.folder}: {exc}")
        up.sha256, up.size, up.files = up.packed.sha256, up.packed.size, up.packed.files
    try:
        yield
    finally:
        for up in uploads:
            up.packed = None


def fill_artifacts(spec: TaskSpec) -> None:
    """The packed uploads' SHA-256 into the body."""
    if spec.workdir is not None:
        spec.body["workdir"] = spec.workdir.sha256
    for i, up in spec.inputs.items():
        spec.body["inputs"][i]["artifact"] = up.sha256


def send(c: Client, uploads: list[Upload], out: Console) -> None:
    """Upload what the server does not have yet (asked by content first: a second run of the
    same folder sends nothing)."""
    for up in uploads:
        assert up.packed is not None
        if c.artifact_exists(up.sha256):
            out.print(f"[dim]{up.label}: {up.folder} already stored ({up.sha256[:12]})[/]",
                      highlight=False)
            continue
        try:
            send_packed(c, up.packed, kind=up.kind, name=up.folder.name or "root")
        except ApiError as exc:
            if exc.status == 422:
                fail(f"{up.label}: {up.folder} changed while it was uploaded ({exc.message}); "
                     "nothing was submitted, run again")
            raise
        out.print(f"[dim]{up.label}: uploaded {up.folder} ({plural(len(up.files), 'file')}, "
                  f"{size_text(up.size)}, {up.sha256[:12]})[/]", highlight=False)


def size_text(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def dry_run(c: Client, specs: list[tuple[str, TaskSpec]], uploads: list[Upload]) -> None:
    """What would be uploaded, where each job would go and what it would cost; nothing is
    uploaded nor submitted."""
    total = 0
    for up in uploads:
        have = c.artifact_exists(up.sha256)
        console.print(f"[bold]{up.label}[/] {up.folder}: {plural(len(up.files), 'file')}, "
                      f"{size_text(up.size)} packed"
                      f"{' — already stored, nothing to send' if have else ''}", highlight=False)
        for f in up.files[:50]:
            console.print(f"  {f.path}  [dim]{size_text(f.size)}[/]", highlight=False)
        if len(up.files) > 50:
            console.print(f"  [dim]… and {len(up.files) - 50} more[/]")
        total += 0 if have else up.size
    console.print(f"would upload {size_text(total)} in all", highlight=False)
    for label, spec in specs:
        body = {k: v for k, v in spec.body.items() if k not in ("array", "depends_on")}
        # another stage's outputs exist only once it has run
        body["inputs"] = [i for i in body.get("inputs") or [] if "stage" not in i]
        tasks = len(parse_array(spec.body["array"]).indices) if spec.body.get("array") else 1
        est = c.estimate_job(body)
        chosen = next((x for x in est.get("candidates", []) if x.get("chosen")), None)
        head = f"{label}: " if label else ""
        if chosen is None:
            console.print(f"{head}{est.get('message', 'no pool now')}", highlight=False)
            continue
        cost = chosen.get("cost_fen")
        each = f" each, {yuan(cost * tasks)} for {tasks} tasks" if tasks > 1 and cost else ""
        console.print(f"{head}would go to [bold]{chosen['pool']}[/]: starts in "
                      f"{duration(chosen.get('wait_s'))}, runs {duration(chosen.get('runtime_s'))}, "
                      f"costs about {yuan(cost)}{each}", highlight=False)
    console.print("[dim]dry run: nothing uploaded, nothing submitted[/]")


# -- watching ------------------------------------------------------------------------------------
def _where(event_reason: str) -> str:
    return event_reason.removeprefix("placed on ").split()[0] if \
        event_reason.startswith("placed on ") else ""


def print_events(job: dict[str, Any], seen: int, out: Console, place: list[str]) -> int:
    """Print the job's history events after the first `seen`; returns how many there are."""
    history = job.get("history") or []
    for e in history[seen:]:
        state = e["to_state"]
        if state == "PLACED":
            place[:] = [_where(e["reason"])]
        extra = ""
        if state == "RUNNING" and place and place[0]:
            extra = f" on {place[0]}"
        elif state in TERMINAL:
            code = job.get("exit_code")
            extra = f" (exit {code})" if code is not None and state != "CANCELLED" else ""
            extra += f"  [dim]{e['reason']}[/]" if state != "COMPLETED" else ""
        elif state == "QUEUED" and seen:
            extra = f"  [dim]{e['reason']}[/]"
        out.print(f"[dim]{when(e['at'])}[/]  job {job['id']}  {state}{extra}", highlight=False)
    return len(history)


def stderr_tail(c: Client, job_id: int, lines: int = STDERR_TAIL) -> list[str]:
    """The last lines of the job's stderr (its latest run)."""
    tail: deque[str] = deque(maxlen=lines)
    offset, partial = 0, ""
    while True:
        chunk = c.job_logs(job_id, stream="stderr", offset=offset)
        if chunk["next_offset"] == chunk["offset"]:
            break
        text = partial + chunk["data"]
        *done, partial = text.split("\n")
        tail.extend(done)
        offset = chunk["next_offset"]
    if partial:
        tail.append(partial)
    return list(tail)


def show_failure(c: Client, job: dict[str, Any], out: Console) -> None:
    """After a failed `--wait`: the end of stderr and how to see all of it."""
    if job["state"] == "COMPLETED":
        return
    try:
        tail = stderr_tail(c, job["id"])
    except Exception:  # a center that no longer answers: the hint still helps
        tail = []
    if tail:
        out.print(f"[bold]last {len(tail)} lines of stderr[/] (job {job['id']}):", highlight=False)
        for line in tail:
            out.print(line, markup=False, highlight=False)
    out.print(f"see all: suanli job logs {job['id']} --stderr", highlight=False)


def watch_array(c: Client, array_id: int, out: Console, poll_s: float = 1.0) -> dict[str, Any]:
    """Print the array's state counts whenever they change, until every task has ended."""
    import time

    last: dict[str, int] = {}
    while True:
        view = c.get_array(array_id)
        states = view["states"]
        if states != last:
            last = states
            counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
            out.print(f"array {array_id}: {counts}", highlight=False)
        if sum(n for s, n in states.items() if s in TERMINAL) >= len(view["jobs"]):
            return dict(view)
        time.sleep(poll_s)


# -- the commands ----------------------------------------------------------------------------
def submit_task_file(path: Path, *, env: list[str], workdir: Path | None, array: str | None,
                     dry: bool, wait: bool, output: Output) -> None:
    """`suanli run FILE` and `suanli job submit -f FILE`."""
    from .jobs import finish_submitted  # jobs imports this module

    data = read_yaml(path)
    spec = task_spec(data, where=str(path), base=path.resolve().parent,
                     default_name=path.stem if path.stem != "task" else
                     path.resolve().parent.name or "task")
    apply_flags(spec, env=env, workdir=workdir, array=array)
    uploads = uploads_of([spec])
    progress = console if output is Output.table else err_console
    with packed(uploads):
        fill_artifacts(spec)
        with api_errors(), client() as c:
            if dry:
                return dry_run(c, [("", spec)], uploads)
            # Checked before anything is sent: a typo must not cost a long upload first.
            c.estimate_job({k: v for k, v in spec.body.items() if k != "array"})
            send(c, uploads, progress)
            answer = submitted(c, spec.body)
    if "jobs" in answer and "array_id" in answer:  # an array (a job has no "jobs")
        if output is Output.json and not wait:
            return emit_json(answer)
        if not wait:
            print(answer["array_id"])
            return
        progress.print(f"array {answer['array_id']}: jobs {answer['jobs'][0]}–{answer['jobs'][-1]}",
                       highlight=False)
        with api_errors(), client() as c:
            view = watch_array(c, answer["array_id"], progress)
            bad = [j for j in view["jobs"] if c.get_job(j)["state"] != "COMPLETED"]
            if bad:
                progress.print(f"{len(bad)} task(s) did not complete: jobs "
                               f"{', '.join(map(str, bad[:20]))}"
                               f"{' …' if len(bad) > 20 else ''}", highlight=False)
                show_failure(c, c.get_job(bad[0]), progress)
        if output is Output.json:
            emit_json(view)
        raise typer.Exit(1 if bad else 0)
    finish_submitted(answer, wait=wait, output=output)


def dag_specs(path: Path) -> tuple[dict[str, Any], list[tuple[str, TaskSpec]]]:
    """A DAG file: its body's name and each stage's task (a stage takes a task's keys, and
    `depends_on`, and inputs `{stage, path}`; `workdir` once at the top is every stage's
    default)."""
    data = read_yaml(path)
    _unknown(str(path), data, DAG_KEYS)
    if not isinstance(data.get("stages"), list) or not data["stages"]:
        fail(f"{path}: a DAG file has a name and a list of stages")
    base = path.resolve().parent
    default_workdir = data.get("workdir")
    specs: list[tuple[str, TaskSpec]] = []
    for i, st in enumerate(data["stages"]):
        where = f"{path}: stages[{i}]"
        if not isinstance(st, dict):
            fail(f"{where} is not a table of options")
        spec = task_spec(st, where=where, base=base, known=STAGE_KEYS,
                         default_workdir=default_workdir, default_name="", stage_inputs=True)
        depends = st.get("depends_on") or []
        if not isinstance(depends, list):
            fail(f"{where}.depends_on: a list of stage names")
        spec.body["depends_on"] = depends
        specs.append((str(spec.body["name"]), spec))
    _check_stage_inputs(path, specs)
    return {"name": data.get("name") or path.stem}, specs


def _check_stage_inputs(path: Path, specs: list[tuple[str, TaskSpec]]) -> None:
    """Each input `{stage: NAME}` names a stage it depends on, directly or through others (the
    server checks it too; here it stops the command before anything is uploaded)."""
    parents = {name: [str(d) for d in spec.body["depends_on"]] for name, spec in specs}
    for i, (name, spec) in enumerate(specs):
        seen: set[str] = set()
        todo = list(parents[name])
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(parents.get(n, []))
        for j, item in enumerate(spec.body["inputs"]):
            if "stage" in item and item["stage"] not in seen:
                fail(f"{path}: stages[{i}].inputs[{j}].stage: {item['stage']!r} is not a stage "
                     f"{name!r} depends on, directly or through others")


def watch_dag(c: Client, dag: dict[str, Any], out: Console, poll_s: float = 0.5) -> dict[str, Any]:
    """Print each stage's state changes until the DAG ends."""
    import time

    last: dict[str, tuple[str, int]] = {}
    while True:
        for st in dag["stages"]:
            seen = (st["state"], int(st.get("done") or 0))
            if last.get(st["name"]) != seen:
                last[st["name"]] = seen
                where = f" on {st['center']}" if st.get("center") and st["state"] != "QUEUED" \
                    else ""
                job = f" (job {st['job_id']})" if st.get("job_id") else \
                    f" (array {st['array_id']})" if st.get("array_id") else ""
                done = f", {st['done']}/{st['tasks']} done" if st.get("array") and \
                    st["state"] not in ("WAITING", "CANCELLED") else ""
                now = datetime.now(UTC).isoformat()
                out.print(f"[dim]{when(now)}[/]  stage {st['name']}{job}: {st['state']}{where}"
                          f"{done}", highlight=False)
        if dag["state"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return dag
        time.sleep(poll_s)
        dag = c.get_dag(dag["id"])

