"""`suanli serve --demo` in its own process, for the benchmarks (shared by bench/*.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
PG_SCRIPT = Path(__file__).resolve().parent.parent / "tests" / "services" / "postgres.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def demo_server(home: Path, database_url: str | None = None
                ) -> Iterator[tuple[str, dict[str, str]]]:
    """Start the demo platform in `home` on a free port (on `database_url` when given, else
    SQLite in `home`); yield its URL and demo credentials once its scheduler has made a pass.
    Stopped with SIGTERM (killed after 15 s) on the way out."""
    url = f"http://127.0.0.1:{free_port()}"
    env = dict(os.environ, SUANLI_HOME=str(home), SUANLI_LOG_LEVEL="WARNING")
    if database_url:
        env["SUANLI_DATABASE_URL"] = database_url
    server = subprocess.Popen([str(BIN / "suanli"), "serve", "--demo", "--port",
                               url.rsplit(":", 1)[1]],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Ready when the scheduler (its own process) has made a pass: a benchmark measures the
        # running platform, not its start.
        for _ in range(600):
            try:
                r = httpx.get(f"{url}/api/v1/health", timeout=1)
                if r.status_code == 200 and r.json()["scheduler"].get("last_pass_at"):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield url, json.loads((home / "demo-credentials.json").read_text())
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


@contextmanager
def postgres(database_url: str | None = None) -> Iterator[str]:
    """A PostgreSQL server for a benchmark: `database_url` (postgresql+psycopg://…) when given,
    else a throwaway one started with tests/services/postgres.sh (as root; stopped and removed on
    the way out). Yields its SQLAlchemy URL; `fresh_schema` makes a schema per measurement."""
    if database_url:
        yield database_url
        return
    if os.geteuid() != 0:
        raise SystemExit("run as root: PostgreSQL is started through tests/services/postgres.sh "
                         "(or pass --database-url)")
    state = tempfile.mkdtemp(prefix="suanli-bench-pg.")
    os.chmod(state, 0o755)
    env = dict(os.environ, PG_STATE_DIR=state)
    try:
        out = subprocess.run([str(PG_SCRIPT), "start"], env=env, check=True, capture_output=True,
                             text=True, timeout=120).stdout
        found = dict(line[len("export "):].partition("=")[::2] for line in out.splitlines()
                     if line.startswith("export "))
        yield found["SQLALCHEMY_URL"].strip("'\"")
    finally:
        subprocess.run([str(PG_SCRIPT), "stop"], env=env, check=False, capture_output=True,
                       timeout=60)
        shutil.rmtree(state, ignore_errors=True)


def fresh_schema(url: str, prefix: str) -> str:
    """A new, empty schema on the PostgreSQL at `url`: the URL that uses it."""
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    plain = url.replace("postgresql+psycopg://", "postgresql://", 1).split("?", 1)[0]
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return url.split("?", 1)[0] + f"?options=-csearch_path%3D{schema}"
