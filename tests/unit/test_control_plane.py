"""The control plane's list of processes (`replicas`, heartbeats) and `GET /api/v1/control-plane`
in process, on SQLite with a fixed clock (the real processes on PostgreSQL: tests/ha/)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from suanli.api.app import create_app
from suanli.domain.clock import FixedClock
from suanli.engine.lease import Lease
from suanli.services.context import Platform
from suanli.services.demo import ensure_credentials, seed_demo
from suanli.services.replicas import Heartbeat, seen
from suanli.store import models as m
from suanli.store.db import Database

from ..integration.conftest import free_port


@pytest.fixture
def fixed(platform: Platform) -> Platform:
    return Platform(db=platform.db, settings=replace(platform.settings, heartbeat_s=3600),
                    clock=FixedClock(datetime(2026, 12, 5, 8, 0, tzinfo=UTC)))


@pytest.fixture
def api(fixed: Platform) -> Iterator[tuple[TestClient, dict[str, str]]]:
    seed_demo(fixed)
    creds = ensure_credentials(fixed, fixed.home / "demo-credentials.json")
    with TestClient(create_app(fixed, run_engine=False)) as client:
        yield client, creds


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_admin_sees_this_replica_and_an_engine_leading_with_its_last_pass(
        api: tuple[TestClient, dict[str, str]], fixed: Platform) -> None:
    client, creds = api
    lease = Lease(fixed, "engine-host:4242:abcd")
    assert lease.acquire()
    engine = Heartbeat(fixed, "engine", replica_id=lease.holder, report=lambda: {
        "leading": True, "epoch": lease.epoch, "last_pass_at": fixed.clock.now(),
        "last_pass_ms": 37})
    assert engine.beat()
    body = client.get("/api/v1/control-plane", headers=auth(creds["platform_admin"])).json()
    me = client.get("/api/v1/health").json()["replica"]
    assert me["role"] == "api"
    by_id = {r["id"]: r for r in body["replicas"]}
    assert set(by_id) == {me["id"], lease.holder}
    assert by_id[lease.holder]["role"] == "engine" and by_id[lease.holder]["leading"] is True
    assert by_id[me["id"]]["age_s"] == 0.0 and by_id[me["id"]]["version"]
    assert body["leader"]["holder"] == lease.holder and body["leader"]["epoch"] == 1
    assert body["last_pass"] == {"at": "2026-12-05T08:00:00Z", "ms": 37, "by": lease.holder}
    assert body["centers"] and all(c["health_failures"] == 0 for c in body["centers"])
    metrics = client.get("/metrics").text
    assert 'suanli_replicas{role="engine"} 1.0' in metrics
    assert 'suanli_replicas{role="api"} 1.0' in metrics
    assert "suanli_engine_pass_seconds 0.037" in metrics
    # This replica runs no engine; the leader's last pass comes from its heartbeat row.
    value = re.search(r"^suanli_engine_last_pass_timestamp_seconds (\S+)$", metrics, re.M)
    assert value is not None
    assert float(value[1]) == datetime(2026, 12, 5, 8, 0, tzinfo=UTC).timestamp()


def test_a_process_not_heard_from_within_the_window_is_not_listed(fixed: Platform) -> None:
    gone, alive = Heartbeat(fixed, "api"), Heartbeat(fixed, "api")
    assert gone.beat()
    assert isinstance(fixed.clock, FixedClock)
    fixed.clock.advance(fixed.settings.replica_seen_s + 1)
    assert alive.beat()
    assert [r["id"] for r in seen(fixed)] == [alive.id]
    fixed.clock.advance(86400 + 5)  # a day later the next heartbeat removes the stale rows
    assert alive.beat()
    with fixed.db.session() as s:
        assert list(s.scalars(select(m.Replica.id))) == [alive.id]
    alive.stop()  # a clean stop removes its own row at once
    assert seen(fixed) == []


@pytest.mark.parametrize("who", ["tenant_a", "center_operator", "auditor", "reviewer"])
def test_only_the_platform_admin_reads_the_control_plane(
        api: tuple[TestClient, dict[str, str]], who: str) -> None:
    client, creds = api
    r = client.get("/api/v1/control-plane", headers=auth(creds[who]))
    assert r.status_code == 403 and "platform_admin" in r.json()["error"]
    assert client.get("/api/v1/control-plane").status_code == 401


def test_no_route_writes_a_replica_row(api: tuple[TestClient, dict[str, str]],
                                       fixed: Platform) -> None:
    """An attacker (even the admin's token) cannot forge a process into the list: the table is
    written only by the processes' own heartbeats."""
    client, creds = api
    forged = {"id": "evil:1:ffff", "role": "engine", "leading": True, "epoch": 99}
    for token in (creds["tenant_a"], creds["platform_admin"]):
        for method in ("POST", "PUT", "PATCH"):
            r = client.request(method, "/api/v1/control-plane", json=forged,
                               headers=auth(token))
            assert r.status_code == 405
    assert all(r["id"] != "evil:1:ffff" for r in seen(fixed))
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/api/v1/control-plane"]) == {"get"}
    assert not [p for p in paths if "replica" in p]


def test_a_heartbeat_against_a_database_that_is_gone_fails_quietly(fixed: Platform) -> None:
    """Nothing listens where the database should be: the beat says False, never raises (the
    process serves on; the API answers 503 meanwhile)."""
    gone = Platform(db=Database(f"postgresql+psycopg://suanli:x@127.0.0.1:{free_port()}/x"),
                    settings=fixed.settings, clock=fixed.clock)
    try:
        hb = Heartbeat(gone, "api")
        assert hb.beat() is False and hb.beat() is False
        hb.stop()  # removing its row fails quietly too
    finally:
        gone.db.dispose()
    with pytest.raises(ValueError, match="role must be"):
        Heartbeat(fixed, "mallory")
