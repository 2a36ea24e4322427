"""API tokens and users, from an attacker's side: tokens expire, a token minted with a stolen
token dies with it, a disabled user's tokens and sessions stop at once; and `last_used_at` is
kept without a write on every request."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Connection

from suanli.services import audit
from suanli.services.context import Platform

from .auth_town import PASSWORD, START, Town, bearer, build_town, portal_sign_in


def at(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@pytest.fixture
def town(platform: Platform) -> Town:
    return build_town(platform)


def test_a_token_with_an_expiry_stops_then(town: Town) -> None:
    with town.client() as c:
        r = c.post("/api/v1/tokens", json={"name": "ci", "expires_in_s": 3600},
                   headers=bearer(town.tokens["carol"]))
        assert r.status_code == 201, r.text
        made = r.json()
        assert at(made["expires_at"]) == START + timedelta(hours=1)
        listed = {t["id"]: t for t in c.get("/api/v1/tokens", headers=bearer(made["token"])).json()["items"]}
        assert listed[made["id"]]["expires_at"] == made["expires_at"]
        town.clock.advance(3599)
        assert c.get("/api/v1/users/me", headers=bearer(made["token"])).status_code == 200
        town.clock.advance(1)  # a lookup cached a moment ago does not keep it alive
        r = c.get("/api/v1/users/me", headers=bearer(made["token"]))
        assert r.status_code == 401 and r.json()["error"] == "this API token expired"
        # The portal does not take it either.
        assert portal_sign_in(c, token=made["token"]).status_code == 401
        later = START + timedelta(days=2)
        r = c.post("/api/v1/tokens", json={"expires_at": later.isoformat()},
                   headers=bearer(town.tokens["carol"]))
        assert r.status_code == 201 and at(r.json()["expires_at"]) == later


@pytest.mark.parametrize("body, field", [
    ({"expires_in_s": 0}, "expires_in_s"),
    ({"expires_in_s": 11 * 365 * 86400}, "expires_in_s"),
    ({"expires_in_s": 1.5}, "expires_in_s"),
    ({"expires_at": "2031-05-17T07:00:00+00:00"}, "expires_at"),  # in the past
    ({"expires_at": "2031-05-18T07:00:00"}, "expires_at"),  # no time zone
    ({"expires_at": "2031-05-18T07:00:00Z", "expires_in_s": 60}, "expires_at"),
])
def test_bad_expiries_are_422(town: Town, body: dict[str, object], field: str) -> None:
    with town.client() as c:
        r = c.post("/api/v1/tokens", json=body, headers=bearer(town.tokens["carol"]))
        assert r.status_code == 422 and r.json()["field"] == field, r.text


def test_last_used_at_is_kept_without_a_write_per_request(town: Town) -> None:
    token = town.tokens["carol"]
    writes: list[str] = []

    def count(conn: Connection, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE API_TOKENS"):
            writes.append(statement)

    event.listen(town.p.db.engine, "before_cursor_execute", count)
    with town.client() as c:
        def last_used() -> datetime | None:
            (row,) = [t for t in c.get("/api/v1/tokens", headers=bearer(token)).json()["items"]
                      if t["name"] == "test"]
            return at(row["last_used_at"])

        assert last_used() == START  # this very request used it
        for _ in range(30):
            town.clock.advance(1)
            assert c.get("/api/v1/users/me", headers=bearer(token)).status_code == 200
        assert last_used() == START and len(writes) == 1
        town.clock.advance(30)
        assert last_used() == START + timedelta(seconds=60)
        assert len(writes) == 2
    event.remove(town.p.db.engine, "before_cursor_execute", count)


def test_a_token_minted_with_a_stolen_token_dies_with_it(town: Town) -> None:
    """The attacker steals carol's token and mints one of its own with it (and one more with
    that); carol revokes the stolen token: the attacker's tokens are refused too."""
    stolen = town.tokens["carol"]
    with town.client() as c:
        child = c.post("/api/v1/tokens", json={"name": "mine now"}, headers=bearer(stolen)).json()
        grandchild = c.post("/api/v1/tokens", json={}, headers=bearer(child["token"])).json()
        assert child["parent_id"] is not None and grandchild["parent_id"] == child["id"]
        # The attacker's tokens work (and are cached) until the owner acts.
        for t in (child, grandchild):
            assert c.get("/api/v1/users/me", headers=bearer(t["token"])).status_code == 200
        mine = [t for t in c.get("/api/v1/tokens", headers=bearer(stolen)).json()["items"]
                if t["name"] == "test"]
        fresh = c.post("/api/v1/tokens", json={"name": "new laptop"},
                       headers=bearer(child["token"]))  # minted while it still works
        assert fresh.status_code == 201
        # Carol revokes the stolen token.
        r = c.delete(f"/api/v1/tokens/{mine[0]['id']}", headers=bearer(stolen))
        assert r.status_code == 200
        for t in (child, grandchild, fresh.json()):
            r = c.get("/api/v1/users/me", headers=bearer(t["token"]))
            assert r.status_code == 401 and "revoked" in r.json()["error"], t
            # ... and they cannot be turned into a browser session either.
            assert portal_sign_in(c, token=t["token"]).status_code == 401
        # The list says so.
        admin = c.get("/api/v1/tokens", headers=bearer(town.tokens["admin"])).json()["items"]
        by_id = {t["id"]: t for t in admin}
        assert all(by_id[t["id"]]["revoked_at"] for t in (child, grandchild))


