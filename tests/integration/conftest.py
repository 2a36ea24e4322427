"""A real `suanli serve --demo` process on a free port, and the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from ..conftest import kill_runs
from ..waiting import eventually

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    home: Path
    port: int
    database_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.home / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, token_key: str | None = "tenant_a") -> dict[str, str]:
        env = dict(os.environ, SUANLI_HOME=str(self.home), SUANLI_URL=self.url,
                   SUANLI_SCHEDULER_INTERVAL="0.2", COLUMNS="200")
        env.pop("SUANLI_TOKEN", None)
        env.pop("SUANLI_DATABASE_URL", None)
        if self.database_url:
            env["SUANLI_DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
        if token_key:
            env["SUANLI_TOKEN"] = self.creds()[token_key]
        return env

    def creds(self) -> dict[str, str]:
        data: dict[str, str] = json.loads((self.home / "demo-credentials.json").read_text())
        return data

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [str(BIN / "suanli"), "serve", "--demo", "--port", str(self.port)],
            env=self.env(None), stdout=out, stderr=subprocess.STDOUT)
        eventually(self._answers, what="the server answering /api/v1/health")

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cli(self, *args: str, token: str | None = "tenant_a", timeout: float = 60,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "suanli"), *args], env=self.env(token), input=stdin,
                              capture_output=True, text=True, timeout=timeout)

    def api(self, token: str = "tenant_a") -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10,
                            headers={"Authorization": f"Bearer {self.creds()[token]}"})


@contextmanager
def running_server(prefix: str = "suanli-it.", env: dict[str, str] | None = None
                   ) -> Iterator[Server]:
    """A `suanli serve --demo` in a fresh data directory (with `env` set, e.g.
    SUANLI_NETWORK_ID), stopped and removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    srv = Server(home, free_port(), extra_env=dict(env or {}))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        kill_runs(home)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def server() -> Iterator[Server]:
    with running_server() as srv:
        yield srv
