"""Sign-in and tokens against a real `suanli serve`: the CLI's token expiry, last use and user
disable/enable; and a forged X-Forwarded-For sent straight to the server (no proxy trusted, the
default) does not escape the per-address sign-in throttle."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from suanli.domain.timefmt import display_zone

from .conftest import Server, running_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """One server for these tests: none leaves a change another one sees (the throttle locks
    sign-ins from 127.0.0.1, which the CLI does not use)."""
    with running_server() as srv:
        yield srv


def test_token_expiry_and_last_use_in_the_cli(server: Server) -> None:
    made = server.cli("token", "create", "--name", "ci", "--expires", "30d", "-o", "json")
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)
    expires = datetime.fromisoformat(token["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)
    assert token["parent_id"] is not None  # made with alice's demo token
    assert server.cli("job", "list", token=None).returncode == 1
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token['token']}"}) as c:
        assert c.get("/api/v1/users/me").status_code == 200
    listed = {t["id"]: t for t in json.loads(server.cli("token", "list", "-o", "json").stdout)}
    assert listed[token["id"]]["last_used_at"] and listed[token["id"]]["expires_at"]
    table = server.cli("token", "list").stdout
    assert "last used" in table and "expires" in table
    assert expires.astimezone(display_zone()).strftime("%Y-%m-%d") in table  # in the CLI's zone
    bad = server.cli("token", "create", "--expires", "soon")
    assert bad.returncode == 1 and "--expires" in bad.stderr and "Traceback" not in bad.stderr


def test_disable_and_enable_a_user_in_the_cli(server: Server) -> None:
    assert server.cli("job", "list").returncode == 0  # alice (tenant_a) works
    off = server.cli("user", "disable", "alice", "--reason", "left the company",
                     token="platform_admin")
    assert off.returncode == 0 and "disabled" in off.stdout, off.stderr
    refused = server.cli("job", "list")
    assert refused.returncode == 1 and "this user is disabled" in refused.stderr
    users = json.loads(server.cli("user", "list", "-o", "json", token="platform_admin").stdout)
    assert {u["username"]: u["disabled"] for u in users}["alice"] is True
    # Another tenant's admin cannot touch her, nor can she enable herself.
    assert server.cli("user", "enable", "alice", token="tenant_b").returncode == 1
    on = server.cli("user", "enable", "alice", token="platform_admin")
    assert on.returncode == 0, on.stderr
    assert server.cli("job", "list").returncode == 0
    log = json.loads(server.cli("audit", "log", "-o", "json", token="auditor").stdout)
    actions = [e["action"] for e in log["items"]]
    assert "user.disable" in actions and "user.enable" in actions


def _nonce(form: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert found, form.text
    return found.group(1)


def _sign_in(c: httpx.Client, username: str, headers: dict[str, str]) -> httpx.Response:
    return c.post("/login", data={"csrf": _nonce(c.get("/login")), "username": username,
                                  "password": "guess-123"}, headers=headers)


def test_forged_forwarded_headers_do_not_escape_the_address_throttle(server: Server) -> None:
    """From 127.0.0.1 (a job on the same machine could do this) with a new X-Forwarded-For each
    time: after 20 failures the address is refused whatever the header says."""
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for i in range(20):
            forged = {"X-Forwarded-For": f"198.51.100.{i}", "X-Forwarded-Proto": "https"}
            assert _sign_in(c, f"user{i}", forged).status_code == 401
        r = _sign_in(c, "admin", {"X-Forwarded-For": "198.51.100.200"})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 800
        # A plain http connection that claims https gets no Secure cookie.
        form = c.get("/login", headers={"X-Forwarded-Proto": "https"})
        assert "secure" not in form.headers["set-cookie"].lower()
        # A pasted (valid) token from the locked-out address is refused too.
        r = c.post("/login", data={"csrf": _nonce(form), "token": server.creds()["tenant_a"]},
                   headers={"X-Forwarded-For": "198.51.100.201"})
        assert r.status_code == 429
