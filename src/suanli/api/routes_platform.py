"""Routes: health, centers, pools, capacity, tenants, users, tokens."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from sqlalchemy.exc import DBAPIError

from .. import __version__
from ..domain.enums import DeviceKind
from ..domain.errors import NotFound
from ..services import auth, centers, replicas, tenants, users
from ..services.centers import CenterInput, PoolInput
from ..services.leader import current_leader
from ..store.db import unavailable
from .deps import EngineDep, PlatformDep, PrincipalDep
from .errors import DATABASE_DOWN, RETRY_AFTER_S
from .render import center_public, pool_public
from .schemas import (
    CenterCreate,
    CenterPublic,
    CenterStatusUpdate,
    ControlPlane,
    DiscoverRequest,
    ErrorBody,
    Page,
    PageLimit,
    PageOffset,
    PathId,
    PeerRuleSet,
    PoolCreate,
    PoolPublic,
    QuotaPublic,
    QuotaSet,
    TenantCreate,
    TenantPublic,
    TokenCreate,
    TokenCreated,
    TokenPublic,
    UserCreate,
    UserPublic,
    UserStatusChange,
    page_of,
)
from .schemas_platform import ApiIndex, Capacity, DiscoveredPools, Health, Me

# What any route may answer besides its success, each with the error body (docs/api.md).
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "a malformed request (e.g. an invalid "
                                             "Content-Length)"},
    401: {"model": ErrorBody, "description": "no token, or one that is unknown, expired or revoked"},
    403: {"model": ErrorBody, "description": "the caller's role may not do this"},
    404: {"model": ErrorBody, "description": "no such thing, or not the caller's to see"},
    409: {"model": ErrorBody, "description": "the thing's state does not allow it"},
    413: {"model": ErrorBody, "description": "the request body is over the server's limit "
                                             "(SUANLI_MAX_BODY_BYTES; an artifact: its own)"},
    422: {"model": ErrorBody, "description": "a field is invalid; `field` names it"},
    # any route, while the database cannot be reached (api/errors.py): retry after `Retry-After`
    503: {"model": ErrorBody, "description": "the database is unavailable; retry"},
}
DeviceKindPath = Annotated[DeviceKind, Path(description="cpu, gpu or npu")]

router = APIRouter(prefix="/api/v1", responses=ERRORS)


@router.get("", tags=["platform"])
def api_index(p: PlatformDep) -> ApiIndex:
    """Where things are: the API's version, this platform's network identifier (`network_id`,
    what a peer platform reads when it joins) and links to its description and health. No token
    needed (the address the server prints at start)."""
    return ApiIndex(name="suanli", version=__version__, network_id=p.settings.network_id,
                    openapi="/openapi.json", docs="/docs", health="/api/v1/health",
                    metrics="/metrics")


def replica_of(request: Request) -> dict[str, Any] | None:
    """This process as the control plane lists it: its id (`host:pid:random`) and role."""
    hb = getattr(request.app.state, "replica", None)
    return {"id": hb.id, "role": hb.role} if hb is not None else None


@router.get("/health", tags=["platform"],
            responses={503: {"description": "no engine runs, or the database is unavailable"}})
def health(p: PlatformDep, engine: EngineDep, request: Request,
           response: Response) -> Health:
    """Liveness, the scheduler's last pass and the engine's leader. No token needed.
    `"status": "degraded"` with 503 while the server runs no engine (it died; the server restarts
    it): nothing is placed, no run's end is recorded meanwhile. `"status": "unavailable"`,
    `"database": "down"` with 503 and `Retry-After` while the database cannot be reached. `leader`:
    the engine candidate holding the lease (host, pid, epoch, seconds since its last renewal and
    until it expires; null while none holds it, or unknown), read from the database: the same on
    every API replica."""
    status = engine.status()
    try:
        leader = current_leader(p)
    except DBAPIError as exc:
        if not unavailable(exc):
            raise
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return Health.model_validate({
            "status": "unavailable", "version": __version__, "replica": replica_of(request),
            "database": "down", "error": DATABASE_DOWN, "scheduler": status.as_dict(),
            "leader": None})
    out: dict[str, Any] = {
        "status": "ok",
        "version": __version__,
        "network_id": p.settings.network_id,
        "replica": replica_of(request),
        "database": p.db.engine.dialect.name,
        "scheduler": status.as_dict(),
        "leader": leader,
    }
    if getattr(request.app.state, "run_engine", True) and not status.running:
        response.status_code = 503
        out["status"] = "degraded"
        out["error"] = "the engine is not running (the server restarts it)"
    return Health.model_validate(out)


@router.get("/control-plane", tags=["platform"])
def control_plane(p: PlatformDep, who: PrincipalDep) -> ControlPlane:
    """The whole control plane (platform admin): the API replicas, servers and engine
    candidates that wrote their heartbeat within `SUANLI_REPLICA_SEEN_S` (60 s), the engine's
    leader and its last pass, and each center's health. What `suanli status` shows an admin."""
    return ControlPlane.model_validate(replicas.control_plane(p, who))


