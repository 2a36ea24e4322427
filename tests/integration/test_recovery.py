"""kill -9 of the server while jobs run: nothing lost, nothing twice, metered exactly once."""

from __future__ import annotations

import json
import time

import pytest

from suanli.connectors.procfs import is_alive

from ..waiting import eventually
from .conftest import Server

pytestmark = pytest.mark.integration


def wait_state(server: Server, jid: int, states: set[str], timeout: float = 30) -> dict:  # type: ignore[type-arg]
    with server.api() as api:
        def reached() -> dict | None:  # type: ignore[type-arg]
            job = api.get(f"/api/v1/jobs/{jid}").json()
            assert job["state"] in states, f"job {jid} not in {states}: {job}"
            return dict(job)

        return eventually(reached, timeout=timeout)


def test_server_killed_with_running_jobs_reattaches(server: Server) -> None:
    with server.api() as api:
        body = {"name": "long", "command": ["sh", "-c", "echo start; sleep 4; echo end"],
                "resources": {"device": "cpu", "units": 1}, "walltime_s": 120}
        long_id = api.post("/api/v1/jobs", json=body).json()["id"]
        short = {**body, "name": "short", "command": ["sh", "-c", "sleep 1; echo short"]}
        short_id = api.post("/api/v1/jobs", json=short).json()["id"]
    wait_state(server, long_id, {"RUNNING"})
    wait_state(server, short_id, {"RUNNING"})
    server.kill9()
    # The jobs keep running while the server is down.
    started = json.loads(next(server.home.rglob(f"job{long_id}-run*/started.json")).read_text())
    assert is_alive(started["pid"], None)
    time.sleep(1.5)  # the short job ends while nobody watches
    server.start()
    # A job submitted after the restart runs too.
    with server.api() as api:
        third = api.post("/api/v1/jobs", json={**body, "name": "after",
                                                "command": ["echo", "after"]}).json()["id"]
    for jid in (long_id, short_id, third):
        assert wait_state(server, jid, {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"}
                          )["state"] == "COMPLETED"
    with server.api() as api:
        for jid in (long_id, short_id):
            job = api.get(f"/api/v1/jobs/{jid}").json()
            assert len(job["runs"]) == 1  # re-attached, not run again
            usage = api.get("/api/v1/usage", params={"job_id": jid}).json()
            assert usage["totals"]["runs"] == 1  # metered exactly once
        logs = api.get(f"/api/v1/jobs/{long_id}/logs").json()["data"]
        assert logs == "start\nend\n"
        history = [e["to_state"] for e in api.get(f"/api/v1/jobs/{long_id}").json()["history"]]
        assert history == ["QUEUED", "PLACED", "RUNNING", "COMPLETED"]
