"""A real Ray cluster as an AI center of the network: discovered, scheduled onto, metered."""

from __future__ import annotations

import json

import pytest

from .conftest import Server

pytestmark = pytest.mark.integration


def test_ray_center_discovered_and_used(server: Server, ray: dict[str, str]) -> None:
    r = server.cli("center", "add", "--connector", "ray",
                   "--config", f"url={ray['RAY_DASHBOARD_URL']}", "--slug", "ai-ray",
                   "--name-zh", "测试智算", "--name-en", "Test Ray", "--kind", "ai",
                   "--district", "崂山区", "--price-fen", "900", "-o", "json",
                   token="platform_admin")
    assert r.returncode == 0, r.stderr
    center = json.loads(r.stdout)
    pools = {p["name"]: p for p in center["pools"]}
    assert set(pools) == {"cpu", "npu"}  # the head's CPU and custom NPU resources, discovered
    assert pools["cpu"]["device_kind"] == "cpu" and pools["cpu"]["units_per_node"] == 2
    assert pools["npu"]["device_kind"] == "npu" and pools["npu"]["units_per_node"] == 8
    assert pools["npu"]["device_model"] == "Ray NPU" and pools["npu"]["nodes"] == 1
    assert center["connector_config"]["resources"] == {"cpu": "CPU", "npu": "NPU"}

    r = server.cli("job", "submit", "--device", "npu", "--model", "Ray NPU", "--units", "4",
                   "--district", "崂山区", "--walltime", "5m", "--wait", "--", "sh", "-c",
                   "echo ray job $SUANLI_UNITS NPUs; exit 3")
    assert r.returncode == 3, r.stderr + r.stdout
    assert "ray job 4 NPUs" in r.stdout
    job = json.loads(server.cli("job", "list", "-o", "json").stdout)["items"][0]
    assert job["center"] == "ai-ray" and job["state"] == "FAILED" and job["exit_code"] == 3
    usage = json.loads(server.cli("usage", "--job", str(job["id"]), "-o", "json").stdout)
    (rec,) = usage["items"]
    assert rec["center_id"] == center["id"] and rec["units"] == 4
    assert rec["price_fen_per_unit_hour"] == 900

    r = server.cli("job", "submit", "--device", "npu", "--model", "Ray NPU", "--units", "9",
                   "--district", "崂山区", "--walltime", "5m", "--", "true")
    assert r.returncode == 1 and "no pool" in (r.stderr + r.stdout).lower(), r.stderr + r.stdout
