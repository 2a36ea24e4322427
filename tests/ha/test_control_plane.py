"""`suanli status` as the platform admin on a control plane of real processes: two API replicas
and two engine candidates on PostgreSQL are listed with their roles, the leader matches the
lease, and a replica killed with `kill -9` drops out of the list once its heartbeat is stale."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from datetime import datetime
from typing import Any

import httpx
import pytest

from ..integration.conftest import BIN
from ..waiting import eventually
from .conftest import Cluster

pytestmark = pytest.mark.integration


def status(c: Cluster, base: str) -> dict[str, Any]:
    token = json.loads((c.home / "demo-credentials.json").read_text())["platform_admin"]
    out = subprocess.run([str(BIN / "suanli"), "status", "--output", "json"],
                         env={**c.env(), "SUANLI_URL": base, "SUANLI_TOKEN": token},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_status_lists_the_control_plane_and_forgets_a_killed_replica(cluster: Cluster) -> None:
    c = cluster
    second = c.start_replica()
    leader, standby, epoch = c.start_two_engines()

    def listed() -> dict[str, Any] | None:
        cp = status(c, second)["control_plane"]
        roles = sorted((r["role"], r["pid"]) for r in cp["replicas"])
        want = sorted([("api", c.api.pid if c.api else 0), ("api", c.replicas[0][0].pid),
                       ("engine", leader.pid), ("engine", standby.pid)])
        return cp if roles == want and cp["last_pass"] is not None else None

    cp = eventually(listed, timeout=60, interval=0.5, what="four processes in suanli status")
    assert cp["leader"]["pid"] == leader.pid and cp["leader"]["epoch"] == epoch
    engines = {r["pid"]: r for r in cp["replicas"] if r["role"] == "engine"}
    assert engines[leader.pid]["leading"] is True and engines[standby.pid]["leading"] is False
    assert cp["last_pass"]["by"] == cp["leader"]["holder"]
    assert cp["centers"] and all("health_failures" in x for x in cp["centers"])
    # A replica that runs no engine exports the leader's pass from its heartbeat row.
    metrics = httpx.get(f"{second}/metrics", timeout=10).text
    stamp = re.search(r"^suanli_engine_last_pass_timestamp_seconds (\S+)$", metrics, re.M)
    assert stamp is not None and re.search(r"^suanli_engine_pass_seconds \S+$", metrics, re.M)
    # the same pass as the status read a moment before, or a later one
    assert float(stamp[1]) >= datetime.fromisoformat(cp["last_pass"]["at"]).timestamp() - 0.001
    # The human screen names the leader and the section (both languages in one line).
    token = json.loads((c.home / "demo-credentials.json").read_text())["platform_admin"]
    screen = subprocess.run([str(BIN / "suanli"), "status"], capture_output=True, text=True,
                            env={**c.env(), "SUANLI_URL": c.base, "SUANLI_TOKEN": token,
                                 "COLUMNS": "200"}, timeout=60)
    assert screen.returncode == 0, screen.stderr
    assert "control plane 控制面" in screen.stdout and f"pid {leader.pid}" in screen.stdout
    # A replica killed with kill -9 writes no more heartbeats: gone from the list after the
    # window (4 s here), while the others stay.
    proc, _ = c.replicas[0]
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    def forgotten() -> bool:
        pids = {r["pid"] for r in status(c, c.base)["control_plane"]["replicas"]}
        return proc.pid not in pids and {leader.pid, standby.pid} <= pids

    eventually(forgotten, timeout=30, interval=0.5, what="the killed replica dropping out")


def test_a_tenant_gets_a_clear_refusal_not_the_control_plane(cluster: Cluster) -> None:
    c = cluster
    token = json.loads((c.home / "demo-credentials.json").read_text())["tenant_a"]
    out = subprocess.run([str(BIN / "suanli"), "status", "--output", "json"],
                         env={**c.env(), "SUANLI_URL": c.base, "SUANLI_TOKEN": token},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Traceback" not in out.stderr
    data = json.loads(out.stdout)
    assert "control_plane" not in data  # its screen has no such section
    with c.client() as api:
        r = api.get("/api/v1/control-plane")
    assert r.status_code == 403 and "platform_admin" in r.json()["error"]
