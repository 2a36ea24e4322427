"""Centers and their pools: registration, listing, and the city's capacity in P."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from ..connectors import Capability
from ..connectors import available as available_connectors
from ..connectors import create as create_connector
from ..domain.enums import CenterKind, CenterStatus, DeviceKind, Precision, Role
from ..domain.errors import Conflict, InvalidInput, NotFound
from ..domain.task import ARCHES, check_name, check_script
from ..store import models as m
from .auth import Principal
from .context import Platform

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
SECRET_KEYS = ("token", "password", "secret", "jwt", "key")
ACTIVE_RUN_STATES = ("pending", "running")


@dataclass
class PoolInput:
    name: str
    device_kind: DeviceKind
    device_model: str
    units_per_node: int
    nodes: int
    memory_gb_per_node: int
    price_fen_per_unit_hour: int
    domestic: bool = False
    tflops_fp64: float | None = None
    tflops_fp32: float | None = None
    tflops_fp16: float | None = None
    tflops_int8: float | None = None
    watts_per_unit: int = 300
    max_walltime_s: int = 7 * 24 * 3600
    # What programs run there (see domain/task.py): the CPU architecture, the features it
    # offers, and named environments {name: shell lines that activate it}.
    arch: str = "x86_64"
    features: list[str] = field(default_factory=list)
    environments: dict[str, str] = field(default_factory=dict)
    # A peer platform's pool: the identifier that platform gave it (None: ours, derived).
    identifier: str | None = None


@dataclass
class CenterInput:
    slug: str
    name_zh: str
    name_en: str
    kind: CenterKind
    district: str = ""
    operator: str = ""
    pue: float = 1.3
    connector: str = "local"
    connector_config: dict[str, Any] = field(default_factory=dict)
    emulated: bool = False
    pools: list[PoolInput] = field(default_factory=list)


def center_identifier(network: str, center: m.Center) -> str:
    """A center's network identifier: `{network}/{slug}` (CN-SD-QD/qd-ai); a peer platform's
    center is that platform (its own network identifier, as it reported it)."""
    if center.connector == "suanli":
        peer_network = str((center.connector_config or {}).get("network_id") or "")
        if peer_network:
            return peer_network
    return f"{network}/{center.slug}"


def pool_identifier(network: str, center_slug: str, pool: m.Pool) -> str:
    """A pool's network identifier: `{network}/{center}/{pool}` (CN-SD-QD/qd-ai/ascend-910b),
    or the one its peer platform gave it."""
    return pool.identifier or f"{network}/{center_slug}/{pool.name}"


def discover_pools(p: Platform, actor: Principal | None, connector: str,
                   config: dict[str, Any]) -> list[dict[str, Any]]:
    """Ask a running backend for its partitions, described as pools (nothing is stored)."""
    if actor is not None:
        actor.require(Role.PLATFORM_ADMIN)
    if connector not in available_connectors():
        raise InvalidInput(f"unknown connector {connector!r}", field="connector")
    conn = create_connector(connector, config, p.home)
    if Capability.DISCOVER not in conn.capabilities or not hasattr(conn, "discover"):
        raise InvalidInput(f"the {connector} connector cannot discover pools; describe them",
                           field="connector")
    found: list[dict[str, Any]] = conn.discover()
    return found


def redact(config: dict[str, Any]) -> dict[str, Any]:
    """Connector settings with credentials masked, for display."""
    return {
        k: ("***" if any(s in k.lower() for s in SECRET_KEYS) else v) for k, v in config.items()
    }


def _validate_pool(pool: PoolInput) -> None:
    if not SLUG_RE.match(pool.name):
        raise InvalidInput(
            "pool name must be 2-63 lower-case letters, digits or '-'", field="name"
        )
    for name in ("units_per_node", "nodes", "memory_gb_per_node"):
        if getattr(pool, name) <= 0:
            raise InvalidInput(f"{name} must be positive", field=name)
    if pool.price_fen_per_unit_hour < 0:
        raise InvalidInput("price must not be negative", field="price_fen_per_unit_hour")
    flops = [getattr(pool, f"tflops_{p.value}") for p in Precision]
    if any(v is not None and v < 0 for v in flops):
        raise InvalidInput("TFLOPS figures must not be negative", field="tflops")
    if all(v is None for v in flops):
        raise InvalidInput("a pool needs a TFLOPS figure for at least one precision",
                           field="tflops")
    if pool.max_walltime_s <= 0:
        raise InvalidInput("max_walltime_s must be positive", field="max_walltime_s")
    _check_software(pool)


MAX_FEATURES = 100
MAX_ENVIRONMENTS = 50


def _check_software(pool: PoolInput) -> None:
    """The pool's arch, features and environments: known arch, names, scripts (normalised)."""
    if pool.arch not in ARCHES:
        raise InvalidInput(f"arch: {pool.arch!r} is not one of {', '.join(sorted(ARCHES))}",
                           field="arch")
    if not isinstance(pool.features, list) or len(pool.features) > MAX_FEATURES:
        raise InvalidInput(f"features: a list of up to {MAX_FEATURES} names", field="features")
    pool.features = list(dict.fromkeys(check_name(f, field_name="features")
                                       for f in pool.features))
    if not isinstance(pool.environments, dict) or len(pool.environments) > MAX_ENVIRONMENTS:
        raise InvalidInput(f"environments: a map of up to {MAX_ENVIRONMENTS} NAME: script",
                           field="environments")
    envs: dict[str, str] = {}
    for name, script in pool.environments.items():
        check_name(name, field_name="environments")
        text = check_script(script, field_name=f"environments.{name}")
        if text is None:
            raise InvalidInput(f"environments.{name}: give the shell lines that activate it "
                               f"(e.g. module load ..., or true)", field=f"environments.{name}")
        envs[name] = text
    pool.environments = envs


