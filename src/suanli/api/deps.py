"""Request dependencies: the platform, the engine, and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..domain.errors import Unauthenticated
from ..services.auth import Principal, authenticate, not_a_peer
from ..services.context import Platform
from ..services.control import EngineControl

bearer = HTTPBearer(auto_error=False, description="an API token (sl_...)")


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def get_engine(request: Request) -> EngineControl:
    engine: EngineControl = request.app.state.engine
    return engine


def get_principal(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if creds is None or not creds.credentials:
        raise Unauthenticated("missing bearer token (Authorization: Bearer sl_...)")
    return authenticate(get_platform(request), creds.credentials)


PlatformDep = Annotated[Platform, Depends(get_platform)]
EngineDep = Annotated[EngineControl, Depends(get_engine)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _not_a_peer(who: PrincipalDep) -> None:
    not_a_peer(who)


# On the voucher routes: a peer platform's account has no part in this platform's vouchers.
NoPeer = Depends(_not_a_peer)
