"""Another suanli platform as a center (issue 18, federation): runs go to a peer platform that
lends us compute, through its public REST API with the `platform` account it invited us with.

A pool of ours is one pool of the peer (`pools`: our pool name -> the peer's `center/pool` and
a precision it offers); a run is a job of our platform account there, pinned to that pool
(`centers: ["center/pool"]`), named `suanli-<run_key>` (a resubmit finds it by that name), with
`requeue: false` (a failure there comes back to us, and our engine places the job again, maybe
at home). Inputs go up as artifacts of our account there, outputs come back from the job's
outputs; logs are read from the job. `discover()` describes the peer's own pools (not those it
borrows from its peers: compute is lent once, never passed along).

Configuration: `url` (https, or http to 127.0.0.1 only), `token` (the join token), `pools`
(written by `suanli peer add` and each discovery), `network_id` (the peer's), `timeout_s`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import tempfile
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..client import ApiError, Client
from ..domain.enums import Precision, RunState
from ..domain.errors import ConnectorError
from .base import (
    Capability,
    Health,
    PoolCapacity,
    RunRequest,
    RunStatus,
    StageItem,
    positive_int,
)

CHUNK = 1 << 20
# A job that ended there with outputs declared: how long to wait for them to be stored there
# before its end is reported without them (its platform ingests them right after the end).
OUTPUTS_SETTLE_S = 30.0
_STATES = {
    "QUEUED": RunState.PENDING, "PLACED": RunState.PENDING, "RUNNING": RunState.RUNNING,
    "COMPLETED": RunState.COMPLETED, "FAILED": RunState.FAILED,
    "CANCELLED": RunState.CANCELLED, "TIMEOUT": RunState.TIMEOUT,
}
PRECISION_ORDER = (Precision.FP32, Precision.FP16, Precision.FP64, Precision.INT8)


def check_peer_url(url: object) -> str:
    """A peer's base URL: https, or http to a loopback address only (tests, one machine)."""
    if not isinstance(url, str) or not url.strip():
        raise ConnectorError("a peer needs its url (https://...)")
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectorError(f"a peer's url is http(s)://host[:port], not {url!r}")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ConnectorError("a peer is reached over https (http only to 127.0.0.1): the "
                             "join token and the jobs' data cross the network")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConnectorError("a peer's url has no credentials, query or fragment")
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class SuanliConnector:
    name = "suanli"
    capabilities = frozenset({Capability.CANCEL, Capability.LOGS, Capability.REATTACH,
                              Capability.DISCOVER, Capability.STAGING, Capability.GANG,
                              Capability.ACCELERATORS})
    submit_concurrency = 4  # each submit is its own HTTP calls (httpx.Client is thread-safe)

    def __init__(self, config: Mapping[str, Any], home: Path) -> None:
        self.url = check_peer_url(config.get("url"))
        token = config.get("token")
        if not isinstance(token, str) or not token:
            raise ConnectorError("a peer needs its join token (suanli peer invite on the peer)")
        self.center = str(config.get("center") or "peer")
        pools = config.get("pools") or {}
        if not isinstance(pools, dict):
            raise ConnectorError("connector setting 'pools' must map our pool to the peer's")
        self.pools: dict[str, dict[str, str]] = {
            str(k): dict(v) if isinstance(v, dict) else {"place": str(v)}
            for k, v in pools.items()}
        self.timeout_s = positive_int(config, "timeout_s", 15)
        # The most bytes of a job's outputs taken back from the peer (a peer that sends more is
        # refused: its outputs are not kept, the run's end is).
        self.max_output_bytes = positive_int(config, "max_output_bytes", 10 << 30)
        self.home = home
        self._client = Client(self.url, token, timeout=float(self.timeout_s))
        self._ended_at: dict[str, float] = {}  # ext -> when its end without outputs was first seen

    # -- the contract ---------------------------------------------------------------------------
    def submit(self, req: RunRequest) -> str:
        target = self.pools.get(req.pool)
        if target is None:
            raise ConnectorError(f"the peer {self.center} offers no pool {req.pool!r} (any more)")
        name = f"suanli-{req.run_key}"
        if req.resubmit:
            found = self._find(name)
            if found is not None:
                return found
        workdir, inputs = self._stage(req.stage, req.token)
        body: dict[str, Any] = {
            "name": name, "command": list(req.command),
            "resources": {"device": req.device_kind, "units": req.units, "nodes": req.nodes,
                          "memory_gb": req.memory_gb},
            "walltime_s": req.walltime_s, "centers": [target["place"]], "requeue": False,
            "precision": target.get("precision") or Precision.FP32.value,
        }
        if req.env:
            body["env"] = dict(req.env)
        if workdir:
            body["workdir"] = workdir
        if inputs:
            body["inputs"] = inputs
        if req.outputs:
            body["outputs"] = list(req.outputs)
        job = self._call(lambda: self._client.submit_job(body))
        return str(job["id"])

    def status(self, external_id: str) -> RunStatus:
        try:
            job = self._client.get_job(self._id(external_id))
        except ApiError as exc:
            if exc.status == 404:
                return RunStatus(RunState.LOST, reason="the peer no longer knows this job")
            raise self._error(exc) from exc
        state = _STATES.get(str(job.get("state")), RunState.UNKNOWN)
        if state.is_terminal and job.get("outputs") and not self._outputs_ready(external_id):
            state = RunState.RUNNING  # its outputs are being stored there: report the end after
        return RunStatus(state, exit_code=job.get("exit_code"),
                         started_at=_time(job.get("started_at")),
                         ended_at=_time(job.get("finished_at")) if state.is_terminal else None,
                         reason=str(job.get("state_reason") or "")[:300])

    def cancel(self, external_id: str) -> None:
        try:
            self._client.cancel_job(self._id(external_id))
        except ApiError as exc:
            if exc.status in (404, 409):  # gone, or ended already
                return
            raise self._error(exc) from exc

    def logs(self, external_id: str, stream: str = "stdout", offset: int = 0) -> bytes:
        try:
            chunk = self._client.job_logs(self._id(external_id), stream=stream, offset=offset)
        except ApiError as exc:
            if exc.status == 404:
                return b""
            raise self._error(exc) from exc
        return str(chunk.get("data") or "").encode("utf-8")

    def capacity(self) -> list[PoolCapacity]:
        by_place = {f"{p['center_slug']}/{p['name']}": p for p in self._peer_pools()}
        out = []
        for ours, target in sorted(self.pools.items()):
            pool = by_place.get(target["place"])
            if pool is None:
                continue
            total = int(pool.get("total_units") or 0)
            out.append(PoolCapacity(ours, total, max(0, total - int(pool.get("used_units") or 0))))
        return out

    def health(self) -> Health:
        try:
            body = self._client.health()
            me = self._client.me()
        except ApiError as exc:
            return Health(False, f"peer {self.url}: {exc}")
        if body.get("status") != "ok":
            return Health(False, f"peer {self.url}: {body.get('status')}")
        return Health(True, f"peer {body.get('network_id') or self.url} as {me.get('username')}")

    def discover(self) -> list[dict[str, Any]]:
        """The peer's own pools (not withdrawn, at centers that are not offline and are not
        themselves peers), each as a pool of ours: `name` (ours), `place` (the peer's
        center/pool), `identifier`, `precision` (one it offers), and the pool's figures."""
        pools = []
        for pool in self._peer_pools():
            if pool.get("withdrawn_at"):
                continue
            place = f"{pool['center_slug']}/{pool['name']}"
            precision = next((p.value for p in PRECISION_ORDER
                              if pool.get(f"tflops_{p.value}") is not None), "fp32")
            pools.append({
                "name": local_name(place), "place": place, "identifier": pool.get("identifier"),
                "precision": precision, "device_kind": pool["device_kind"],
                "device_model": pool["device_model"], "domestic": bool(pool.get("domestic")),
                "units_per_node": int(pool["units_per_node"]), "nodes": int(pool["nodes"]),
                "memory_gb_per_node": int(pool["memory_gb_per_node"]),
                "price_fen_per_unit_hour": int(pool["price_fen_per_unit_hour"]),
                "watts_per_unit": int(pool.get("watts_per_unit") or 300),
                "max_walltime_s": int(pool.get("max_walltime_s") or 7 * 86400),
                "arch": pool.get("arch") or "x86_64", "features": list(pool.get("features") or []),
                "environments": dict(pool.get("environments") or {}),
                **{f"tflops_{p.value}": pool.get(f"tflops_{p.value}") for p in Precision},
            })
        return pools

    def quote(self, pool: str, job: dict[str, Any]) -> dict[str, Any]:
        """The peer's answer for a job (the API's fields: resources, walltime_s, precision, …)
        on our pool `pool` (its pool): `POST /api/v1/jobs/estimate` there, pinned to it. Returns
        {"wait_s", "finish_s", "cost_fen"} — or {"wait_s": None, "reason"} when the peer
        cannot run it (it said why)."""
        target = self.pools.get(pool)
        if target is None:
            return {"wait_s": None, "reason": f"the peer offers no pool {pool!r} any more"}
        body = {"name": "quote", "command": ["true"], **job, "centers": [target["place"]]}
        try:
            answer = self._client.estimate_job(body)
        except ApiError as exc:
            if 400 <= exc.status < 500 and exc.status not in (401, 403, 429):
                return {"wait_s": None, "reason": exc.message[:300]}
            raise self._error(exc) from exc
        for c in answer.get("candidates") or []:
            if c.get("pool") == target["place"]:
                if c.get("feasible") and c.get("wait_s") is not None:
                    return {"wait_s": float(c["wait_s"]), "finish_s": c.get("finish_s"),
                            "cost_fen": c.get("cost_fen")}
                return {"wait_s": None, "reason": "; ".join(c.get("reasons") or [])[:300]}
        return {"wait_s": None, "reason": "the peer did not weigh that pool"}

    def charge(self, external_id: str) -> dict[str, Any] | None:
        """What the peer billed us for an ended job: its usage as the peer metered it (amount,
        unit-seconds, first start, last end); None while the job has not ended there."""
        job_id = self._id(external_id)
        try:
            job = self._client.get_job(job_id)
        except ApiError as exc:
            raise self._error(exc) from exc
        if not _STATES.get(str(job.get("state")), RunState.UNKNOWN).is_terminal:
            return None
        items = self._call(lambda: self._client.usage(job_id=job_id, limit=1000))["items"]
        ended = _time(job.get("finished_at")) or _time(job.get("updated_at"))
        if ended is None:
            return None
        if not items:  # it never started there: nothing billed
            return {"remote_job_id": job_id, "amount_fen": 0, "unit_seconds": 0,
                    "started_at": ended, "ended_at": ended}
        return {"remote_job_id": job_id,
                "amount_fen": sum(int(u["amount_fen"]) for u in items),
                "unit_seconds": sum(int(u["unit_seconds"]) for u in items),
                "started_at": min(_time(u["started_at"]) or ended for u in items),
                "ended_at": max(_time(u["ended_at"]) or ended for u in items)}

    def statement(self, month: str) -> dict[str, Any]:
        """The peer's monthly statement of what it lent us (`party=peer:…`: as our account)."""
        body: dict[str, Any] = self._call(lambda: self._client.statements(month, party="peer:us"))
        return body

    def hello(self, network_id: str) -> None:
        """Tell the peer our network identifier (once we joined it)."""
        self._call(lambda: self._client.peer_hello(network_id))

    def report(self, body: dict[str, Any]) -> None:
        """Our report to this peer, our parent node (aggregates only: services/peer_report)."""
        self._call(lambda: self._client.peer_report(body))

    def network_id(self) -> str:
        """The peer's network identifier (its API index, no token needed)."""
        body = self._call(self._client.index)
        return str(body.get("network_id") or "")

    def collect_outputs(self, external_id: str) -> Path | None:
        """The ended job's packed outputs, downloaded from the peer (None: it kept none)."""
        fd, name = tempfile.mkstemp(prefix="suanli-peer-outputs.", dir=self._spool())
        os.close(fd)
        try:
            self._client.job_outputs(self._id(external_id), name, self.max_output_bytes)
        except ApiError as exc:
            Path(name).unlink(missing_ok=True)
            if exc.status == 404:
                return None
            if exc.status == 413:
                raise ConnectorError(f"the peer's outputs of job {external_id} are over "
                                     f"{self.max_output_bytes:,} bytes: not kept") from exc
            raise self._error(exc) from exc
        return Path(name)

    # -- helpers --------------------------------------------------------------------------------
    def _spool(self) -> Path:
        folder = self.home / "peer-spool"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return folder

    def _peer_pools(self) -> list[dict[str, Any]]:
        answer = self._call(self._client.list_centers)
        # a page (this version), or the bare list a peer of an earlier version answers
        centers = answer["items"] if isinstance(answer, dict) else answer
        out = []
        for c in centers:
            if c.get("connector") == "suanli" or c.get("status") == "offline":
                continue
            for pool in c.get("pools") or []:
                out.append({**pool, "center_slug": c["slug"]})
        return out

    def _outputs_ready(self, external_id: str) -> bool:
        """Whether an ended job's outputs are stored at the peer (or it has waited long enough
        for them: they may match nothing)."""
        if self._call(lambda: self._client.has_outputs(self._id(external_id))):
            self._ended_at.pop(external_id, None)
            return True
        first = self._ended_at.setdefault(external_id, time.monotonic())
        if time.monotonic() - first >= OUTPUTS_SETTLE_S:
            self._ended_at.pop(external_id, None)
            return True
        return False

    def _find(self, name: str) -> str | None:
        page = self._call(lambda: self._client.list_jobs(name=name, limit=10))
        for job in page.get("items") or []:
            if job.get("name") == name:
                return str(job["id"])
        return None

    def _stage(self, items: tuple[StageItem, ...], token: str) -> tuple[str | None, list[dict[str, str]]]:
        """Put each stage item up as an artifact of our account at the peer (unless it has it):
        the job's work folder (a tar at the top) and its inputs."""
        workdir: str | None = None
        inputs: list[dict[str, str]] = []
        for item in items:
            kind = "workdir" if item.unpack else "upload"
            if not self._call(lambda it=item: self._client.artifact_exists(it.sha256)):
                self._upload(item, kind, token)
            if item.unpack and not item.dest and workdir is None:
                workdir = item.sha256
            else:
                inputs.append({"artifact": item.sha256, "path": item.dest})
        return workdir, inputs

    def _upload(self, item: StageItem, kind: str, token: str) -> None:
        name = Path(item.dest).name if not item.unpack and item.dest else ""
        if item.local_path and Path(item.local_path).is_file():
            with open(item.local_path, "rb") as fh:
                self._call(lambda: self._client.upload_artifact(
                    fh, sha256=item.sha256, size=item.size, name=name, kind=kind))
            return
        if not item.url:
            raise ConnectorError(f"stage item {item.sha256[:12]} has neither a file nor a URL")
        with tempfile.TemporaryFile(dir=self._spool()) as tmp:
            digest = hashlib.sha256()
            try:
                with httpx.stream("GET", item.url, headers={"Authorization": f"Bearer {token}"},
                                  timeout=self.timeout_s) as resp:
                    if resp.status_code >= 400:
                        raise ConnectorError(f"stage item {item.sha256[:12]}: HTTP "
                                             f"{resp.status_code} from {item.url}")
                    for chunk in resp.iter_bytes(CHUNK):
                        digest.update(chunk)
                        tmp.write(chunk)
            except httpx.TransportError as exc:
                raise ConnectorError(f"stage item {item.sha256[:12]}: {exc}") from exc
            if digest.hexdigest() != item.sha256:
                raise ConnectorError(f"stage item {item.sha256[:12]}: the bytes do not match")
            tmp.seek(0)
            self._call(lambda: self._client.upload_artifact(
                tmp, sha256=item.sha256, size=item.size, name=name, kind=kind))

    @staticmethod
    def _id(external_id: str) -> int:
        if not external_id.isdigit():
            raise ConnectorError(f"not a job id of a suanli peer: {external_id!r}")
        return int(external_id)

    def _error(self, exc: ApiError) -> ConnectorError:
        if exc.status == 0 or exc.status >= 500:
            return ConnectorError(f"peer {self.url} unavailable: {exc}")
        if exc.status in (401, 403):
            return ConnectorError(f"peer {self.url} refused our token: {exc}")
        return ConnectorError(f"peer {self.url} refused: {exc}")

    def _call(self, fn: Any) -> Any:
        try:
            return fn()
        except ApiError as exc:
            raise self._error(exc) from exc


def local_name(place: str) -> str:
    """Our pool's name for the peer's `center/pool`: `center-pool`, shortened with a hash when
    over 63 characters."""
    name = place.replace("/", "-")
    if len(name) <= 63:
        return name
    return name[:54] + "-" + hashlib.sha256(place.encode()).hexdigest()[:8]


def create(config: Mapping[str, Any], home: Path) -> SuanliConnector:
    return SuanliConnector(config, home)
