"""Routes: the run-scoped endpoints centers call back (stage items in, packed outputs out).

Authorised only by the run's own token (`RunRequest.token`, `slr_...`): a tenant's or an admin's
API token is refused here, and a run token is refused everywhere else (it is no API token).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, StreamingResponse

from ..domain.errors import InvalidInput
from ..services import staging
from . import errors
from .deps import PlatformDep
from .routes_platform import ERRORS
from .schemas_artifacts import OutputsReceived
from .streaming import BodyChunks

router = APIRouter(prefix="/api/v1", responses=ERRORS, tags=["staging"])
RunKey = Annotated[str, PathParam(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Sha = Annotated[str, PathParam(pattern=r"^[0-9a-f]{64}$")]


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


@router.get("/runs/{run_key}/stage/{sha256}", response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}}}})
def stage_item(run_key: RunKey, sha256: Sha, request: Request, p: PlatformDep) -> Any:
    """One of the run's stage items (its work folder, an input), for the run's own token."""
    tenant_id, size, sha = staging.stage_source(p, run_key, _token(request), sha256)

    def body() -> Iterator[bytes]:
        yield from p.blobs.iter_bytes(tenant_id, sha)

    return StreamingResponse(body(), media_type="application/octet-stream",
                             headers={"Content-Length": str(size)})


@router.put("/runs/{run_key}/outputs", status_code=201, response_model=OutputsReceived,
            responses={413: {"description": "over the tenant's storage quota or the largest "
                                             "artifact: not kept"}})
def put_outputs(run_key: RunKey, request: Request, p: PlatformDep) -> Any:
    """The run's packed outputs (a tar, the raw body), once, while it runs or shortly after its
    end. Over the tenant's quota or the largest artifact they are not kept (the run's reason
    says so): 201 with `kept: false`."""
    # A plain `def` in the thread pool, as every route: only reading each chunk hops to the loop.
    body = BodyChunks(request)
    token = _token(request)
    run_id = staging.outputs_target(p, run_key, token)
    announced = staging.check_outputs_request(request.headers.get("content-length"))
    limit = staging.outputs_limit(p, run_id)
    if announced is not None and announced > limit:
        staging.outputs_refused(p, run_id, announced, limit)
        body.drain()
        return JSONResponse(errors.body(f"outputs of {announced:,} bytes are over the {limit:,} "
                                        "the tenant's storage quota and the largest artifact "
                                        "allow; not kept"), status_code=413)
    spool = p.home / "tmp"
    spool.mkdir(mode=0o700, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="outputs.", dir=spool)
    path = Path(name)
    try:
        size = 0
        over = False
        with os.fdopen(fd, "wb") as out:
            for chunk in body.chunks():
                size += len(chunk)
                if size > limit:
                    over = True
                if not over:
                    out.write(chunk)  # past the limit the rest is read and dropped
        if announced is not None and size != announced and not over:
            raise InvalidInput(f"received {size:,} bytes, announced {announced:,}")
        if over:
            staging.outputs_refused(p, run_id, size, limit)
            return {"kept": False, "sha256": None, "size_bytes": size}
        art = staging.ingest_outputs(p, run_id, path)
    finally:
        path.unlink(missing_ok=True)
    if art is None:
        return {"kept": False, "sha256": None, "size_bytes": size}
    return {"kept": True, "sha256": art.sha256, "size_bytes": art.size_bytes}

