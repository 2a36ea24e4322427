"""A real Slurm cluster as a center of the network: discovered, scheduled onto, metered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
