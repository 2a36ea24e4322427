"""The engine process dying is noticed: a real `suanli serve --demo` whose engine is killed with
`kill -9` answers 503 "degraded" on /api/v1/health, restarts the engine, is healthy again, counts
the restart in /metrics, and runs a job submitted afterwards to the end."""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

import httpx
import pytest

from ..conftest import kill_runs
from ..waiting import eventually
from .conftest import Server, free_port

pytestmark = pytest.mark.integration


def test_a_killed_engine_is_restarted_and_the_server_says_so_meanwhile() -> None:
    home = Path(tempfile.mkdtemp(prefix="suanli-restart."))
    # The first restart waits 3 s: long enough to see the server degraded meanwhile.
    srv = Server(home, free_port(), extra_env={"SUANLI_ENGINE_RESTART_S": "3"})
    srv.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            def health(status: int) -> dict[str, object] | None:
                r = c.get("/api/v1/health")
                return r.json() if r.status_code == status else None  # type: ignore[no-any-return]

            def engine_pid() -> int | None:
                got = health(200)
                return int(got["scheduler"]["pid"]) if got and got["scheduler"]["pid"] else None  # type: ignore[index]

            pid = eventually(engine_pid, what="healthy, with the engine's pid")
            assert c.get("/api/v1/health").json()["scheduler"]["restarts"] == 0
            os.kill(pid, signal.SIGKILL)

            down = eventually(lambda: health(503), timeout=30, what="health 503 after the engine died")
            assert down["status"] == "degraded" and down["scheduler"]["running"] is False  # type: ignore[index]
            assert "engine is not running" in str(down["error"])

            again = eventually(engine_pid, what="healthy again after the restart, a new engine's pid")
            back = c.get("/api/v1/health").json()
            assert again != pid and back["status"] == "ok"
            assert back["scheduler"]["restarts"] == 1
            metrics = c.get("/metrics").text
            assert re.search(r"^suanli_engine_restarts_total 1\.0$", metrics, re.M), metrics
            assert re.search(r"^suanli_engine_running 1\.0$", metrics, re.M)

        done = srv.cli("job", "submit", "--name", "after", "--wait", "--", "sh", "-c",
                       "echo after the restart", timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "after the restart" in done.stdout and "COMPLETED" in done.stdout + done.stderr
        log = srv.log.read_text()
        assert "died (killed by signal 9)" in log and "engine process restarted" in log
    finally:
        srv.stop()
        kill_runs(home)
        shutil.rmtree(home, ignore_errors=True)
