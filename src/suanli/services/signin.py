"""Signing in (the portal's form) behind a throttle: failed sign-ins are counted per username and
per client address over a sliding window; past either limit (SUANLI_SIGNIN_*) an attempt is
refused with the time to wait, before the password or token is looked at.

The failures are rows of `sign_in_failures`, so the count survives a restart and holds across
API replicas. An attempt is written as a failure before its password is checked and removed if
the password was right: parallel guesses count against each other, so no more than the limit
of them get through in a window."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import delete, select

from ..domain.errors import TooManyAttempts, Unauthenticated
from ..store import models as m
from .auth import Principal, authenticate, login_with_password
from .context import Platform

USER_KEY = "user:"
ADDRESS_KEY = "address:"


def with_password(p: Platform, username: str, password: str, address: str) -> Principal:
    """The user with this password, unless its username or the address failed too often lately."""
    user_key = USER_KEY + username[:90]
    limits = {user_key: p.settings.signin_failures_per_user,
              ADDRESS_KEY + address[:90]: p.settings.signin_failures_per_address}
    return _attempt(p, limits, lambda: login_with_password(p, username, password),
                    reset=user_key)


def with_token(p: Platform, token: str, address: str) -> Principal:
    """The user of a pasted API token, unless the address failed too often lately."""
    limits = {ADDRESS_KEY + address[:90]: p.settings.signin_failures_per_address}
    return _attempt(p, limits, lambda: authenticate(p, token))


def _attempt(p: Platform, limits: dict[str, int], check: Callable[[], Principal],
             reset: str | None = None) -> Principal:
    now = p.clock.now()
    window = timedelta(seconds=p.settings.signin_window_s)
    with p.db.session() as s:
        s.execute(delete(m.SignInFailure).where(m.SignInFailure.at <= now - window))
        rows = [m.SignInFailure(key=key, at=now) for key in limits]
        s.add_all(rows)
        s.flush()
        mine = [r.id for r in rows]
    # Committed: a parallel attempt sees this one. Are there `limit` failures besides it?
    wait = 0.0
    with p.db.session() as s:
        for key, limit in limits.items():
            nth = s.scalar(select(m.SignInFailure.at)
                           .where(m.SignInFailure.key == key, m.SignInFailure.at > now - window,
                                  m.SignInFailure.id.not_in(mine))
                           .order_by(m.SignInFailure.at.desc(), m.SignInFailure.id.desc())
                           .offset(limit - 1).limit(1))
            if nth is not None:
                wait = max(wait, (nth + window - now).total_seconds())
    if wait > 0:
        _remove(p, mine)  # a refused attempt is not a failure: the lock-out ends on time
        raise TooManyAttempts(max(1, math.ceil(wait)))
    try:
        who = check()
    except Unauthenticated:
        raise  # the attempt stays, as a failure
    except BaseException:
        _remove(p, mine)
        raise
    _remove(p, mine, reset)
    return who


def _remove(p: Platform, ids: list[int], key: str | None = None) -> None:
    """Take back this attempt's rows (and, after a success, the user's earlier failures)."""
    with p.db.session() as s:
        s.execute(delete(m.SignInFailure).where(m.SignInFailure.id.in_(ids)))
        if key is not None:
            s.execute(delete(m.SignInFailure).where(m.SignInFailure.key == key))
