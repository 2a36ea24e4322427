"""Discovery of what programs run where (issue 16): Slurm node features and architecture, Ray node
labels, read from the real backends and carried into the pools a center is registered with."""

from __future__ import annotations

import json
import platform
import tempfile
from pathlib import Path

import pytest

from suanli.connectors import create

from .conftest import Server

pytestmark = pytest.mark.integration


def test_slurm_pools_carry_the_nodes_arch_and_features(server: Server,
                                                       slurm: dict[str, str]) -> None:
    conn = create("slurm", {"socket": slurm["SLURMRESTD_SOCKET"]}, Path(tempfile.mkdtemp()))
    found = {p["partition"]: p for p in conn.discover()}
    assert {p["arch"] for p in found.values()} == {platform.machine()}  # Slurm's node Arch
    assert all(p["features"] == ["mpi"] for p in found.values())  # slurm.conf Features=mpi

    out_dir = Path(slurm["SLURM_STATE_DIR"]) / "jobs" / "platform"
    r = server.cli("center", "add", "--connector", "slurm",
                   "--config", f"socket={slurm['SLURMRESTD_SOCKET']}",
                   "--config", f"output_dir={out_dir}", "--slug", "hpc-sw", "--name-zh", "测试超算",
                   "--name-en", "Test HPC", "--district", "市南区", "-o", "json",
                   token="platform_admin")
    assert r.returncode == 0, r.stderr
    pools = {p["name"]: p for p in json.loads(r.stdout)["pools"]}
    assert pools["debug"]["features"] == ["mpi"] and pools["debug"]["arch"] == platform.machine()
    shown = server.cli("center", "show", "hpc-sw")
    assert shown.returncode == 0 and "mpi" in shown.stdout, shown.stderr

    with server.api() as api:
        job = {"name": "mpi", "command": ["true"], "resources": {"device": "cpu", "units": 1},
               "district": "市南区", "walltime_s": 60}
        r = api.post("/api/v1/jobs", json={**job, "constraints": {"features": ["mpi"]}})
        assert r.status_code == 201, r.text
        r = api.post("/api/v1/jobs", json={**job, "constraints": {"features": ["cann-8.0"]}})
        assert r.status_code == 422, r.text
        hpc = {d["pool"]: d["reasons"] for d in r.json()["detail"]}
        assert "lacks feature cann-8.0" in hpc["hpc-sw/debug"]


def test_ray_pools_carry_the_node_labels(ray: dict[str, str]) -> None:
    conn = create("ray", {"url": ray["RAY_DASHBOARD_URL"]}, Path(tempfile.mkdtemp()))
    found = {p["resource"]: p for p in conn.discover()}
    assert set(found) == {"CPU", "NPU"}
    # `ray start --labels suanli.io/arch=...,features.suanli.io/cann-8.0=true` (tests/conftest.py)
    assert all(p["arch"] == platform.machine() and p["features"] == ["cann-8.0"]
               for p in found.values())


@pytest.mark.parametrize("backend", ["slurm", "ray"])
def test_an_environment_activates_before_setup_on_real_backends(
        backend: str, request: pytest.FixtureRequest) -> None:
    """The script a task runs (activation, setup, command: `domain.task.Script`) survives each
    connector's quoting: multi-line shell with quotes and variables."""
    import time

    from suanli.connectors.base import RunRequest
    from suanli.domain.enums import RunState
    from suanli.domain.task import Script

    env = request.getfixturevalue(backend)
    home = Path(tempfile.mkdtemp(prefix="suanli-env."))
    if backend == "slurm":
        conn = create("slurm", {"socket": env["SLURMRESTD_SOCKET"], "output_dir": str(home)}, home)
        pool = "debug"
    else:
        conn = create("ray", {"url": env["RAY_DASHBOARD_URL"]}, home)
        pool = "CPU"
    argv = Script(["sh", "-c", 'echo "run: $SUANLI_ENV $STEP"'], "export STEP='after setup'",
                  "export SUANLI_ENV=pytorch-2.4\n# a comment line").argv()
    ext = conn.submit(RunRequest(run_key=f"env-{backend}", job_id=1, command=argv, units=1,
                                 nodes=1, walltime_s=120, pool=pool))
    deadline = time.monotonic() + 120
    while (st := conn.status(ext)).state not in (RunState.COMPLETED, RunState.FAILED):
        assert time.monotonic() < deadline, st
        time.sleep(0.5)
    assert st.state is RunState.COMPLETED, st
    assert "run: pytorch-2.4 after setup" in conn.logs(ext).decode()
