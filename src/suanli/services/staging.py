"""Staging: a run's bytes in (work folder, inputs) and its outputs back, and the run's own token.

A run token authorises exactly two calls, for exactly one run: fetching one of that run's stage
items (`GET /api/v1/runs/{run_key}/stage/{sha256}`) and putting its packed outputs once (`PUT
/api/v1/runs/{run_key}/outputs`). It is `slr_<expiry>_<hmac>`: HMAC-SHA256 over the run key and
the expiry (Unix seconds) with the platform's staging key, so nothing is stored per token and a
token for one run says nothing about another. It expires TOKEN_GRACE_S after the run's walltime
counted from its submission (a run may queue at its center first, and uploads its outputs after
its end). The key is `SUANLI_STAGING_KEY` when set (several replicas on one PostgreSQL must share
it), else `$SUANLI_HOME/staging.key`, made once (0600).

Outputs are never trusted for money: a run's packed outputs are stored as an artifact of its
job's tenant (kind `outputs`, kept `outputs_retention_days`) within the tenant's storage quota
and the platform's largest artifact; over either they are not kept and the run's reason says so,
and nothing about the job's state or bill changes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..artifacts import BlobError
from ..connectors import StageItem
from ..domain.errors import Conflict, InvalidInput, NotFound, TooLarge, Unauthenticated
from ..store import models as m
from . import artifacts
from .centers import ACTIVE_RUN_STATES
from .context import Platform
from .datasets import datasets_named, record_dataset_copied
from .keys import secret_key

log = logging.getLogger("suanli.staging")

TOKEN_PREFIX = "slr_"
TOKEN_GRACE_S = 6 * 3600  # queueing at the center before the run starts, and the upload after
OUTPUTS_AFTER_END_S = 600  # outputs are accepted this long after suanli saw the run end
KEY_ENV = "SUANLI_STAGING_KEY"
_TOKEN = re.compile(r"^slr_(\d{1,12})_([0-9a-f]{64})$")


# -- tokens -------------------------------------------------------------------------------------
def staging_key(home: Path) -> bytes:
    """The platform's staging key: SUANLI_STAGING_KEY, else $SUANLI_HOME/staging.key (made once,
    0600)."""
    return secret_key(home, KEY_ENV, "staging.key")


def _sign(key: bytes, run_key: str, expiry: int) -> str:
    return hmac.new(key, f"{run_key}\n{expiry}".encode(), hashlib.sha256).hexdigest()


def run_token(p: Platform, run_key: str, walltime_s: int) -> str:
    """A token naming only this run, expiring after its walltime and TOKEN_GRACE_S from now."""
    expiry = int(p.clock.now().timestamp()) + int(walltime_s) + TOKEN_GRACE_S
    return f"{TOKEN_PREFIX}{expiry}_{_sign(staging_key(p.home), run_key, expiry)}"


def verify_run_token(p: Platform, run_key: str, token: str | None) -> None:
    """Unauthenticated unless `token` is this run's own, unexpired token."""
    if not token:
        raise Unauthenticated("missing run token (Authorization: Bearer slr_...)")
    found = _TOKEN.match(token)
    if found is None:
        raise Unauthenticated("this endpoint takes only the run's own token (slr_...)")
    expiry = int(found.group(1))
    expected = _sign(staging_key(p.home), run_key, expiry)
    if not hmac.compare_digest(expected, found.group(2)):
        raise Unauthenticated("invalid run token")
    if p.clock.now().timestamp() >= expiry:
        raise Unauthenticated("this run token expired")


# -- what a run stages ---------------------------------------------------------------------------
def _artifact(s: Session, tenant_id: int, sha: str) -> m.Artifact:
    row = artifacts.artifact_row(s, tenant_id, sha)
    if row is None:
        raise NotFound(f"artifact {sha[:12]} is gone (deleted or expired)")
    return row


