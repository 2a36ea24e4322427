"""The token cache across API replicas: a token revoked (or a user disabled) through one replica
is refused by every other within 5 s (SUANLI_TOKEN_CACHE_S, default 4 s: each process believes a
token lookup no longer than that). Two real `suanli serve` processes on one PostgreSQL schema,
each with its own data directory (and so its own engine: the engine's lock is per SUANLI_HOME)."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from suanli.web.session import SECRET_ENV, server_secret

from ..conftest import fresh_postgres_url, kill_runs
from ..integration.conftest import Server, free_port
from ..waiting import eventually

pytestmark = pytest.mark.integration
BOUND_S = 5.0


@pytest.fixture
def two_replicas(postgres: dict[str, str]) -> Iterator[tuple[Server, Server]]:
    url = fresh_postgres_url(postgres, "tokencache")
    shared = {"SUANLI_WEB_SECRET": "portal-forms-signed-alike-on-every-replica-0123"}
    servers = [Server(Path(tempfile.mkdtemp(prefix=f"suanli-tc{i}.")), free_port(),
                      database_url=url, extra_env=shared) for i in range(2)]
    try:
        for srv in servers:
            srv.start()
        yield servers[0], servers[1]
    finally:
        for srv in servers:
            srv.stop()
            kill_runs(srv.home)
            shutil.rmtree(srv.home, ignore_errors=True)


def status_on(srv: Server, token: str) -> int:
    return httpx.get(f"{srv.url}/api/v1/users/me", headers={"Authorization": f"Bearer {token}"},
                     timeout=10).status_code


def refused_within_bound(b: Server, tokens: list[str], since: float) -> float:
    """Poll replica B until every token gets 401; the seconds it took from `since`."""
    eventually(lambda: all(status_on(b, t) == 401 for t in tokens), timeout=30, interval=0.05,
               what="replica B refusing the token")
    took = time.monotonic() - since
    assert took <= BOUND_S, f"replica B accepted a revoked token for {took:.1f} s"
    return took


def test_a_token_revoked_on_one_replica_is_refused_on_the_other_within_5s(
        two_replicas: tuple[Server, Server]) -> None:
    a, b = two_replicas
    assert a.creds() != b.creds()  # each replica issued its own demo tokens, on one database
    alice = {"Authorization": f"Bearer {a.creds()['tenant_a']}"}
    made = httpx.post(f"{a.url}/api/v1/tokens", json={"name": "laptop"}, headers=alice, timeout=10)
    assert made.status_code == 201, made.text
    parent, parent_id = made.json()["token"], made.json()["id"]
    # The attacker's way round a revocation: a token created with the parent, through replica B.
    child = httpx.post(f"{b.url}/api/v1/tokens", json={"name": "copy"},
                       headers={"Authorization": f"Bearer {parent}"}, timeout=10)
    assert child.status_code == 201, child.text
    # Replica B has both in its cache, fresh, when the revocation happens on A.
    assert status_on(b, parent) == 200 and status_on(b, child.json()["token"]) == 200
    since = time.monotonic()
    gone = httpx.delete(f"{a.url}/api/v1/tokens/{parent_id}", headers=alice, timeout=10)
    assert gone.status_code == 200 and gone.json()["revoked_at"]
    assert status_on(a, parent) == 401  # the replica that revoked it: at once
    refused_within_bound(b, [parent, child.json()["token"]], since)


def test_a_user_disabled_on_one_replica_is_refused_on_the_other_within_5s(
        two_replicas: tuple[Server, Server]) -> None:
    a, b = two_replicas
    bob = b.creds()["tenant_b"]
    assert status_on(b, bob) == 200
    admin = {"Authorization": f"Bearer {a.creds()['platform_admin']}"}
    me = httpx.get(f"{b.url}/api/v1/users/me", headers={"Authorization": f"Bearer {bob}"},
                   timeout=10).json()
    since = time.monotonic()
    off = httpx.post(f"{a.url}/api/v1/users/{me['user_id']}/disable", headers=admin, timeout=10)
    assert off.status_code == 200, off.text
    refused_within_bound(b, [bob], since)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def test_a_portal_session_signed_out_on_one_replica_ends_on_the_other(
        two_replicas: tuple[Server, Server]) -> None:
    """Behind a proxy a browser's requests land on any replica: a form one replica served is
    accepted by another (they share SUANLI_WEB_SECRET), and signing out there ends the session
    on the first within the bound."""
    a, b = two_replicas
    with httpx.Client(base_url=a.url, timeout=10) as on_a:
        form = on_a.get("/login")
        signed = on_a.post("/login", data={"csrf": csrf_of(form.text),
                                          "token": a.creds()["tenant_a"]})
        assert signed.status_code == 303, signed.text[:500]
        cookies = dict(on_a.cookies)
        csrf = csrf_of(on_a.get("/jobs").text)
    with httpx.Client(base_url=b.url, timeout=10, cookies=cookies) as on_b:
        assert on_b.get("/jobs").status_code == 200  # B knows the session: it is in the database
        assert on_b.post("/logout", data={"csrf": "0" * 40}).status_code == 403  # a forged token
        since = time.monotonic()
        out = on_b.post("/logout", data={"csrf": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/login"
    session = cookies["suanli_session"]
    refused_within_bound(a, [session], since)


def test_replicas_sign_portal_forms_alike_only_with_a_shared_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    assert server_secret(one) != server_secret(two)  # each data directory made its own
    monkeypatch.setenv(SECRET_ENV, "s" * 40)
    assert server_secret(one) == server_secret(two) == b"s" * 40
