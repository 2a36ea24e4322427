"""The tenant's artifact store: uploads (streamed, checked, deduplicated, within quota), downloads,
listing, deletion, a job's packed outputs and their retention.

Who may do what: a tenant's users own its artifacts (upload, read, delete); the platform admin
lists them (sizes and owners, never the bytes) and sets storage quotas; center operators,
reviewers and auditors get 403 for every artifact (what a tenant brings is its own work). Another
tenant's artifact is a 404, word for word the answer for one that does not exist.

Bytes live in `Platform.blobs` under the owning tenant (`<tenant>/<sha[:2]>/<sha>`); rows in
`artifacts` say what each is. A blob is written under a temporary name while it streams and moved
to its address only when complete, checked and within quota: an interrupted, oversized or
mismatched upload leaves nothing behind.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..artifacts import BlobError, Stored, is_sha256
from ..domain.enums import Role
from ..domain.errors import Busy, Conflict, Forbidden, InvalidInput, NotFound, TooLarge
from ..domain.jobstate import TERMINAL_STATES
from ..domain.sizes import human_size
from ..store import models as m
from .auth import Principal, hide_other_tenant
from .context import Platform
from .jobs import check_page, require_job_reader

log = logging.getLogger("suanli.artifacts")

UPLOAD_KINDS = ("upload", "workdir", "dataset")
OUTPUTS = "outputs"
KINDS = (*UPLOAD_KINDS, OUTPUTS)
MAX_NAME = 200
ENDED = tuple(s.value for s in TERMINAL_STATES)
INCOMING_MAX_AGE = timedelta(days=1)  # an upload's temporary file untouched this long is dead
INCOMING_SWEEP_S = 3600.0


# -- who -------------------------------------------------------------------------------------
def owner_tenant(actor: Principal) -> int:
    """The tenant whose artifacts the actor owns; 403 for every other role."""
    if actor.role.is_tenant and actor.tenant_id is not None:
        return actor.tenant_id
    if actor.role is Role.PLATFORM_ADMIN:
        raise Forbidden("the platform admin lists artifacts and sets storage quotas; the bytes "
                        "are the tenant's own (only its users read, upload or delete them)")
    raise Forbidden(f"artifacts are their tenant's own work; a {actor.role.value} does not "
                    "read them")


def _check_sha(sha256: str) -> str:
    if not is_sha256(sha256):
        raise InvalidInput(f"{sha256[:80]!r} is not a SHA-256 (64 lowercase hex digits)",
                           field="sha256")
    return sha256


def _not_found(sha256: str) -> NotFound:
    # The same words whether the artifact is missing or another tenant's.
    return NotFound(f"no artifact {sha256}")


# -- quota -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StorageUse:
    tenant_id: int
    used_bytes: int
    used_count: int
    quota_bytes: int
    quota_count: int
    default_bytes: bool  # the quota is the platform's default (the tenant has none of its own)
    default_count: bool

    def as_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "used_bytes": self.used_bytes,
                "used_count": self.used_count, "quota_bytes": self.quota_bytes,
                "quota_count": self.quota_count, "default_bytes": self.default_bytes,
                "default_count": self.default_count}


def storage_use(s: Session, p: Platform, tenant: m.Tenant) -> StorageUse:
    """What the tenant stores (every kind, its jobs' outputs included) against its quota."""
    used_bytes, used_count = s.execute(
        select(func.coalesce(func.sum(m.Artifact.size_bytes), 0), func.count())
        .where(m.Artifact.tenant_id == tenant.id)).one()
    cfg = p.settings
    return StorageUse(
        tenant.id, int(used_bytes), int(used_count),
        cfg.storage_quota_bytes if tenant.storage_quota_bytes is None
        else tenant.storage_quota_bytes,
        cfg.storage_quota_count if tenant.storage_quota_count is None
        else tenant.storage_quota_count,
        tenant.storage_quota_bytes is None, tenant.storage_quota_count is None)


def _tenant(s: Session, tenant_id: int, *, lock: bool = False) -> m.Tenant:
    q = select(m.Tenant).where(m.Tenant.id == tenant_id)
    if lock:  # PostgreSQL: uploads of one tenant check its quota one at a time
        q = q.with_for_update().execution_options(populate_existing=True)
    tenant = s.scalar(q)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}")
    return tenant


