"""slurmrestd over TCP with a JWT (the way a remote supercomputing center is reached).

The session Slurm runs a second slurmrestd on 127.0.0.1 with rest_auth/jwt; tokens come from
`scontrol token`. slurmrestd refuses tokens of root, so the jobs run as `nobody`.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from suanli.connectors import create
from suanli.connectors.base import RunRequest
from suanli.domain.enums import RunState
from suanli.domain.errors import ConnectorError

pytestmark = pytest.mark.integration


def token(env: dict[str, str], user: str = "nobody") -> str:
    out = subprocess.run(["scontrol", "token", f"username={user}", "lifespan=600"], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    return out.split("=", 1)[1]


def test_submit_over_tcp_with_a_jwt(slurm: dict[str, str]) -> None:
    env = dict(os.environ, **slurm)
    out = Path(tempfile.mkdtemp(prefix="suanli-jwt."))
    out.chmod(0o777)  # the job runs as nobody
    conn = create("slurm", {"url": slurm["SLURMRESTD_URL"], "user": "nobody",
                            "token": token(env), "output_dir": str(out)}, out)
    health = conn.health()
    assert health.ok, health.detail
    assert {p["partition"] for p in conn.discover()} >= {"debug"}
    ext = conn.submit(RunRequest(run_key="jwt-1", job_id=1, command=["sh", "-c", "echo over-tcp $(id -un)"],
                                 units=1, nodes=1, walltime_s=60, pool="debug"))
    deadline = time.monotonic() + 60
    while (st := conn.status(ext)).state not in (RunState.COMPLETED, RunState.FAILED):
        assert time.monotonic() < deadline, st
        time.sleep(0.5)
    assert st.state is RunState.COMPLETED and st.exit_code == 0
    assert conn.logs(ext).decode().strip() == "over-tcp nobody"


def test_bad_or_missing_jwt_is_a_clear_error(slurm: dict[str, str]) -> None:
    home = Path(tempfile.mkdtemp(prefix="suanli-jwt."))
    forged = create("slurm", {"url": slurm["SLURMRESTD_URL"], "user": "nobody",
                              "token": "eyJhbGciOiJIUzI1NiJ9.e30.forged"}, home)
    health = forged.health()
    assert not health.ok and "JWT `token`" in health.detail
    with pytest.raises(ConnectorError, match="JWT"):
        forged.submit(RunRequest(run_key="jwt-2", job_id=2, command=["true"], units=1, nodes=1,
                                 walltime_s=60, pool="debug"))
    anonymous = create("slurm", {"url": slurm["SLURMRESTD_URL"]}, home)
    health = anonymous.health()
    assert not health.ok and "refused the credentials" in health.detail