def _used(p: PlatformDep) -> dict[int, int]:
    with p.db.session() as s:
        return centers.used_units_by_pool(s)


@router.get("/centers", tags=["centers"])
def list_centers(p: PlatformDep, who: PrincipalDep, limit: PageLimit = 100,
                 offset: PageOffset = 0) -> Page[CenterPublic]:
    used = _used(p)
    rows = [center_public(c, used, network=p.settings.network_id) for c in centers.list_centers(p, who)]
    return Page[CenterPublic].model_validate(page_of(rows, limit, offset))


@router.post("/centers", status_code=201, tags=["centers"])
def create_center(body: CenterCreate, p: PlatformDep, who: PrincipalDep,
                  engine: EngineDep) -> CenterPublic:
    data = body.model_dump()
    data["pools"] = [PoolInput(**pl) for pl in data["pools"]]
    center = centers.create_center(p, who, CenterInput(**data))
    engine.wake()
    return center_public(center, _used(p), network=p.settings.network_id)


@router.post("/centers/discover", tags=["centers"], response_model_exclude_unset=True)
def discover_center(body: DiscoverRequest, p: PlatformDep, who: PrincipalDep) -> DiscoveredPools:
    """Ask a running workload manager (e.g. Slurm) for its partitions, as proposed pools."""
    return DiscoveredPools.model_validate(
        {"pools": centers.discover_pools(p, who, body.connector, body.connector_config)})


@router.get("/centers/{center_id}", tags=["centers"])
def get_center(center_id: PathId, p: PlatformDep, who: PrincipalDep) -> CenterPublic:
    return center_public(centers.get_center(p, who, center_id), _used(p),
                         network=p.settings.network_id)


@router.post("/centers/{center_id}/status", tags=["centers"])
def set_center_status(center_id: PathId, body: CenterStatusUpdate, p: PlatformDep,
                      who: PrincipalDep, engine: EngineDep) -> CenterPublic:
    center = centers.set_center_status(p, who, center_id, body.status, body.reason)
    engine.wake()
    return center_public(center, _used(p), network=p.settings.network_id)


@router.get("/centers/{center_id}/pools", tags=["centers"])
def center_pools(center_id: PathId, p: PlatformDep, who: PrincipalDep, limit: PageLimit = 100,
                 offset: PageOffset = 0) -> Page[PoolPublic]:
    used = _used(p)
    center = centers.get_center(p, who, center_id)
    rows = [pool_public(pl, used, network=p.settings.network_id, slug=center.slug)
            for pl in center.pools]
    return Page[PoolPublic].model_validate(page_of(rows, limit, offset))


@router.post("/centers/{center_id}/pools", status_code=201, tags=["centers"])
def add_pool(center_id: PathId, body: PoolCreate, p: PlatformDep, who: PrincipalDep,
             engine: EngineDep) -> PoolPublic:
    pool = centers.add_pool(p, who, center_id, PoolInput(**body.model_dump()))
    engine.wake()
    return pool_public(pool, _used(p), network=p.settings.network_id,
                       slug=centers.get_center(p, who, center_id).slug)


@router.get("/pools", tags=["centers"])
def list_pools(p: PlatformDep, who: PrincipalDep, limit: PageLimit = 100,
               offset: PageOffset = 0) -> Page[PoolPublic]:
    used = _used(p)
    rows = [pool_public(pl, used, network=p.settings.network_id, slug=pl.center.slug)
            for pl in centers.list_pools(p, who)]
    return Page[PoolPublic].model_validate(page_of(rows, limit, offset))


@router.get("/capacity", tags=["centers"])
def get_capacity(p: PlatformDep, who: PrincipalDep) -> Capacity:
    """The city's total and free capacity in P (PFLOPS) per precision, kind and district."""
    return Capacity.model_validate(centers.city_capacity(p, who))


@router.get("/tenants", tags=["tenants"])
def list_tenants(p: PlatformDep, who: PrincipalDep, limit: PageLimit = 100,
                 offset: PageOffset = 0) -> Page[TenantPublic]:
    rows = [TenantPublic.model_validate(t) for t in tenants.list_tenants(p, who)]
    return Page[TenantPublic].model_validate(page_of(rows, limit, offset))


@router.post("/tenants", status_code=201, tags=["tenants"])
def create_tenant(body: TenantCreate, p: PlatformDep, who: PrincipalDep) -> TenantPublic:
    return TenantPublic.model_validate(tenants.create_tenant(p, who, **body.model_dump()))


@router.get("/tenants/{tenant_id}", tags=["tenants"])
def get_tenant(tenant_id: PathId, p: PlatformDep, who: PrincipalDep) -> TenantPublic:
    return TenantPublic.model_validate(tenants.get_tenant(p, who, tenant_id))