def get_storage_quota(p: Platform, actor: Principal, tenant_id: int) -> StorageUse:
    """A tenant's storage use and quota: its own users, the platform admin."""
    hide_other_tenant(actor, tenant_id)
    if not (actor.role.is_tenant or actor.role is Role.PLATFORM_ADMIN):
        raise Forbidden("storage quotas are read by the tenant's users and the platform admin")
    with p.db.session() as s:
        return storage_use(s, p, _tenant(s, tenant_id))


def set_storage_quota(p: Platform, actor: Principal, tenant_id: int, *,
                      quota_bytes: int | None, quota_count: int | None) -> StorageUse:
    """Set a tenant's storage quota (platform admin); None: back to the platform's default.
    Lowering it below what is stored deletes nothing: new uploads are refused until it fits."""
    hide_other_tenant(actor, tenant_id)
    actor.require(Role.PLATFORM_ADMIN)
    for value, name in ((quota_bytes, "bytes"), (quota_count, "count")):
        if value is not None and not 0 <= value <= 2**62:
            raise InvalidInput(f"{name}: 0 or more", field=name)
    with p.db.session(immediate=True) as s:
        tenant = _tenant(s, tenant_id, lock=True)
        tenant.storage_quota_bytes = quota_bytes
        tenant.storage_quota_count = quota_count
        s.flush()
        return storage_use(s, p, tenant)


def _over_quota(use: StorageUse, size: int) -> str | None:
    if use.used_count + 1 > use.quota_count:
        return (f"over the tenant's storage quota of {use.quota_count:,} artifacts "
                f"({use.used_count:,} stored); delete some (`suanli artifact rm`) or ask the "
                "platform admin for more")
    if use.used_bytes + size > use.quota_bytes:
        return (f"over the tenant's storage quota: {human_size(use.used_bytes)} stored + "
                f"{human_size(size)} > {human_size(use.quota_bytes)}; delete some "
                "(`suanli artifact rm`) or ask the platform admin for more")
    return None


# -- upload ----------------------------------------------------------------------------------
def check_name(name: str) -> str:
    if len(name) > MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidInput(f"name: at most {MAX_NAME} printable characters", field="name")
    return name


