"""Ray through the Jobs REST API of the cluster's dashboard (the connector speaks HTTP only).

Configuration (per center, in `connector_config`):

    url: http://ray-head:8265          # the dashboard / Jobs API address
    headers: {Authorization: ...}      # optional, for a gateway in front of the dashboard
    resources: {pool-name: NPU}        # custom resource per pool (default: GPU pools use GPUs,
                                       # NPU pools the custom resource "NPU", CPU pools CPUs)
    submit_concurrency: 4              # submits in flight at once (default 4)

A run is a Ray job whose entrypoint is the command; the pool's units are reserved for it as
`entrypoint_num_cpus`, `entrypoint_num_gpus` or `entrypoint_resources`. The submission id is
`suanli-<run key>`, so a repeated submit is refused by Ray and answered with the same id. Ray has
no walltime: the entrypoint runs under `timeout`, and its exit status 124 is reported as TIMEOUT.
Ray merges stdout and stderr into one log; `stderr` is empty. A job asking for more of a
resource than the cluster has is refused (Ray itself would leave it PENDING for ever). Ray stops a
PENDING job only once it gets its resources: the command may then start for a moment.

Staging (bring your own work): a run with stage items or declared outputs gets a working folder
built here — each stage item fetched (from the artifact store's file, or suanli's API with the
run's token), checked and unpacked into a temporary folder with `stagekit`, plus the outputs
wrapper in `.suanli/` — zipped and uploaded through Ray's own package API (`PUT
/api/packages/gcs/_ray_pkg_<hash>.zip`, what the Jobs SDK does for a local `working_dir`), and
the job is submitted with `runtime_env.working_dir: gcs://_ray_pkg_<hash>.zip`. The package holds
the run key, so each run has a folder of its own on the node (Ray shares the unpacked folder
between jobs with the same package). With declared outputs, the entrypoint is the wrapper: it
runs the command, then packs the outputs and PUTs them to suanli's API, also when the command
failed or was stopped. Symbolic links of the work folder are followed only inside it; links
out of it, and links to folders, are left out of the package.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from ..artifacts import stagekit
from ..domain.enums import RunState
from ..domain.errors import ConnectorError
from .base import (
    LOG_CHUNK,
    Capability,
    Health,
    PoolCapacity,
    RunRequest,
    RunStatus,
    pool_software,
    positive_int,
    stage_dict,
)

PREFIX = "suanli-"
STAGEKIT = Path(stagekit.__file__)
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
USAGE_RE = re.compile(r"([\d.]+)/([\d.]+) ([A-Za-z_][\w-]*)(?!\S)")
TIMEOUT_EXIT = 124
# A line Ray's job manager writes into a job's log ("2026-12-04 17:34:10,010<TAB>INFO
# job_manager.py:581 -- Runtime env is setting up.").
RAY_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\t[A-Z]+ job_manager\.py:\d+ -- [^\n]*\n?",
                          re.MULTILINE)
KILL_AFTER_S = 10  # `timeout -k`: SIGKILL this long after the walltime's SIGTERM
STATES = {"PENDING": RunState.PENDING, "RUNNING": RunState.RUNNING,
          "SUCCEEDED": RunState.COMPLETED, "FAILED": RunState.FAILED,
          "STOPPED": RunState.CANCELLED}


def _ms(value: object) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, UTC) if isinstance(value, int) and value else None


class RayConnector:
    name = "ray"
    capabilities = frozenset({Capability.CANCEL, Capability.LOGS, Capability.ACCELERATORS,
                              Capability.REATTACH, Capability.DISCOVER,
                              Capability.BATCH_STATUS, Capability.STAGING})

    def __init__(self, config: Mapping[str, Any], home: Path) -> None:
        if not config.get("url"):
            raise ConnectorError("a ray center needs `url` (the Jobs API / dashboard address)")
        self._http = httpx.Client(base_url=str(config["url"]).rstrip("/"),
                                  headers=dict(config.get("headers") or {}),
                                  timeout=float(config.get("timeout_s", 15)))
        self.resources: dict[str, str] = dict(config.get("resources") or {})
        # submits in flight at once from one scheduling pass (the engine honours it)
        self.submit_concurrency = positive_int(config, "submit_concurrency", 4)
        # Jobs this connector asked Ray to stop: a job stopped while its supervisor starts may
        # end FAILED (the supervisor loses its child process), which is a cancellation.
        self._stopped: set[str] = set()
        self._entrypoints: dict[str, str] = {}  # job → its entrypoint, to find Ray's line about it
        # the largest working folder a run may bring (Ray limits a package's size too)
        self.max_package_bytes = positive_int(config, "max_package_mb", 500) << 20
        self.python = str(config.get("python") or "python3")  # runs the outputs wrapper

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ConnectorError(f"Ray Jobs API unreachable: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 400:
            # Ray answers many errors with a Python traceback: its last line says what happened.
            lines = [ln for ln in resp.text.strip().splitlines() if ln.strip(" .")]
            raise ConnectorError(f"Ray {method} {path}: HTTP {resp.status_code} "
                                 f"{lines[-1][:300] if lines else resp.reason_phrase}",
                                 detail=resp.text[-4000:])
        try:
            return resp.json()
        except ValueError:
            return {}

    def kill_grace_s(self, walltime_s: int) -> float:
        """`timeout` sends SIGTERM at the walltime and SIGKILL KILL_AFTER_S later."""
        return KILL_AFTER_S

    def submit(self, req: RunRequest) -> str:
        if not req.command:
            raise ConnectorError("empty command")
        sid = PREFIX + req.run_key
        command = shlex.join(req.command)
        if req.outputs:
            command = (f"{shlex.quote(self.python)} .suanli/stagekit.py wrap .suanli/spec.json "
                       f"-- {command}")
        body: dict[str, Any] = {
            "submission_id": sid,
            "entrypoint": f"timeout -s TERM -k {KILL_AFTER_S} {req.walltime_s} {command}",
            "runtime_env": {"env_vars": {
                **req.env, "SUANLI_JOB_ID": str(req.job_id), "SUANLI_RUN_KEY": req.run_key,
                "SUANLI_UNITS": str(req.units), "SUANLI_NODES": str(req.nodes),
                "SUANLI_POOL": req.pool}},
            "metadata": {"suanli_job": str(req.job_id), "walltime_s": str(req.walltime_s)},
        }
        resource = (self.resources.get(req.pool)
                    or {"gpu": "GPU", "npu": "NPU"}.get(req.device_kind, "CPU"))
        totals = {c.pool: c.total_units for c in self.capacity()}
        if req.units > totals.get(resource, 0):
            # Ray would accept the job and leave it PENDING for ever.
            raise ConnectorError(f"the Ray cluster has {totals.get(resource, 0)} {resource}; "
                                 f"the job asks for {req.units}")
        if req.stage or req.outputs:
            body["runtime_env"]["working_dir"] = self._working_dir(req)
        if resource == "CPU":
            body["entrypoint_num_cpus"] = float(req.units)
        elif resource == "GPU":
            body["entrypoint_num_gpus"] = float(req.units)
            body["entrypoint_num_cpus"] = 0
        else:
            body["entrypoint_resources"] = {resource: float(req.units)}
            body["entrypoint_num_cpus"] = 0
        for attempt in range(2):
            try:
                data = self._request("POST", "/api/jobs/", json=body)
                return str(data.get("submission_id") or sid)
            except ConnectorError as exc:
                if "already exists" in str(exc.detail or exc.message):
                    return sid  # this attempt was submitted before
                # A 5xx (e.g. the job agent still starting) is retried once: the submission id
                # makes a retry safe.
                if attempt or "HTTP 5" not in exc.message:
                    raise
                time.sleep(1.0)
        raise AssertionError("unreachable")

    def _working_dir(self, req: RunRequest) -> str:
        """The run's working folder as a Ray package (built here, uploaded once): its URI."""
        tmp = Path(tempfile.mkdtemp(prefix="suanli-ray-"))
        try:
            work = tmp / "work"
            work.mkdir()
            budget = self.max_package_bytes
            for item in req.stage:
                try:
                    budget -= stagekit.fetch_item(stage_dict(item), str(work), req.token,
                                                  max_bytes=budget)
                except (stagekit.StageError, stagekit.UnsafeArchive, OSError) as exc:
                    raise ConnectorError(f"cannot stage {item.sha256[:12]}: {exc}") from exc
            kit = work / ".suanli"
            if kit.is_dir() and not kit.is_symlink():
                shutil.rmtree(kit)  # the tenant's own `.suanli/` gives way to the wrapper
            elif kit.is_symlink() or kit.exists():
                kit.unlink()
            kit.mkdir()
            shutil.copyfile(STAGEKIT, kit / "stagekit.py")
            (kit / "spec.json").write_text(json.dumps({
                "run_key": req.run_key, "outputs": list(req.outputs),
                "outputs_url": req.outputs_url, "token": req.token}), encoding="utf-8")
            return self.upload_folder(work)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def upload_folder(self, folder: Path) -> str:
        """`folder` zipped and uploaded as a Ray package (once: the same bytes, the same name);
        its URI for a job's `runtime_env.working_dir`."""
        with tempfile.TemporaryDirectory(prefix="suanli-ray-pkg-") as tmp:
            package = Path(tmp) / "package.zip"
            digest = _zip_folder(folder, package, self.max_package_bytes)
            name = f"_ray_pkg_{digest[:32]}.zip"
            try:
                self._request("GET", f"/api/packages/gcs/{name}")  # also pins it a while
            except ConnectorError as exc:
                if "HTTP 404" not in exc.message:
                    raise
                size = package.stat().st_size
                with open(package, "rb") as fh:  # streamed, not read into memory
                    self._request("PUT", f"/api/packages/gcs/{name}", content=fh,
                                  headers={"Content-Length": str(size)},
                                  timeout=max(60.0, size / (10 << 20)))
            return f"gcs://{name}"

    def submit_task(self, submission_id: str, entrypoint: str, working_dir: str, cpus: float = 1.0) -> str:
        """A plain Ray job (not a tenant's run): `entrypoint` in the uploaded `working_dir`, on
        `cpus` CPUs. The platform's own work on the cluster, e.g. the digital twin's sweeps."""
        body = {"submission_id": submission_id, "entrypoint": entrypoint,
                "runtime_env": {"working_dir": working_dir}, "entrypoint_num_cpus": cpus,
                "metadata": {"suanli_task": "sweep"}}
        try:
            data = self._request("POST", "/api/jobs/", json=body)
        except ConnectorError as exc:
            if "already exists" in str(exc.detail or exc.message):
                return submission_id
            raise
        return str(data.get("submission_id") or submission_id)

    def status(self, external_id: str) -> RunStatus:
        try:
            job = self._request("GET", f"/api/jobs/{external_id}")
        except ConnectorError as exc:
            if "HTTP 404" in exc.message:
                return RunStatus(RunState.LOST, reason="Ray no longer knows this job")
            raise
        return self._stop_aware(external_id, _run_status(job))

    def statuses(self, external_ids: Sequence[str]) -> dict[str, RunStatus]:
        """All asked-for runs from one `GET /api/jobs/` (Ray lists every job it keeps)."""
        wanted = set(external_ids)
        jobs = self._request("GET", "/api/jobs/")
        return {sid: self._stop_aware(sid, _run_status(job))
                for job in (jobs if isinstance(jobs, list) else [])
                if (sid := str(job.get("submission_id"))) in wanted}

    def cancel(self, external_id: str) -> None:
        self._stopped.add(external_id)
        self._request("POST", f"/api/jobs/{external_id}/stop")

    def _stop_aware(self, external_id: str, st: RunStatus) -> RunStatus:
        if st.state is RunState.FAILED and external_id in self._stopped:
            return replace(st, state=RunState.CANCELLED, reason=f"stopped ({st.reason})")
        return st

    def logs(self, external_id: str, stream: str = "stdout", offset: int = 0) -> bytes:
        if stream not in ("stdout", "stderr"):
            raise ConnectorError(f"unknown log stream {stream!r}")
        if stream == "stderr":
            return b""  # Ray merges both streams into the job's log
        text = self._entrypoint_output(external_id)
        for _ in range(40):
            # Right after a job ends, a busy or fresh head may not have its log file yet, or only
            # its own first lines: an empty output of a job that ended in the last 30 s is asked
            # again for up to 10 s before it is believed (an older one is answered at once).
            if text:
                break
            st = self.status(external_id)
            if not st.state.is_terminal or st.ended_at is None or \
                    datetime.now(UTC) - st.ended_at > timedelta(seconds=30):
                break
            time.sleep(0.25)
            text = self._entrypoint_output(external_id)
        return text.encode()[max(0, offset): max(0, offset) + LOG_CHUNK]

    def _entrypoint_output(self, external_id: str) -> str:
        """The job's log without the lines Ray writes into it: its job manager's log lines and
        "Running entrypoint for job …: <entrypoint>". Ray's driver and the entrypoint write the
        same file, so the entrypoint's first output may come before that line: the line is taken
        out where it stands, never everything before it."""
        text = str(self._request("GET", f"/api/jobs/{external_id}/logs").get("logs", ""))
        entrypoint = self._entrypoints.get(external_id)
        if entrypoint is None:
            entrypoint = str(self._request("GET", f"/api/jobs/{external_id}").get("entrypoint", ""))
            self._entrypoints[external_id] = entrypoint
        marker = f"Running entrypoint for job {external_id}: {entrypoint}"
        at = text.find(marker)
        if at >= 0:
            end = at + len(marker)
            text = text[:at] + text[end + 1 if text[end:end + 1] == "\n" else end:]
        return RAY_LOG_LINE.sub("", text)

    def capacity(self) -> list[PoolCapacity]:
        """Per resource (CPU, GPU, NPU, …): total and free units of the whole cluster.

        Read from the autoscaler's report (`ResourceUsage: 0.0/2.0 CPU, 1.0/8.0 NPU, …`); when it
        has none, the nodes' totals with nothing known to be in use."""
        data = self._request("GET", "/api/cluster_status").get("data") or {}
        found: dict[str, tuple[float, float]] = {}
        for line in str(data.get("autoscalingStatus") or "").splitlines():
            if "ResourceUsage:" in line:
                for used, total, name in USAGE_RE.findall(line):
                    found[name] = (float(used), float(total))
        if not found:
            for node in self._nodes():
                for name, total in ((node.get("raylet") or {}).get("resourcesTotal") or {}).items():
                    if not name.startswith("node:") and "emory" not in name:
                        used_, total_ = found.get(name, (0.0, 0.0))
                        found[name] = (used_, total_ + float(total))
        return [PoolCapacity(name, int(total), int(max(0.0, total - used)))
                for name, (used, total) in sorted(found.items())]

    def _nodes(self) -> list[dict[str, Any]]:
        summary = self._request("GET", "/nodes?view=summary").get("data", {}).get("summary", [])
        return [n for n in summary if (n.get("raylet") or {}).get("state", "ALIVE") == "ALIVE"]

    def discover(self) -> list[dict[str, Any]]:
        """The cluster's resources as pool descriptions: one pool per CPU, GPU or NPU-like
        resource, over the live nodes that have it (units per node: the smallest node's)."""
        nodes = self._nodes()
        by_resource: dict[str, list[tuple[int, int, dict[str, Any]]]] = {}
        for node in nodes:
            raylet = node.get("raylet") or {}
            total = raylet.get("resourcesTotal") or {}
            mem_gb = max(1, int(float(total.get("memory", 2 ** 30)) // 2 ** 30))
            labels = raylet.get("labels") or {}
            for name, units in total.items():
                if _device_kind(name) and int(units) > 0:
                    by_resource.setdefault(name, []).append((int(units), mem_gb, labels))
        pools = []
        for name, entries in sorted(by_resource.items()):
            kind = _device_kind(name)
            pools.append({
                "name": name.lower(), "resource": name, "device_kind": kind,
                "device_model": f"Ray {name}",
                "units_per_node": min(u for u, _, _ in entries), "nodes": len(entries),
                "memory_gb_per_node": min(m for _, m, _ in entries), "max_walltime_s": None,
                **_software([labels for _, _, labels in entries]),
            })
        return pools

    def health(self) -> Health:
        try:
            version = self._request("GET", "/api/version")
        except ConnectorError as exc:
            return Health(False, exc.message)
        return Health(True, f"Ray {version.get('ray_version', '?')}")


def _run_status(job: Mapping[str, Any]) -> RunStatus:
    state = STATES.get(str(job.get("status")), RunState.PENDING)
    code = job.get("driver_exit_code")
    if state is RunState.FAILED and code == TIMEOUT_EXIT:
        state = RunState.TIMEOUT
    elif state is RunState.COMPLETED:
        code = 0
    reason = f"Ray {job.get('status')}"
    if job.get("message") and state.is_terminal:
        reason += f": {str(job['message'])[:200]}"
    return RunStatus(state, exit_code=code if state.is_terminal else None,
                     started_at=_ms(job.get("start_time")) if state is not RunState.PENDING
                     else None,
                     ended_at=_ms(job.get("end_time")) if state.is_terminal else None,
                     reason=reason)


def _zip_folder(folder: Path, out: Path, max_bytes: int) -> str:
    """Zip `folder` (sorted, fixed times: the same folder gives the same bytes), following a
    symbolic link to a file only when it stays inside; returns the zip's SHA-256."""
    root = os.path.realpath(folder)
    total = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for top, dirs, files in os.walk(folder):
            dirs.sort()
            rel_top = os.path.relpath(top, folder)
            for name in sorted(files):
                path = os.path.join(top, name)
                real = os.path.realpath(path)
                if not real.startswith(root + "/") or not os.path.isfile(real):
                    continue
                st = os.stat(real)
                total += st.st_size
                if total > max_bytes:
                    raise ConnectorError(f"the work folder is over Ray's {max_bytes >> 20} MiB "
                                         "for a job's working_dir")
                arc = name if rel_top == "." else f"{rel_top}/{name}"
                info = zipfile.ZipInfo(arc, ZIP_EPOCH)
                info.external_attr = (stat.S_IFREG | (0o755 if st.st_mode & 0o111 else 0o644)) << 16
                # large files are mostly data that does not compress (weights, archives,
                # images): stored, they cost no CPU on either side
                info.compress_type = (zipfile.ZIP_STORED if st.st_size >= 1 << 20
                                      else zipfile.ZIP_DEFLATED)
                with open(real, "rb") as src, zf.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    digest = hashlib.sha256()
    with open(out, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


ARCH_LABEL = "suanli.io/arch"
FEATURE_LABEL = "features.suanli.io/"


def _software(labels: list[Mapping[str, Any]]) -> dict[str, Any]:
    """A pool's arch and features from its nodes' Ray labels (`ray start --labels
    suanli.io/arch=aarch64,features.suanli.io/cann-8.0=true`)."""
    return pool_software([str(lb.get(ARCH_LABEL) or "") for lb in labels],
                         [{k[len(FEATURE_LABEL):] for k in lb if k.startswith(FEATURE_LABEL)}
                          for lb in labels])


def _device_kind(resource: str) -> str | None:
    """CPU -> cpu, GPU -> gpu, NPU-like custom resources -> npu; anything else is not a device."""
    if resource == "CPU":
        return "cpu"
    if resource == "GPU":
        return "gpu"
    if resource.upper() in ("NPU", "ASCEND", "MLU", "DCU") or resource.upper().endswith("NPU"):
        return "npu"
    return None


def create(config: Mapping[str, Any], home: Path) -> RayConnector:
    return RayConnector(config, home)
