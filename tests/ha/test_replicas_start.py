"""Several API replicas starting at the same instant on one empty PostgreSQL database: the schema
is migrated once and the demo city seeded once (an advisory lock, `store.migrate.startup_lock`);
a replica started later on the seeded database neither seeds again nor fails."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, func, select, text

from suanli.services.demo import DEMO_TENANTS, DEMO_USERS, demo_centers
from suanli.store import models as m
from suanli.store.migrate import alembic_config

from ..conftest import fresh_postgres_url, kill_runs
from ..integration.conftest import BIN, Server, free_port
from ..waiting import eventually

pytestmark = pytest.mark.integration


def launch(servers: list[Server]) -> None:
    """Start every server's process at once (no waiting in between), then wait for them all."""
    for srv in servers:
        out = open(srv.log, "ab")  # noqa: SIM115 - closed with the process
        srv.proc = subprocess.Popen(
            [str(BIN / "suanli"), "serve", "--demo", "--port", str(srv.port)],
            env=srv.env(None), stdout=out, stderr=subprocess.STDOUT)
    for srv in servers:
        eventually(srv._answers, timeout=120, what=f"replica on port {srv.port} answering health")


@pytest.fixture
def replicas(postgres: dict[str, str]) -> Iterator[tuple[str, list[Server]]]:
    url = fresh_postgres_url(postgres, "replicas")
    servers = [Server(Path(tempfile.mkdtemp(prefix=f"suanli-rep{i}.")), free_port(),
                      database_url=url) for i in range(4)]
    try:
        yield url, servers
    finally:
        for srv in servers:
            srv.stop()
        for srv in servers:
            kill_runs(srv.home)
            shutil.rmtree(srv.home, ignore_errors=True)


def counts(url: str) -> dict[str, object]:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return {
                "tenants": c.scalar(select(func.count()).select_from(m.Tenant)),
                "tenant_names": c.scalar(select(func.count(func.distinct(m.Tenant.name)))),
                "centers": c.scalar(select(func.count()).select_from(m.Center)),
                "users": c.scalar(select(func.count()).select_from(m.User)),
                "programmes": c.scalar(select(func.count()).select_from(m.VoucherProgramme)),
                "versions": [r[0] for r in c.execute(text("SELECT version_num FROM alembic_version"))],
            }
    finally:
        engine.dispose()


def test_three_replicas_start_at_once_migrate_and_seed_once(
        replicas: tuple[str, list[Server]]) -> None:
    url, servers = replicas
    first, late = servers[:3], servers[3]
    launch(first)
    for srv in first:
        health = httpx.get(f"{srv.url}/api/v1/health", timeout=5)
        assert health.status_code == 200 and health.json()["database"] == "postgresql"
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    expected = {"tenants": len(DEMO_TENANTS), "tenant_names": len(DEMO_TENANTS),
                "centers": len(demo_centers()) + 1,  # and the local center
                "users": len(DEMO_USERS), "programmes": 1, "versions": [head]}
    assert counts(url) == expected
    # Each replica wrote its own credentials file; a token one replica issued works on the others.
    for srv in first:
        token = srv.creds()["tenant_a"]
        for other in first:
            me = httpx.get(f"{other.url}/api/v1/users/me", headers={"Authorization": f"Bearer {token}"},
                           timeout=10)
            assert me.status_code == 200 and me.json()["username"] == "alice"
    # A replica started later on the seeded database neither seeds again nor fails.
    launch([late])
    assert httpx.get(f"{late.url}/api/v1/health", timeout=5).status_code == 200
    assert counts(url) == expected
    assert "demo city present" in late.log.read_text()


STARTUP = """
import sys, time
from suanli.config import Settings
from suanli.services.context import Platform
from suanli.services.demo import seed_demo
from suanli.store.db import Database

url, at = sys.argv[1], float(sys.argv[2])
platform = Platform(db=Database(url), settings=Settings.from_env())
time.sleep(max(0.0, at - time.time()))  # every process imported: all go at the same instant
platform.db.upgrade()
print("created" if seed_demo(platform) else "present", flush=True)
"""


def test_replicas_migrate_and_seed_one_after_another_at_the_same_instant(
        replicas: tuple[str, list[Server]]) -> None:
    """What the servers do on start (upgrade, then seed), in 4 processes released at the same
    instant: without the lock, two create `alembic_version` (or the demo's rows) together."""
    url, servers = replicas
    at = time.time() + 4.0  # after every process has imported suanli
    procs = [subprocess.Popen([str(BIN / "python"), "-c", STARTUP, url, str(at)],
                              env=srv.env(None), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for srv in servers]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-1500:] for _, err in results]
    assert sorted(out.strip() for out, _ in results) == ["created", "present", "present", "present"]
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    found = counts(url)
    assert found["versions"] == [head] and found["tenants"] == len(DEMO_TENANTS)
    assert found["users"] == len(DEMO_USERS) and found["centers"] == len(demo_centers()) + 1