class UploadSlots:
    """How many uploads each tenant is streaming in this process: each may grow to the largest
    artifact size in `.incoming` before the quota is checked under lock, so their number is
    bounded (SUANLI_UPLOADS_PER_TENANT) and one tenant cannot fill the disk with parallel
    uploads. Past it: Busy (429), nothing read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy: dict[int, int] = {}

    @contextmanager
    def take(self, tenant_id: int, limit: int) -> Iterator[None]:
        with self._lock:
            if self._busy.get(tenant_id, 0) >= limit:
                raise Busy(f"{limit} uploads of your tenant are already in progress; try again "
                           "when one has finished")
            self._busy[tenant_id] = self._busy.get(tenant_id, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._busy[tenant_id] -= 1
                if not self._busy[tenant_id]:
                    del self._busy[tenant_id]


def _upload_slots(p: Platform) -> UploadSlots:
    return p.cached("artifacts:upload-slots", UploadSlots, ttl=math.inf)


def store_upload(p: Platform, actor: Principal, chunks: Iterable[bytes], *, kind: str = "upload",
                 name: str = "", expect_sha256: str | None = None,
                 expect_size: int | None = None) -> tuple[m.Artifact, bool]:
    """Store an upload read from `chunks` as the actor's tenant's artifact. Returns it and whether
    it is new (False: the tenant had that content; nothing more was kept). TooLarge (413) past the
    largest artifact size or the tenant's quota, InvalidInput (422) when the bytes are not the
    announced ones; in every failure (the client gone mid-body included) nothing is kept."""
    tenant_id = owner_tenant(actor)
    if kind not in UPLOAD_KINDS:
        raise InvalidInput(f"kind: one of {', '.join(UPLOAD_KINDS)} (not {kind[:40]!r})",
                           field="kind")
    check_name(name)
    if expect_sha256 is not None:
        expect_sha256 = expect_sha256.strip().lower()
        if not is_sha256(expect_sha256):
            raise InvalidInput("X-Content-SHA256: not a SHA-256 (64 hex digits)",
                               field="X-Content-SHA256")
    limit = p.settings.artifact_max_bytes
    if expect_size is not None and expect_size > limit:
        raise TooLarge(f"{human_size(expect_size)} is over the largest artifact size of "
                       f"{human_size(limit)}")
    with p.db.session() as s:
        use = storage_use(s, p, _tenant(s, tenant_id))
        had = expect_sha256 is not None and s.scalar(
            select(m.Artifact.id).where(m.Artifact.tenant_id == tenant_id,
                                        m.Artifact.sha256 == expect_sha256)) is not None
    max_size = limit
    if not had:  # content the tenant already has takes no more room
        if expect_size is not None and (why := _over_quota(use, expect_size)):
            raise TooLarge(why)
        if why := _over_quota(use, 0):
            raise TooLarge(why)
        max_size = min(limit, use.quota_bytes - use.used_bytes)
    try:
        with _upload_slots(p).take(tenant_id, p.settings.uploads_per_tenant):
            stored = p.blobs.put(tenant_id, chunks, max_size=max_size,
                                 expect_sha256=expect_sha256, expect_size=expect_size)
    except BlobError as exc:
        if not exc.too_large:
            field = "Content-Length" if str(exc).startswith("received") else "X-Content-SHA256"
            raise InvalidInput(f"{exc}; nothing was kept", field=field) from exc
        if max_size < limit:
            raise TooLarge(f"over the tenant's storage quota: {human_size(use.used_bytes)} "
                           f"stored of {human_size(use.quota_bytes)}; nothing was kept") from exc
        raise TooLarge(f"over the largest artifact size of {human_size(limit)}; nothing was "
                       "kept") from exc
    return _record(p, actor, tenant_id, stored, kind=kind, name=name)


def _record(p: Platform, actor: Principal, tenant_id: int, stored: Stored, *, kind: str,
            name: str) -> tuple[m.Artifact, bool]:
    """The row for a stored blob, within quota (checked again: uploads may run side by side)."""
    try:
        with p.db.session(immediate=True) as s:
            tenant = _tenant(s, tenant_id, lock=True)
            row = artifact_row(s, tenant_id, stored.sha256)
            if row is not None:
                return row, False
            if why := _over_quota(storage_use(s, p, tenant), stored.size):
                raise TooLarge(why + "; nothing was kept")
            row = m.Artifact(tenant_id=tenant_id, sha256=stored.sha256, size_bytes=stored.size,
                             kind=kind, name=name, created_by=actor.user_id,
                             created_at=p.clock.now())
            s.add(row)
            s.flush()
            return row, True
    except TooLarge:
        _drop_unrecorded(p, tenant_id, stored.sha256)
        raise
    except IntegrityError:  # the same content, recorded by a concurrent upload
        with p.db.session() as s:
            row = artifact_row(s, tenant_id, stored.sha256)
        if row is None:
            raise
        return row, False


def _drop_unrecorded(p: Platform, tenant_id: int, sha256: str) -> None:
    with p.db.session() as s:
        if artifact_row(s, tenant_id, sha256) is None:
            p.blobs.delete(tenant_id, sha256)


def artifact_row(s: Session, tenant_id: int, sha256: str) -> m.Artifact | None:
    """The tenant's artifact of this content, or None."""
    row: m.Artifact | None = s.scalar(select(m.Artifact).where(
        m.Artifact.tenant_id == tenant_id, m.Artifact.sha256 == sha256))
    return row


# -- read ------------------------------------------------------------------------------------
def get_artifact(p: Platform, actor: Principal, sha256: str) -> m.Artifact:
    """The actor's tenant's artifact, or 404 (another tenant's is as missing)."""
    tenant_id = owner_tenant(actor)
    if not is_sha256(sha256):
        raise _not_found(sha256[:80])
    with p.db.session() as s:
        row = artifact_row(s, tenant_id, sha256)
    if row is None:
        raise _not_found(sha256)
    return row


def download(p: Platform, actor: Principal, sha256: str) -> tuple[m.Artifact, Iterator[bytes]]:
    """The artifact and its bytes, streamed from the store."""
    row = get_artifact(p, actor, sha256)
    if not p.blobs.exists(row.tenant_id, row.sha256):
        log.error("artifact %s of tenant %d has no blob", row.sha256, row.tenant_id)
        raise _not_found(sha256)
    return row, p.blobs.iter_bytes(row.tenant_id, row.sha256)


@dataclass
class ArtifactPage:
    items: list[m.Artifact]
    total: int
    limit: int
    offset: int


