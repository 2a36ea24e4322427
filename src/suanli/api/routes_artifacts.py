"""Routes: the artifact store (streamed uploads, downloads), datasets, a job's outputs and
tenants' storage quotas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from ..domain.errors import SuanliError
from ..services import artifacts, datasets
from ..store import models as m
from .deps import PlatformDep, PrincipalDep
from .routes_platform import ERRORS
from .schemas import MAX_ID, PathId
from .schemas_artifacts import (
    ArtifactPage,
    ArtifactPublic,
    DatasetCreate,
    DatasetPage,
    DatasetPublic,
    StorageQuotaPublic,
    StorageQuotaSet,
)
from .streaming import BodyChunks

router = APIRouter(prefix="/api/v1", responses=ERRORS)
Sha = Annotated[str, Query(min_length=1, max_length=200)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=MAX_ID)]
Kind = Literal["upload", "workdir", "dataset"]
BINARY = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


def _public(row: m.Artifact) -> ArtifactPublic:
    return ArtifactPublic.model_validate(row)


@router.put("/artifacts", status_code=201, tags=["artifacts"], openapi_extra=BINARY,
            response_model=ArtifactPublic,
            responses={200: {"model": ArtifactPublic,
                             "description": "the tenant had this content: nothing was stored"}})
def upload_artifact(
    request: Request, response: Response, p: PlatformDep, who: PrincipalDep,
    name: Annotated[str, Query(max_length=200)] = "",
    kind: Kind = "upload",
    x_content_sha256: Annotated[str | None, Header(max_length=200)] = None,
    content_length: Annotated[int | None, Header(ge=0)] = None,
) -> Any:
    """Store the raw request body (streamed, not multipart) as an artifact of the caller's
    tenant. `X-Content-SHA256` (recommended) is checked: a mismatch is a 422 and nothing is kept.
    201 when new; 200 when the tenant already had the content (nothing is stored twice: ask
    `HEAD /artifacts/{sha256}` first and skip the transfer). Over the largest artifact size or
    the tenant's storage quota: 413, nothing kept. Not subject to the 1 MiB body limit."""
    # A plain `def` in the thread pool, as every route: the store hashes and writes here, and
    # only the reading of each chunk hops to the event loop.
    body = BodyChunks(request)
    try:
        row, new = artifacts.store_upload(p, who, body.chunks(), kind=kind, name=name,
                                          expect_sha256=x_content_sha256,
                                          expect_size=content_length)
    except ClientDisconnect:
        return Response(status_code=400)  # nobody reads it; the store kept nothing
    except SuanliError:
        body.drain()
        raise
    if not new:
        response.status_code = 200
    return _public(row)


@router.get("/artifacts", tags=["artifacts"])
def list_artifacts(p: PlatformDep, who: PrincipalDep,
                   kind: Literal["upload", "workdir", "dataset", "outputs"] | None = None,
                   tenant_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
                   job_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
                   limit: Limit = 50, offset: Offset = 0) -> ArtifactPage:
    """The caller's tenant's artifacts, newest first (the platform admin: every tenant's)."""
    page = artifacts.list_artifacts(p, who, tenant_id=tenant_id, kind=kind, job_id=job_id,
                                    limit=limit, offset=offset)
    return ArtifactPage(items=[_public(a) for a in page.items], total=page.total,
                        limit=page.limit, offset=page.offset)


@router.head("/artifacts/{sha256}", tags=["artifacts"], response_class=Response,
             responses={200: {"description": "the caller's tenant has it: Content-Length and "
                                             "X-Content-SHA256 say its size and hash (no body)"}})
def artifact_exists(sha256: str, p: PlatformDep, who: PrincipalDep) -> Response:
    """200 when the caller's tenant has this content, else 404."""
    row = artifacts.get_artifact(p, who, sha256)
    return Response(status_code=200, headers={"Content-Length": str(row.size_bytes),
                                              "X-Content-SHA256": row.sha256})


def _stream(chunks: Iterator[bytes], size: int, sha256: str, filename: str) -> StreamingResponse:
    return StreamingResponse(chunks, media_type="application/octet-stream", headers={
        "Content-Length": str(size), "X-Content-SHA256": sha256,
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "private, no-store"})  # a tenant's own bytes: no shared cache keeps them


@router.get("/artifacts/{sha256}", tags=["artifacts"], response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}}}})
def download_artifact(sha256: str, p: PlatformDep, who: PrincipalDep) -> StreamingResponse:
    """The artifact's bytes."""
    row, chunks = artifacts.download(p, who, sha256)
    return _stream(chunks, row.size_bytes, row.sha256, f"{row.sha256[:16]}.bin")