def _item(p: Platform, run: m.Run, art: m.Artifact, dest: str, unpack: bool,
          cache: bool = False) -> StageItem:
    local = p.blobs.local_path(art.tenant_id, art.sha256)
    return StageItem(
        sha256=art.sha256, size=int(art.size_bytes), dest=dest, unpack=unpack,
        local_path=local if local and os.path.isfile(local) else None,
        url=f"{p.settings.api_url}/api/v1/runs/{run.run_key}/stage/{art.sha256}", cache=cache)


def stage_items(s: Session, p: Platform, job: m.Job, run: m.Run) -> tuple[StageItem, ...]:
    """What the run's work folder holds before the job starts: the job's work folder (unpacked
    at its root), then each input artifact or uploaded dataset at its `path` (a work folder,
    dataset or outputs archive is unpacked there; another upload is written there as one file).
    Datasets registered at a center with a path are not staged: see `dataset_env`. An uploaded
    dataset unpacked below the work folder's root is marked `cache`: a connector keeping one
    copy per center shares that copy read-only instead."""
    items: list[StageItem] = []
    if job.workdir_sha256:
        items.append(_item(p, run, _artifact(s, job.tenant_id, job.workdir_sha256), "", True))
    for entry in job.inputs or []:
        if not isinstance(entry, dict):
            continue
        path = str(entry.get("path") or "").strip("/")
        sha = entry.get("artifact")
        dataset = sha is None and entry.get("dataset") is not None
        if dataset:
            ds = _dataset(s, job.tenant_id, str(entry["dataset"]))
            sha = ds.artifact_sha256
            if sha is None:
                continue  # registered at centers: a path there (dataset_env)
        if not isinstance(sha, str):
            continue
        art = _artifact(s, job.tenant_id, sha)
        unpack = art.kind in ("workdir", "dataset", "outputs")
        dest = path if unpack else (path if path and not str(entry.get("path", "")).endswith("/")
                                    else "/".join(x for x in (path, art.name or sha) if x))
        items.append(_item(p, run, art, dest, unpack, cache=dataset and unpack and bool(dest)))
    return tuple(items)


def _dataset(s: Session, tenant_id: int, name: str) -> m.Dataset:
    ds = datasets_named(s, tenant_id, [name]).get(name)
    if ds is None:
        raise NotFound(f"dataset {name!r} is gone")
    return ds


def dataset_env(s: Session, job: m.Job, run: m.Run) -> dict[str, str]:
    """For each input dataset that lives at the run's center (registered there with a path):
    `SUANLI_DATASET_<NAME>=<path>` (the name upper-cased, other characters as `_`)."""
    env: dict[str, str] = {}
    for entry in job.inputs or []:
        if not isinstance(entry, dict) or entry.get("dataset") is None:
            continue
        ds = datasets_named(s, job.tenant_id, [str(entry["dataset"])]).get(str(entry["dataset"]))
        if ds is None or ds.artifact_sha256 is not None:
            continue
        loc = s.scalar(select(m.DatasetLocation).where(
            m.DatasetLocation.dataset_id == ds.id, m.DatasetLocation.center_id == run.center_id))
        if loc is not None and loc.path:
            env["SUANLI_DATASET_" + re.sub(r"[^A-Z0-9]", "_", ds.name.upper())] = loc.path
    return env


def request_extras(s: Session, p: Platform, job: m.Job, run: m.Run) -> dict[str, Any]:
    """The RunRequest fields of bring-your-own-work: env, stage, outputs, outputs_url, token.
    NotFound when an artifact the job names is gone."""
    env = {str(k): str(v) for k, v in (job.env or {}).items()}
    env.update(dataset_env(s, job, run))
    if job.array_index is not None:
        env.setdefault("SUANLI_ARRAY_INDEX", str(job.array_index))
    stage = stage_items(s, p, job, run)
    outputs = tuple(str(g) for g in job.outputs or [])
    needs_token = bool(stage or outputs)
    return {
        "env": env, "stage": stage, "outputs": outputs,
        "outputs_url": f"{p.settings.api_url}/api/v1/runs/{run.run_key}/outputs"
        if outputs else "",
        "token": run_token(p, run.run_key, run.walltime_s) if needs_token else "",
    }