def list_artifacts(p: Platform, actor: Principal, *, tenant_id: int | None = None,
                   kind: str | None = None, job_id: int | None = None, limit: int = 50,
                   offset: int = 0) -> ArtifactPage:
    """A tenant's users list their own; the platform admin every tenant's (or one's)."""
    check_page(limit, offset)
    if tenant_id is not None:
        hide_other_tenant(actor, tenant_id)
    if actor.role is not Role.PLATFORM_ADMIN:
        tenant_id = owner_tenant(actor)
    if kind is not None and kind not in KINDS:
        raise InvalidInput(f"kind: one of {', '.join(KINDS)}", field="kind")
    q = select(m.Artifact)
    if tenant_id is not None:
        q = q.where(m.Artifact.tenant_id == tenant_id)
    if kind is not None:
        q = q.where(m.Artifact.kind == kind)
    if job_id is not None:
        q = q.where(m.Artifact.job_id == job_id)
    with p.db.session() as s:
        total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
        items = list(s.scalars(q.order_by(m.Artifact.id.desc()).limit(limit).offset(offset)))
    return ArtifactPage(items, total, limit, offset)


# -- delete ----------------------------------------------------------------------------------
def jobs_using(s: Session, tenant_id: int, *, artifact: str | None = None,
               dataset: str | None = None) -> list[int]:
    """Ids of the tenant's jobs not yet ended that refer to the artifact (as their work folder
    or an input) or to the dataset (an input)."""
    rows = s.execute(select(m.Job.id, m.Job.workdir_sha256, m.Job.inputs).where(
        m.Job.tenant_id == tenant_id, m.Job.state.not_in(ENDED)))
    found = []
    for job_id, workdir, inputs in rows:
        if artifact is not None and workdir == artifact:
            found.append(job_id)
            continue
        for item in inputs or []:
            if isinstance(item, dict) and (
                    (artifact is not None and item.get("artifact") == artifact)
                    or (dataset is not None and item.get("dataset") == dataset)):
                found.append(job_id)
                break
    return sorted(found)


def delete_artifact(p: Platform, actor: Principal, sha256: str) -> None:
    """Remove the artifact and its bytes; 409 while a job not yet ended or a dataset uses it."""
    tenant_id = owner_tenant(actor)
    if not is_sha256(sha256):
        raise _not_found(sha256[:80])
    with p.db.session(immediate=True) as s:
        _tenant(s, tenant_id, lock=True)
        row = artifact_row(s, tenant_id, sha256)
        if row is None:
            raise _not_found(sha256)
        users = jobs_using(s, tenant_id, artifact=sha256)
        if users:
            shown = ", ".join(str(j) for j in users[:10])
            raise Conflict(f"jobs not yet ended use artifact {sha256[:12]}: {shown}; delete it "
                           "when they have ended", detail={"jobs": users})
        dataset = s.scalar(select(m.Dataset.name).where(m.Dataset.tenant_id == tenant_id,
                                                        m.Dataset.artifact_sha256 == sha256))
        if dataset is not None:
            raise Conflict(f"dataset {dataset!r} is this artifact; remove the dataset "
                           f"(`suanli data rm {dataset}`)", detail={"dataset": dataset})
        s.delete(row)
        # The bytes go in the same unit: were the commit to fail after, the row would come back
        # without them (a 404 on download, logged) rather than bytes staying without a row.
        p.blobs.delete(tenant_id, sha256)


# -- a job's outputs -------------------------------------------------------------------------
def record_outputs(s: Session, p: Platform, *, tenant_id: int, job_id: int, stored: Stored,
                   now: datetime, name: str = "") -> m.Artifact:
    """The artifact row for a job's packed outputs, kept `outputs_retention_days` (for the
    staging code that stored them with `p.blobs.put`). Identical outputs of two jobs are one
    artifact, kept as long as the latest needs it. New content is checked against the tenant's
    quota again under its lock (outputs of several runs may arrive side by side): TooLarge then,
    and the caller drops the bytes."""
    expires = now + timedelta(days=p.settings.outputs_retention_days)
    tenant = _tenant(s, tenant_id, lock=True)
    row = artifact_row(s, tenant_id, stored.sha256)
    if row is None:
        if why := _over_quota(storage_use(s, p, tenant), stored.size):
            raise TooLarge(why)
        row = m.Artifact(tenant_id=tenant_id, sha256=stored.sha256, size_bytes=stored.size,
                         kind=OUTPUTS, name=name or f"job-{job_id}-outputs.tar", job_id=job_id,
                         media_type="application/x-tar", created_at=now, expires_at=expires)
        s.add(row)
        s.flush()
    elif row.expires_at is not None and row.expires_at < expires:
        row.expires_at = expires
        row.job_id = job_id
    return row


