"""Slurm through slurmrestd (never by scraping squeue): submit, status, cancel, logs, capacity.

Configuration (per center, in `connector_config`):

    socket: /run/slurmrestd.sock          # unix socket (rest_auth/local), or
    url: http://slurm-head:6820           # TCP with a JWT:
    user: suanli                          #   X-SLURM-USER-NAME
    token: eyJ...                         #   X-SLURM-USER-TOKEN (never logged, masked in the API)
    partitions: {pool-name: partition}    # a pool maps to a partition (default: the pool's name)
    gres: {pool-name: gpu}                # GRES name for GPU/NPU pools (default: gpu / npu)
    output_dir: /shared/suanli/logs       # where jobs write stdout/stderr; suanli reads logs here
    work_dir: /shared/suanli/work         # the jobs' working directory (default: output_dir)
    submit_concurrency: 1                 # submits in flight at once (default 1)
    kill_wait_s: 30                       # the cluster's KillWait + OverTimeLimit, in seconds
                                          # (default 30, Slurm's default KillWait)
    staging_dir: /shared/suanli/stage     # optional: a folder suanli and the nodes share; stage
                                          # items are copied there once (by SHA-256) instead of
                                          # fetched over HTTP by each job
    python: python3                       # the nodes' Python (3.8+) for staging (default python3)

A pool whose device is a GPU or NPU asks for `gres: <name>:<units per node>`; a CPU pool asks for
`cpus_per_task: <units per node>`. Walltimes are rounded up to whole minutes (Slurm's unit): a
run may go on that much past its walltime, and `kill_wait_s` more after Slurm's SIGTERM (what a
job's hold covers, see `kill_grace_s`).

Staging (bring your own work): a run with stage items or declared outputs works in a folder of
its own, `<work_dir>/<run key>`. Its batch script carries `stagekit.py` (standard library only)
and a spec; before the command it fetches each stage item from suanli's API with the run's token
(or copies it from `staging_dir`), checks its SHA-256 and unpacks it without letting anything out
of the folder; after the command — also when it failed or got SIGTERM (walltime, cancel) — it
packs the declared outputs and PUTs them to suanli. A staging failure ends the job before its
command runs (exit 1, the reason on its stderr).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shlex
import shutil
import stat
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from ..domain.enums import RunState
from ..domain.errors import ConnectorError
from .base import (
    Capability,
    Health,
    PoolCapacity,
    RunRequest,
    RunStatus,
    pool_software,
    positive_int,
    read_chunk,
    stage_dict,
)

STAGEKIT = Path(__file__).parent.parent / "artifacts" / "stagekit.py"
SUPPORTED_VERSIONS = ("0.0.38",)
JOB_PREFIX = "suanli-"


def time_limit_min(walltime_s: int) -> int:
    """Slurm's time limit for a walltime: whole minutes, rounded up."""
    return max(1, -(-walltime_s // 60))


# Slurm job states -> ours. NODE_FAIL and PREEMPTED lose the attempt: the job is re-placed.
STATES: dict[str, RunState] = {
    "PENDING": RunState.PENDING, "CONFIGURING": RunState.PENDING,
    "REQUEUED": RunState.PENDING, "REQUEUE_HOLD": RunState.PENDING,
    "REQUEUE_FED": RunState.PENDING, "RESIZING": RunState.PENDING,
    "SUSPENDED": RunState.RUNNING, "RUNNING": RunState.RUNNING,
    "COMPLETING": RunState.RUNNING, "SIGNALING": RunState.RUNNING, "STAGE_OUT": RunState.RUNNING,
    "COMPLETED": RunState.COMPLETED,
    "FAILED": RunState.FAILED, "OUT_OF_MEMORY": RunState.FAILED, "BOOT_FAIL": RunState.FAILED,
    "SPECIAL_EXIT": RunState.FAILED,
    "CANCELLED": RunState.CANCELLED, "REVOKED": RunState.CANCELLED,
    "TIMEOUT": RunState.TIMEOUT, "DEADLINE": RunState.TIMEOUT,
    "NODE_FAIL": RunState.LOST, "PREEMPTED": RunState.LOST,
}


def decode_exit(raw: int | None) -> int | None:
    """Slurm reports the raw wait status: `exit 3` is 768; killed by SIGTERM is 15."""
    if raw is None:
        return None
    if raw & 0x7F:
        return -(raw & 0x7F)
    return (raw >> 8) & 0xFF


def _time(epoch: object) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if isinstance(epoch, int) and epoch > 0 else None


class SlurmConnector:
    name = "slurm"
    capabilities = frozenset(
        {Capability.GANG, Capability.CANCEL, Capability.LOGS, Capability.ACCELERATORS,
         Capability.REATTACH, Capability.DISCOVER, Capability.BATCH_STATUS,
         Capability.STAGING}
    )

    def __init__(self, config: Mapping[str, Any], home: Path) -> None:
        self.config = dict(config)
        headers = {}
        if config.get("socket"):
            transport = httpx.HTTPTransport(uds=str(config["socket"]))
            base = "http://slurmrestd"
        elif config.get("url"):
            transport = httpx.HTTPTransport()
            base = str(config["url"]).rstrip("/")
            if config.get("user"):
                headers["X-SLURM-USER-NAME"] = str(config["user"])
            if config.get("token"):
                headers["X-SLURM-USER-TOKEN"] = str(config["token"])
        else:
            raise ConnectorError("a slurm center needs `socket` or `url` in its connector config")
        self._jwt = "X-SLURM-USER-TOKEN" in headers
        self._http = httpx.Client(base_url=base, transport=transport, headers=headers,
                                  timeout=float(config.get("timeout_s", 15)))
        self.output_dir = Path(config.get("output_dir") or home / "slurm" / "logs")
        self.work_dir = Path(config.get("work_dir") or self.output_dir)
        self.partitions: dict[str, str] = dict(config.get("partitions") or {})
        self.gres: dict[str, str] = dict(config.get("gres") or {})
        self._version: str | None = config.get("version")
        # submits in flight at once from one scheduling pass (the engine honours it)
        self.submit_concurrency = positive_int(config, "submit_concurrency", 1)
        self.kill_wait_s = positive_int(config, "kill_wait_s", 30)
        self.staging_dir = Path(config["staging_dir"]) if config.get("staging_dir") else None
        self.python = str(config.get("python") or "python3")

    # -- HTTP ----------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ConnectorError(f"slurmrestd unreachable: {type(exc).__name__}: {exc}") from exc
        try:
            data = resp.json()
        except ValueError:
            data = {"errors": [{"error": resp.text[:200]}]}
        if resp.status_code >= 400 or (isinstance(data, dict) and data.get("errors")
                                       and resp.status_code != 200):
            errs = data.get("errors") if isinstance(data, dict) else None
            msg = "; ".join(str(e.get("error") or e.get("description") or e) for e in errs or [])
            if resp.status_code == 401:
                msg = "slurmrestd refused the credentials: check `user` and `token` of this center"
            elif self._jwt and resp.status_code == 500:
                # slurmrestd passes the JWT on; a token slurmctld does not accept (expired,
                # signed with another key, for another user) comes back as a bare HTTP 500
                # ("Unspecified error", "Zero Bytes were transmitted or received").
                msg += (" (slurmctld refused the request: is the JWT `token` valid, unexpired and"
                        " issued for `user`?)")
            raise ConnectorError(f"slurmrestd {method} {path}: HTTP {resp.status_code} "
                                 f"{msg or resp.reason_phrase}", detail=data)
        return data if isinstance(data, dict) else {}

    @property
    def version(self) -> str:
        """The OpenAPI plugin version the server speaks; refused when suanli does not know it."""
        if self._version is None:
            info = self._request("GET", "/openapi").get("info", {})
            self._version = str(info.get("version", ""))
        if self._version not in SUPPORTED_VERSIONS:
            raise ConnectorError(
                f"slurmrestd speaks OpenAPI v{self._version or '?'}; suanli supports "
                f"{', '.join('v' + v for v in SUPPORTED_VERSIONS)} (start slurmrestd with "
                f"-s openapi/v{SUPPORTED_VERSIONS[0]})")
        return self._version

    def _api(self, path: str) -> str:
        return f"/slurm/v{self.version}{path}"

    # -- the interface -------------------------------------------------------------------------
    def _find(self, run_key: str) -> dict[str, Any] | None:
        for job in self._request("GET", self._api("/jobs")).get("jobs", []):
            if job.get("name") == JOB_PREFIX + run_key:
                return dict(job)
        return None

    def kill_grace_s(self, walltime_s: int) -> float:
        """The walltime's rounding up to whole minutes, then Slurm's KillWait after SIGTERM."""
        return time_limit_min(walltime_s) * 60 - walltime_s + self.kill_wait_s

    def job_description(self, req: RunRequest) -> dict[str, Any]:
        per_node = max(1, req.units // max(1, req.nodes))
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", **req.env,
               "SUANLI_JOB_ID": str(req.job_id), "SUANLI_RUN_KEY": req.run_key,
               "SUANLI_UNITS": str(req.units), "SUANLI_NODES": str(req.nodes),
               "SUANLI_POOL": req.pool}
        job: dict[str, Any] = {
            "name": JOB_PREFIX + req.run_key,
            "partition": self.partitions.get(req.pool, req.pool),
            "time_limit": time_limit_min(req.walltime_s),
            "nodes": req.nodes,
            "tasks": req.nodes,
            "current_working_directory": str(self.work_dir),
            "standard_output": str(self.output_dir / f"{req.run_key}.out"),
            "standard_error": str(self.output_dir / f"{req.run_key}.err"),
            "environment": env,
            "comment": f"suanli job {req.job_id}",
        }
        kind = req.device_kind
        if kind in ("gpu", "npu"):
            job["gres"] = f"{self.gres.get(req.pool, kind)}:{per_node}"
            job["cpus_per_task"] = 1
        else:
            job["cpus_per_task"] = per_node
        if req.memory_gb:
            job["memory_per_node"] = req.memory_gb * 1024
        return job

    def submit(self, req: RunRequest) -> str:
        if not req.command:
            raise ConnectorError("empty command")
        if req.resubmit:
            existing = self._find(req.run_key)
            if existing is not None:
                return str(existing["job_id"])  # this attempt reached Slurm before a crash
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        devices = ('export SUANLI_DEVICES="${CUDA_VISIBLE_DEVICES:-${SLURM_STEP_GPUS:-'
                   '${SLURM_JOB_GPUS:-}}}"\n')
        if req.stage or req.outputs:
            script = "#!/bin/sh\n" + devices + self.staging_script(req)
        else:
            script = "#!/bin/sh\n" + devices + "exec " + shlex.join(req.command) + "\n"
        data = self._request("POST", self._api("/job/submit"),
                             json={"script": script, "job": self.job_description(req)})
        job_id = data.get("job_id")
        if job_id is None:
            raise ConnectorError(f"slurmrestd accepted no job: {data.get('errors')}")
        return str(job_id)

    def _staged_copy(self, item: dict[str, Any]) -> dict[str, Any]:
        """The item as the node reads it: from `staging_dir` (copied there once, by SHA-256)
        when one is configured and suanli has the bytes on disk, else over HTTP only (suanli's
        own file paths mean nothing on the nodes)."""
        local = item.get("local_path")
        item = {**item, "local_path": None}
        if self.staging_dir is None or not local or not os.path.isfile(local):
            return item
        target = self.staging_dir / item["sha256"]
        if self._staged_file(item["sha256"], int(item.get("size") or 0) or None) is None:
            self.staging_dir.mkdir(parents=True, exist_ok=True)
            # The folder is shared with the nodes' jobs: a new file of our own, never a name a
            # job planted (a link there would have us write and chmod whatever it points at),
            # renamed over whatever a job left under that name (its bytes would fail every
            # run's check); where we may not replace it (a sticky folder), fetched over HTTP.
            tmp = target.with_name(f".{target.name}.{secrets.token_hex(16)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                with os.fdopen(fd, "wb") as out, open(local, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                    os.fchmod(out.fileno(), 0o644)
                os.replace(tmp, target)
            except PermissionError:
                tmp.unlink(missing_ok=True)
                return item
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return {**item, "local_path": str(target)}

    def _staged_file(self, sha256: str, size: int | None = None) -> Path | None:
        """suanli's own copy of an artifact in `staging_dir` (a regular file of suanli's user,
        not a link nor a file a job planted; of `size` bytes when given), or None. A job able
        to write the folder may still have renamed another of suanli's files to that name:
        `holds_dataset` reads the bytes."""
        if self.staging_dir is None or len(sha256) != 64 or \
                any(c not in "0123456789abcdef" for c in sha256):
            return None
        target = self.staging_dir / sha256
        try:
            st = target.lstat()
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or \
                (size is not None and st.st_size != size):
            return None
        return target

    def holds_dataset(self, tenant_id: int, sha256: str) -> bool:
        """Whether the dataset's tar is in `staging_dir` (copied there by suanli at a submit):
        its bytes are at the center, and each run unpacks it from there. Without `staging_dir`
        each run fetches it over HTTP: never counted as present. The file's SHA-256 is checked
        (once per dataset and center: the engine asks only until it is recorded present), so
        no file a job renamed or planted there counts."""
        found = self._staged_file(sha256)
        if found is None:
            return False
        try:
            fd = os.open(found, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return False
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
                return False
            digest = hashlib.sha256()
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest() == sha256

    def drop_dataset(self, tenant_id: int, sha256: str, shared: bool = False) -> None:
        """Remove the dataset's tar from `staging_dir`, unless another tenant stores the same
        bytes (`shared`: the file, named by content, is theirs too). Runs' own folders are
        removed by their scripts."""
        found = self._staged_file(sha256)
        if found is not None and not shared:
            found.unlink(missing_ok=True)

    def staging_script(self, req: RunRequest) -> str:
        """The batch script's body for a run that stages: the run's own folder, stagekit and its
        spec beside it, stage in, the command, the outputs out whatever its end."""
        work = self.work_dir / req.run_key
        kit = self.work_dir / f".{req.run_key}.suanli"
        spec = {"stage": [self._staged_copy(stage_dict(i)) for i in req.stage],
                "token": req.token, "outputs": list(req.outputs), "outputs_url": req.outputs_url,
                "outputs_tmp": str(kit)}
        source = STAGEKIT.read_text(encoding="utf-8")
        py = shlex.quote(self.python)
        k, w = shlex.quote(str(kit)), shlex.quote(str(work))
        return (
            f"umask 077\nmkdir -p {w} {k} || exit 1\n"
            f"cat > {k}/stagekit.py <<'END_OF_STAGEKIT_PY'\n{source}END_OF_STAGEKIT_PY\n"
            f"cat > {k}/spec.json <<'END_OF_STAGE_SPEC'\n{json.dumps(spec)}\nEND_OF_STAGE_SPEC\n"
            f"umask 022\ncd {w} || exit 1\n"
            f"{py} {k}/stagekit.py in {k}/spec.json || {{ rm -rf {k}; exit 1; }}\n"
            # SIGTERM (walltime, scancel) reaches the command too; the script goes on to pack
            "trap 'suanli_signalled=1' TERM INT\n"
            f"{shlex.join(req.command)}\nrc=$?\n"
            f"{py} {k}/stagekit.py out {k}/spec.json\nrm -rf {k}\nexit $rc\n")

    def status(self, external_id: str) -> RunStatus:
        try:
            data = self._request("GET", self._api(f"/job/{int(external_id)}"))
        except ConnectorError as exc:
            if "Invalid job id" in exc.message:
                return RunStatus(RunState.LOST, reason="Slurm no longer knows this job")
            raise
        jobs = data.get("jobs") or []
        if not jobs:
            return RunStatus(RunState.LOST, reason="Slurm no longer knows this job")
        return _run_status(jobs[0])

    def statuses(self, external_ids: Sequence[str]) -> dict[str, RunStatus]:
        """All asked-for runs from one `GET /jobs`; a job Slurm does not list is left out (the
        caller asks `status()` for it, which tells a forgotten job from a slow answer)."""
        wanted = set(external_ids)
        return {str(job.get("job_id")): _run_status(job)
                for job in self._request("GET", self._api("/jobs")).get("jobs", [])
                if str(job.get("job_id")) in wanted}

    def cancel(self, external_id: str) -> None:
        self._request("DELETE", self._api(f"/job/{int(external_id)}"))

    def logs(self, external_id: str, stream: str = "stdout", offset: int = 0) -> bytes:
        if stream not in ("stdout", "stderr"):
            raise ConnectorError(f"unknown log stream {stream!r}")
        job = self._request("GET", self._api(f"/job/{int(external_id)}")).get("jobs") or [{}]
        name = str(job[0].get("name", ""))
        if not name.startswith(JOB_PREFIX):
            raise ConnectorError(f"Slurm job {external_id} was not submitted by suanli")
        path = self.output_dir / f"{name[len(JOB_PREFIX):]}.{'out' if stream == 'stdout' else 'err'}"
        try:
            return read_chunk(path, offset)
        except OSError as exc:
            raise ConnectorError(f"cannot read {path} (is output_dir shared with suanli?): "
                                 f"{exc}") from exc

    def capacity(self) -> list[PoolCapacity]:
        nodes = self._request("GET", self._api("/nodes")).get("nodes", [])
        parts = self._request("GET", self._api("/partitions")).get("partitions", [])
        out = []
        for part in parts:
            pname = str(part.get("name"))
            members = [n for n in nodes if pname in (n.get("partitions") or [])]
            up = [n for n in members if not _down(n)]
            total = sum(int(n.get("cpus", 0)) for n in members)
            free = sum(int(n.get("idle_cpus", 0)) for n in up)
            gpus = sum(_gres_count(n.get("gres")) for n in members)
            if gpus:
                total = gpus
                free = sum(_gres_count(n.get("gres")) - _gres_count(n.get("gres_used"))
                           for n in up)
            out.append(PoolCapacity(pname, total, max(0, free)))
        return out

    def health(self) -> Health:
        try:
            pings = self._request("GET", self._api("/ping")).get("pings", [])
        except ConnectorError as exc:
            return Health(False, exc.message)
        up = [p for p in pings if p.get("ping") == "UP"]
        if not up:
            return Health(False, f"slurmctld does not answer: {pings}")
        return Health(True, f"slurmctld {up[0].get('hostname')} UP (v{self.version})")

    def discover(self) -> list[dict[str, Any]]:
        """The partitions as pool descriptions (nodes, CPUs or GRES per node, memory).

        Slurm partitions do not say what device they are for; nodes carry GRES. A partition
        whose nodes all have GPU/NPU GRES becomes an accelerator pool, unless it is the default
        partition or its name says cpu (general partitions often contain GPU nodes too).
        """
        nodes = self._request("GET", self._api("/nodes")).get("nodes", [])
        pools = []
        for part in self._request("GET", self._api("/partitions")).get("partitions", []):
            pname = str(part.get("name"))
            members = [n for n in nodes if pname in (n.get("partitions") or [])]
            if not members:
                continue
            gres = min(_gres_count(n.get("gres")) for n in members)
            general = "default" in (part.get("flags") or []) or "cpu" in pname.lower()
            gres_name = str(members[0].get("gres") or "").split(":")[0]
            kind = ("npu" if gres_name == "npu" else "gpu") if gres and not general else "cpu"
            per_node = gres if kind != "cpu" else min(int(n.get("cpus", 1)) for n in members)
            pools.append({
                "name": pname, "partition": pname, "device_kind": kind,
                "units_per_node": per_node, "nodes": len(members),
                "memory_gb_per_node": max(1, min(int(n.get("real_memory", 1024))
                                                 for n in members) // 1024),
                "gres": str(members[0].get("gres") or ""),
                **_software(members),
                "max_walltime_s": (int(part["max_time_limit"]) * 60
                                   if isinstance(part.get("max_time_limit"), int)
                                   and part["max_time_limit"] > 0 else None),
            })
        return pools


def _software(members: list[Mapping[str, Any]]) -> dict[str, Any]:
    """A partition's arch and the node features every node has (`Features=` in slurm.conf;
    what `sbatch --constraint` matches)."""
    return pool_software(
        [str(n.get("architecture") or "") for n in members],
        [{f.strip() for f in str(n.get("active_features") or n.get("features") or "").split(",")
          if f.strip()} for n in members])


def _run_status(job: Mapping[str, Any]) -> RunStatus:
    slurm_state = str(job.get("job_state", "")).split()[0]
    state = STATES.get(slurm_state, RunState.PENDING)
    reason = f"Slurm {slurm_state}"
    if job.get("state_reason") not in (None, "", "None"):
        reason += f" ({job['state_reason']})"
    code = decode_exit(job.get("exit_code")) if state.is_terminal else None
    return RunStatus(state, exit_code=code, started_at=_time(job.get("start_time"))
                     if state is not RunState.PENDING else None,
                     ended_at=_time(job.get("end_time")) if state.is_terminal else None,
                     reason=reason)


def _down(node: Mapping[str, Any]) -> bool:
    state = str(node.get("state", "")).lower()
    return any(s in state for s in ("down", "drain", "fail"))


def _gres_count(spec: object) -> int:
    """'gpu:fake:2' -> 2; 'gpu:fake:1(IDX:0)' -> 1; several comma-separated entries add up."""
    total = 0
    for entry in str(spec or "").split(","):
        entry = entry.split("(")[0].strip()
        if not entry:
            continue
        last = entry.rsplit(":", 1)[-1]
        if last.isdigit():
            total += int(last)
    return total


def create(config: Mapping[str, Any], home: Path) -> SlurmConnector:
    return SlurmConnector(config, home)
