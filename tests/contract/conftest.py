"""One contract every connector must pass, run against each real backend.

A backend here is a started workload manager plus what the suite needs to know about it. Add a
backend by adding a fixture to BACKENDS; it is done when the whole suite passes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from suanli.connectors import Connector, RunRequest, RunStatus, StageItem, create
from suanli.domain.enums import RunState

from ..waiting import eventually
from .stage_server import StageServer


@dataclass
class Backend:
    name: str
    connector: Connector
    pool: str
    make_down: Callable[[], Connector]  # a connector to the same kind of backend, unreachable
    refused: RunRequest  # a request this backend refuses
    min_walltime_s: int = 1
    timeout_slack_s: float = 15.0  # how late a walltime may be enforced
    occupy: Callable[[], AbstractContextManager[None]] = field(default=nullcontext)
    merged_logs: bool = False  # stdout and stderr come back as one log
    cancelled_pending_may_start: bool = False  # (Ray) a stopped PENDING job may start briefly
    keys: list[str] = field(default_factory=list)

    def request(self, command: list[str], *, walltime_s: int = 60, units: int = 1,
                device_kind: str = "cpu", pool: str | None = None) -> RunRequest:
        key = f"c{os.getpid()}-{len(self.keys)}-{int(time.time() * 1000) % 10**8}"
        self.keys.append(key)
        return RunRequest(run_key=key, job_id=len(self.keys), command=command, units=units,
                          nodes=1, walltime_s=walltime_s, pool=pool or self.pool,
                          device_kind=device_kind)

    def staged(self, command: list[str], server: StageServer, *, stage: tuple[StageItem, ...] = (),
               outputs: tuple[str, ...] = (), env: dict[str, str] | None = None,
               walltime_s: int = 60) -> RunRequest:
        """A request that brings `stage` in and packs `outputs` back (to `server` for a backend
        that uploads them)."""
        req = self.request(command, walltime_s=walltime_s)
        return replace(req, stage=stage, outputs=outputs, env=env or {}, token=server.token,
                       outputs_url=server.outputs_url(req.run_key))

    def outputs_of(self, ext: str, req: RunRequest, server: StageServer) -> bytes:
        """The packed outputs of an ended run: collected where the connector packs them, or as
        its center uploaded them."""
        collect = getattr(self.connector, "collect_outputs", None)
        if collect is not None:
            path = collect(ext)
            assert path is not None, f"{self.name}: no outputs for {ext}"
            return Path(path).read_bytes()
        found: bytes = eventually(lambda: server.outputs.get(req.run_key), timeout=30,
                                  what=f"{self.name}: the outputs of {req.run_key}")
        return found

    def wait(self, ext: str, until: Callable[[RunStatus], bool], timeout: float = 60) -> RunStatus:
        def reached() -> RunStatus | None:
            st = self.connector.status(ext)
            assert until(st), f"{self.name}: {ext} stuck in {st}"
            return st

        return eventually(reached, timeout=timeout, interval=0.2)

    def wait_end(self, ext: str, timeout: float = 60) -> RunStatus:
        return self.wait(ext, lambda s: s.state.is_terminal, timeout)


@pytest.fixture(scope="session")
def local_backend() -> Iterator[Backend]:
    home = Path(tempfile.mkdtemp(prefix="suanli-contract-local."))
    conn = create("local", {"center": "contract", "term_grace_s": 2, "pools": {"cpu": 2}}, home)
    yield Backend(
        name="local", connector=conn, pool="cpu",
        make_down=lambda: create("local", {"root": "/proc/suanli-not-writable"}, home),
        refused=RunRequest(run_key="refused", job_id=0, command=[], units=1, nodes=1,
                           walltime_s=10),
    )
    from ..conftest import kill_runs

    kill_runs(home)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_backend(slurm: dict[str, str]) -> Iterator[Backend]:
    env = slurm
    state = Path(env["SLURM_STATE_DIR"])
    home = Path(tempfile.mkdtemp(prefix="suanli-contract-slurm."))
    config = {"socket": env["SLURMRESTD_SOCKET"], "output_dir": str(state / "jobs" / "suanli"),
              "partitions": {"cpu": "debug", "gpu": "gpu"}}
    conn = create("slurm", config, home)

    ref: list[Backend] = []
    backend = Backend(
        name="slurm", connector=conn, pool="cpu",
        make_down=lambda: create("slurm", {**config, "socket": str(state / "nosuch.sock")}, home),
        refused=RunRequest(run_key="refused-slurm", job_id=0, command=["true"], units=1,
                           nodes=1, walltime_s=60, pool="no-such-partition"),
        min_walltime_s=60, timeout_slack_s=120, occupy=_filler(conn, ref),
    )
    ref.append(backend)
    yield backend
    shutil.rmtree(home, ignore_errors=True)


def _filler(conn: Connector, backend_ref: list[Backend]) -> Callable[[], AbstractContextManager[None]]:
    """Occupy the backend's two CPUs with sleeping runs, so that the next run stays PENDING."""
    from contextlib import contextmanager

    @contextmanager
    def filled() -> Iterator[None]:
        b = backend_ref[0]
        ids = [conn.submit(b.request(["sleep", "300"], units=1)) for _ in range(2)]
        for ext in ids:
            b.wait(ext, lambda s: s.state is RunState.RUNNING, 60)
        try:
            yield
        finally:
            for ext in ids:
                conn.cancel(ext)
            for ext in ids:
                b.wait_end(ext)

    return filled


