"""Routes: peer platforms (federation, docs/federation.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from ..services import peer_money, peers
from ..services import peer_report as peer_report_service
from .deps import EngineDep, PlatformDep, PrincipalDep
from .routes_money import MonthQuery
from .routes_platform import ERRORS
from .schemas import (
    Page,
    PageLimit,
    PageOffset,
    PeerAdd,
    PeerHello,
    PeerInvite,
    PeerInvited,
    PeerPublic,
    PeerReportIn,
    page_of,
)
from .schemas_platform import (
    NetworkView,
    PeerDiscovered,
    PeerHelloAnswer,
    PeerWays,
    Reconciliation,
    ReportReceived,
)

router = APIRouter(prefix="/api/v1", responses=ERRORS)
PeerName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]


@router.post("/peers/invitations", status_code=201, tags=["peers"])
def invite_peer(body: PeerInvite, p: PlatformDep, who: PrincipalDep) -> PeerInvited:
    """Lend to a peer platform (platform admin): an account of kind `platform` for it and its
    join token, shown only here. The account sees only its own jobs and bills."""
    peer, token = peers.invite(p, who, body.name, credit_limit_fen=body.credit_limit_fen)
    assert peer.tenant_id is not None
    return PeerInvited(name=peer.name, token=token, tenant_id=peer.tenant_id)


@router.post("/peers", status_code=201, tags=["peers"])
def add_peer(body: PeerAdd, p: PlatformDep, who: PrincipalDep, engine: EngineDep) -> PeerPublic:
    """Borrow from a peer platform (platform admin): check it at `url` with the token it
    invited us with, and add it as a center (connector `suanli`) with its pools."""
    view = peers.add(p, who, body.name, url=body.url, token=body.token, report=body.report,
                     margin_bp=body.margin_bp)
    engine.wake()
    return PeerPublic.model_validate(view.as_dict())


@router.post("/peers/hello", tags=["peers"])
def peer_hello(body: PeerHello, p: PlatformDep, who: PrincipalDep) -> PeerHelloAnswer:
    """A peer that borrows from us says who it is (a peer platform's account only): its network
    identifier, shown in our list of peers. Answers ours."""
    return PeerHelloAnswer.model_validate(peers.hello(p, who, body.network_id))


@router.post("/peers/report", tags=["peers"])
def peer_report(body: PeerReportIn, p: PlatformDep, who: PrincipalDep) -> ReportReceived:
    """A member node reports to us, its parent (a peer platform's account only): its capacity,
    utilisation, monthly usage totals and the jobs it exchanged — never a tenant's details."""
    return ReportReceived.model_validate(
        peer_report_service.receive(p, who, body.model_dump(mode="json")))


@router.get("/network", tags=["peers"])
def get_network(p: PlatformDep, who: PrincipalDep) -> NetworkView:
    """This node and the member nodes that report to it (their last reports): capacity, load,
    usage and the jobs exchanged between nodes (the platform's roles)."""
    return NetworkView.model_validate(peer_report_service.network_view(p, who))


@router.get("/peers", tags=["peers"])
def list_peers(p: PlatformDep, who: PrincipalDep, limit: PageLimit = 100,
               offset: PageOffset = 0) -> Page[PeerPublic]:
    """The peers this platform lends to and borrows from (platform admin)."""
    rows = [PeerPublic.model_validate(v.as_dict()) for v in peers.list_peers(p, who)]
    return Page[PeerPublic].model_validate(page_of(rows, limit, offset))


@router.get("/peers/{name}", tags=["peers"])
def show_peer(name: PeerName, p: PlatformDep, who: PrincipalDep) -> PeerWays:
    """A peer, each way it is one (it may lend to us and borrow from us)."""
    return PeerWays(name=name, ways=[PeerPublic.model_validate(v.as_dict())
                                     for v in peers.show(p, who, name)])


@router.post("/peers/{name}/discover", tags=["peers"])
def discover_peer(name: PeerName, p: PlatformDep, who: PrincipalDep,
                  engine: EngineDep) -> PeerDiscovered:
    """Ask a peer that lends to us for its pools now (the engine does every
    SUANLI_PEER_DISCOVERY_S): how many of our pools changed."""
    peers.get(p, who, name, peers.LENDS)
    changed = peers.discover(p, name)
    engine.wake()
    return PeerDiscovered(name=name, changed=changed)


@router.get("/peers/{name}/reconcile", tags=["peers"])
def reconcile_peer(name: PeerName, month: MonthQuery, p: PlatformDep,
                   who: PrincipalDep) -> Reconciliation:
    """Our statement of what we borrowed from the peer in `month` against the peer's statement of
    what it lent us (read from it over its API), run by run: `same`, and each run that differs."""
    return Reconciliation.model_validate(peer_money.reconcile(p, who, name, month))


@router.delete("/peers/{name}", tags=["peers"])
def remove_peer(name: PeerName, p: PlatformDep, who: PrincipalDep,
                engine: EngineDep) -> PeerWays:
    """End a peer both ways: its center goes offline (refused while runs are active there) and
    its account here is disabled, its tokens revoked."""
    views = peers.remove(p, who, name)
    engine.wake()
    return PeerWays(name=name, ways=[PeerPublic.model_validate(v.as_dict()) for v in views])
