"""A real Slurm cluster as a center of the network: discovered, scheduled onto, metered."""

from __future__ import annotations

import json
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pytest

from ..waiting import eventually
from .conftest import Server

pytestmark = pytest.mark.integration


def test_slurm_center_discovered_and_used(server: Server, slurm: dict[str, str]) -> None:
    out_dir = Path(slurm["SLURM_STATE_DIR"]) / "jobs" / "platform"
    r = server.cli("center", "add", "--connector", "slurm",
                   "--config", f"socket={slurm['SLURMRESTD_SOCKET']}",
                   "--config", f"output_dir={out_dir}", "--slug", "hpc-test",
                   "--name-zh", "测试超算", "--name-en", "Test HPC", "--district", "市南区",
                   "--price-fen", "7", "-o", "json", token="platform_admin")
    assert r.returncode == 0, r.stderr
    center = json.loads(r.stdout)
    pools = {p["name"]: p for p in center["pools"]}
    assert set(pools) == {"debug", "gpu"}  # the cluster's partitions, discovered
    assert pools["debug"]["device_kind"] == "cpu" and pools["debug"]["units_per_node"] == 2
    assert pools["gpu"]["device_kind"] == "gpu" and pools["gpu"]["units_per_node"] == 2
    assert pools["gpu"]["device_model"] == "fake" and pools["gpu"]["memory_gb_per_node"] == 3
    assert center["connector_config"]["partitions"] == {"debug": "debug", "gpu": "gpu"}

    r = server.cli("job", "submit", "--device", "gpu", "--model", "fake", "--district", "市南区",
                   "--walltime", "5m", "--wait", "--", "sh", "-c",
                   "echo slurm job $SLURM_JOB_ID devices $SUANLI_DEVICES; exit 2")
    assert r.returncode == 2, r.stderr
    assert "devices 0" in r.stdout and "slurm job" in r.stdout
    job = json.loads(server.cli("job", "list", "-o", "json").stdout)["items"][0]
    assert job["center"] == "hpc-test" and job["state"] == "FAILED" and job["exit_code"] == 2
    usage = json.loads(server.cli("usage", "--job", str(job["id"]), "-o", "json").stdout)
    (rec,) = usage["items"]
    assert rec["center_id"] == center["id"] and rec["price_fen_per_unit_hour"] == 7
    r = server.cli("center", "add", "--connector", "slurm", "--config", "socket=/nonexistent",
                   "--slug", "x-hpc", "--name-zh", "x", "--name-en", "x", token="platform_admin")
    assert r.returncode == 1 and "slurmrestd unreachable" in r.stderr


def test_an_array_of_20_tasks_on_slurm(server: Server, slurm: dict[str, str]) -> None:
    """20 tasks of one array on a real Slurm, each with its own SUANLI_ARRAY_INDEX, at most one
    placed at a time (`%1`) although the pool could run two."""
    out_dir = Path(slurm["SLURM_STATE_DIR"]) / "jobs" / "array"
    r = server.cli("center", "add", "--connector", "slurm",
                   "--config", f"socket={slurm['SLURMRESTD_SOCKET']}",
                   "--config", f"output_dir={out_dir}", "--slug", "hpc-array",
                   "--name-zh", "阵列超算", "--name-en", "Array HPC", "--district", "市南区",
                   "--price-fen", "7", "-o", "json", token="platform_admin")
    assert r.returncode == 0, r.stderr
    with server.api() as c:
        r = c.post("/api/v1/jobs", json={
            "name": "sweep", "command": ["sh", "-c", "echo task $SUANLI_ARRAY_INDEX"],
            "resources": {"device": "gpu", "model": "fake", "units": 1},
            "district": "市南区", "walltime_s": 300, "array": "0-19%1"})
        assert r.status_code == 201, r.text
        array_id, ids = r.json()["array_id"], r.json()["jobs"]
        assert len(ids) == 20

        def ended() -> bool:
            view = c.get(f"/api/v1/arrays/{array_id}").json()
            return sum(view["states"].get(s, 0) for s in ("COMPLETED", "FAILED", "CANCELLED")) == 20
        eventually(ended, timeout=240, interval=1, what="20 array tasks ended")
        spans = []
        for i, jid in enumerate(ids):
            job = c.get(f"/api/v1/jobs/{jid}").json()
            assert job["state"] == "COMPLETED" and job["center"] == "hpc-array", job
            assert job["array_index"] == i
            log = c.get(f"/api/v1/jobs/{jid}/logs").json()["data"]
            assert log.strip() == f"task {i}"
            (run,) = job["runs"]
            spans.append((datetime.fromisoformat(run["created_at"]),
                          datetime.fromisoformat(run["ended_at"])))
    # `%1`: a task is placed only after the one before it has ended
    spans.sort()
    for (_, end), (placed, _) in pairwise(spans):
        assert placed >= end
