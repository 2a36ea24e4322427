"""A peer platform's account, as an attacker (issue 18): invited with `peer invite`, it borrows
compute here, and must read nothing else of the lending platform — no other tenant, job, ledger
account, user, token or anything of the voucher programme — on every route, with every id of
someone else it could put in a path or a query. The real app over the demo city."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from ..api_routes import api_routes
from .test_api_access import Demo, demo_city

# What would tell the peer about others: tenant_a's job (its name and output), the tenants'
# names and contacts.
SECRETS = ("secret sauce", "s3cret", "青岛海蓝", "青岛蓝海", "Alice", "Bob")
# The GET routes a peer's account needs for its work (all about itself, or the offered pools).
ALLOWED_200 = {
    "/api/v1", "/api/v1/health", "/api/v1/users/me", "/api/v1/centers", "/api/v1/centers/{center_id}",
    "/api/v1/centers/{center_id}/pools", "/api/v1/pools", "/api/v1/capacity",
    "/api/v1/pools/{pool_id}/prices", "/api/v1/jobs", "/api/v1/tokens", "/api/v1/usage",
    "/api/v1/bills", "/api/v1/tenants", "/api/v1/artifacts", "/api/v1/datasets", "/api/v1/dags",
    "/api/v1/users", "/api/v1/settlements", "/api/v1/invoices", "/api/v1/settlements.csv",
    "/api/v1/invoices.csv",
    "/metrics",  # (platform-wide aggregates, no tenant's name: open to the scraper)
}


@pytest.fixture(scope="module")
def peer() -> Iterator[tuple[Demo, str, int]]:
    """The demo city (tenant_a has a queued job) with the peer `yantai` invited: the city, the
    peer's token and its tenant id."""
    with demo_city() as d:
        r = d.call("platform_admin", "POST", "/api/v1/peers/invitations",
                   {"name": "yantai", "credit_limit_fen": 100_000})
        assert r.status_code == 201, r.text
        d.creds["peer"] = r.json()["token"]
        user = d.call("tenant_a", "GET", "/api/v1/users/me").json()
        d.ids["other_user"] = user["user_id"]
        yield d, r.json()["token"], r.json()["tenant_id"]


def _fill(d: Demo, path: str, own_tenant: int) -> str:
    values = {"tenant_id": d.ids["tenant_a"], "job_id": d.ids["job"], "center_id": d.ids["own_center"],
              "pool_id": d.ids["other_pool"], "user_id": d.ids["other_user"], "token_id": 1,
              "month": "2026-10", "sha256": "a" * 64, "name": "yantai", "run_key": "x",
              "device_kind": "cpu"}
    return re.sub(r"\{(\w+)\}", lambda mo: str(values.get(mo.group(1), 1)), path)


def test_every_read_shows_the_peer_nothing_of_anyone_else(peer: tuple[Demo, str, int]) -> None:
    d, _, own = peer
    seen = []
    for route in api_routes(d.client.app):  # type: ignore[arg-type]
        if "GET" not in route.methods or route.path.startswith("/api/v1/runs/") \
                or not route.path.startswith(("/api/v1", "/metrics")):
            continue  # (run routes take a run's own token; the portal's pages a session)
        queries = [""]
        if any(q.name == "tenant_id" for q in route.dependant.query_params):
            queries.append(f"tenant_id={d.ids['tenant_a']}")
        if any(q.name == "month" for q in route.dependant.query_params):
            queries = [q + ("&" if q else "") + "month=2026-10" for q in queries]
        for query in queries:
            path = _fill(d, route.path, own) + (f"?{query}" if query else "")
            r = d.call("peer", "GET", path)
            seen.append(route.path)
            text = r.text
            assert not any(s in text for s in SECRETS), (path, text[:300])
            if r.status_code == 200:
                assert route.path in ALLOWED_200 and "tenant_id=" not in query, (path, text[:300])
            else:
                assert r.status_code in (403, 404, 422), (path, r.status_code, text[:300])
    assert len(set(seen)) > 40


@pytest.mark.parametrize("path", [
    "/api/v1/voucher-programmes", "/api/v1/voucher-applications", "/api/v1/voucher-grants",
    "/api/v1/voucher-redemptions", "/api/v1/peers", "/api/v1/audit",
    "/api/v1/ledger/trial-balance", "/api/v1/control-plane",
])
def test_the_programme_and_the_platform_are_forbidden(peer: tuple[Demo, str, int],
                                                      path: str) -> None:
    r = peer[0].call("peer", "GET", path)
    assert r.status_code == 403, (path, r.text)
    assert r.json()["error"]


