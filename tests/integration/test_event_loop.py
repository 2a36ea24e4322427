"""A request waiting on the database holds up no other request: blocking work runs in the thread
pool, not on the server's event loop (a real `suanli serve --demo`, a real SQLite write lock)."""

from __future__ import annotations

import inspect
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from suanli.api.app import create_app
from suanli.config import Settings
from suanli.services.context import Platform
from suanli.store.db import Database

from ..api_routes import api_routes
from .conftest import Server

pytestmark = pytest.mark.integration

JOB = {"name": "waits", "command": ["true"], "resources": {"device": "cpu", "units": 1},
       "walltime_s": 60}
PROMPT_S = 5.0  # /health answers in milliseconds; this bound is for a loaded CI machine
PROBE_FOR_S = 3.0


def test_health_answers_while_a_submission_waits_for_the_write_lock(server: Server) -> None:
    # Another connection holds SQLite's write lock (as a long write of the engine would): a
    # submission reaches its admission UPDATE and waits there (busy timeout 30 s).
    lock = sqlite3.connect(server.home / "suanli.db", timeout=30, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    released = False
    try:
        with ThreadPoolExecutor(1) as pool, server.api() as api:
            submitting = pool.submit(api.post, "/api/v1/jobs", json=JOB, timeout=60)
            slowest = 0.0
            with httpx.Client(base_url=server.url, timeout=PROMPT_S) as probe:
                until = time.monotonic() + PROBE_FOR_S
                while time.monotonic() < until:  # long enough for the submission to be waiting
                    t0 = time.monotonic()
                    r = probe.get("/api/v1/health")  # a timeout here fails the test
                    slowest = max(slowest, time.monotonic() - t0)
                    assert r.status_code == 200
                    time.sleep(0.2)
            # The submission was waiting for the lock all along (so health was asked meanwhile).
            assert not submitting.done()
            lock.execute("ROLLBACK")
            released = True
            r = submitting.result(timeout=60)
            assert r.status_code == 201, r.text  # and it goes through once the lock is free
    finally:
        if not released:
            lock.execute("ROLLBACK")
        lock.close()
    assert slowest < PROMPT_S


def test_no_route_runs_on_the_event_loop(tmp_path: Path) -> None:
    """Every API and portal route is a plain `def` (FastAPI runs it in its thread pool): they all
    read the database, the connectors or files. An `async def` route would run on the event loop."""
    app = create_app(Platform(db=Database("sqlite://"),
                              settings=Settings(home=tmp_path, database_url="sqlite://")),
                     run_engine=False)
    on_loop = [f"{sorted(r.methods)} {r.path}" for r in api_routes(app)
               if inspect.iscoroutinefunction(r.endpoint)]
    assert on_loop == []