def add_pool_row(s: Session, p: Platform, center: m.Center, pool: PoolInput) -> m.Pool:
    _validate_pool(pool)
    exists = s.scalar(
        select(m.Pool.id).where(m.Pool.center_id == center.id, m.Pool.name == pool.name)
    )
    if exists is not None:
        raise Conflict(f"center {center.slug} already has a pool {pool.name!r}", field="name")
    row = m.Pool(center_id=center.id, created_at=p.clock.now(), **asdict(pool))
    row.device_kind = DeviceKind(pool.device_kind).value
    s.add(row)
    s.flush()
    s.add(m.PriceList(pool_id=row.id, price_fen_per_unit_hour=row.price_fen_per_unit_hour,
                      valid_from=row.created_at, note="initial", created_at=row.created_at))
    return row


def create_center(p: Platform, actor: Principal | None, data: CenterInput) -> m.Center:
    if actor is not None:
        actor.require(Role.PLATFORM_ADMIN)
    if not SLUG_RE.match(data.slug):
        raise InvalidInput("slug must be 2-63 lower-case letters, digits or '-'", field="slug")
    if data.connector not in available_connectors():
        raise InvalidInput(
            f"unknown connector {data.connector!r}; available: "
            f"{', '.join(available_connectors())}",
            field="connector",
        )
    if not 1.0 <= data.pue <= 3.0:
        raise InvalidInput("PUE must be between 1.0 and 3.0", field="pue")
    with p.db.session() as s:
        if s.scalar(select(m.Center.id).where(m.Center.slug == data.slug)) is not None:
            raise Conflict(f"a center with slug {data.slug!r} exists", field="slug")
        center = m.Center(
            slug=data.slug,
            name_zh=data.name_zh,
            name_en=data.name_en,
            kind=CenterKind(data.kind).value,
            district=data.district,
            operator=data.operator,
            pue=data.pue,
            connector=data.connector,
            connector_config=dict(data.connector_config),
            emulated=data.emulated,
            status=CenterStatus.ONLINE.value,
            created_at=p.clock.now(),
        )
        s.add(center)
        s.flush()
        for pool in data.pools:
            add_pool_row(s, p, center, pool)
        s.refresh(center)
        _ = center.pools
    p.topology_changed()
    return center


def _visible_center_ids(actor: Principal) -> int | None:
    """The one center a center operator may see; None means every center."""
    return actor.center_id if actor.role is Role.CENTER_OPERATOR else None


def list_centers(p: Platform, actor: Principal) -> list[m.Center]:
    with p.db.session() as s:
        q = select(m.Center).order_by(m.Center.id)
        only = _visible_center_ids(actor)
        if only is not None:
            q = q.where(m.Center.id == only)
        centers = list(s.scalars(q))
        for c in centers:
            _ = c.pools
        return centers


def get_center(p: Platform, actor: Principal, center_id: int) -> m.Center:
    only = _visible_center_ids(actor)
    with p.db.session() as s:
        center = s.get(m.Center, center_id)
        if center is None or (only is not None and only != center_id):
            raise NotFound(f"no center {center_id}")
        _ = center.pools
        return center


def managed_center(p: Platform, actor: Principal, center_id: int) -> m.Center:
    """A center the actor may change: any for a platform admin, its own for an operator."""
    center = get_center(p, actor, center_id)
    if not (
        actor.role is Role.PLATFORM_ADMIN
        or (actor.role is Role.CENTER_OPERATOR and actor.center_id == center.id)
    ):
        actor.require(Role.PLATFORM_ADMIN)
    return center


