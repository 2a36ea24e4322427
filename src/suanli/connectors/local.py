"""The local executor: jobs as real processes on this machine (the embedded default center).

Each run gets a directory `<root>/<run_key>/` (root's, 0700) holding its spec, its logs, its work
folder's mount point and its result. A detached supervisor (`local_shim`) runs the job sandboxed
as the tenant's unprivileged user (see sandbox.py and local_shim.py), so jobs keep running while
the suanli server is down and are re-attached when it comes back.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..domain.enums import RunState
from ..domain.errors import ConnectorError
from .base import (
    Capability,
    Health,
    PoolCapacity,
    RunRequest,
    RunStatus,
    read_chunk,
    stage_dict,
)
from .local_shim import write_json_atomic
from .procfs import is_alive, start_ticks
from .sandbox import SandboxConfig, seccomp_filter

SHIM = str(Path(__file__).with_name("local_shim.py"))
LAUNCH_TIMEOUT_S = 60.0  # a launch marker with no supervisor after this long is a lost launch
_PASS_ENV = ("LANG", "LC_ALL", "TZ")  # the sandbox sets PATH, HOME and TMPDIR itself


def _parse_time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None


class LocalConnector:
    name = "local"
    capabilities = frozenset(
        {Capability.CANCEL, Capability.LOGS, Capability.ACCELERATORS, Capability.REATTACH,
         Capability.SANDBOX, Capability.STAGING}
    )

    def __init__(self, root: Path, *, term_grace_s: float = 10.0,
                 device_env: str | None = None, pools: Mapping[str, int] | None = None,
                 sandbox: SandboxConfig | None = None, dataset_cache: Path | None = None
                 ) -> None:
        self.root = root
        # The center's copies of uploaded datasets: <dataset_cache>/t<tenant>/<sha256>/, root's
        # (0700 above each copy), unpacked once by the first run needing one, bound read-only
        # into every run of that tenant that names it. None: each run unpacks its own.
        self.dataset_cache = dataset_cache
        self.term_grace_s = term_grace_s
        self.device_env = device_env
        self.pools = dict(pools or {})
        self.sandbox = sandbox or SandboxConfig()
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def kill_grace_s(self, walltime_s: int) -> float:
        """The supervisor sends SIGTERM at the walltime and SIGKILL `term_grace_s` later; it
        notices each within a poll (0.1 s) and records the end after it: one second covers that."""
        return self.term_grace_s + 1

    # -- the center's dataset copies ---------------------------------------------------------
    def _dataset_dir(self, tenant_id: int | None, sha256: str) -> Path | None:
        if self.dataset_cache is None or len(sha256) != 64 or \
                any(c not in "0123456789abcdef" for c in sha256):
            return None
        return self.dataset_cache / f"t{int(tenant_id or 0)}" / sha256

    def holds_dataset(self, tenant_id: int, sha256: str) -> bool:
        """Whether the tenant's copy of the uploaded dataset is unpacked here (whole: a copy is
        renamed into place only once complete). The folder is root's: no job can make it."""
        found = self._dataset_dir(tenant_id, sha256)
        return found is not None and found.is_dir() and not found.is_symlink()

    def drop_dataset(self, tenant_id: int, sha256: str, shared: bool = False) -> None:
        """Remove the tenant's copy of the dataset (`shared` does not matter: copies here are
        per tenant)."""
        found = self._dataset_dir(tenant_id, sha256)
        if found is None or found.is_symlink() or not found.exists():
            return
        gone = found.with_name(f".{sha256}.tmp-gone-{os.getpid()}")
        os.rename(found, gone)  # no run starts on a half-removed copy
        shutil.rmtree(gone, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------------
    def _dir(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ConnectorError(f"invalid run key {key!r}")
        return self.root / key

    def _reap(self, key: str) -> None:
        child = self._children.get(key)
        if child is not None and child.poll() is not None:
            del self._children[key]

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    # -- the interface -------------------------------------------------------------------------
    def submit(self, req: RunRequest) -> str:
        run_dir = self._dir(req.run_key)
        if (run_dir / "launch").exists():
            return req.run_key  # already launched: idempotent
        if not req.command:
            raise ConnectorError("empty command")
        problem = self.sandbox.host_problem()
        if problem is not None:
            raise ConnectorError(problem)
        user = self.sandbox.username(req.tenant_id)
        uid, gid = self.sandbox.tenant_user(req.tenant_id)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        run_dir.mkdir(mode=0o700, exist_ok=True)
        try:
            fd = os.open(run_dir / "launch", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return req.run_key  # launched meanwhile: idempotent
        os.close(fd)
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        env.update(req.env)
        devices = ",".join(str(d) for d in req.devices)
        env.update(
            {
                "SUANLI_JOB_ID": str(req.job_id),
                "SUANLI_RUN_KEY": req.run_key,
                "SUANLI_UNITS": str(req.units),
                "SUANLI_NODES": str(req.nodes),
                "SUANLI_DEVICES": devices,
                "SUANLI_POOL": req.pool,
            }
        )
        if self.device_env:
            env[self.device_env] = devices
        spec = {
            "command": list(req.command),
            "env": env,
            "walltime_s": req.walltime_s,
            "term_grace_s": self.term_grace_s,
            "pool": req.pool,
            "units": req.units,
            "tenant_id": req.tenant_id,
            "sandbox": self.sandbox.spec(user, uid, gid),
            # Bring-your-own-work: unpacked into the work folder before the job starts (the
            # supervisor reads the artifact store's file, or fetches `url` with the token), and
            # what to pack into outputs.tar when it ends.
            "stage": [stage_dict(item) for item in req.stage],
            "token": req.token,
            "outputs": list(req.outputs),
        }
        cached = self.dataset_cache is not None and any(item.cache for item in req.stage)
        if cached and self.dataset_cache is not None:
            self.dataset_cache.mkdir(mode=0o700, parents=True, exist_ok=True)
            spec["dataset_cache"] = str(self.dataset_cache / f"t{int(req.tenant_id or 0)}")
        # Not fsynced: these files must survive a crash of suanli, which the page cache does.
        write_json_atomic(run_dir / "spec.json", spec, durable=False)
        (run_dir / "seccomp.bpf").write_bytes(seccomp_filter())
        # The supervisor uses the standard library only: started by path in isolated mode
        # (-I -S: no site-packages) it costs about half the start-up CPU of `-m suanli...`. Its
        # own mount namespace holds the job's work folder, which vanishes with it.
        child = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private",
             sys.executable, "-I", "-S", SHIM, str(run_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(run_dir / "shim.log", "ab"),  # noqa: SIM115 - the child owns it
            start_new_session=True,
            close_fds=True,
        )
        self._children[req.run_key] = child
        write_json_atomic(
            run_dir / "shim.json", {"pid": child.pid, "ticks": start_ticks(child.pid)},
            durable=False,
        )
        return req.run_key

    def status(self, external_id: str) -> RunStatus:
        run_dir = self._dir(external_id)
        self._reap(external_id)
        result = self._read_json(run_dir / "result.json")
        if result is not None:
            return self._from_result(result)
        shim = self._read_json(run_dir / "shim.json")
        if shim is None:
            launch = run_dir / "launch"
            if not launch.exists():
                return RunStatus(RunState.UNKNOWN, reason="never submitted")
            if time.time() - launch.stat().st_mtime > LAUNCH_TIMEOUT_S:
                return RunStatus(RunState.LOST, reason="launch interrupted before the job started")
            return RunStatus(RunState.PENDING, reason="launching")
        started = self._read_json(run_dir / "started.json")
        if is_alive(int(shim["pid"]), shim.get("ticks")):
            if started is None:
                return RunStatus(RunState.PENDING, reason="starting")
            return RunStatus(RunState.RUNNING, started_at=_parse_time(started.get("started_at")))
        result = self._read_json(run_dir / "result.json")  # it may have just finished
        if result is not None:
            return self._from_result(result)
        # Its supervisor gone without a result, the run ended when it was last seen alive: the
        # supervisor touches started.json every few seconds (a heartbeat).
        last_alive = _mtime(run_dir / "started.json")
        if (run_dir / "cancel").exists():
            return RunStatus(RunState.CANCELLED, ended_at=last_alive,
                             reason="cancelled; supervisor gone")
        return RunStatus(
            RunState.LOST,
            started_at=_parse_time(started.get("started_at")) if started else None,
            ended_at=last_alive,
            reason="the run's supervisor died without a result (machine restart?)",
        )

    @staticmethod
    def _from_result(result: dict[str, Any]) -> RunStatus:
        code = result.get("exit_code")
        return RunStatus(
            RunState(result["state"]),
            exit_code=int(code) if code is not None else None,
            started_at=_parse_time(result.get("started_at")),
            ended_at=_parse_time(result.get("ended_at")),
            reason=str(result.get("reason", "")),
        )

    def collect_outputs(self, external_id: str) -> Path | None:
        """The ended run's packed outputs (`outputs.tar`, root's), or None (none declared, not
        ended, or not kept: the run's reason says why)."""
        run_dir = self._dir(external_id)
        path = run_dir / "outputs.tar"
        if (run_dir / "result.json").exists() and path.is_file():
            return path
        return None

    def cancel(self, external_id: str) -> None:
        run_dir = self._dir(external_id)
        if not run_dir.exists():
            raise ConnectorError(f"no such run {external_id}")
        (run_dir / "cancel").touch()
        shim = self._read_json(run_dir / "shim.json")
        if shim and is_alive(int(shim["pid"]), shim.get("ticks")):
            try:
                os.kill(int(shim["pid"]), signal.SIGTERM)
            except ProcessLookupError:
                pass

    def logs(self, external_id: str, stream: str = "stdout", offset: int = 0) -> bytes:
        if stream not in ("stdout", "stderr"):
            raise ConnectorError(f"unknown log stream {stream!r}")
        return read_chunk(self._dir(external_id) / f"{stream}.log", offset)

    def active_units(self) -> dict[str, int]:
        """Units held by runs without a result, per pool name (scans the run directories)."""
        used: dict[str, int] = {}
        if not self.root.exists():
            return used
        for run_dir in self.root.iterdir():
            if (run_dir / "result.json").exists():
                continue
            spec = self._read_json(run_dir / "spec.json")
            if spec is None:
                continue
            status = self.status(run_dir.name)
            if status.state.is_terminal:
                continue
            pool = str(spec.get("pool", ""))
            used[pool] = used.get(pool, 0) + int(spec.get("units", 0))
        return used

    def capacity(self) -> list[PoolCapacity]:
        used = self.active_units()
        return [
            PoolCapacity(pool, total, max(0, total - used.get(pool, 0)))
            for pool, total in sorted(self.pools.items())
        ]

    def health(self) -> Health:
        problem = self.sandbox.host_problem()
        if problem is not None:
            return Health(False, problem)
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            probe = self.root / ".health"
            probe.write_text("ok", encoding="utf-8")
            probe.unlink()
        except OSError as exc:
            return Health(False, f"run directory {self.root} not writable: {exc}")
        return Health(True, f"local executor at {self.root}")


def create(config: Mapping[str, Any], home: Path) -> LocalConnector:
    root = Path(config.get("root") or home / "runs" / str(config.get("center", "local")))
    cache = config.get("dataset_cache", "")
    if (cache is not None and not isinstance(cache, str)) or \
            (cache and not str(cache).startswith("/")):
        raise ConnectorError("connector setting 'dataset_cache' is an absolute path, or null "
                             "(no shared dataset copies)")
    return LocalConnector(
        root,
        term_grace_s=float(config.get("term_grace_s", 10.0)),
        device_env=config.get("device_env"),
        pools=config.get("pools"),
        sandbox=SandboxConfig.from_config(config),
        dataset_cache=None if cache is None else Path(
            cache or home / "datasets" / str(config.get("center", "local"))),
    )
