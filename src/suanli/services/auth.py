"""Principals, API tokens (random, shown once, stored as SHA-256) and passwords (argon2id).

A token may expire, and remembers the token whose bearer created it: a token is valid only
while every token up its chain is unrevoked and unexpired, so a stolen token cannot mint one
that outlives its own revocation."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from ..domain.enums import Role
from ..domain.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from ..store import models as m
from .context import Platform

TOKEN_PREFIX = "sl_"
LAST_USED_EVERY = timedelta(seconds=60)  # a token's last_used_at is written at most this often
MAX_TOKEN_LIFE = timedelta(days=3650)
# Passwords: argon2id (RFC 9106's second recommended profile: 64 MiB, 3 passes, 4 lanes, 16-byte
# salt, 32-byte tag), its parameters stored in the hash. A hash made with other parameters, or an
# older scheme's (scrypt, before argon2id), is checked as it is and replaced at the next sign-in.
PASSWORDS = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4, hash_len=32,
                           salt_len=16)
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # the scheme before argon2id: read, never written


@cache
def dummy_hash() -> str:
    """Checked against when there is no real hash (an unknown user, one without a password): every
    password check costs one argon2id of the same parameters, so the answer's time does not tell
    whether a username exists. The hash of a random secret nobody knows: it matches no password."""
    return PASSWORDS.hash(secrets.token_urlsafe(32))


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    username: str
    role: Role
    tenant_id: int | None = None
    center_id: int | None = None
    token_id: int | None = None  # the API token it signed in with (None: a password)
    # A peer platform's account (its tenant is of kind `platform`): it borrows compute, and has
    # no part in this platform's vouchers (docs/federation.md).
    platform_account: bool = False

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
    return PASSWORDS.hash(password)


def argon2_verify(stored: str, password: str) -> bool:
    """One argon2id check (a seam the sign-in tests count)."""
    try:
        return PASSWORDS.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def verify_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    if stored.startswith("$argon2"):
        return argon2_verify(stored, password)
    if stored.startswith("scrypt$"):  # an older hash: still accepted, replaced at sign-in
        _, salt_hex, digest_hex = stored.split("$", 2)
        try:
            salt = bytes.fromhex(salt_hex)
        except ValueError:
            return False
        digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
        return hmac.compare_digest(digest.hex(), digest_hex)
    return False


def needs_rehash(stored: str) -> bool:
    """Whether a hash that just matched should be replaced: not argon2id, or not the parameters
    suanli hashes with now."""
    if not stored.startswith("$argon2id$"):
        return True
    try:
        return PASSWORDS.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def principal_of(user: m.User, token_id: int | None = None, *,
                 platform_account: bool = False) -> Principal:
    return Principal(user.id, user.username, Role(user.role), user.tenant_id, user.center_id,
                     token_id, platform_account)


def not_a_peer(actor: Principal) -> None:
    """A peer platform's account has no part in this platform's vouchers."""
    if actor.platform_account:
        raise Forbidden("a peer platform's account has no part in this platform's vouchers")


@dataclass(slots=True)
class TokenAuth:
    """What a lookup of a token found, cached briefly: its principal, the ids of the token and
    of the tokens that created it, the earliest expiry along that chain, and the last use."""

    principal: Principal
    chain: frozenset[int]
    expires_at: datetime | None
    last_used_at: datetime | None


def authenticate(p: Platform, token: str, *, record_use: bool = True) -> Principal:
    """The principal behind a bearer token, or Unauthenticated. Lookups are cached in-process for
    `settings.token_cache_s` (SUANLI_TOKEN_CACHE_S, default 4 s): revoking a token or disabling
    a user through this process drops them at once, through another replica they are refused
    here within that bound; expiry is checked against the platform's clock on every call."""
    if not token.startswith(TOKEN_PREFIX):
        raise Unauthenticated("invalid API token")
    digest = hash_token(token)
    found = p.cached(f"token:{digest}", lambda: _lookup_token(p, digest),
                     ttl=p.settings.token_cache_s)
    now = p.clock.now()
    if found.expires_at is not None and now >= found.expires_at:
        raise Unauthenticated("this API token expired")
    if record_use and (found.last_used_at is None
                       or now - found.last_used_at >= LAST_USED_EVERY):
        found.last_used_at = now
        _record_use(p, found.principal.token_id, now)
    return found.principal


