"""`suanli simulate sweep --ray`: the sweep's points as jobs on a real Ray head (issue 19)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ..sim.test_sweep import SCENARIO

pytestmark = pytest.mark.integration
SUANLI = str(Path(sys.executable).with_name("suanli"))


def _sweep(scenario: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SUANLI, "simulate", "sweep", str(scenario),
                           "--param", "pools.b/cpu.units=50,100", "--param", "seed=1..2",
                           "--policies", "suanli,isolated", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600,
                          env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"})


def test_a_sweep_runs_on_ray_and_equals_the_local_run(ray: dict[str, str], tmp_path: Path) -> None:
    scenario = tmp_path / "city.toml"
    scenario.write_text(SCENARIO)
    url = ray["RAY_DASHBOARD_URL"]
    before = {j["submission_id"] for j in httpx.get(f"{url}/api/jobs/", timeout=30).json()}
    r = _sweep(scenario, tmp_path / "ray", "--ray", url)
    assert r.returncode == 0, r.stderr
    assert f"on Ray at {url}" in r.stdout
    jobs = [j for j in httpx.get(f"{url}/api/jobs/", timeout=30).json()
            if j["submission_id"] not in before]
    # one Ray job per point, each on one CPU, all succeeded
    assert len(jobs) == 4 and all(j["status"] == "SUCCEEDED" for j in jobs)
    assert all(j["submission_id"].startswith("suanli-sweep-") for j in jobs)
    assert all(j["metadata"].get("suanli_task") == "sweep" for j in jobs)
    local = _sweep(scenario, tmp_path / "local", "--workers", "2")
    assert local.returncode == 0, local.stderr
    on_ray = json.loads((tmp_path / "ray" / "sweep.json").read_text())
    here = json.loads((tmp_path / "local" / "sweep.json").read_text())
    assert on_ray["points"] == here["points"] and on_ray["by_x"] == here["by_x"]
    assert (tmp_path / "ray" / "sweep.png").read_bytes() == (tmp_path / "local" / "sweep.png").read_bytes()


def test_a_failed_ray_job_fails_the_sweep_clearly(ray: dict[str, str], tmp_path: Path) -> None:
    scenario = tmp_path / "city.toml"
    scenario.write_text(SCENARIO)
    r = _sweep(scenario, tmp_path / "o", "--ray", ray["RAY_DASHBOARD_URL"],
               "--ray-python", "/nonexistent/python")
    assert r.returncode == 1 and "ended failed" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = _sweep(scenario, tmp_path / "o", "--ray", "http://127.0.0.1:9")  # nothing listens there
    assert r.returncode == 1, r.stderr
    assert "Ray at http://127.0.0.1:9" in r.stderr and "unreachable" in r.stderr, r.stderr
