"""Failover with real daemons: Slurm's controller dies under a running job."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ..conftest import SERVICES, kill_runs
from ..waiting import eventually
from .conftest import Server, free_port

pytestmark = pytest.mark.integration


def _kill(pidfile: Path) -> None:
    pid = int(pidfile.read_text().strip())
    os.kill(pid, signal.SIGKILL)

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    eventually(gone, what=f"pid {pid} gone")


def _until(fn: Any, what: str, timeout: float = 60) -> Any:
    return eventually(fn, timeout=timeout, interval=0.2, what=what)


def test_job_survives_slurm_controller_death(slurm: dict[str, str]) -> None:
    state = Path(slurm["SLURM_STATE_DIR"])
    home = Path(tempfile.mkdtemp(prefix="suanli-failover."))
    srv = Server(home, free_port(), extra_env={
        "SUANLI_HEALTH_INTERVAL": "0.5", "SUANLI_HEALTH_FAILURES": "2",
        "SUANLI_FAILOVER_GRACE": "2"})
    srv.start()
    try:
        r = srv.cli("center", "add", "--connector", "slurm",
                    "--config", f"socket={slurm['SLURMRESTD_SOCKET']}",
                    "--config", f"output_dir={state / 'jobs' / 'failover'}", "--slug", "hpc-fo",
                    "--name-zh", "超算", "--name-en", "HPC", "--price-fen", "1",
                    "--tflops", "fp32=50", "--tflops", "fp64=25", "-o", "json",
                    token="platform_admin")
        assert r.returncode == 0, r.stderr
        hpc = json.loads(r.stdout)["id"]
        jid = srv.cli("job", "submit", "--policy", "cheapest", "--walltime", "10m", "--", "sh",
                      "-c", 'if [ -n "$SLURM_JOB_ID" ]; then sleep 300; fi; echo done'
                      ).stdout.strip()
        with srv.api() as api:
            job = _until(lambda: (j := api.get(f"/api/v1/jobs/{jid}").json())["state"]
                         == "RUNNING" and j, "RUNNING on Slurm")
            assert job["center"] == "hpc-fo"
            slurm_id = job["runs"][0]["external_id"]
            # slurmctld saves its job records a moment after a change: killed before that, it
            # comes back not knowing the job (then it is lost, not found running).
            started = datetime.fromisoformat(job["runs"][0]["started_at"]).timestamp()
            eventually(lambda: (state / "ctld" / "job_state").stat().st_mtime >= started,
                       what="slurmctld saved the running job's record")

            # The controller and the REST daemon die; slurmd keeps running the job.
            _kill(state / "slurmctld.pid")
            _kill(state / "slurmrestd.pid")

            job = _until(lambda: (j := api.get(f"/api/v1/jobs/{jid}").json())["state"]
                         in ("COMPLETED", "FAILED") and j, "re-placed and completed", 90)
            assert job["state"] == "COMPLETED"
            first, second = job["runs"]
            assert first["center_id"] == hpc and first["state"] == "lost"
            assert second["center_id"] != hpc and second["state"] == "completed"
            assert first["ended_at"] <= second["started_at"]  # never billed twice at once
            usage = api.get("/api/v1/usage", params={"job_id": jid}).json()
            assert sorted(u["run_id"] for u in usage["items"]) == [first["id"], second["id"]]
            center = api.get(f"/api/v1/centers/{hpc}", headers={
                "Authorization": f"Bearer {srv.creds()['platform_admin']}"}).json()
            assert center["status"] == "offline" and "health" in center["status_reason"]

            # Slurm comes back with the old attempt still running: it is cancelled.
            subprocess.run([str(SERVICES / "slurm.sh"), "start"], env={**os.environ, **slurm},
                           check=True, capture_output=True, timeout=120)
            history = _until(
                lambda: [e for e in api.get(f"/api/v1/jobs/{jid}").json()["history"]
                         if "stale attempt" in e["reason"]], "stale attempt cancelled", 60)
            assert "cancelled" in history[0]["reason"]
            center = api.get(f"/api/v1/centers/{hpc}", headers={
                "Authorization": f"Bearer {srv.creds()['platform_admin']}"}).json()
            assert center["status"] == "online"

        def slurm_state() -> str:
            out = subprocess.run(["curl", "-s", "--unix-socket", slurm["SLURMRESTD_SOCKET"],
                                  f"http://localhost/slurm/v0.0.38/job/{slurm_id}"],
                                 capture_output=True, text=True, timeout=30).stdout
            return str(json.loads(out)["jobs"][0]["job_state"])

        # Slurm shows COMPLETING while slurmd still kills the cancelled attempt's processes.
        eventually(lambda: slurm_state() != "COMPLETING", what="Slurm finished the cancel")
        assert slurm_state() == "CANCELLED"
        usage_after = json.loads(srv.cli("usage", "--job", jid, "-o", "json").stdout)
        assert usage_after["totals"]["runs"] == 2  # the cancel bills nothing more
    finally:
        subprocess.run([str(SERVICES / "slurm.sh"), "start"], env={**os.environ, **slurm},
                       capture_output=True, timeout=120)
        srv.stop()
        kill_runs(home)
        shutil.rmtree(home, ignore_errors=True)