def record_center_copies(p: Platform, run_id: int, holds: Callable[[int, str], bool]) -> int:
    """Count as present at the run's center each uploaded dataset of its job that the center
    now holds a copy of, as its connector (`holds_dataset`) finds it: a copy suanli made (the
    local executor's root-owned cache, Slurm's `staging_dir`), never what a job reports. The
    connector is asked outside any transaction. Returns how many were new."""
    with p.db.session() as s:
        run = s.get(m.Run, run_id)
        job = s.get(m.Job, run.job_id) if run is not None else None
        if run is None or job is None:
            return 0
        names = [str(e["dataset"]) for e in job.inputs or []
                 if isinstance(e, dict) and e.get("dataset") is not None]
        found = [d for d in datasets_named(s, job.tenant_id, names).values()
                 if d.artifact_sha256 is not None]
        if not found:
            return 0
        located = set(s.scalars(select(m.DatasetLocation.dataset_id).where(
            m.DatasetLocation.center_id == run.center_id,
            m.DatasetLocation.dataset_id.in_([d.id for d in found]))))
        wanted = [(d.id, str(d.artifact_sha256)) for d in found if d.id not in located]
        tenant_id, center_id = job.tenant_id, run.center_id
    copied = [ds_id for ds_id, sha in wanted if holds(tenant_id, sha)]
    if not copied:
        return 0
    now = p.clock.now()
    with p.db.session(immediate=True) as s:
        present = set(s.scalars(select(m.Dataset.id).where(m.Dataset.id.in_(copied))))
        return sum(record_dataset_copied(s, ds_id, center_id, now)
                   for ds_id in copied if ds_id in present)  # (not removed meanwhile)


# -- the run endpoints ---------------------------------------------------------------------------
def stage_source(p: Platform, run_key: str, token: str | None, sha256: str
                 ) -> tuple[int, int, str]:
    """(tenant id, size, sha) of one of the run's stage items, for the run's own token only;
    NotFound for a sha that is not in the run's stage list."""
    verify_run_token(p, run_key, token)
    with p.db.session() as s:
        run = s.scalar(select(m.Run).where(m.Run.run_key == run_key))
        job = s.get(m.Job, run.job_id) if run is not None else None
        if run is None or job is None:
            raise NotFound("no such run")
        for item in stage_items(s, p, job, run):
            if item.sha256 == sha256:
                return job.tenant_id, item.size, sha256
    raise NotFound(f"{sha256[:12]} is not staged for run {run_key}")


def outputs_target(p: Platform, run_key: str, token: str | None) -> int:
    """The run id whose outputs the caller may put now: its own token, the run active or ended
    less than OUTPUTS_AFTER_END_S ago, and no outputs kept yet (Conflict)."""
    verify_run_token(p, run_key, token)
    with p.db.session() as s:
        run = s.scalar(select(m.Run).where(m.Run.run_key == run_key))
        if run is None:
            raise NotFound("no such run")
        if run.outputs_sha256 is not None:
            raise Conflict("this run's outputs were stored already")
        if run.state not in ACTIVE_RUN_STATES and run.ended_at is not None and \
                p.clock.now() - run.ended_at > timedelta(seconds=OUTPUTS_AFTER_END_S):
            raise Conflict("this run ended too long ago to take outputs")
        return run.id


def outputs_limit(p: Platform, run_id: int) -> int:
    """The most bytes the run's outputs may have: the largest artifact, and what the tenant's
    storage quota has left."""
    with p.db.session() as s:
        run = s.get(m.Run, run_id)
        job = s.get(m.Job, run.job_id) if run is not None else None
        if job is None:
            raise NotFound("no such run")
        return max(0, min(p.settings.artifact_max_bytes, _quota_left(s, p, job.tenant_id)[0]))


