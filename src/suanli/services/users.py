"""A user's standing: disabled (its tokens and browser sessions stop at once, it cannot sign in)
or enabled again. A platform admin decides for anyone, a tenant admin for its own tenant's users;
both are audited."""

from __future__ import annotations

from ..domain.enums import Role
from ..domain.errors import Conflict, Forbidden, NotFound
from ..store import models as m
from . import audit
from .auth import Principal, forget_cached
from .context import Platform


def set_disabled(p: Platform, actor: Principal, user_id: int, disabled: bool,
                 reason: str = "") -> m.User:
    """Disable or enable a user (nothing changes, and nothing is logged, if it already is)."""
    if actor.role not in (Role.PLATFORM_ADMIN, Role.TENANT_ADMIN):
        raise Forbidden("only a platform admin (or a tenant admin, for its own tenant's users) "
                        "disables and enables users")
    with p.db.session() as s:
        user = s.get(m.User, user_id)
        if user is None or (actor.role is Role.TENANT_ADMIN and user.tenant_id != actor.tenant_id):
            raise NotFound(f"no user {user_id}")
        if user.id == actor.user_id:
            raise Conflict("you cannot disable or enable yourself")
        if user.disabled != disabled:
            user.disabled = disabled
            audit.record(s, "user.disable" if disabled else "user.enable", f"user:{user.id}",
                         {"username": user.username, "reason": reason}, p.clock.now(), actor)
    # Committed: the user's cached tokens (API and browser sessions) are looked up again.
    forget_cached(p, user_id=user_id)
    return user
