"""Peer platforms (issue 18, federation: 算力互联互通): other suanli instances this one lends
compute to and borrows compute from.

* Lending: `invite(name)` (platform admin) creates a tenant of kind `platform` with one user
  (`peer-<name>`, a tenant user) and a join token, returned once. That account sees only what
  any tenant sees of its own (its jobs, artifacts, bills) and the centers and pools offered.
  `remove` disables the user and revokes its tokens.
* Borrowing: `add(name, url, token)` (platform admin) checks the peer (its network identifier,
  that the token is accepted) and adds it as a center of kind `platform` with the connector
  `suanli`, its pools discovered from the peer. `discover_all` runs again every
  `peer_discovery_s` (from the engine): new pools are added, changed ones updated, and pools the
  peer no longer offers are withdrawn (never placed on again). `remove` takes the center
  offline, once nothing runs there.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..connectors import create as create_connector
from ..domain.enums import CenterKind, CenterStatus, DeviceKind, Role
from ..domain.errors import (
    Conflict,
    ConnectorError,
    Forbidden,
    InvalidInput,
    NotFound,
    SuanliError,
)
from ..store import models as m
from ..store.db import log_failure
from . import audit
from .auth import Principal, create_user, forget_cached, issue_token
from .centers import (
    ACTIVE_RUN_STATES,
    SLUG_RE,
    CenterInput,
    PoolInput,
    add_pool_row,
    create_center,
)
from .context import Platform

log = logging.getLogger(__name__)

LENDS, BORROWS = "lends", "borrows"  # the peer lends us compute / borrows ours
MAX_MARGIN_BP = 10_000  # a margin on a peer's price of at most 100 %


@dataclass(frozen=True)
class PeerView:
    """A peer as the API shows it."""

    name: str
    direction: str
    network_id: str
    url: str
    center_id: int | None
    center: str | None
    tenant_id: int | None
    status: str
    report: bool
    margin_bp: int
    pools: int
    created_at: datetime
    discovered_at: datetime | None
    discovery_error: str
    removed_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not SLUG_RE.match(name):
        raise InvalidInput("a peer's name is 2-63 lower-case letters, digits or '-' (e.g. "
                           "yantai)", field="name")
    return name


def _live(s: Session, name: str, direction: str) -> m.Peer | None:
    return s.scalar(select(m.Peer).where(m.Peer.name == name, m.Peer.direction == direction,
                                         m.Peer.removed_at.is_(None)))


# -- lending: a platform account for the peer ---------------------------------------------------
def invite(p: Platform, actor: Principal, name: str, *, credit_limit_fen: int = 0
           ) -> tuple[m.Peer, str]:
    """A `platform` account for the peer `name` and its join token (the secret: shown once)."""
    actor.require(Role.PLATFORM_ADMIN)
    name = _check_name(name)
    if not 0 <= credit_limit_fen <= 10**12:
        raise InvalidInput("a credit limit is 0 to 10^12 fen", field="credit_limit_fen")
    now = p.clock.now()
    username = f"peer-{name}"
    with p.db.session() as s:
        if _live(s, name, BORROWS) is not None:
            raise Conflict(f"peer {name} is invited already (suanli peer remove {name} first)",
                           field="name")
        tenant = s.scalar(select(m.Tenant).where(m.Tenant.name == _tenant_name(name)))
        if tenant is None:
            tenant = m.Tenant(name=_tenant_name(name), credit_code=_peer_code(name),
                              kind="platform", credit_limit_fen=credit_limit_fen, created_at=now,
                              contact_name=name)
            s.add(tenant)
            s.flush()
        elif tenant.kind != "platform":
            raise Conflict(f"a tenant named {tenant.name!r} exists and is not a platform",
                           field="name")
        else:
            tenant.credit_limit_fen = credit_limit_fen
        user = s.scalar(select(m.User).where(m.User.username == username))
        if user is not None and user.tenant_id != tenant.id:
            raise Conflict(f"a user {username} exists (of another tenant)", field="name")
        tenant_id, user_id = tenant.id, user.id if user is not None else None
        if user is not None:
            user.disabled = False
    if user_id is None:
        user_id = create_user(p, None, username=username, role=Role.TENANT_USER,
                              tenant_id=tenant_id, display_name=f"peer platform {name}").id
    else:
        forget_cached(p, user_id=user_id)
    _, secret = issue_token(p, user_id, name=f"peer {name}")
    with p.db.session() as s:
        peer = m.Peer(name=name, direction=BORROWS, tenant_id=tenant_id, created_at=now)
        s.add(peer)
        audit.record(s, "peer.invite", f"peer:{name}",
                     {"tenant_id": tenant_id, "credit_limit_fen": credit_limit_fen}, now, actor)
        s.flush()
        return peer, secret


def _tenant_name(name: str) -> str:
    return f"peer platform {name}"


def _peer_code(name: str) -> str:
    """A platform account's stand-in for a credit code: lower case, so never a real one (those
    are upper case), unique per name, 18 characters."""
    return "peer-" + hashlib.sha256(name.encode()).hexdigest()[:13]


# -- borrowing: the peer as a center ------------------------------------------------------------
def add(p: Platform, actor: Principal, name: str, *, url: str, token: str,
        report: bool = False, margin_bp: int = 0) -> PeerView:
    """Join the peer at `url` with the token it invited us with: a center of kind `platform`
    whose pools are the peer's (priced at the peer's price plus `margin_bp`)."""
    actor.require(Role.PLATFORM_ADMIN)
    name = _check_name(name)
    if not 0 <= margin_bp <= MAX_MARGIN_BP:
        raise InvalidInput(f"a margin is 0 to {MAX_MARGIN_BP} basis points (100 %)",
                           field="margin_bp")
    config: dict[str, Any] = {"url": url, "token": token, "center": name}
    try:
        conn: Any = create_connector("suanli", config, p.home)
        health = conn.health()
        if not health.ok:
            raise InvalidInput(f"the peer does not answer as it should: {health.detail}",
                               field="url")
        network = conn.network_id()
        found = conn.discover()
    except ConnectorError as exc:
        raise InvalidInput(str(exc.message), field="url") from exc
    if network == p.settings.network_id:
        raise InvalidInput(f"that platform has our own network identifier {network}: a platform "
                           "does not join itself", field="url")
    now = p.clock.now()
    with p.db.session() as s:
        if _live(s, name, LENDS) is not None:
            raise Conflict(f"peer {name} is added already", field="name")
        center = s.scalar(select(m.Center).where(m.Center.slug == name))
        if center is not None and center.connector != "suanli":
            raise Conflict(f"a center {name} exists (not a peer): choose another name",
                           field="name")
        old_center_id = center.id if center is not None else None
    config.update(url=conn.url, network_id=network, pools=_routes(found))
    if old_center_id is None:
        center = create_center(p, None, CenterInput(
            slug=name, name_zh=f"对等平台 {name}", name_en=f"Peer platform {name}",
            kind=CenterKind.PLATFORM, operator=network, connector="suanli",
            connector_config=config, pools=[_pool_input(d, margin_bp) for d in found]))
        center_id = center.id
    else:
        center_id = old_center_id
        with p.db.session() as s:
            row = s.get(m.Center, center_id)
            assert row is not None
            row.connector_config = config
            row.status, row.status_reason, row.status_source = "online", "", "operator"
            row.offline_since = None
    with p.db.session() as s:
        peer = m.Peer(name=name, direction=LENDS, url=conn.url, network_id=network,
                      center_id=center_id, report=report, margin_bp=margin_bp, created_at=now,
                      discovered_at=now)
        s.add(peer)
        audit.record(s, "peer.add", f"peer:{name}",
                     {"url": conn.url, "network_id": network, "pools": len(found),
                      "margin_bp": margin_bp, "report": report}, now, actor)
        s.flush()
    if old_center_id is not None:
        discover(p, name)
    try:  # tell the lender who we are (its view of us shows our network identifier)
        conn.hello(p.settings.network_id)
    except ConnectorError as exc:
        log.info("peer %s: hello not taken now (%s)", name, exc.message)
    p.topology_changed()
    return get(p, actor, name, LENDS)


def hello(p: Platform, actor: Principal, network_id: str) -> dict[str, Any]:
    """A peer that borrows from us says who it is (its network identifier), once it joined."""
    if not actor.platform_account or actor.tenant_id is None:
        raise Forbidden("a hello comes from a peer platform's account")
    if network_id == p.settings.network_id:
        raise InvalidInput("that is our own network identifier", field="network_id")
    with p.db.session() as s:
        s.execute(update(m.Peer).where(m.Peer.tenant_id == actor.tenant_id,
                                       m.Peer.direction == BORROWS, m.Peer.removed_at.is_(None))
                  .values(network_id=network_id))
    return {"network_id": p.settings.network_id}


def _priced(price: int, margin_bp: int) -> int:
    """The peer's price with our margin, rounded up to the fen (we never sell below cost)."""
    return -(-price * (10_000 + margin_bp) // 10_000)


def _pool_input(d: dict[str, Any], margin_bp: int) -> PoolInput:
    return PoolInput(
        name=d["name"], device_kind=DeviceKind(d["device_kind"]), device_model=d["device_model"],
        units_per_node=d["units_per_node"], nodes=d["nodes"],
        memory_gb_per_node=d["memory_gb_per_node"],
        price_fen_per_unit_hour=_priced(d["price_fen_per_unit_hour"], margin_bp),
        domestic=d["domestic"], tflops_fp64=d.get("tflops_fp64"), tflops_fp32=d.get("tflops_fp32"),
        tflops_fp16=d.get("tflops_fp16"), tflops_int8=d.get("tflops_int8"),
        watts_per_unit=d["watts_per_unit"], max_walltime_s=d["max_walltime_s"], arch=d["arch"],
        features=list(d["features"]), environments=dict(d["environments"]),
        identifier=d.get("identifier"))


def _routes(found: Iterable[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The suanli connector's `pools` setting: our pool name -> the peer's place and precision."""
    return {d["name"]: {"place": d["place"], "precision": d["precision"]} for d in found}


def discover(p: Platform, name: str, *, connector: Callable[[m.Center], Any] | None = None
             ) -> int:
    """Ask the peer `name` (one that lends to us) for its pools again: add the new ones, update
    the others' figures and price, withdraw those it no longer offers (and restore one it offers
    again). Returns how many pools changed. A peer that does not answer keeps its pools (its
    health check takes it offline); the error is kept on the peer."""
    with p.db.session() as s:
        peer = _live(s, name, LENDS)
        if peer is None or peer.center_id is None:
            raise NotFound(f"no peer {name} lending to us")
        center = s.get(m.Center, peer.center_id)
        assert center is not None
        _ = center.pools
        margin, peer_id = peer.margin_bp, peer.id
    conn: Any = (connector or p.connector_for)(center)
    now = p.clock.now()
    try:
        found = {d["name"]: d for d in conn.discover()}
    except SuanliError as exc:
        with p.db.session() as s:
            s.execute(update(m.Peer).where(m.Peer.id == peer_id)
                      .values(discovery_error=str(exc.message)[:500]))
        return 0
    changed = 0
    with p.db.session() as s:
        row = s.get(m.Center, center.id)
        assert row is not None
        existing = {pl.name: pl for pl in row.pools}
        for pool_name, pl in existing.items():
            d = found.get(pool_name)
            if d is None:
                if pl.withdrawn_at is None:
                    pl.withdrawn_at = now
                    changed += 1
                continue
            new = _pool_input(d, margin)
            values = {**asdict(new), "device_kind": new.device_kind.value, "withdrawn_at": None}
            del values["name"]
            if any(getattr(pl, k) != v for k, v in values.items()):
                if pl.price_fen_per_unit_hour != new.price_fen_per_unit_hour:
                    # a new version from now on: runs already started keep their price
                    s.add(m.PriceList(pool_id=pl.id, valid_from=now, created_at=now,
                                      price_fen_per_unit_hour=new.price_fen_per_unit_hour,
                                      note=f"peer {name}'s price (discovered)"))
                for k, v in values.items():
                    setattr(pl, k, v)
                changed += 1
        for pool_name, d in found.items():
            if pool_name not in existing:
                add_pool_row(s, p, row, _pool_input(d, margin))  # (with its first price)
                changed += 1
        config = dict(row.connector_config or {})
        config["pools"] = _routes(found.values())
        if config != row.connector_config:
            row.connector_config = config
        s.execute(update(m.Peer).where(m.Peer.id == peer_id)
                  .values(discovered_at=now, discovery_error=""))
    if changed:
        p.topology_changed()
    return changed


def any_lender(p: Platform) -> bool:
    """Whether any center is a peer platform (ours to sync with)."""
    with p.db.session() as s:
        return s.scalar(select(m.Center.id).where(m.Center.connector == "suanli")
                        .limit(1)) is not None


def discover_all(p: Platform) -> int:
    """Discover the pools of every peer that lends to us (the engine calls it every
    `peer_discovery_s`). Returns how many pools changed."""
    with p.db.session() as s:
        names = list(s.scalars(select(m.Peer.name).where(
            m.Peer.direction == LENDS, m.Peer.removed_at.is_(None))))
    changed = 0
    for name in names:
        try:
            changed += discover(p, name)
        except Exception:  # one peer never holds up the others
            log_failure(log, "discovering the pools of peer %s failed", name)
    return changed


# -- both ---------------------------------------------------------------------------------------
def list_peers(p: Platform, actor: Principal) -> list[PeerView]:
    actor.require(Role.PLATFORM_ADMIN)
    with p.db.session() as s:
        rows = list(s.scalars(select(m.Peer).where(m.Peer.removed_at.is_(None))
                              .order_by(m.Peer.name, m.Peer.direction)))
        return [_view(s, r) for r in rows]


def get(p: Platform, actor: Principal, name: str, direction: str | None = None) -> PeerView:
    actor.require(Role.PLATFORM_ADMIN)
    with p.db.session() as s:
        q = select(m.Peer).where(m.Peer.name == name, m.Peer.removed_at.is_(None))
        if direction is not None:
            q = q.where(m.Peer.direction == direction)
        rows = list(s.scalars(q.order_by(m.Peer.direction)))
        if not rows:
            raise NotFound(f"no peer {name}")
        return _view(s, rows[0])


def show(p: Platform, actor: Principal, name: str) -> list[PeerView]:
    """Both sides of a peer (it may lend to us and borrow from us)."""
    actor.require(Role.PLATFORM_ADMIN)
    views = [v for v in list_peers(p, actor) if v.name == name]
    if not views:
        raise NotFound(f"no peer {name}")
    return views


def _view(s: Session, peer: m.Peer) -> PeerView:
    center = s.get(m.Center, peer.center_id) if peer.center_id is not None else None
    pools = 0
    status = "online"
    if center is not None:
        pools = sum(1 for pl in center.pools if pl.withdrawn_at is None)
        status = center.status
    elif peer.tenant_id is not None:
        user = s.scalar(select(m.User).where(m.User.tenant_id == peer.tenant_id))
        status = "disabled" if user is None or user.disabled else "active"
    return PeerView(name=peer.name, direction=peer.direction, network_id=peer.network_id,
                    url=peer.url, center_id=peer.center_id,
                    center=center.slug if center is not None else None,
                    tenant_id=peer.tenant_id, status=status, report=peer.report,
                    margin_bp=peer.margin_bp, pools=pools, created_at=peer.created_at,
                    discovered_at=peer.discovered_at, discovery_error=peer.discovery_error,
                    removed_at=peer.removed_at)


def remove(p: Platform, actor: Principal, name: str) -> list[PeerView]:
    """End both sides of the peer `name`: as a lender to us, its center goes offline (refused
    while runs are active there: drain it first); as a borrower, its account is disabled and
    its tokens revoked (its running jobs end as they would; no new call is accepted)."""
    actor.require(Role.PLATFORM_ADMIN)
    now = p.clock.now()
    user_ids: list[int] = []
    with p.db.session() as s:
        rows = list(s.scalars(select(m.Peer).where(m.Peer.name == name,
                                                   m.Peer.removed_at.is_(None))))
        if not rows:
            raise NotFound(f"no peer {name}")
        for peer in rows:
            if peer.center_id is not None:
                active = s.scalar(select(m.Run.id).where(
                    m.Run.center_id == peer.center_id, m.Run.state.in_(ACTIVE_RUN_STATES)))
                if active is not None:
                    raise Conflict(f"runs are active at peer {name}: drain it first (suanli "
                                   f"center status {name} draining) and remove it once they end")
        views = [_view(s, r) for r in rows]
        for peer in rows:
            peer.removed_at = now
            if peer.center_id is not None:
                center = s.get(m.Center, peer.center_id)
                assert center is not None
                center.status, center.status_source = CenterStatus.OFFLINE.value, "operator"
                center.status_reason, center.offline_since = f"peer {name} removed", now
            if peer.tenant_id is not None:
                for user in s.scalars(select(m.User).where(m.User.tenant_id == peer.tenant_id)):
                    user.disabled = True
                    user_ids.append(user.id)
                s.execute(update(m.ApiToken).where(
                    m.ApiToken.user_id.in_(user_ids), m.ApiToken.revoked_at.is_(None))
                    .values(revoked_at=now))
        audit.record(s, "peer.remove", f"peer:{name}",
                     {"directions": [r.direction for r in rows]}, now, actor)
    for uid in user_ids:
        forget_cached(p, user_id=uid)
    p.topology_changed()
    return views
