"""A control plane of separate processes on one fresh PostgreSQL schema: `suanli serve --demo
--no-engine` replicas and `suanli engine` candidates, sharing one data directory (the local
centers' runs live there, as they would on a shared file system)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from suanli.store import models as m
from suanli.store.db import Database

from ..conftest import fresh_postgres_url, kill_runs
from ..integration.conftest import BIN, free_port
from ..waiting import eventually

# Short, so that the tests wait little (the defaults are 10 s and 2 s); SUANLI_HA_LEASE_S and
# SUANLI_HA_LEASE_RENEW_S run them with others, e.g. the defaults, to measure a takeover.
LEASE_S = float(os.environ.get("SUANLI_HA_LEASE_S") or 3.0)
RENEW_S = float(os.environ.get("SUANLI_HA_LEASE_RENEW_S") or 0.5)
HEARTBEAT_S, SEEN_S = 1.0, 4.0  # the control plane's list (defaults 10 s and 60 s)


@dataclass
class Cluster:
    home: Path
    url: str
    api_port: int = field(default_factory=free_port)
    api: subprocess.Popen[bytes] | None = None
    engines: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # More `serve --no-engine` replicas (start_replica), each with its port.
    replicas: list[tuple[subprocess.Popen[bytes], int]] = field(default_factory=list)
    db: Database = field(init=False)

    def __post_init__(self) -> None:
        self.db = Database(self.url)

    def env(self) -> dict[str, str]:
        env = dict(os.environ, SUANLI_HOME=str(self.home), SUANLI_DATABASE_URL=self.url,
                   SUANLI_SCHEDULER_INTERVAL="0.2", SUANLI_LEASE_S=str(LEASE_S),
                   SUANLI_LEASE_RENEW_S=str(RENEW_S), SUANLI_ENGINE_NICE="0",
                   SUANLI_HEARTBEAT_S=str(HEARTBEAT_S), SUANLI_REPLICA_SEEN_S=str(SEEN_S))
        env.pop("SUANLI_TOKEN", None)
        return env

    def log(self, name: str) -> Path:
        return self.home / f"{name}.log"

    def _spawn(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        out = open(self.log(name), "ab")  # noqa: SIM115 - closed with the process
        return subprocess.Popen([str(BIN / "suanli"), *args], env={**self.env(), **env},
                                stdout=out, stderr=subprocess.STDOUT)

    def start_api(self) -> None:
        self.api = self._start_replica("api", self.api_port)

    def start_replica(self) -> str:
        """Another API replica (`serve --demo --no-engine`) on its own port: its base URL."""
        port = free_port()
        proc = self._start_replica(f"api-{len(self.replicas) + 1}", port)
        self.replicas.append((proc, port))
        return f"http://127.0.0.1:{port}"

    def _start_replica(self, name: str, port: int) -> subprocess.Popen[bytes]:
        proc = self._spawn(name, "serve", "--demo", "--no-engine", "--port", str(port))

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"API exited: {self.log(name).read_text()[-2000:]}")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/v1/health",
                                 timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        eventually(answers, what=f"the API replica {name} answering")
        return proc

    def start_engine(self, **env: str) -> subprocess.Popen[bytes]:
        proc = self._spawn(f"engine-{len(self.engines)}", "engine", **env)
        self.engines.append(proc)
        return proc

    def start_two_engines(self) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], int]:
        """Two candidates started: the one that leads, the standby, and the leader's epoch."""
        first, second = self.start_engine(), self.start_engine()
        leader, epoch = self.leading_engine()
        return leader, second if leader is first else first, epoch

    def engine_log(self, proc: subprocess.Popen[bytes]) -> str:
        return self.log(f"engine-{self.engines.index(proc)}").read_text()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def client(self, base: str | None = None) -> httpx.Client:
        """tenant_a's client of the first replica (or of the one at `base`)."""
        import json

        token = json.loads((self.home / "demo-credentials.json").read_text())["tenant_a"]
        return httpx.Client(base_url=base or self.base, timeout=10,
                            headers={"Authorization": f"Bearer {token}"})

    def leader(self) -> dict[str, Any] | None:
        body = httpx.get(f"{self.base}/api/v1/health", timeout=5).json()
        leader: dict[str, Any] | None = body["leader"]
        return leader

    def leading_engine(self, after_epoch: int = 0) -> tuple[subprocess.Popen[bytes], int]:
        """Wait for a candidate to lead with an epoch past `after_epoch`: it and its epoch."""
        def found() -> tuple[subprocess.Popen[bytes], int] | None:
            leader = self.leader()
            if leader is None or leader["epoch"] <= after_epoch or leader["expires_in_s"] <= 0:
                return None
            for proc in self.engines:
                if proc.pid == leader["pid"] and proc.poll() is None:
                    return proc, int(leader["epoch"])
            return None

        return eventually(found, timeout=60, interval=0.05, what="an engine leading")

    def submit(self, client: httpx.Client, n: int, command: list[str], name: str) -> list[int]:
        ids = []
        for i in range(n):
            r = client.post("/api/v1/jobs", json={
                "name": f"{name}-{i}", "command": command, "walltime_s": 120,
                "resources": {"device": "cpu", "units": 1}})
            assert r.status_code == 201, r.text
            ids.append(int(r.json()["id"]))
        return ids

    def states(self, ids: list[int]) -> dict[int, str]:
        with self.db.session() as s:
            return dict(s.execute(select(m.Job.id, m.Job.state).where(m.Job.id.in_(ids))).all())

    def wait_done(self, ids: list[int], timeout: float = 120) -> None:
        def done() -> bool:
            states = self.states(ids)
            bad = {i: st for i, st in states.items() if st in ("FAILED", "CANCELLED", "TIMEOUT")}
            assert not bad, f"jobs ended badly: {bad}"
            return all(st == "COMPLETED" for st in states.values())

        eventually(done, timeout=timeout, interval=0.2, what=f"{len(ids)} jobs completed")

    def runs(self) -> list[m.Run]:
        with self.db.session() as s:
            return list(s.scalars(select(m.Run).order_by(m.Run.id)))

    def stop(self) -> None:
        procs = [*self.engines, *([self.api] if self.api else []), *(p for p, _ in self.replicas)]
        for proc in procs:
            if proc.poll() is None:
                with_signal(proc, signal.SIGCONT)
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.db.dispose()


def with_signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)


@contextmanager
def cluster_on(url: str) -> Iterator[Cluster]:
    """A cluster on the database at `url`, its first API replica started (it migrates and seeds
    the demo city); no engine yet. Stopped, its runs killed and its home removed at the end."""
    home = Path(tempfile.mkdtemp(prefix="suanli-ha."))
    c = Cluster(home, url)
    try:
        c.start_api()
        yield c
    finally:
        c.stop()
        kill_runs(home)
        if os.environ.get("SUANLI_KEEP_HA_LOGS"):
            print(f"logs kept in {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def cluster(postgres: dict[str, str]) -> Iterator[Cluster]:
    """The API replica started on a fresh schema of the session's PostgreSQL; no engine yet."""
    with cluster_on(fresh_postgres_url(postgres, "ha")) as c:
        yield c
