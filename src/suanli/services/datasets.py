"""Datasets: named data a tenant's jobs read (`inputs: [{"dataset": NAME, "path": ...}]`).

A dataset either already lives at a center (registered with its path there, size and checksum:
nothing moves to that center for it) or was uploaded to suanli (a tar artifact of kind `dataset`,
copied to a center the first time a job there needs it). Each copy is a `dataset_locations` row:
a dataset is copied to a center at most once and is then counted as present there.

Placement uses `bytes_to_move`: the real bytes a job's work folder, artifacts and datasets would
have to travel to a center, instead of a typed guess.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..artifacts import is_sha256
from ..domain.enums import Role
from ..domain.errors import Conflict, InvalidInput, NotFound
from ..domain.task import check_name
from ..store import models as m
from .artifacts import artifact_row, jobs_using, owner_tenant
from .auth import Principal, hide_other_tenant
from .context import Platform
from .jobs import check_page

MAX_PATH = 1000
log = logging.getLogger("suanli.datasets")


@dataclass(frozen=True, slots=True)
class DatasetView:
    id: int
    tenant_id: int
    name: str
    size_bytes: int
    sha256: str | None
    artifact_sha256: str | None
    created_at: datetime
    centers: tuple[str, ...]  # slugs of the centers holding a copy
    paths: Mapping[str, str]  # center slug -> path there ("" for a copy suanli made)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "tenant_id": self.tenant_id, "name": self.name,
                "size_bytes": self.size_bytes, "sha256": self.sha256,
                "artifact_sha256": self.artifact_sha256, "created_at": self.created_at,
                "uploaded": self.artifact_sha256 is not None,
                "locations": [{"center": c, "path": self.paths.get(c, "")}
                              for c in self.centers]}


def _views(s: Session, rows: Sequence[m.Dataset]) -> list[DatasetView]:
    locs: dict[int, list[tuple[str, str]]] = {}
    if rows:
        for ds_id, slug, path in s.execute(
                select(m.DatasetLocation.dataset_id, m.Center.slug, m.DatasetLocation.path)
                .join(m.Center, m.Center.id == m.DatasetLocation.center_id)
                .where(m.DatasetLocation.dataset_id.in_([r.id for r in rows]))
                .order_by(m.Center.slug)):
            locs.setdefault(ds_id, []).append((slug, path))
    return [DatasetView(r.id, r.tenant_id, r.name, r.size_bytes, r.sha256, r.artifact_sha256,
                        r.created_at, tuple(c for c, _ in locs.get(r.id, [])),
                        dict(locs.get(r.id, []))) for r in rows]


def _center(s: Session, ref: str) -> m.Center:
    q = select(m.Center).where(m.Center.slug == ref)
    if ref.isdigit():
        q = select(m.Center).where(m.Center.id == int(ref))
    center = s.scalar(q)
    if center is None:
        raise NotFound(f"no center {ref!r}", field="center")
    return center


def check_center_path(path: str) -> str:
    if not isinstance(path, str) or not path or "\x00" in path or len(path) > MAX_PATH:
        raise InvalidInput(f"path: a path at the center, at most {MAX_PATH} characters",
                           field="path")
    if not PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts:
        raise InvalidInput(f"path: {path[:100]!r} must be absolute at the center, without '..'",
                           field="path")
    return path


def add_dataset(p: Platform, actor: Principal, *, name: str, center: str | None = None,
                path: str | None = None, size_bytes: int | None = None,
                sha256: str | None = None, artifact: str | None = None) -> DatasetView:
    """Register a dataset living at `center` under `path` (its size given; a checksum optional),
    or one uploaded as the tar artifact `artifact` (size and checksum are the artifact's)."""
    tenant_id = owner_tenant(actor)
    name = check_name(name, field_name="name")
    if (artifact is None) == (center is None):
        raise InvalidInput("either center and path (data already at a center) or artifact (an "
                           "uploaded tar)", field="center" if center is None else "artifact")
    if sha256 is not None and not is_sha256(sha256):
        raise InvalidInput("sha256: 64 lowercase hex digits", field="sha256")
    now = p.clock.now()
    with p.db.session(immediate=True) as s:
        if s.scalar(select(m.Dataset.id).where(m.Dataset.tenant_id == tenant_id,
                                               m.Dataset.name == name)) is not None:
            raise Conflict(f"a dataset named {name!r} exists; remove it first "
                           f"(`suanli data rm {name}`)", field="name")
        if artifact is not None:
            art = artifact_row(s, tenant_id, artifact)
            if art is None:
                raise NotFound(f"no artifact {artifact[:80]}", field="artifact")
            if art.kind not in ("dataset", "upload"):
                raise InvalidInput(f"artifact {artifact[:12]} is a {art.kind}, not a dataset",
                                   field="artifact")
            ds = m.Dataset(tenant_id=tenant_id, name=name, size_bytes=art.size_bytes,
                           sha256=sha256 or art.sha256, artifact_sha256=art.sha256,
                           created_by=actor.user_id, created_at=now)
            s.add(ds)
            s.flush()
        else:
            assert center is not None
            if path is None:
                raise InvalidInput("path: where the data is at the center", field="path")
            path = check_center_path(path)
            if size_bytes is None or not 0 <= size_bytes <= 2**62:
                raise InvalidInput("size_bytes: the dataset's size in bytes (0 or more)",
                                   field="size_bytes")
            where = _center(s, center)
            ds = m.Dataset(tenant_id=tenant_id, name=name, size_bytes=size_bytes, sha256=sha256,
                           artifact_sha256=None, created_by=actor.user_id, created_at=now)
            s.add(ds)
            s.flush()
            s.add(m.DatasetLocation(dataset_id=ds.id, center_id=where.id, path=path,
                                    present_since=now))
            s.flush()
        return _views(s, [ds])[0]


@dataclass
class DatasetPage:
    items: list[DatasetView]
    total: int
    limit: int
    offset: int


def list_datasets(p: Platform, actor: Principal, *, tenant_id: int | None = None,
                  limit: int = 50, offset: int = 0) -> DatasetPage:
    """A tenant's users list their own; the platform admin every tenant's (or one's)."""
    check_page(limit, offset)
    if tenant_id is not None:
        hide_other_tenant(actor, tenant_id)
    if actor.role is not Role.PLATFORM_ADMIN:
        tenant_id = owner_tenant(actor)
    q = select(m.Dataset)
    if tenant_id is not None:
        q = q.where(m.Dataset.tenant_id == tenant_id)
    with p.db.session() as s:
        total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
        rows = list(s.scalars(q.order_by(m.Dataset.name).limit(limit).offset(offset)))
        return DatasetPage(_views(s, rows), total, limit, offset)


def delete_dataset(p: Platform, actor: Principal, name: str) -> None:
    """Forget a dataset (its locations too); an uploaded one's artifact goes with it, and so do
    the copies suanli made of it at centers (`drop_dataset` of their connectors). 409 while a
    job not yet ended names it. Data registered at a center is not touched there."""
    tenant_id = owner_tenant(actor)
    copies: list[m.Center] = []
    sha: str | None = None
    with p.db.session(immediate=True) as s:
        ds = s.scalar(select(m.Dataset).where(m.Dataset.tenant_id == tenant_id,
                                              m.Dataset.name == name))
        if ds is None:
            raise NotFound(f"no dataset {name[:100]!r}")
        users = jobs_using(s, tenant_id, dataset=name)
        if ds.artifact_sha256:
            users = sorted({*users, *jobs_using(s, tenant_id, artifact=ds.artifact_sha256)})
        if users:
            shown = ", ".join(str(j) for j in users[:10])
            raise Conflict(f"jobs not yet ended use dataset {name!r}: {shown}; remove it when "
                           "they have ended", detail={"jobs": users})
        for loc in s.scalars(select(m.DatasetLocation)
                             .where(m.DatasetLocation.dataset_id == ds.id)):
            center = s.get(m.Center, loc.center_id)
            if not loc.path and center is not None:
                copies.append(center)
            s.delete(loc)
        s.flush()  # the locations first: they refer to the dataset (no mapped relationship)
        sha = ds.artifact_sha256
        s.delete(ds)
        s.flush()
        if sha is not None:
            art = artifact_row(s, tenant_id, sha)
            others = s.scalar(select(m.Dataset.id).where(m.Dataset.tenant_id == tenant_id,
                                                         m.Dataset.artifact_sha256 == sha))
            if others is not None:
                copies = []  # the tenant's other dataset of the same bytes uses them
            if art is not None and others is None:
                s.delete(art)
                p.blobs.delete(tenant_id, sha)
        shared = sha is not None and s.scalar(
            select(m.Artifact.id).where(m.Artifact.sha256 == sha).limit(1)) is not None
    if sha is not None:
        _drop_copies(p, tenant_id, sha, copies, shared)


def _drop_copies(p: Platform, tenant_id: int, sha: str, centers: Sequence[m.Center],
                 shared: bool) -> None:
    """Remove the copies suanli made of a deleted dataset at `centers` (after the deletion is
    committed: no new run stages it). A center whose connector keeps none, or cannot be
    reached, keeps its copy (logged): the local executor removes its own, Slurm its
    `staging_dir` file when no tenant stores the bytes any more (`shared`)."""
    for center in centers:
        try:
            drop = getattr(p.connector_for(center), "drop_dataset", None)
            if drop is not None:
                drop(tenant_id, sha, shared)
        except Exception:  # the dataset is gone from suanli either way
            log.exception("center %s: removing its copy of dataset %s failed", center.slug,
                          sha[:12])


# -- for placement and staging ---------------------------------------------------------------
def _refs(inputs: Iterable[Mapping[str, Any]] | None) -> tuple[set[str], set[str]]:
    artifacts: set[str] = set()
    datasets: set[str] = set()
    for item in inputs or ():
        if not isinstance(item, Mapping):
            continue
        if isinstance(item.get("artifact"), str):
            artifacts.add(item["artifact"])
        elif isinstance(item.get("dataset"), str):
            datasets.add(item["dataset"])
    return artifacts, datasets


def bytes_to_move(s: Session, tenant_id: int, inputs: Iterable[Mapping[str, Any]] | None,
                  center_ids: Iterable[int], *, workdir_sha256: str | None = None
                  ) -> dict[int, int]:
    """For each center: the bytes a job's work folder, input artifacts and datasets would have to
    travel there. Artifacts live in suanli, so they always travel; a dataset travels unless a
    copy is at that center. Names or shas the tenant does not have count 0 (submission checks
    them). Two queries, whatever the number of centers."""
    artifacts, datasets = _refs(inputs)
    if workdir_sha256:
        artifacts.add(workdir_sha256)
    ds_rows: list[tuple[int, int, str | None]] = []
    if datasets:
        ds_rows = [(i, size, art) for i, size, art in s.execute(
            select(m.Dataset.id, m.Dataset.size_bytes, m.Dataset.artifact_sha256)
            .where(m.Dataset.tenant_id == tenant_id, m.Dataset.name.in_(datasets)))]
    # A dataset uploaded as an artifact and also named as that artifact moves once, as a dataset.
    artifacts -= {art for _, _, art in ds_rows if art}
    always = 0
    if artifacts:
        always = int(s.scalar(select(func.coalesce(func.sum(m.Artifact.size_bytes), 0)).where(
            m.Artifact.tenant_id == tenant_id, m.Artifact.sha256.in_(artifacts))) or 0)
    present: set[tuple[int, int]] = set()
    if ds_rows:
        present = {(d, c) for d, c in s.execute(
            select(m.DatasetLocation.dataset_id, m.DatasetLocation.center_id)
            .where(m.DatasetLocation.dataset_id.in_([d for d, _, _ in ds_rows])))}
    return {c: always + sum(size for d, size, _ in ds_rows if (d, c) not in present)
            for c in center_ids}


def dataset_bytes_to_move(s: Session, tenant_id: int, inputs: Iterable[Mapping[str, Any]] | None,
                          center_id: int, *, workdir_sha256: str | None = None) -> int:
    """The bytes a job's artifacts (and work folder, when given) and datasets not at `center_id`
    would move there. See `bytes_to_move` for many centers at once."""
    return bytes_to_move(s, tenant_id, inputs, [center_id],
                         workdir_sha256=workdir_sha256)[center_id]


def record_dataset_copied(s: Session, dataset_id: int, center_id: int, now: datetime,
                          path: str = "") -> bool:
    """Count the dataset as present at the center from now on (staging copied it there). True
    when this is the first copy; a second call changes nothing. Runs in the caller's unit."""
    found = s.scalar(select(m.DatasetLocation.id).where(
        m.DatasetLocation.dataset_id == dataset_id, m.DatasetLocation.center_id == center_id))
    if found is not None:
        return False
    try:
        with s.begin_nested():  # a concurrent copy may have recorded it
            s.add(m.DatasetLocation(dataset_id=dataset_id, center_id=center_id, path=path,
                                    present_since=now))
    except IntegrityError:
        return False
    return True


def datasets_named(s: Session, tenant_id: int, names: Iterable[str]) -> dict[str, m.Dataset]:
    """The tenant's datasets by name (for validating and staging a job's inputs)."""
    wanted = set(names)
    if not wanted:
        return {}
    return {d.name: d for d in s.scalars(select(m.Dataset).where(
        m.Dataset.tenant_id == tenant_id, m.Dataset.name.in_(wanted)))}