def _lookup_token(p: Platform, digest: str) -> TokenAuth:
    with p.db.session() as s:
        tok = s.scalar(select(m.ApiToken).where(m.ApiToken.token_hash == digest))
        if tok is None:
            raise Unauthenticated("invalid API token")
        chain = _chain(s, tok.id)
        if tok.revoked_at is not None:
            raise Unauthenticated("this API token was revoked")
        if any(t.revoked_at is not None for t in chain):
            raise Unauthenticated("this API token was revoked with the token that created it")
        user = s.get(m.User, tok.user_id)
        if user is None or user.disabled:
            raise Unauthenticated("this user is disabled")
        expiries = [t.expires_at for t in chain if t.expires_at is not None]
        kind = s.scalar(select(m.Tenant.kind).where(m.Tenant.id == user.tenant_id)) \
            if user.tenant_id is not None else None
        principal = principal_of(user, tok.id, platform_account=kind == "platform")
        return TokenAuth(principal, frozenset(t.id for t in chain),
                         min(expiries, default=None), tok.last_used_at)


def _chain(s: Session, token_id: int) -> list[m.ApiToken]:
    """The token and every token up the line of those that created it."""
    t = m.ApiToken
    up = select(t.id, t.parent_id).where(t.id == token_id).cte("up", recursive=True)
    up = up.union_all(select(t.id, t.parent_id).join(up, t.id == up.c.parent_id))
    return list(s.scalars(select(t).where(t.id.in_(select(up.c.id)))))


def _descendants(s: Session, token_id: int) -> list[int]:
    """The token and every token created with it, and with those, and so on."""
    t = m.ApiToken
    down = select(t.id).where(t.id == token_id).cte("down", recursive=True)
    down = down.union_all(select(t.id).join(down, t.parent_id == down.c.id))
    return list(s.scalars(select(down.c.id)))


def _record_use(p: Platform, token_id: int | None, now: datetime) -> None:
    """Keep `last_used_at` (written only when a minute old: another process may have just)."""
    if token_id is None:
        return
    with p.db.session() as s:
        s.execute(update(m.ApiToken)
                  .where(m.ApiToken.id == token_id,
                         or_(m.ApiToken.last_used_at.is_(None),
                             m.ApiToken.last_used_at <= now - LAST_USED_EVERY))
                  .values(last_used_at=now))


def forget_cached(p: Platform, *, token_ids: set[int] | None = None,
                  user_id: int | None = None) -> None:
    """Drop cached lookups of tokens in (or created through) `token_ids`, or of a user's."""
    def stale(value: object) -> bool:
        if not isinstance(value, TokenAuth):
            return False
        return bool(token_ids and value.chain & token_ids) or value.principal.user_id == user_id

    p.forget_where("token:", stale)


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


def issue_token(p: Platform, user_id: int, name: str = "", *, expires_at: datetime | None = None,
                parent_id: int | None = None) -> tuple[m.ApiToken, str]:
    """Create a token for a user. The secret is returned once and never stored. A token created
    with another (`parent_id`) ends when that one does: it expires no later (by default when it
    does), and revoking that one revokes it."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = p.clock.now()
    if expires_at is not None and expires_at <= now:
        raise InvalidInput("the expiry must be in the future", field="expires_at")
    with p.db.session() as s:
        if s.get(m.User, user_id) is None:
            raise NotFound(f"no user {user_id}")
        if parent_id is not None:
            chain = _chain(s, parent_id)
            if not chain or any(t.revoked_at is not None for t in chain):
                raise Unauthenticated("this API token was revoked")
            ceiling = min((t.expires_at for t in chain if t.expires_at is not None), default=None)
            if ceiling is not None and expires_at is None:
                expires_at = ceiling
            elif ceiling is not None and expires_at is not None and expires_at > ceiling:
                raise InvalidInput(
                    "a token cannot outlive the token that creates it, which expires at "
                    f"{ceiling.isoformat()}", field="expires_at")
        tok = m.ApiToken(
            user_id=user_id,
            name=name,
            prefix=secret[: len(TOKEN_PREFIX) + 6],
            token_hash=hash_token(secret),
            created_at=now,
            expires_at=expires_at,
            parent_id=parent_id,
        )
        s.add(tok)
        s.flush()
        return tok, secret


def create_token(
    p: Platform, actor: Principal, *, name: str = "", user_id: int | None = None,
    expires_in_s: int | None = None, expires_at: datetime | None = None,
) -> tuple[m.ApiToken, str]:
    """A token for the actor (or, by a platform admin, for another user), created with the
    actor's own token when it signed in with one; it expires `expires_in_s` from now or at
    `expires_at` (not both), and never later than the actor's token."""
    target = actor.user_id if user_id is None else user_id
    if target != actor.user_id and actor.role is not Role.PLATFORM_ADMIN:
        raise Forbidden("only a platform admin creates tokens for other users")
    if expires_in_s is not None and expires_at is not None:
        raise InvalidInput("give expires_in_s or expires_at, not both", field="expires_at")
    if expires_in_s is not None:
        if not 0 < expires_in_s <= MAX_TOKEN_LIFE.total_seconds():
            raise InvalidInput("expires_in_s must be between 1 s and ten years",
                               field="expires_in_s")
        expires_at = p.clock.now() + timedelta(seconds=expires_in_s)
    if expires_at is not None and expires_at - p.clock.now() > MAX_TOKEN_LIFE:
        raise InvalidInput("a token lives at most ten years", field="expires_at")
    return issue_token(p, target, name, expires_at=expires_at, parent_id=actor.token_id)


