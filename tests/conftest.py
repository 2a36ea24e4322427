"""Shared fixtures: a real platform on a temporary SQLite file, with real job processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from suanli.config import Settings
from suanli.domain.enums import CenterKind, DeviceKind, Role
from suanli.engine import Engine
from suanli.services.auth import Principal, create_user, principal_of
from suanli.services.centers import CenterInput, PoolInput, create_center
from suanli.services.context import Platform
from suanli.services.tenants import create_tenant
from suanli.store import models as m
from suanli.store.db import Database

from .waiting import eventually

VALID_CODES = ["91350100M000100Y43", "91370212MA3C5T8K2R"]


def kill_runs(home: Path) -> None:
    """Stop every job process and supervisor a test left behind (by the PIDs they recorded)."""
    for path in list(home.rglob("started.json")) + list(home.rglob("shim.json")):
        try:
            pid = int(json.loads(path.read_text())["pid"])
            os.killpg(pid, signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass


SERVICES = Path(__file__).resolve().parent / "services"


def start_service(name: str, state_var: str) -> dict[str, str]:
    """Start one of tests/services/*.sh in a fresh state directory; its `export` lines -> env."""
    state = tempfile.mkdtemp(prefix=f"{name}.")
    os.chmod(state, 0o755)
    env = dict(os.environ, **{state_var: state})
    out = subprocess.run([str(SERVICES / f"{name}.sh"), "start"], env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    for line in out.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = value.strip("'\"")
    return env


def stop_service(name: str, env: dict[str, str]) -> None:
    subprocess.run([str(SERVICES / f"{name}.sh"), "stop"], env=env, check=False,
                   capture_output=True, timeout=60)


def backend_service(name: str, state_var: str, label: str) -> Iterator[dict[str, str]]:
    """A real backend for the session (tests/services/NAME.sh). One that cannot start fails in CI
    (`CI=true`) and skips loudly elsewhere."""
    try:
        env = start_service(name, state_var)
    except (OSError, subprocess.SubprocessError) as exc:
        message = f"{label} could not be started ({exc}); run tests/services/{name}.sh install"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    yield env
    stop_service(name, env)
    shutil.rmtree(env[state_var], ignore_errors=True)


@pytest.fixture(autouse=True, scope="session")
def _pack_cache() -> Iterator[None]:
    """Uploads remember packed folders under SUANLI_CACHE_DIR (client.uploads): the tests' own
    folder, not the user's ~/.cache; every CLI the tests start inherits it."""
    folder = tempfile.mkdtemp(prefix="suanli-test-cache.")
    os.environ["SUANLI_CACHE_DIR"] = folder
    yield
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[dict[str, str]]:
    """A real PostgreSQL server."""
    yield from backend_service("postgres", "PG_STATE_DIR", "PostgreSQL")


def fresh_postgres_url(postgres: dict[str, str], prefix: str) -> str:
    """A SQLAlchemy URL on a new, empty schema of the session's PostgreSQL (the test user may
    not create databases)."""
    import uuid

    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return postgres["SQLALCHEMY_URL"] + f"?options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def slurm() -> Iterator[dict[str, str]]:
    """A real single-node Slurm (munge, slurmctld, slurmd, slurmrestd on a socket and on TCP)."""
    yield from backend_service("slurm", "SLURM_STATE_DIR", "Slurm")


@pytest.fixture(scope="session")
def ray() -> Iterator[dict[str, str]]:
    """A real Ray head node (Jobs API on 127.0.0.1) with 2 CPUs and 8 emulated NPUs."""
    os.environ.setdefault("RAY_NUM_CPUS", "2")
    os.environ.setdefault("RAY_RESOURCES", '{"NPU": 8}')
    # Node labels that discovery reads as the pools' arch and features (issue 16).
    os.environ.setdefault("RAY_EXTRA_ARGS", f"--labels=suanli.io/arch={os.uname().machine},"
                                            "features.suanli.io/cann-8.0=true")
    yield from backend_service("ray", "RAY_STATE_DIR", "Ray")


def database_url(request: pytest.FixtureRequest, home: Path, prefix: str) -> str:
    """For a fixture parametrized with "sqlite" and "postgresql": a SQLite file in `home`, or a
    fresh schema on the real PostgreSQL (the test user may not create databases)."""
    if request.param == "sqlite":
        return f"sqlite:///{home / (prefix + '.db')}"
    return fresh_postgres_url(request.getfixturevalue("postgres"), prefix)


@pytest.fixture
def home() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="suanli-test."))
    yield d
    kill_runs(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def platform(home: Path) -> Iterator[Platform]:
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'suanli.db'}",
                        scheduler_interval_s=0.1)
    db = Database(settings.database_url)
    db.upgrade()
    yield Platform(db=db, settings=settings)
    db.dispose()


def cpu_pool(name: str = "cpu", **kw: object) -> PoolInput:
    base: dict[str, object] = dict(name=name, device_kind=DeviceKind.CPU, device_model="Xeon 8358",
                                   units_per_node=4, nodes=2, memory_gb_per_node=64,
                                   price_fen_per_unit_hour=100, tflops_fp64=0.08,
                                   tflops_fp32=0.16, watts_per_unit=5, max_walltime_s=3600)
    base.update(kw)
    return PoolInput(**base)  # type: ignore[arg-type]


class World:
    """A small network: two local centers, one tenant pair, users of every role."""

    def __init__(self, p: Platform) -> None:
        self.p = p
        self.engine = Engine(p)
        self.alpha = create_center(p, None, CenterInput(
            slug="alpha", name_zh="甲中心", name_en="Alpha", kind=CenterKind.SUPERCOMPUTING,
            district="崂山区", pue=1.2, pools=[cpu_pool("cpu"), cpu_pool(
                "npu", device_kind=DeviceKind.NPU, device_model="Ascend 910B", domestic=True,
                tflops_fp64=None, tflops_fp32=80.0, tflops_fp16=320.0, tflops_int8=640.0,
                price_fen_per_unit_hour=800, watts_per_unit=400)]))
        self.beta = create_center(p, None, CenterInput(
            slug="beta", name_zh="乙中心", name_en="Beta", kind=CenterKind.CLOUD,
            district="黄岛区", pue=1.4, pools=[cpu_pool("cpu", price_fen_per_unit_hour=40,
                                                      tflops_fp32=0.08, tflops_fp64=0.04)]))
        # Credit enough for any test job (admission refuses jobs the tenant's money cannot cover).
        self.t1 = create_tenant(p, None, name="Tenant One", credit_code=VALID_CODES[0],
                                credit_limit_fen=10**9)
        self.t2 = create_tenant(p, None, name="Tenant Two", credit_code=VALID_CODES[1],
                                credit_limit_fen=10**9)
        self.admin = self._user("admin", Role.PLATFORM_ADMIN)
        self.u1 = self._user("u1", Role.TENANT_USER, tenant_id=self.t1.id)
        self.u2 = self._user("u2", Role.TENANT_ADMIN, tenant_id=self.t2.id)
        self.op_alpha = self._user("op", Role.CENTER_OPERATOR, center_id=self.alpha.id)
        self.reviewer = self._user("rev", Role.REVIEWER)

    def _user(self, name: str, role: Role, **kw: int) -> Principal:
        return principal_of(create_user(self.p, None, username=name, role=role, **kw))  # type: ignore[arg-type]

    def drive(self, until: Callable[[], bool], timeout: float = 20.0) -> None:
        """Run engine passes until `until()` holds."""
        def tick_and_check() -> bool:
            self.engine.tick()
            return until()

        eventually(tick_and_check, timeout=timeout, interval=0.05, what="engine passes")

    def job(self, job_id: int) -> m.Job:
        with self.p.db.session() as s:
            job = s.get(m.Job, job_id)
            assert job is not None
            return job

    def runs(self, job_id: int) -> list[m.Run]:
        with self.p.db.session() as s:
            return list(s.scalars(select(m.Run).where(m.Run.job_id == job_id).order_by(m.Run.id)))

    def usage(self, job_id: int) -> list[m.UsageRecord]:
        with self.p.db.session() as s:
            return list(s.scalars(select(m.UsageRecord).where(m.UsageRecord.job_id == job_id)))


@pytest.fixture
def world(platform: Platform) -> World:
    return World(platform)
