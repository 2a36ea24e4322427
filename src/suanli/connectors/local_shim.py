"""The local executor's per-run supervisor (like conmon for containers).

Started detached (own session) by the local connector, it outlives the suanli server: it runs the
job in its own process group with stdout/stderr in files, enforces the walltime, forwards a
cancel as SIGTERM then SIGKILL after a grace period, and writes `result.json` atomically when the
job ends. The server finds every fact about the run in the run directory, so a server killed with
`kill -9` re-attaches to its running jobs when it starts again.

Usage: python -I -S path/to/local_shim.py RUN_DIR   (standard library only: keep it so)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_cancel_signalled = False


def _on_term(signum: int, frame: object) -> None:
    global _cancel_signalled
    _cancel_signalled = True


def write_json_atomic(path: Path, data: dict[str, Any], *, durable: bool = True) -> None:
    """Write a file that readers see whole or not at all; `durable` also survives power loss."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _terminate(child: subprocess.Popen[bytes], grace_s: float) -> None:
    try:
        os.killpg(child.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        child.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait()


def run(run_dir: Path) -> int:
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    spec = json.loads((run_dir / "spec.json").read_text(encoding="utf-8"))
    result_path = run_dir / "result.json"
    started = _now()
    if _cancel_signalled or (run_dir / "cancel").exists():
        write_json_atomic(
            result_path,
            {"state": "cancelled", "exit_code": None, "started_at": None, "ended_at": started,
             "reason": "cancelled before start"},
        )
        return 0
    work = run_dir / "work"
    work.mkdir(exist_ok=True)
    with open(run_dir / "stdout.log", "ab") as out, open(run_dir / "stderr.log", "ab") as err:
        try:
            child = subprocess.Popen(
                spec["command"],
                cwd=work,
                env=spec["env"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        except OSError as exc:
            err.write(f"suanli: cannot start {spec['command'][0]!r}: {exc}\n".encode())
            write_json_atomic(
                result_path,
                {"state": "failed", "exit_code": 127, "started_at": started, "ended_at": _now(),
                 "reason": f"cannot start command: {exc.strerror or exc}"},
            )
            return 0
    write_json_atomic(
        run_dir / "started.json", {"pid": child.pid, "pgid": child.pid, "started_at": started}
    )
    deadline = time.monotonic() + float(spec["walltime_s"])
    grace = float(spec.get("term_grace_s", 10))
    outcome = ""
    while True:
        try:
            rc = child.wait(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            pass
        if _cancel_signalled or (run_dir / "cancel").exists():
            outcome = "cancelled"
        elif time.monotonic() >= deadline:
            outcome = "timeout"
        if outcome:
            _terminate(child, grace)
            rc = child.returncode
            break
    # Reap stragglers the job left in its process group.
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if outcome == "cancelled":
        state, reason = "cancelled", "cancelled on request"
    elif outcome == "timeout":
        state, reason = "timeout", f"walltime of {spec['walltime_s']}s reached"
    elif rc == 0:
        state, reason = "completed", "exit code 0"
    else:
        state = "failed"
        reason = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
    write_json_atomic(
        result_path,
        {"state": state, "exit_code": rc, "started_at": started, "ended_at": _now(),
         "reason": reason},
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