@router.delete("/artifacts/{sha256}", status_code=204, tags=["artifacts"])
def delete_artifact(sha256: str, p: PlatformDep, who: PrincipalDep) -> Response:
    """Remove an artifact; 409 while a job that has not ended, or a dataset, uses it."""
    artifacts.delete_artifact(p, who, sha256)
    return Response(status_code=204)


TAR, BYTES = "application/x-tar", "application/octet-stream"
BINARY = {"schema": {"type": "string", "format": "binary"}}


def tar_or_bytes(accept: str | None) -> str:
    """What a job's packed outputs are labelled: a tar (`application/x-tar`), unless the client
    asks for plain bytes (`Accept: application/octet-stream` without x-tar, as a generic
    client does): the same bytes either way. q-values are not weighed."""
    kinds = {part.split(";")[0].strip().lower() for part in (accept or "").split(",")}
    return BYTES if BYTES in kinds and TAR not in kinds else TAR


@router.get("/jobs/{job_id}/outputs", tags=["jobs"], response_class=StreamingResponse,
            responses={200: {"description": "the outputs, a tar (the same bytes under either "
                                            "type, by the request's Accept)",
                             "content": {TAR: BINARY, BYTES: BINARY}}})
def job_outputs(job_id: PathId, p: PlatformDep, who: PrincipalDep,
                accept: Annotated[str | None, Header(include_in_schema=False)] = None
                ) -> StreamingResponse:
    """The job's declared outputs, packed as a tar, from its latest run that has them; 404 with
    the reason when there are none (none declared, not ended, or past their retention)."""
    ref = artifacts.job_outputs(p, who, job_id)
    resp = _stream(p.blobs.iter_bytes(ref.tenant_id, ref.sha256), ref.size, ref.sha256,
                   f"job-{job_id}-outputs.tar")
    resp.media_type = tar_or_bytes(accept)
    resp.headers["Content-Type"] = resp.media_type
    resp.headers["Vary"] = "Accept"  # a cache between must not answer one type for the other
    return resp


@router.get("/tenants/{tenant_id}/storage-quota", tags=["tenants"])
def get_storage_quota(tenant_id: PathId, p: PlatformDep, who: PrincipalDep) -> StorageQuotaPublic:
    """The tenant's artifact storage: used and allowed (bytes and count)."""
    return StorageQuotaPublic(**artifacts.get_storage_quota(p, who, tenant_id).as_dict())


@router.put("/tenants/{tenant_id}/storage-quota", tags=["tenants"])
def put_storage_quota(tenant_id: PathId, body: StorageQuotaSet, p: PlatformDep,
                      who: PrincipalDep) -> StorageQuotaPublic:
    """Set the tenant's artifact storage quota (platform admin); a null field: the platform's
    default (SUANLI_STORAGE_QUOTA_BYTES / _COUNT)."""
    use = artifacts.set_storage_quota(p, who, tenant_id, quota_bytes=body.bytes,
                                      quota_count=body.count)
    return StorageQuotaPublic(**use.as_dict())


def _dataset(view: datasets.DatasetView) -> DatasetPublic:
    data: dict[str, Any] = view.as_dict()
    return DatasetPublic(**data)


@router.post("/datasets", status_code=201, tags=["datasets"])
def add_dataset(body: DatasetCreate, p: PlatformDep, who: PrincipalDep) -> DatasetPublic:
    """Register a dataset: one at a center (`center`, `path`, `size_bytes`, `sha256`), or an
    uploaded tar (`artifact`)."""
    return _dataset(datasets.add_dataset(p, who, **body.model_dump()))


@router.get("/datasets", tags=["datasets"])
def list_datasets(p: PlatformDep, who: PrincipalDep,
                  tenant_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
                  limit: Limit = 50, offset: Offset = 0) -> DatasetPage:
    page = datasets.list_datasets(p, who, tenant_id=tenant_id, limit=limit, offset=offset)
    return DatasetPage(items=[_dataset(v) for v in page.items], total=page.total,
                       limit=page.limit, offset=page.offset)


@router.delete("/datasets/{name}", status_code=204, tags=["datasets"])
def delete_dataset(name: str, p: PlatformDep, who: PrincipalDep) -> Response:
    """Forget a dataset (an uploaded one's bytes too); 409 while a job not yet ended names it."""
    datasets.delete_dataset(p, who, name)
    return Response(status_code=204)