@router.put("/tenants/{tenant_id}/peer-rule", tags=["tenants"])
def set_peer_rule(tenant_id: PathId, body: PeerRuleSet, p: PlatformDep,
                  who: PrincipalDep) -> TenantPublic:
    """Home first: the tenant's jobs go to a peer platform's pool only when that finishes them
    more than `earlier_by_s` seconds earlier than the best home pool (null: the platform's
    SUANLI_PEERS_EARLIER_BY_S). The platform admin, or the tenant's admin. Applies to jobs
    queued from then on."""
    return TenantPublic.model_validate(tenants.set_peer_rule(p, who, tenant_id, body.earlier_by_s))


@router.get("/tenants/{tenant_id}/quotas", tags=["tenants"])
def list_quotas(tenant_id: PathId, p: PlatformDep, who: PrincipalDep) -> Page[QuotaPublic]:
    """The tenant's quotas (most units of a device kind its running jobs may hold at once): one
    per device kind at most, so one page."""
    return _quotas(tenants.tenant_quotas(p, who, tenant_id))


def _quotas(rows: list[Any]) -> Page[QuotaPublic]:
    items = [QuotaPublic.model_validate(q) for q in rows]
    return Page[QuotaPublic](items=items, total=len(items), limit=max(len(items), 1), offset=0)


@router.put("/tenants/{tenant_id}/quotas/{device_kind}", tags=["tenants"])
def put_quota(tenant_id: PathId, device_kind: DeviceKindPath, body: QuotaSet, p: PlatformDep,
              who: PrincipalDep) -> Page[QuotaPublic]:
    """Set a quota (platform admin). Jobs beyond it wait, held, until the tenant's units free.
    Answers the tenant's quotas."""
    return _quotas(tenants.put_quota(p, who, tenant_id, device_kind.value, body.max_units))


@router.delete("/tenants/{tenant_id}/quotas/{device_kind}", tags=["tenants"])
def delete_quota(tenant_id: PathId, device_kind: DeviceKindPath, p: PlatformDep,
                 who: PrincipalDep) -> Page[QuotaPublic]:
    """Remove a quota (platform admin). Answers the tenant's quotas left."""
    return _quotas(tenants.put_quota(p, who, tenant_id, device_kind.value, None))


@router.get("/users", tags=["users"])
def list_users(p: PlatformDep, who: PrincipalDep, limit: PageLimit = 100,
               offset: PageOffset = 0) -> Page[UserPublic]:
    rows = [UserPublic.model_validate(u) for u in auth.visible_users(p, who)]
    return Page[UserPublic].model_validate(page_of(rows, limit, offset))


@router.get("/users/me", tags=["users"])
def me(who: PrincipalDep) -> Me:
    """Who the caller is: user, role, tenant or center, and the token it used."""
    return Me.model_validate(asdict(who))


@router.post("/users", status_code=201, tags=["users"])
def create_user(body: UserCreate, p: PlatformDep, who: PrincipalDep) -> UserPublic:
    return UserPublic.model_validate(auth.create_user(p, who, **body.model_dump()))


@router.post("/users/{user_id}/disable", tags=["users"])
def disable_user(user_id: PathId, p: PlatformDep, who: PrincipalDep,
                 body: UserStatusChange | None = None) -> UserPublic:
    """Disable a user (platform admin; a tenant admin for its tenant's users): its tokens and
    browser sessions stop at once and it cannot sign in. Audited."""
    reason = body.reason if body else ""
    return UserPublic.model_validate(users.set_disabled(p, who, user_id, True, reason))


@router.post("/users/{user_id}/enable", tags=["users"])
def enable_user(user_id: PathId, p: PlatformDep, who: PrincipalDep,
                body: UserStatusChange | None = None) -> UserPublic:
    """Enable a disabled user again: its tokens that are not revoked or expired work again."""
    reason = body.reason if body else ""
    return UserPublic.model_validate(users.set_disabled(p, who, user_id, False, reason))


@router.get("/tokens", tags=["users"])
def list_tokens(p: PlatformDep, who: PrincipalDep, limit: PageLimit = 100,
                offset: PageOffset = 0) -> Page[TokenPublic]:
    rows = [TokenPublic.model_validate(t) for t in auth.list_tokens(p, who)]
    return Page[TokenPublic].model_validate(page_of(rows, limit, offset))


@router.post("/tokens", status_code=201, tags=["users"])
def create_token(body: TokenCreate, p: PlatformDep, who: PrincipalDep) -> TokenCreated:
    """Create an API token. The secret is in this response only; suanli keeps just its hash.
    It may expire (`expires_in_s` or `expires_at`); created with a token, it ends when that
    one does (revoked or expired), and cannot expire later."""
    tok, secret = auth.create_token(p, who, name=body.name, user_id=body.user_id,
                                    expires_in_s=body.expires_in_s, expires_at=body.expires_at)
    return TokenCreated(**TokenPublic.model_validate(tok).model_dump(), token=secret)


@router.delete("/tokens/{token_id}", tags=["users"])
def revoke_token(token_id: PathId, p: PlatformDep, who: PrincipalDep) -> TokenPublic:
    """Revoke a token and every token created with it."""
    return TokenPublic.model_validate(auth.revoke_token(p, who, token_id))


@router.get("/", include_in_schema=False)
def api_root() -> Response:
    raise NotFound("see /docs for the API")