def list_tokens(p: Platform, actor: Principal) -> list[m.ApiToken]:
    with p.db.session() as s:
        q = select(m.ApiToken).order_by(m.ApiToken.id)
        if actor.role is not Role.PLATFORM_ADMIN:
            q = q.where(m.ApiToken.user_id == actor.user_id)
        return list(s.scalars(q))


def revoke_token(p: Platform, actor: Principal, token_id: int) -> m.ApiToken:
    """Revoke a token and every token created with it (down the line)."""
    with p.db.session() as s:
        tok = s.get(m.ApiToken, token_id)
        if tok is None or (
            tok.user_id != actor.user_id and actor.role is not Role.PLATFORM_ADMIN
        ):
            raise NotFound(f"no token {token_id}")
        line = _revoke(p, s, tok)
    forget_cached(p, token_ids=line)
    return tok


def revoke_secret(p: Platform, secret: str) -> bool:
    """Revoke the token whose secret this is (a browser session signing out), and those created
    with it. True if there was one."""
    digest = hash_token(secret)
    with p.db.session() as s:
        tok = s.scalar(select(m.ApiToken).where(m.ApiToken.token_hash == digest))
        if tok is None:
            return False
        line = _revoke(p, s, tok)
    forget_cached(p, token_ids=line)
    return True


def _revoke(p: Platform, s: Session, tok: m.ApiToken) -> set[int]:
    """Mark the token and its line revoked; their ids (for the caller to drop from the cache
    once this commits)."""
    now = p.clock.now()
    if tok.revoked_at is None:
        tok.revoked_at = now
    line = set(_descendants(s, tok.id))
    s.execute(update(m.ApiToken)
              .where(m.ApiToken.id.in_(line), m.ApiToken.revoked_at.is_(None))
              .values(revoked_at=now))
    return line


def login_with_password(p: Platform, username: str, password: str) -> Principal:
    """The user with this password, or Unauthenticated. The same work whatever the username:
    one argon2id (against a dummy hash when the user is unknown, disabled or has no password).
    A right password whose hash is an older scheme's or parameters' is hashed again now."""
    with p.db.session() as s:
        user = s.scalar(select(m.User).where(m.User.username == username))
    stored = user.password_hash if user is not None else None
    matches = verify_password(password, stored or dummy_hash())
    if stored and not stored.startswith("$argon2"):
        # An older scheme's hash costs less than argon2id: pay the argon2id check too, so a
        # wrong password takes as long for such a user as for an unknown one (else the time
        # tells which accounts have not signed in since the upgrade).
        verify_password(password, dummy_hash())
    if user is None or not stored or user.disabled or not matches:
        raise Unauthenticated("wrong username or password")
    if needs_rehash(stored):
        fresh = hash_password(password)
        with p.db.session() as s:  # only if nobody changed it meanwhile
            s.execute(update(m.User).where(m.User.id == user.id, m.User.password_hash == stored)
                      .values(password_hash=fresh))
    return principal_of(user)