def drop_unrecorded(p: Platform, tenant_id: int, sha256: str) -> None:
    """Remove stored bytes no artifact row refers to (an upload refused after it was stored)."""
    _drop_unrecorded(p, tenant_id, sha256)


@dataclass(frozen=True, slots=True)
class OutputsRef:
    job_id: int
    tenant_id: int
    sha256: str
    size: int
    run_id: int


def job_outputs(p: Platform, actor: Principal, job_id: int) -> OutputsRef:
    """Where a job's packed outputs are: its latest run that has them. The job's tenant's users
    only (403 for other roles, 404 for another tenant's job or none kept)."""
    require_job_reader(actor)
    owner_tenant(actor)
    with p.db.session() as s:
        job = s.scalar(select(m.Job).where(m.Job.id == job_id,
                                           m.Job.tenant_id == actor.tenant_id))
        if job is None:
            raise NotFound(f"no job {job_id}")
        run = s.scalar(select(m.Run).where(m.Run.job_id == job_id,
                                           m.Run.outputs_sha256.is_not(None))
                       .order_by(m.Run.id.desc()).limit(1))
        if run is None or run.outputs_sha256 is None:
            why = ("it declared no outputs" if not job.outputs else
                   "it has not ended yet" if job.state not in ENDED else
                   "none were kept: no file matched " + ", ".join(job.outputs)[:200]
                   + " (or the log says why)")
            raise NotFound(f"job {job_id} has no outputs: {why}")
        sha = run.outputs_sha256
        kept = artifact_row(s, job.tenant_id, sha)
    if kept is None or not p.blobs.exists(job.tenant_id, sha):
        raise NotFound(f"job {job_id}'s outputs are no longer kept (outputs are kept "
                       f"{p.settings.outputs_retention_days:g} days)")
    return OutputsRef(job_id, job.tenant_id, sha, kept.size_bytes, run.id)


def reap_expired_outputs(p: Platform, *, batch: int = 500) -> int:
    """Remove jobs' outputs past their retention (rows and bytes); returns how many. Called by
    the engine's housekeeping. An output a job not yet ended refers to (an input of a later
    stage) stays until that job ends."""
    now = p.clock.now()
    removed = 0
    with p.db.session() as s:
        rows = list(s.execute(select(m.Artifact.id, m.Artifact.tenant_id, m.Artifact.sha256)
                              .where(m.Artifact.kind == OUTPUTS, m.Artifact.expires_at < now)
                              .order_by(m.Artifact.expires_at).limit(batch)))
    for art_id, tenant_id, sha in rows:
        with p.db.session(immediate=True) as s:
            row = s.get(m.Artifact, art_id)
            if row is None or row.expires_at is None or row.expires_at >= now:
                continue  # kept longer meanwhile
            if jobs_using(s, tenant_id, artifact=sha):
                continue
            s.delete(row)
            p.blobs.delete(tenant_id, sha)
            removed += 1
    if removed:
        log.info("removed %d job outputs past their retention", removed)
    p.cached("artifacts:incoming-swept", lambda: sweep_incoming(p), ttl=INCOMING_SWEEP_S)
    return removed


def sweep_incoming(p: Platform, older_than: timedelta = INCOMING_MAX_AGE) -> int:
    """Remove uploads' temporary files left by a server that died mid-upload (a client that
    disconnects is cleaned up at once): those untouched for `older_than`. Returns how many."""
    fs, root = p.blobs.fs, p.blobs.root
    cutoff = p.clock.now() - older_than
    removed = 0
    for path in fs.glob(f"{root}/*/.incoming/*"):
        try:
            info = fs.info(path)
        except FileNotFoundError:
            continue
        mtime = info.get("mtime") or info.get("LastModified") or info.get("created")
        if isinstance(mtime, int | float):
            mtime = datetime.fromtimestamp(mtime, UTC)
        if isinstance(mtime, datetime) and mtime.replace(tzinfo=mtime.tzinfo or UTC) < cutoff:
            try:
                fs.rm(path)
                removed += 1
            except FileNotFoundError:
                pass
    if removed:
        log.info("removed %d temporary files of interrupted uploads", removed)
    return removed
