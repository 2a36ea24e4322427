"""Principals, API tokens (random, shown once, stored as SHA-256) and passwords (scrypt)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain.enums import Role
from ..domain.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from ..store import models as m
from .context import Platform

TOKEN_PREFIX = "sl_"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    username: str
    role: Role
    tenant_id: int | None = None
    center_id: int | None = None

    def require(self, *roles: Role) -> None:
        if self.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise Forbidden(f"this needs one of the roles {allowed}; you are {self.role.value}")


def hide_other_tenant(actor: Principal, tenant_id: int) -> None:
    """A tenant's users see no other tenant: any tenant id but their own is "not found" (404),
    whether that tenant exists or not and whatever they ask to do with it, so no answer tells them
    which tenants exist. (What their role may do with their own tenant is checked after.)"""
    if actor.role.is_tenant and tenant_id != actor.tenant_id:
        raise NotFound(f"no tenant {tenant_id}")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, salt_hex, digest_hex = stored.split("$", 2)
    digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt_hex), n=2**14, r=8, p=1)
    return hmac.compare_digest(digest.hex(), digest_hex)


def principal_of(user: m.User) -> Principal:
    return Principal(user.id, user.username, Role(user.role), user.tenant_id, user.center_id)


def authenticate(p: Platform, token: str) -> Principal:
    """The principal behind a bearer token, or Unauthenticated (cached briefly in-process;
    a revocation through this process takes effect at once)."""
    if not token.startswith(TOKEN_PREFIX):
        raise Unauthenticated("invalid API token")
    digest = hash_token(token)
    return p.cached(f"token:{digest}", lambda: _lookup_token(p, digest))


def _lookup_token(p: Platform, digest: str) -> Principal:
    with p.db.session() as s:
        row = s.execute(
            select(m.ApiToken, m.User)
            .join(m.User, m.User.id == m.ApiToken.user_id)
            .where(m.ApiToken.token_hash == digest)
        ).first()
        if row is None:
            raise Unauthenticated("invalid API token")
        tok, user = row
        if tok.revoked_at is not None:
            raise Unauthenticated("this API token was revoked")
        if user.disabled:
            raise Unauthenticated("this user is disabled")
        return principal_of(user)


def _check_membership(s: Session, role: Role, tenant_id: int | None, center_id: int | None) -> None:
    if role.is_tenant:
        if tenant_id is None:
            raise InvalidInput(f"a {role.value} must belong to a tenant", field="tenant_id")
        if s.get(m.Tenant, tenant_id) is None:
            raise InvalidInput(f"no tenant {tenant_id}", field="tenant_id")
        if center_id is not None:
            raise InvalidInput("a tenant user cannot belong to a center", field="center_id")
    elif role is Role.CENTER_OPERATOR:
        if center_id is None:
            raise InvalidInput("a center_operator must belong to a center", field="center_id")
        if s.get(m.Center, center_id) is None:
            raise InvalidInput(f"no center {center_id}", field="center_id")
        if tenant_id is not None:
            raise InvalidInput("a center operator cannot belong to a tenant", field="tenant_id")
    elif tenant_id is not None or center_id is not None:
        raise InvalidInput(f"a {role.value} belongs to the platform, not to a tenant or center")


def create_user(
    p: Platform,
    actor: Principal | None,
    *,
    username: str,
    role: Role,
    tenant_id: int | None = None,
    center_id: int | None = None,
    display_name: str = "",
    password: str | None = None,
) -> m.User:
    """Create a user. Platform admins create anyone; a tenant admin creates users of its tenant."""
    if actor is not None and actor.role is not Role.PLATFORM_ADMIN:
        if tenant_id is not None:
            hide_other_tenant(actor, tenant_id)
        if actor.role is Role.TENANT_ADMIN and role.is_tenant and tenant_id == actor.tenant_id:
            pass
        else:
            raise Forbidden("only a platform admin (or a tenant admin, for its own tenant) adds users")
    with p.db.session() as s:
        if s.scalar(select(m.User.id).where(m.User.username == username)) is not None:
            raise Conflict(f"username {username!r} is taken", field="username")
        _check_membership(s, role, tenant_id, center_id)
        user = m.User(
            username=username,
            display_name=display_name,
            role=role.value,
            tenant_id=tenant_id,
            center_id=center_id,
            password_hash=hash_password(password) if password else None,
            created_at=p.clock.now(),
        )
        s.add(user)
        s.flush()
        return user


def visible_users(p: Platform, actor: Principal) -> list[m.User]:
    with p.db.session() as s:
        q = select(m.User).order_by(m.User.id)
        if actor.role is Role.TENANT_ADMIN:
            q = q.where(m.User.tenant_id == actor.tenant_id)
        elif actor.role is not Role.PLATFORM_ADMIN:
            q = q.where(m.User.id == actor.user_id)
        return list(s.scalars(q))


def issue_token(p: Platform, user_id: int, name: str = "") -> tuple[m.ApiToken, str]:
    """Create a token for a user. The secret is returned once and never stored."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with p.db.session() as s:
        if s.get(m.User, user_id) is None:
            raise NotFound(f"no user {user_id}")
        tok = m.ApiToken(
            user_id=user_id,
            name=name,
            prefix=secret[: len(TOKEN_PREFIX) + 6],
            token_hash=hash_token(secret),
            created_at=p.clock.now(),
        )
        s.add(tok)
        s.flush()
        return tok, secret


def create_token(
    p: Platform, actor: Principal, *, name: str = "", user_id: int | None = None
) -> tuple[m.ApiToken, str]:
    target = actor.user_id if user_id is None else user_id
    if target != actor.user_id and actor.role is not Role.PLATFORM_ADMIN:
        raise Forbidden("only a platform admin creates tokens for other users")
    return issue_token(p, target, name)


def list_tokens(p: Platform, actor: Principal) -> list[m.ApiToken]:
    with p.db.session() as s:
        q = select(m.ApiToken).order_by(m.ApiToken.id)
        if actor.role is not Role.PLATFORM_ADMIN:
            q = q.where(m.ApiToken.user_id == actor.user_id)
        return list(s.scalars(q))


def revoke_token(p: Platform, actor: Principal, token_id: int) -> m.ApiToken:
    with p.db.session() as s:
        tok = s.get(m.ApiToken, token_id)
        if tok is None or (
            tok.user_id != actor.user_id and actor.role is not Role.PLATFORM_ADMIN
        ):
            raise NotFound(f"no token {token_id}")
        if tok.revoked_at is None:
            tok.revoked_at = p.clock.now()
        p.forget(f"token:{tok.token_hash}")
        return tok


def revoke_secret(p: Platform, secret: str) -> bool:
    """Revoke the token whose secret this is (a browser session signing out). True if one was."""
    digest = hash_token(secret)
    with p.db.session() as s:
        tok = s.scalar(select(m.ApiToken).where(m.ApiToken.token_hash == digest))
        if tok is None:
            return False
        if tok.revoked_at is None:
            tok.revoked_at = p.clock.now()
    p.forget(f"token:{digest}")
    return True


def login_with_password(p: Platform, username: str, password: str) -> Principal:
    with p.db.session() as s:
        user = s.scalar(select(m.User).where(m.User.username == username))
        if user is None or user.disabled or not verify_password(password, user.password_hash):
            raise Unauthenticated("wrong username or password")
        return principal_of(user)
