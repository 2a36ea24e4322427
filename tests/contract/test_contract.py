"""The behaviours every connector must have (see conftest.py for the backends)."""

from __future__ import annotations

import time

import pytest

from suanli.connectors import Capability
from suanli.domain.enums import RunState
from suanli.domain.errors import ConnectorError

from ..waiting import eventually
from .conftest import Backend

pytestmark = pytest.mark.contract


def test_a_job_runs_and_its_exit_code_and_logs_come_back(backend: Backend) -> None:
    req = backend.request(["sh", "-c", "echo out $SUANLI_UNITS; echo err >&2"])
    ext = backend.connector.submit(req)
    st = backend.wait_end(ext)
    assert st.state is RunState.COMPLETED and st.exit_code == 0, st
    assert st.started_at is not None and st.ended_at is not None
    assert st.ended_at >= st.started_at
    if backend.merged_logs:
        assert backend.connector.logs(ext) == b"out 1\nerr\n"
        assert backend.connector.logs(ext, offset=4) == b"1\nerr\n"
    else:
        assert backend.connector.logs(ext) == b"out 1\n"
        assert backend.connector.logs(ext, "stderr") == b"err\n"
        assert backend.connector.logs(ext, offset=4) == b"1\n"


def test_a_failing_job_is_failed_with_its_code(backend: Backend) -> None:
    ext = backend.connector.submit(backend.request(["sh", "-c", "exit 3"]))
    st = backend.wait_end(ext)
    assert st.state is RunState.FAILED and st.exit_code == 3, st


def test_walltime_gives_timeout(backend: Backend) -> None:
    req = backend.request(["sleep", "600"], walltime_s=backend.min_walltime_s)
    ext = backend.connector.submit(req)
    st = backend.wait_end(ext, timeout=backend.min_walltime_s + backend.timeout_slack_s + 30)
    assert st.state is RunState.TIMEOUT, st


def test_cancel_a_queued_job(backend: Backend) -> None:
    with backend.occupy():
        req = backend.request(["sh", "-c", "echo ran"])
        ext = backend.connector.submit(req)
        assert backend.connector.status(ext).state is RunState.PENDING
        backend.connector.cancel(ext)
    st = backend.wait_end(ext)  # the resources are free again: it must not run now
    assert st.state is RunState.CANCELLED, st
    if not backend.cancelled_pending_may_start:
        assert backend.connector.logs(ext) == b""  # it never ran


def test_cancel_a_running_job(backend: Backend) -> None:
    ext = backend.connector.submit(backend.request(["sleep", "300"]))
    backend.wait(ext, lambda s: s.state is RunState.RUNNING)
    t0 = time.monotonic()
    backend.connector.cancel(ext)
    st = backend.wait_end(ext, timeout=30)
    assert st.state is RunState.CANCELLED, st
    assert time.monotonic() - t0 < 30


def test_resubmit_is_idempotent_by_run_key(backend: Backend) -> None:
    from dataclasses import replace

    req = backend.request(["sh", "-c", "echo once"])
    first = backend.connector.submit(req)
    assert backend.connector.submit(replace(req, resubmit=True)) == first
    backend.wait_end(first)
    # it ran once (Ray may serve a finished job's log a moment after it reports the end)
    eventually(lambda: backend.connector.logs(first), timeout=30, what="the run's log")
    assert backend.connector.logs(first) == b"once\n"


def test_capacity_is_reported(backend: Backend) -> None:
    caps = {c.pool: c for c in backend.connector.capacity()}
    assert backend.pool in caps or any(c.total_units for c in caps.values())
    for c in caps.values():
        assert 0 <= c.free_units <= c.total_units


def test_health_up_and_down(backend: Backend) -> None:
    assert backend.connector.health().ok
    down = backend.make_down().health()
    assert not down.ok and down.detail


def test_a_refused_job_gives_a_clear_error(backend: Backend) -> None:
    with pytest.raises(ConnectorError) as exc:
        backend.connector.submit(backend.refused)
    assert exc.value.message


def test_capabilities_are_declared(backend: Backend) -> None:
    caps = backend.connector.capabilities
    assert Capability.CANCEL in caps and Capability.LOGS in caps


def test_batch_status_agrees_with_status(backend: Backend) -> None:
    """A connector that answers for many runs at once says what `status` says, run by run."""
    conn = backend.connector
    if Capability.BATCH_STATUS not in conn.capabilities:
        assert not hasattr(conn, "statuses")
        pytest.skip(f"{backend.name} answers run by run")
    ok = conn.submit(backend.request(["true"]))
    bad = conn.submit(backend.request(["sh", "-c", "exit 4"]))
    running = conn.submit(backend.request(["sleep", "300"]))
    backend.wait_end(ok)
    backend.wait_end(bad)
    backend.wait(running, lambda s: s.state is RunState.RUNNING)
    answers = conn.statuses([ok, bad, running])  # type: ignore[attr-defined]
    for ext in (ok, bad, running):
        one = conn.status(ext)
        assert (answers[ext].state, answers[ext].exit_code) == (one.state, one.exit_code), ext
    assert answers[ok].state is RunState.COMPLETED and answers[bad].exit_code == 4
    assert answers[running].state is RunState.RUNNING
    conn.cancel(running)
    backend.wait_end(running)


def test_a_sandboxed_run_is_unprivileged_alone_and_leaves_nothing_behind(backend: Backend) -> None:
    """A connector that declares SANDBOX runs a hostile job as an unprivileged user that sees only
    its own processes, and kills everything it started — however it detached — at cancel."""
    conn = backend.connector
    if Capability.SANDBOX not in conn.capabilities:
        pytest.skip(f"{backend.name} leaves isolation to its cluster (no SANDBOX capability)")
    probe = conn.submit(backend.request(["sh", "-c", "id -u; ls /proc | grep -c '^[0-9]'"]))
    assert backend.wait_end(probe).state is RunState.COMPLETED
    uid, processes = conn.logs(probe).decode().split()
    assert int(uid) != 0 and int(processes) <= 5
    escaper = conn.submit(backend.request(["sh", "-c", (
        "setsid sh -c 'sleep 2; echo ESCAPED' & (sh -c 'sleep 2; echo ESCAPED' &); "
        "nohup sh -c 'sleep 2; echo ESCAPED' & echo started; sleep 300")]))
    backend.wait(escaper, lambda s: s.state is RunState.RUNNING and b"started" in conn.logs(escaper))
    conn.cancel(escaper)
    assert backend.wait_end(escaper).state is RunState.CANCELLED
    time.sleep(3)  # past the children's sleep: a survivor would have written by now
    assert b"ESCAPED" not in conn.logs(escaper)