def _quota_left(s: Session, p: Platform, tenant_id: int) -> tuple[int, int]:
    tenant = s.get(m.Tenant, tenant_id)
    if tenant is None:
        return 0, 0
    use = artifacts.storage_use(s, p, tenant)
    return use.quota_bytes - use.used_bytes, use.quota_count - use.used_count


def _note(p: Platform, run_id: int, note: str) -> None:
    with p.db.session() as s:
        run = s.get(m.Run, run_id)
        if run is not None and note not in run.reason:
            run.reason = f"{run.reason}; {note}"[:500] if run.reason else note[:500]


def ingest_outputs(p: Platform, run_id: int, chunks: Iterable[bytes] | Path
                   ) -> m.Artifact | None:
    """Store the run's packed outputs (a tar, from a file or a stream) as an artifact of its
    job's tenant and record them on the run. Over the largest artifact or the tenant's quota
    they are not kept, and the run's reason says so (None). The job's state and bill never
    depend on this."""
    with p.db.session() as s:
        run = s.get(m.Run, run_id)
        job = s.get(m.Job, run.job_id) if run is not None else None
        if run is None or job is None:
            raise NotFound("no such run")
        if run.outputs_sha256 is not None:
            return artifacts.artifact_row(s, job.tenant_id, run.outputs_sha256)
        tenant_id, job_id = job.tenant_id, job.id
        left_bytes, left_count = _quota_left(s, p, tenant_id)
    limit = max(0, min(p.settings.artifact_max_bytes, left_bytes))
    if left_count < 1:
        _note(p, run_id, "outputs not kept: the tenant's storage quota (count) is used up")
        _drain(chunks)
        return None
    if isinstance(chunks, Path):
        path = chunks
        with open(path, "rb") as fh:
            return _store(p, run_id, tenant_id, job_id, iter(lambda: fh.read(1 << 20), b""),
                          limit)
    return _store(p, run_id, tenant_id, job_id, chunks, limit)


def outputs_refused(p: Platform, run_id: int, size: int, limit: int) -> None:
    """Outputs too large to keep: the run's reason says so (nothing is stored)."""
    _note(p, run_id, f"outputs not kept: {size:,} bytes, over the {limit:,} the tenant's "
          "storage quota and the largest artifact allow")


def _drain(chunks: Iterable[bytes] | Path) -> None:
    if not isinstance(chunks, Path):
        for _ in chunks:
            pass


def _store(p: Platform, run_id: int, tenant_id: int, job_id: int, chunks: Iterable[bytes],
           limit: int) -> m.Artifact | None:
    try:
        stored = p.blobs.put(tenant_id, chunks, max_size=limit)
    except BlobError as exc:
        why = (f"over the {limit:,} bytes the tenant's storage quota and the largest artifact "
               "allow" if exc.too_large else str(exc))
        _note(p, run_id, f"outputs not kept: {why}")
        log.info("run %s: outputs not kept: %s", run_id, why)
        return None
    now = p.clock.now()
    try:  # the tenant's row alone in this transaction (billing locks runs before tenants)
        with p.db.session(immediate=True) as s:
            art = artifacts.record_outputs(s, p, tenant_id=tenant_id, job_id=job_id,
                                           stored=stored, now=now, name=f"job {job_id} outputs")
            s.flush()
            s.expunge(art)
    except TooLarge as exc:  # other outputs took the room meanwhile
        artifacts.drop_unrecorded(p, tenant_id, stored.sha256)
        _note(p, run_id, f"outputs not kept: {exc}")
        return None
    with p.db.session(immediate=True) as s:
        run = s.get(m.Run, run_id)
        assert run is not None
        run.outputs_sha256 = stored.sha256
        run.outputs_size = stored.size
    return art


def check_outputs_request(content_length: str | None) -> int | None:
    """The announced size of an outputs upload, or None; InvalidInput when it is not a size."""
    if content_length is None:
        return None
    if not content_length.isdigit():
        raise InvalidInput("Content-Length is not a size")
    return int(content_length)