def test_a_session_from_a_pasted_token_ends_with_it(town: Town) -> None:
    stolen = town.tokens["carol"]
    with town.client() as c:
        assert portal_sign_in(c, token=stolen).status_code == 303
        assert c.get("/jobs", follow_redirects=False).status_code == 200
        ids = [t["id"] for t in c.get("/api/v1/tokens", headers=bearer(stolen)).json()["items"]
               if t["name"] == "test"]
        assert c.delete(f"/api/v1/tokens/{ids[0]}", headers=bearer(stolen)).status_code == 200
        r = c.get("/jobs", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_a_child_cannot_outlive_its_parents_expiry(town: Town) -> None:
    with town.client() as c:
        parent = c.post("/api/v1/tokens", json={"expires_in_s": 3600},
                        headers=bearer(town.tokens["carol"])).json()
        r = c.post("/api/v1/tokens", json={"expires_in_s": 7200}, headers=bearer(parent["token"]))
        assert r.status_code == 422 and "cannot outlive" in r.json()["error"]
        child = c.post("/api/v1/tokens", json={}, headers=bearer(parent["token"])).json()
        assert child["expires_at"] == parent["expires_at"]  # by default: when its parent does
        shorter = c.post("/api/v1/tokens", json={"expires_in_s": 60},
                         headers=bearer(parent["token"])).json()
        assert at(shorter["expires_at"]) == START + timedelta(seconds=60)
        town.clock.advance(3600)
        r = c.get("/api/v1/users/me", headers=bearer(child["token"]))
        assert r.status_code == 401 and r.json()["error"] == "this API token expired"


def test_disabling_a_user_stops_its_tokens_and_sessions_at_once(town: Town) -> None:
    carol = town.tokens["carol"]
    with town.client() as c, town.client() as browser:
        assert portal_sign_in(browser, username="carol", password=PASSWORD).status_code == 303
        assert browser.get("/jobs", follow_redirects=False).status_code == 200
        assert c.get("/api/v1/jobs", headers=bearer(carol)).status_code == 200  # now cached
        r = c.post(f"/api/v1/users/{town.carol.user_id}/disable", json={"reason": "left"},
                   headers=bearer(town.tokens["t1admin"]))
        assert r.status_code == 200 and r.json()["disabled"] is True
        r = c.get("/api/v1/jobs", headers=bearer(carol))
        assert r.status_code == 401 and r.json()["error"] == "this user is disabled"
        assert browser.get("/jobs", follow_redirects=False).status_code == 303
        browser.cookies.clear()
        assert portal_sign_in(browser, username="carol", password=PASSWORD).status_code == 401
        # Enabled again: its tokens (not revoked) work again.
        r = c.post(f"/api/v1/users/{town.carol.user_id}/enable",
                   headers=bearer(town.tokens["admin"]))
        assert r.status_code == 200 and r.json()["disabled"] is False
        assert c.get("/api/v1/jobs", headers=bearer(carol)).status_code == 200
    entries = audit.list_entries(town.p, town.admin, limit=10)["items"]
    done = [(e["action"], e["actor"], e["subject"], e["details"]) for e in entries
            if e["action"].startswith("user.")]
    assert sorted(done) == sorted([
        ("user.disable", "t1admin", f"user:{town.carol.user_id}", {"username": "carol",
                                                                     "reason": "left"}),
        ("user.enable", "admin", f"user:{town.carol.user_id}", {"username": "carol",
                                                                  "reason": ""})])
    assert audit.verify_log(town.p, town.admin)["ok"]


@pytest.mark.parametrize("actor, target, status", [
    ("t1admin", "dave", 404),  # another tenant's user: not even said to exist
    ("t1admin", "admin", 404),
    ("carol", "t1admin", 403),  # a tenant user disables nobody
    ("dave", "dave", 403),
    ("t1admin", "t1admin", 409),  # not oneself
    ("admin", "admin", 409),
])
def test_who_may_disable_whom(town: Town, actor: str, target: str, status: int) -> None:
    ids = {p.username: p.user_id for p in (town.admin, town.t1_admin, town.carol, town.dave)}
    with town.client() as c:
        r = c.post(f"/api/v1/users/{ids[target]}/disable", headers=bearer(town.tokens[actor]))
        assert r.status_code == status, r.text
        assert c.get("/api/v1/users/me", headers=bearer(town.tokens[target])).status_code == 200
