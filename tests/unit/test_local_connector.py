"""The local executor with real processes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from suanli.connectors import RunRequest, RunStatus, create
from suanli.connectors.local import LocalConnector
from suanli.domain.enums import RunState

from ..sandboxes import namespace_members
from ..waiting import eventually


@pytest.fixture
def conn(home: Path) -> LocalConnector:
    c = create("local", {"center": "t", "term_grace_s": 1, "pools": {"cpu": 4}}, home)
    assert isinstance(c, LocalConnector)
    return c


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def wait_end(conn: LocalConnector, key: str, timeout: float = 15) -> RunStatus:
    def ended() -> RunStatus | None:
        st = conn.status(key)
        return st if st.state.is_terminal else None

    return eventually(ended, timeout=timeout, interval=0.05, what=f"{key} ended")


def wait_running(conn: LocalConnector, key: str) -> None:
    eventually(lambda: conn.status(key).state is RunState.RUNNING, interval=0.05,
               what=f"{key} running")


def req(key: str, command: list[str], walltime: int = 30, **kw: object) -> RunRequest:
    return RunRequest(run_key=key, job_id=7, command=command, units=2, nodes=1,
                      walltime_s=walltime, devices=(2, 3), pool="cpu", **kw)  # type: ignore[arg-type]


def test_runs_with_environment_logs_and_exit_code(conn: LocalConnector) -> None:
    conn.submit(req("r1", ["sh", "-c", "echo $SUANLI_JOB_ID $SUANLI_UNITS $SUANLI_DEVICES; "
                           "echo oops >&2; pwd; exit 0"]))
    st = wait_end(conn, "r1")
    assert st.state is RunState.COMPLETED and st.exit_code == 0
    out = conn.logs("r1").decode().splitlines()
    assert out[0] == "7 2 2,3"
    assert out[1] == "/work"  # its own work folder, in its sandbox
    assert conn.logs("r1", "stderr") == b"oops\n"
    assert conn.logs("r1", offset=4) == b"2,3\n" + "\n".join(out[1:]).encode() + b"\n"
    assert st.started_at is not None and st.ended_at is not None and st.ended_at >= st.started_at


def test_failure_keeps_the_exit_code(conn: LocalConnector) -> None:
    conn.submit(req("r2", ["sh", "-c", "exit 42"]))
    st = wait_end(conn, "r2")
    assert st.state is RunState.FAILED and st.exit_code == 42


def test_unknown_program_fails_with_127(conn: LocalConnector) -> None:
    conn.submit(req("r3", ["/no/such/program"]))
    st = wait_end(conn, "r3")
    assert st.state is RunState.FAILED and st.exit_code == 127
    assert b"/no/such/program" in conn.logs("r3", "stderr")


def test_walltime_gives_timeout_and_kills_the_group(conn: LocalConnector, home: Path) -> None:
    conn.submit(req("r4", ["sh", "-c", "sleep 100 & sleep 100"], walltime=1))
    st = wait_end(conn, "r4")
    assert st.state is RunState.TIMEOUT
    started = json.loads((conn.root / "r4" / "started.json").read_text())
    assert started["pid_namespace"].startswith("pid:[")
    assert group_members(started["pgid"]) == []  # nothing of the job is left running
    assert namespace_members(started["pid_namespace"]) == []


def test_cancel_running_sends_term_then_kill(conn: LocalConnector) -> None:
    # The job ignores SIGTERM, so only the SIGKILL after the grace period ends it.
    conn.submit(req("r5", ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]))
    wait_running(conn, "r5")
    t0 = time.monotonic()
    conn.cancel("r5")
    st = wait_end(conn, "r5")
    assert st.state is RunState.CANCELLED
    assert time.monotonic() - t0 >= 0.9  # waited for the grace period


def test_cancel_graceful_job_ends_quickly(conn: LocalConnector) -> None:
    conn.submit(req("r6", ["sleep", "100"]))
    wait_running(conn, "r6")
    conn.cancel("r6")
    st = wait_end(conn, "r6", timeout=5)
    assert st.state is RunState.CANCELLED and st.exit_code == -signal.SIGTERM


def test_cancel_before_start_never_runs(conn: LocalConnector) -> None:
    run_dir = conn.root / "r7"
    run_dir.mkdir(parents=True)
    (run_dir / "cancel").touch()
    conn.submit(req("r7", ["sh", "-c", "echo ran"]))
    st = wait_end(conn, "r7")
    assert st.state is RunState.CANCELLED
    assert conn.logs("r7") == b"" and not (run_dir / "started.json").exists()


def test_submit_is_idempotent_by_key(conn: LocalConnector) -> None:
    conn.submit(req("r8", ["sh", "-c", "echo once"]))
    conn.submit(req("r8", ["sh", "-c", "echo once"]))
    wait_end(conn, "r8")
    assert conn.logs("r8") == b"once\n"


def test_supervisor_killed_means_lost(conn: LocalConnector) -> None:
    conn.submit(req("r9", ["sleep", "100"]))
    wait_running(conn, "r9")
    shim = json.loads((conn.root / "r9" / "shim.json").read_text())
    started = json.loads((conn.root / "r9" / "started.json").read_text())
    os.kill(shim["pid"], signal.SIGKILL)
    st = wait_end(conn, "r9")
    assert st.state is RunState.LOST
    # the job died with its supervisor: no run is ever left going unsupervised
    eventually(lambda: namespace_members(started["pid_namespace"]) == [],
               what="the job's processes gone")


def test_capacity_counts_active_units_and_health(conn: LocalConnector) -> None:
    conn.submit(req("ra", ["sleep", "100"]))
    wait_running(conn, "ra")
    (cap,) = conn.capacity()
    assert (cap.pool, cap.total_units, cap.free_units) == ("cpu", 4, 2)
    conn.cancel("ra")
    wait_end(conn, "ra")
    assert conn.capacity()[0].free_units == 4
    assert conn.health().ok


def test_unknown_run_and_bad_keys(conn: LocalConnector) -> None:
    from suanli.domain.errors import ConnectorError

    assert conn.status("never").state is RunState.UNKNOWN
    with pytest.raises(ConnectorError):
        conn.status("../etc")
    with pytest.raises(ConnectorError):
        conn.logs("never", "bogus")
