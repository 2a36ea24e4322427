"""A small town for the sign-in and token tests: two tenants and their users, the platform on a
fixed clock, and a TestClient over the real app (API and portal)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi.testclient import TestClient

from suanli.api.app import create_app
from suanli.domain.clock import FixedClock
from suanli.domain.enums import Role
from suanli.domain.errors import TooManyAttempts, Unauthenticated
from suanli.services import signin
from suanli.services.auth import Principal, create_user, issue_token, principal_of
from suanli.services.context import Platform
from suanli.services.tenants import create_tenant

from ..conftest import VALID_CODES

START = datetime(2031, 5, 17, 8, 0, tzinfo=UTC)
PASSWORD = "carol-pass-1"


@dataclass
class Town:
    p: Platform
    clock: FixedClock
    admin: Principal
    t1_admin: Principal
    carol: Principal  # a tenant user of tenant 1, with a password
    dave: Principal  # a tenant user of tenant 2
    tokens: dict[str, str]  # username -> an API token

    @contextmanager
    def client(self, peer: str = "testclient", **settings: Any) -> Iterator[TestClient]:
        """The real app on this town's database (settings changed as given), seen from `peer`."""
        if settings:
            self.p.settings = replace(self.p.settings, **settings)
        app = create_app(self.p, run_engine=False)
        with TestClient(app, client=(peer, 50000)) as c:
            yield c


def build_town(p: Platform) -> Town:
    clock = FixedClock(START)
    p.clock = clock
    t1 = create_tenant(p, None, name="Tenant One", credit_code=VALID_CODES[0])
    t2 = create_tenant(p, None, name="Tenant Two", credit_code=VALID_CODES[1])

    def user(name: str, role: Role, **kw: Any) -> Principal:
        return principal_of(create_user(p, None, username=name, role=role, **kw))

    town = Town(p, clock, user("admin", Role.PLATFORM_ADMIN),
                user("t1admin", Role.TENANT_ADMIN, tenant_id=t1.id),
                user("carol", Role.TENANT_USER, tenant_id=t1.id, password=PASSWORD),
                user("dave", Role.TENANT_USER, tenant_id=t2.id), {})
    for who in (town.admin, town.t1_admin, town.carol, town.dave):
        town.tokens[who.username] = issue_token(p, who.user_id, name="test")[1]
    return town


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def portal_sign_in(client: TestClient, *, username: str = "", password: str = "", token: str = "",
                   headers: dict[str, str] | None = None) -> httpx.Response:
    """Post the portal's sign-in form as a browser does (the form's CSRF nonce and cookie). The
    cookies go as the browser sends them over https to a proxy, `Secure` ones included."""
    form = client.get("/login", headers=headers)
    nonce = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert nonce, form.text
    cookies = {c.name: c.value for c in client.cookies.jar}
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items() if v is not None)
    return client.post("/login", data={"csrf": nonce.group(1), "username": username,
                                       "password": password, "token": token},
                       headers={**(headers or {}), "Cookie": cookie}, follow_redirects=False)


def parallel_guesses(p: Platform, username: str, n: int, address: str) -> list[str]:
    """`n` wrong passwords for one user at the same moment, from `n` threads: for each, whether
    it was "checked" (and wrong) or "refused" by the throttle."""
    outcomes: list[str] = []
    start = threading.Barrier(n)

    def guess(i: int) -> None:
        start.wait()
        try:
            signin.with_password(p, username, f"guess-{i}", address)
        except TooManyAttempts:
            outcomes.append("refused")
        except Unauthenticated:
            outcomes.append("checked")

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes
