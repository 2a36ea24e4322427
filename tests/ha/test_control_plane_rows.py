"""More of `suanli status` on a control plane of real processes on PostgreSQL (two `serve
--no-engine` replicas, two `suanli engine` candidates; tests/ha/test_control_plane.py has the
basics): the leader listed is the one the lease row names, with its epoch; the standby's
heartbeat goes on while it stands by (it is not fenced); a replica killed with `kill -9` stays
listed until its last heartbeat is SUANLI_REPLICA_SEEN_S old and its row stays (pruned after a
day); a candidate stopped cleanly deletes its row at once; `suanli status --control-plane` shows
the control plane alone, and refuses a tenant with one clear line."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from suanli.store import models as m

from ..integration.conftest import BIN
from ..waiting import eventually
from .conftest import HEARTBEAT_S, SEEN_S, Cluster

pytestmark = pytest.mark.integration


def token(c: Cluster, role: str) -> str:
    creds: dict[str, str] = json.loads((c.home / "demo-credentials.json").read_text())
    return creds[role]


def cli(c: Cluster, role: str, *args: str, base: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(c.env(), SUANLI_URL=base or c.base, SUANLI_TOKEN=token(c, role), COLUMNS="200")
    return subprocess.run([str(BIN / "suanli"), "status", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def control_plane(c: Cluster, base: str | None = None) -> dict[str, Any]:
    out = cli(c, "platform_admin", "--control-plane", "--json", base=base)
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def lease_row(c: Cluster) -> tuple[str | None, int]:
    with c.db.session() as s:
        row = s.get(m.EngineLease, 1)
        assert row is not None
        return row.holder, row.epoch


def test_the_rows_follow_the_processes(cluster: Cluster) -> None:
    c = cluster
    second = c.start_replica()
    leader, standby, epoch = c.start_two_engines()
    assert c.api is not None
    api2 = c.replicas[0][0]
    pids = {"api": {c.api.pid, api2.pid}, "engine": {leader.pid, standby.pid}}

    def four() -> dict[str, Any] | None:
        cp = control_plane(c)
        found = {"api": {r["pid"] for r in cp["replicas"] if r["role"] == "api"},
                 "engine": {r["pid"] for r in cp["replicas"] if r["role"] == "engine"}}
        if found != pids or len(cp["replicas"]) != 4 or cp["last_pass"] is None:
            return None
        return cp

    cp = eventually(four, timeout=90, interval=0.3, what="4 replicas, a leader and a pass")
    holder, lease_epoch = lease_row(c)
    assert lease_epoch == epoch
    by_pid = {r["pid"]: r for r in cp["replicas"]}
    lead = by_pid[leader.pid]
    assert lead["id"] == holder == cp["leader"]["holder"] and lead["leading"] is True
    assert lead["epoch"] == cp["leader"]["epoch"] == lease_epoch
    stand = by_pid[standby.pid]
    assert stand["leading"] is False and stand["last_pass_at"] is None
    assert cp["last_pass"]["by"] == holder and cp["last_pass"]["ms"] is not None
    assert all(r["age_s"] < SEEN_S for r in cp["replicas"])
    # Every replica answers the same, and names itself in its health.
    assert control_plane(c, base=second)["leader"]["holder"] == holder
    me = httpx.get(f"{second}/api/v1/health", timeout=5).json()["replica"]
    assert me["id"] == by_pid[api2.pid]["id"] and me["role"] == "api"

    # The standby's heartbeat is not fenced: its row keeps being written while it stands by.
    first_seen = stand["seen_at"]
    eventually(lambda: next(r for r in control_plane(c)["replicas"]
                            if r["pid"] == standby.pid)["seen_at"] > first_seen,
               timeout=30, interval=0.3, what="the standby's heartbeat renewed")

    # The control plane alone, as a table: the leader, the replicas, the centers' health.
    table = cli(c, "platform_admin", "-c")
    assert table.returncode == 0, table.stderr
    assert "control plane 控制面" in table.stdout and f"pid {leader.pid}" in table.stdout
    assert "centers' health" in table.stdout and "qd-sc" in table.stdout
    assert "jobs" not in table.stdout  # not the rest of the screen

    # A tenant: one clear line, exit 1, nothing of the control plane, through either replica.
    for base in (c.base, second):
        refused = cli(c, "tenant_a", "--control-plane", base=base)
        assert refused.returncode == 1 and "platform admin" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr + refused.stdout
        assert holder not in refused.stdout + refused.stderr
    # The server unreachable: one clear line too.
    gone = cli(c, "platform_admin", "--control-plane", base="http://127.0.0.1:9")
    assert gone.returncode == 1 and "cannot reach suanli" in gone.stderr
    assert "Traceback" not in gone.stderr

    # kill -9 of the second API replica: listed until its last heartbeat is SEEN_S old.
    api2.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    api2.wait()
    assert api2.pid in {r["pid"] for r in control_plane(c)["replicas"]}
    eventually(lambda: api2.pid not in {r["pid"] for r in control_plane(c)["replicas"]},
               timeout=SEEN_S + 60, interval=0.3, what="the killed replica dropped")
    dropped = time.monotonic() - killed
    print(f"killed replica dropped out after {dropped:.1f} s (SUANLI_REPLICA_SEEN_S={SEEN_S:g}, "
          f"heartbeat {HEARTBEAT_S:g} s)")
    assert dropped >= SEEN_S - HEARTBEAT_S - 0.5  # not before its heartbeat was SEEN_S old
    with c.db.session() as s:  # killed: no clean stop deleted its row (pruned after a day)
        assert s.scalar(select(m.Replica.id).where(m.Replica.pid == api2.pid)) is not None

    # A clean stop (SIGTERM) of the standby deletes its row: it drops out at once.
    standby.terminate()
    assert standby.wait(30) == 0
    with c.db.session() as s:
        assert s.scalar(select(m.Replica.id).where(m.Replica.pid == standby.pid)) is None
    left = control_plane(c)
    assert sorted((r["role"], r["pid"]) for r in left["replicas"]) == sorted(
        [("api", c.api.pid), ("engine", leader.pid)])
    assert left["leader"]["holder"] == holder