def test_it_sees_itself_only(peer: tuple[Demo, str, int]) -> None:
    d, _, own = peer
    assert [t["id"] for t in d.call("peer", "GET", "/api/v1/tenants").json()["items"]] == [own]
    me = d.call("peer", "GET", "/api/v1/users/me").json()
    assert me["tenant_id"] == own and me["role"] == "tenant_user"
    assert d.call("peer", "GET", "/api/v1/jobs").json()["total"] == 0
    tenant = d.call("platform_admin", "GET", f"/api/v1/tenants/{own}").json()
    assert tenant["kind"] == "platform"


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/api/v1/jobs/{job}/cancel", None),
    ("POST", "/api/v1/jobs/{job}/resubmit", None),
    ("POST", "/api/v1/voucher-applications", {"programme_id": 1, "amount_fen": 100, "purpose": "x"}),
    ("POST", "/api/v1/ledger/deposits", {"tenant_id": "{tenant_a}", "amount_fen": 1,
                                         "reference": "r"}),
    ("POST", "/api/v1/peers/invitations", {"name": "mallory"}),
    ("POST", "/api/v1/peers", {"name": "mallory", "url": "http://127.0.0.1:1", "token": "x"}),
    ("DELETE", "/api/v1/peers/yantai", None),
    ("POST", "/api/v1/users", {"username": "mallory", "role": "tenant_user"}),
    ("POST", "/api/v1/tenants", {"name": "m", "credit_code": "91370212MA3C5T8K2X"}),
    ("POST", "/api/v1/peers/hello", {"network_id": "CN-SD-QD"}),  # (its own: this city's)
])
def test_it_changes_nothing_of_anyone_else(peer: tuple[Demo, str, int], method: str, path: str,
                                           body: Any) -> None:
    d = peer[0]
    if isinstance(body, dict):
        body = {k: d.ids["tenant_a"] if v == "{tenant_a}" else v for k, v in body.items()}
    r = d.call("peer", method, path, body)
    assert r.status_code in (403, 404, 422), (path, r.status_code, r.text)
    job = d.call("tenant_a", "GET", f"/api/v1/jobs/{d.ids['job']}").json()
    assert job["cancel_requested_at"] is None and job["state"] == "QUEUED"


def test_a_tenant_sets_its_home_first_rule_and_the_peer_cannot(peer: tuple[Demo, str, int]) -> None:
    """The rule "peers only when earlier by X": the tenant's admin sets its own (and clears it
    back to the platform's), bad values are a 422, and nobody sets another tenant's."""
    d, _, own = peer
    t = d.ids["tenant_a"]
    r = d.call("tenant_a", "PUT", f"/api/v1/tenants/{t}/peer-rule", {"earlier_by_s": 600})
    assert r.status_code == 200 and r.json()["peer_earlier_by_s"] == 600, r.text
    assert d.call("tenant_a", "PUT", f"/api/v1/tenants/{t}/peer-rule",
                  {"earlier_by_s": -1}).status_code == 422
    assert d.call("peer", "PUT", f"/api/v1/tenants/{t}/peer-rule",
                  {"earlier_by_s": 0}).status_code == 404
    assert d.call("peer", "PUT", f"/api/v1/tenants/{own}/peer-rule",
                  {"earlier_by_s": 0}).status_code == 403  # a tenant user, not its admin
    r = d.call("tenant_a", "PUT", f"/api/v1/tenants/{t}/peer-rule", {"earlier_by_s": None})
    assert r.status_code == 200 and r.json()["peer_earlier_by_s"] is None


def test_removing_the_peer_ends_its_token(peer: tuple[Demo, str, int]) -> None:
    d, token, _ = peer
    assert d.call("peer", "GET", "/api/v1/users/me").status_code == 200
    r = d.call("platform_admin", "DELETE", "/api/v1/peers/yantai")
    assert r.status_code == 200, r.text
    assert [p["direction"] for p in r.json()["ways"]] == ["borrows"]
    assert d.call("peer", "GET", "/api/v1/users/me").status_code == 401
    assert d.call("platform_admin", "GET", "/api/v1/peers").json()["items"] == []
    # invited again: a new token, the old one stays dead
    again = d.call("platform_admin", "POST", "/api/v1/peers/invitations", {"name": "yantai"})
    assert again.status_code == 201, again.text
    assert again.json()["token"] != token
    d.creds["peer"] = again.json()["token"]
    assert d.call("peer", "GET", "/api/v1/users/me").status_code == 200
    d.creds["peer"] = token
    assert d.call("peer", "GET", "/api/v1/users/me").status_code == 401


def test_only_a_peer_account_says_hello_or_reports() -> None:
    """A tenant of the city cannot pass itself off as a peer platform."""
    with demo_city() as d:
        r = d.call("tenant_a", "POST", "/api/v1/peers/hello", {"network_id": "CN-SD-YT"})
        assert r.status_code == 403 and "peer platform" in r.json()["error"]
