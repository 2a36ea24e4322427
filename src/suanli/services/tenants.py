"""Tenants (enterprises), identified by their unified social credit code."""

from __future__ import annotations

from sqlalchemy import select

from ..domain.credit_code import validate_credit_code
from ..domain.enums import Role
from ..domain.errors import Conflict, InvalidInput, NotFound
from ..store import models as m
from .auth import Principal, hide_other_tenant
from .context import Platform
from .queueing import Quotas, list_quotas, set_quota


def create_tenant(
    p: Platform,
    actor: Principal | None,
    *,
    name: str,
    credit_code: str,
    district: str = "",
    contact_name: str = "",
    contact_email: str = "",
    contact_phone: str = "",
    credit_limit_fen: int = 0,
) -> m.Tenant:
    if actor is not None:
        actor.require(Role.PLATFORM_ADMIN)
    name = name.strip()
    if not name:
        raise InvalidInput("tenant name must not be empty", field="name")
    code = validate_credit_code(credit_code)
    if not 0 <= credit_limit_fen <= 10**12:
        raise InvalidInput("a credit limit is 0 to 10^12 fen", field="credit_limit_fen")
    with p.db.session() as s:
        if s.scalar(select(m.Tenant.id).where(m.Tenant.credit_code == code)) is not None:
            raise Conflict(f"a tenant with credit code {code} exists", field="credit_code")
        if s.scalar(select(m.Tenant.id).where(m.Tenant.name == name)) is not None:
            raise Conflict(f"a tenant named {name!r} exists", field="name")
        tenant = m.Tenant(
            name=name,
            credit_code=code,
            district=district,
            contact_name=contact_name,
            contact_email=contact_email,
            contact_phone=contact_phone,
            credit_limit_fen=credit_limit_fen,
            created_at=p.clock.now(),
        )
        s.add(tenant)
        s.flush()
        return tenant


def list_tenants(p: Platform, actor: Principal) -> list[m.Tenant]:
    with p.db.session() as s:
        q = select(m.Tenant).order_by(m.Tenant.id)
        if actor.role.is_tenant:
            q = q.where(m.Tenant.id == actor.tenant_id)
        elif actor.role is Role.CENTER_OPERATOR:
            raise NotFound("center operators do not list tenants")
        return list(s.scalars(q))


def get_tenant(p: Platform, actor: Principal, tenant_id: int) -> m.Tenant:
    with p.db.session() as s:
        tenant = s.get(m.Tenant, tenant_id)
        visible = actor.role.is_platform or (actor.role.is_tenant and actor.tenant_id == tenant_id)
        if tenant is None or not visible:
            raise NotFound(f"no tenant {tenant_id}")
        return tenant


def tenant_quotas(p: Platform, actor: Principal, tenant_id: int) -> list[dict[str, object]]:
    """The tenant's quotas, each with the units its running jobs hold now."""
    get_tenant(p, actor, tenant_id)  # visibility: the platform, or the tenant's own users
    with p.db.session() as s:
        in_use = Quotas.load(s).in_use
        return [{"device_kind": q.device_kind, "max_units": q.max_units,
                 "in_use": in_use.get((tenant_id, q.device_kind), 0), "updated_at": q.updated_at}
                for q in list_quotas(s, tenant_id)]


def put_quota(p: Platform, actor: Principal, tenant_id: int, device_kind: str,
              max_units: int | None) -> list[dict[str, object]]:
    """Set (or, with None, remove) a tenant's quota for one device kind (platform admin)."""
    hide_other_tenant(actor, tenant_id)
    actor.require(Role.PLATFORM_ADMIN)
    with p.db.session() as s:
        set_quota(s, tenant_id, device_kind, max_units, p.clock.now())
    return tenant_quotas(p, actor, tenant_id)


MAX_PEER_RULE_S = 30 * 86400


def set_peer_rule(p: Platform, actor: Principal, tenant_id: int,
                  earlier_by_s: int | None) -> m.Tenant:
    """The tenant's "home first" rule: its jobs go to a peer platform's pool only when that
    finishes them more than `earlier_by_s` seconds earlier than the best home pool (None: the
    platform's rule). The platform admin, or the tenant's own admin."""
    hide_other_tenant(actor, tenant_id)
    actor.require(Role.PLATFORM_ADMIN, Role.TENANT_ADMIN)
    if earlier_by_s is not None and not 0 <= earlier_by_s <= MAX_PEER_RULE_S:
        raise InvalidInput(f"earlier_by_s is 0 to {MAX_PEER_RULE_S} seconds, or null",
                           field="earlier_by_s")
    with p.db.session() as s:
        tenant = s.get(m.Tenant, tenant_id)
        if tenant is None:
            raise NotFound(f"no tenant {tenant_id}")
        tenant.peer_earlier_by_s = earlier_by_s
        s.flush()
        return tenant