def add_pool(p: Platform, actor: Principal, center_id: int, pool: PoolInput) -> m.Pool:
    center = managed_center(p, actor, center_id)
    with p.db.session() as s:
        row = s.get(m.Center, center.id)
        assert row is not None
        added = add_pool_row(s, p, row, pool)
    p.topology_changed()
    return added


def set_center_status(
    p: Platform, actor: Principal, center_id: int, status: CenterStatus, reason: str = ""
) -> m.Center:
    center = managed_center(p, actor, center_id)
    with p.db.session() as s:
        row = s.get(m.Center, center.id)
        assert row is not None
        row.status = status.value
        row.status_reason = reason
        row.status_source = "operator"
        row.offline_since = p.clock.now() if status is CenterStatus.OFFLINE else None
        s.flush()
        _ = row.pools
    p.topology_changed()
    return row


def list_pools(p: Platform, actor: Principal) -> list[m.Pool]:
    with p.db.session() as s:
        q = select(m.Pool).options(joinedload(m.Pool.center)).order_by(m.Pool.id)
        only = _visible_center_ids(actor)
        if only is not None:
            q = q.where(m.Pool.center_id == only)
        return list(s.scalars(q))


def used_units_by_pool(s: Session) -> dict[int, int]:
    rows = s.execute(
        select(m.Run.pool_id, func.sum(m.Run.units))
        .where(m.Run.state.in_(ACTIVE_RUN_STATES))
        .group_by(m.Run.pool_id)
    )
    return {pool_id: int(units or 0) for pool_id, units in rows}


def units_in_use(p: Platform, actor: Principal, center_id: int) -> dict[int, int]:
    """Units in use now in each pool of a center (its operator sees its own center only)."""
    get_center(p, actor, center_id)  # a center the actor may not see is not found
    with p.db.session() as s:
        pools = set(s.scalars(select(m.Pool.id).where(m.Pool.center_id == center_id)))
        return {k: v for k, v in used_units_by_pool(s).items() if k in pools}


@dataclass
class CapacityFigures:
    total_pflops: dict[str, float] = field(default_factory=dict)
    free_pflops: dict[str, float] = field(default_factory=dict)
    total_units: int = 0
    free_units: int = 0

    def add(self, pool: m.Pool, free_units: int) -> None:
        spec = pool.spec()
        for prec in Precision:
            self.total_pflops[prec.value] = round(
                self.total_pflops.get(prec.value, 0.0) + spec.peak_pflops(prec), 6
            )
            self.free_pflops[prec.value] = round(
                self.free_pflops.get(prec.value, 0.0) + spec.peak_pflops(prec, free_units), 6
            )
        self.total_units += spec.total_units
        self.free_units += free_units


def city_capacity(p: Platform, actor: Principal) -> dict[str, Any]:
    """Total and free capacity in P (PFLOPS) per precision, overall, per kind, per district,
    per device kind, and for domestic devices. Counts every online or draining center."""
    total = CapacityFigures()
    by_kind: dict[str, CapacityFigures] = defaultdict(CapacityFigures)
    by_district: dict[str, CapacityFigures] = defaultdict(CapacityFigures)
    by_device: dict[str, CapacityFigures] = defaultdict(CapacityFigures)
    domestic = CapacityFigures()
    offline = CapacityFigures()
    with p.db.session() as s:
        used = used_units_by_pool(s)
        rows = s.execute(select(m.Pool, m.Center).join(m.Center)
                         .where(m.Pool.withdrawn_at.is_(None))).all()
        for pool, center in rows:
            free = max(0, pool.total_units - used.get(pool.id, 0))
            if center.status == CenterStatus.OFFLINE.value:
                offline.add(pool, 0)
                continue
            if center.status == CenterStatus.DRAINING.value:
                free = 0
            for bucket in (
                total,
                by_kind[center.kind],
                by_district[center.district or "-"],
                by_device[pool.device_kind],
            ):
                bucket.add(pool, free)
            if pool.domestic:
                domestic.add(pool, free)
    return {
        "unit": "PFLOPS",
        "total": asdict(total),
        "domestic": asdict(domestic),
        "offline": asdict(offline),
        "by_kind": {k: asdict(v) for k, v in sorted(by_kind.items())},
        "by_district": {k: asdict(v) for k, v in sorted(by_district.items())},
        "by_device": {k: asdict(v) for k, v in sorted(by_device.items())},
    }