@pytest.fixture(scope="session")
def ray_backend(ray: dict[str, str]) -> Iterator[Backend]:
    home = Path(tempfile.mkdtemp(prefix="suanli-contract-ray."))
    conn = create("ray", {"url": ray["RAY_DASHBOARD_URL"]}, home)
    ref: list[Backend] = []
    backend = Backend(
        name="ray", connector=conn, pool="cpu",
        make_down=lambda: create("ray", {"url": "http://127.0.0.1:1"}, home),
        refused=RunRequest(run_key="refused-ray", job_id=0, command=["true"], units=64, nodes=1,
                           walltime_s=60, pool="cpu"),
        min_walltime_s=2, timeout_slack_s=30, occupy=_filler(conn, ref), merged_logs=True,
        cancelled_pending_may_start=True,
    )
    ref.append(backend)
    yield backend
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def suanli_backend() -> Iterator[Backend]:
    """A real second suanli (`serve --demo`, network CN-SD-YT) lending to us: the connector
    runs jobs of our platform account there, pinned to its real local pool."""
    from ..integration.conftest import running_server

    home = Path(tempfile.mkdtemp(prefix="suanli-contract-peer."))
    with running_server("suanli-contract-lender.", {"SUANLI_NETWORK_ID": "CN-SD-YT"}) as lender:
        admin = lender.api("platform_admin")
        r = admin.post("/api/v1/peers/invitations", json={"name": "contract",
                                                          "credit_limit_fen": 10**9})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        config = {"url": lender.url, "token": token, "center": "peer",
                  "pools": {"local-cpu": {"place": "local/cpu", "precision": "fp32"}}}
        conn = create("suanli", config, home)
        ref: list[Backend] = []
        backend = Backend(
            name="suanli", connector=conn, pool="local-cpu",
            make_down=lambda: create("suanli", {**config, "url": "http://127.0.0.1:1"}, home),
            refused=RunRequest(run_key="refused-suanli", job_id=0, command=["true"], units=1,
                               nodes=1, walltime_s=60, pool="no-such-pool"),
            min_walltime_s=2, timeout_slack_s=30, occupy=_filler(conn, ref),
        )
        ref.append(backend)
        yield backend
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def stage_server() -> Iterator[StageServer]:
    folder = Path(tempfile.mkdtemp(prefix="suanli-contract-stage."))
    os.chmod(folder, 0o755)
    server = StageServer(folder)
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


BACKENDS = ["local_backend", "slurm_backend", "ray_backend", "suanli_backend"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    found: Backend = request.getfixturevalue(request.param)
    return found
