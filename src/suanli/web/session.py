"""Browser sessions: an API token of the signed-in user in an HttpOnly, SameSite=Lax cookie, and
a CSRF token bound to it (an HMAC under the server's secret) in every form and htmx request."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from fastapi import Request

from ..config import write_private
from ..domain.errors import Unauthenticated
from ..services.auth import Principal, authenticate
from ..services.context import Platform

SESSION_COOKIE = "suanli_session"
LOGIN_CSRF_COOKIE = "suanli_login_csrf"  # before sign-in: a double-submit token
LANG_COOKIE = "lang"
CSRF_HEADER = "x-csrf-token"
SECRET_FILE = "web-secret"
SECRET_ENV = "SUANLI_WEB_SECRET"


def server_secret(home: Path) -> bytes:
    """The key CSRF tokens are signed with: SUANLI_WEB_SECRET when set (API replicas behind one
    proxy share it, so that a form one replica served may be sent to another), else made once per
    data directory (0600)."""
    env = os.environ.get(SECRET_ENV)
    if env:
        return env.encode()
    path = home / SECRET_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        key = secrets.token_bytes(32)
        write_private(path, key.hex())
        return key


def csrf_for(secret: bytes, session_token: str) -> str:
    return hmac.new(secret, session_token.encode(), hashlib.sha256).hexdigest()[:40]


def csrf_ok(secret: bytes, session_token: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(csrf_for(secret, session_token), given or "")


def session_token(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE) or None


def current_user(p: Platform, request: Request) -> Principal | None:
    """The signed-in user, or None (no cookie, or a token revoked or unknown)."""
    token = session_token(request)
    if not token:
        return None
    try:
        return authenticate(p, token)
    except Unauthenticated:
        return None


def language(request: Request) -> str:
    lang = request.cookies.get(LANG_COOKIE, "zh")
    return lang if lang in ("zh", "en") else "zh"
