"""The platform on a real PostgreSQL: migrations, the demo city, a job end to end, no 5xx."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from ..conftest import kill_runs
from .conftest import BIN, Server, free_port

pytestmark = pytest.mark.integration


def test_platform_on_postgresql(postgres: dict[str, str]) -> None:
    home = Path(tempfile.mkdtemp(prefix="suanli-pg."))
    srv = Server(home, free_port(), database_url=postgres["SQLALCHEMY_URL"])
    srv.start()
    try:
        with srv.api() as api:
            assert api.get("/api/v1/health").json()["database"] == "postgresql"
        r = srv.cli("job", "submit", "--name", "pg", "--wait", "--", "sh", "-c",
                    "echo 你好 postgres; sleep 1; exit 5")
        assert r.returncode == 5 and "你好 postgres" in r.stdout
        usage = json.loads(srv.cli("usage", "-o", "json").stdout)
        assert usage["totals"]["runs"] == 1 and usage["items"][0]["unit_seconds"] >= 1
        job = json.loads(srv.cli("job", "list", "-o", "json").stdout)["items"][0]
        assert job["submitted_at"].endswith("Z")  # timezone-aware UTC on PostgreSQL too
        # Restarting on the same database keeps everything (the migration is a no-op).
        srv.stop()
        srv.start()
        assert json.loads(srv.cli("job", "list", "-o", "json").stdout)["total"] == 1
        st = subprocess.run(
            [str(BIN / "schemathesis"), "run", f"{srv.url}/openapi.json",
             "--checks", "not_a_server_error", "-H",
             f"Authorization: Bearer {srv.creds()['platform_admin']}", "--max-examples", "15",
             "--seed", "3", "--generation-database", "none", "--request-timeout", "10"],
            capture_output=True, text=True, timeout=600)
        assert st.returncode == 0, (st.stdout + st.stderr)[-3000:]
    finally:
        srv.stop()
        kill_runs(home)
        shutil.rmtree(home, ignore_errors=True)
