"""Signing in, from an attacker's side: guessing passwords is throttled per user and per address
(and a right password during the lock-out does not get in), the time of an answer does not tell
which usernames exist, and proxy headers count only from a trusted proxy."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import argon2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from suanli.api.app import create_app
from suanli.api.proxy import client_address
from suanli.config import Settings, parse_networks
from suanli.domain.errors import Unauthenticated
from suanli.services import auth, signin, users
from suanli.services.context import Platform
from suanli.store import models as m
from suanli.store.db import Database

from .auth_town import PASSWORD, Town, build_town, parallel_guesses, portal_sign_in


@pytest.fixture
def town(platform: Platform) -> Town:
    return build_town(platform)


@pytest.fixture
def scrypt_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Every password hash checked (the real argon2id check runs; the parameters of the hash it
    checked against are noted)."""
    calls: list[dict[str, Any]] = []
    real: Callable[[str, str], bool] = auth.argon2_verify

    def counted(stored: str, password: str) -> bool:
        params = argon2.extract_parameters(stored)
        calls.append({"type": params.type.name, "m": params.memory_cost, "t": params.time_cost,
                      "p": params.parallelism, "salt": params.salt_len})
        return real(stored, password)

    monkeypatch.setattr(auth, "argon2_verify", counted)
    yield calls


def test_guessing_a_password_locks_the_user_out_and_the_right_one_then_fails(
        town: Town, scrypt_calls: list[dict[str, Any]]) -> None:
    with town.client() as c:
        for _ in range(5):
            assert portal_sign_in(c, username="carol", password="guess-123").status_code == 401
        checked = len(scrypt_calls)
        r = portal_sign_in(c, username="carol", password=PASSWORD)
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "900"  # the first failure leaves the window then
        assert "登录失败次数过多，请 900 秒后再试" in r.text
        assert "suanli_session" not in r.headers.get("set-cookie", "")
        assert len(scrypt_calls) == checked  # refused without looking at the password
        # Time passes on the platform's clock: the wait shrinks, then the lock-out ends.
        town.clock.advance(600)
        c.cookies.set("lang", "en")
        r = portal_sign_in(c, username="carol", password=PASSWORD)
        assert r.status_code == 429 and r.headers["Retry-After"] == "300"
        assert "Too many failed sign-ins; try again in 300 s" in r.text
        town.clock.advance(300)
        r = portal_sign_in(c, username="carol", password=PASSWORD)
        assert r.status_code == 303 and "suanli_session=" in r.headers["set-cookie"]


def test_a_success_clears_the_users_failures(town: Town) -> None:
    with town.client() as c:
        for _ in range(4):
            assert portal_sign_in(c, username="carol", password="guess-123").status_code == 401
        assert portal_sign_in(c, username="carol", password=PASSWORD).status_code == 303
        for _ in range(4):  # four more are heard again: the count started over
            assert portal_sign_in(c, username="carol", password="guess-123").status_code == 401


def test_an_unknown_username_is_locked_out_like_a_known_one(town: Town) -> None:
    """Else the lock-out itself would tell which usernames exist."""
    with town.client() as c:
        for name in ("carol", "nobody"):
            answers = [portal_sign_in(c, username=name, password="guess-123").status_code
                       for _ in range(6)]
            assert answers == [401] * 5 + [429], name


def test_many_usernames_from_one_address_are_throttled(town: Town) -> None:
    """Spraying one password over many usernames (or pasting made-up tokens) from one address."""
    with town.client(signin_failures_per_address=6) as c:
        for i in range(4):
            assert portal_sign_in(c, username=f"user{i}", password="Winter2031!").status_code == 401
        for i in range(2):
            assert portal_sign_in(c, token=f"sl_made-up-{i}").status_code == 401
        r = portal_sign_in(c, username="carol", password=PASSWORD)
        assert r.status_code == 429 and r.headers["Retry-After"] == "900"
        assert portal_sign_in(c, token=town.tokens["carol"]).status_code == 429
    # Another address is not held back by this one.
    with town.client(peer="198.51.100.20") as other:
        assert portal_sign_in(other, username="carol", password=PASSWORD).status_code == 303


def test_the_lock_out_survives_a_restart(town: Town) -> None:
    with town.client() as c:
        for _ in range(5):
            portal_sign_in(c, username="carol", password="guess-123")
    # A new server process (or another replica) on the same database.
    db = Database(town.p.db.url)
    again = Platform(db=db, settings=town.p.settings, clock=town.clock)
    try:
        with TestClient(create_app(again, run_engine=False)) as c:
            assert portal_sign_in(c, username="carol", password=PASSWORD).status_code == 429
    finally:
        db.dispose()


def test_parallel_guesses_get_no_more_tries_than_the_limit(
        town: Town, scrypt_calls: list[dict[str, Any]]) -> None:
    """Twelve guesses at once for one user: at most five passwords are checked."""
    outcomes = parallel_guesses(town.p, "carol", 12, "203.0.113.5")
    assert len(outcomes) == 12
    assert outcomes.count("checked") <= 5 and len(scrypt_calls) <= 5
    assert outcomes.count("refused") >= 7


def test_unknown_disabled_and_passwordless_users_cost_one_argon2id_like_a_known_one(
        town: Town, scrypt_calls: list[dict[str, Any]]) -> None:
    """No timing oracle for usernames: every answer does the same work, one argon2id of the same
    parameters, and says the same words."""
    users.set_disabled(town.p, town.admin, town.dave.user_id, True)
    work = {}
    for name in ("carol", "nobody", "dave", "t1admin"):  # wrong password, unknown, disabled, none
        scrypt_calls.clear()
        with pytest.raises(Unauthenticated) as refused:
            signin.with_password(town.p, name, "guess-123", f"192.0.2.{len(work)}")
        assert refused.value.message == "wrong username or password"
        work[name] = list(scrypt_calls)
    assert work["carol"] == [{"type": "ID", "m": 65536, "t": 3, "p": 4, "salt": 16}]
    assert all(calls == work["carol"] for calls in work.values()), work


def _stored(town: Town, username: str) -> str:
    with town.p.db.session() as s:
        h = s.scalar(select(m.User.password_hash).where(m.User.username == username))
    assert h is not None
    return h


def _set_stored(town: Town, username: str, h: str) -> None:
    with town.p.db.session() as s:
        s.execute(update(m.User).where(m.User.username == username).values(password_hash=h))


def test_passwords_are_argon2id_with_their_parameters_in_the_hash(town: Town) -> None:
    h = _stored(town, "carol")
    assert h.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in h and h != auth.hash_password(PASSWORD)  # salted: never the same twice


def test_an_older_scrypt_hash_signs_in_and_is_replaced_by_argon2id(town: Town) -> None:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=2**14, r=8, p=1)
    legacy = f"scrypt${salt.hex()}${digest.hex()}"
    _set_stored(town, "carol", legacy)
    # a wrong password is refused and leaves the old hash alone
    with pytest.raises(Unauthenticated):
        signin.with_password(town.p, "carol", "guess-123", "192.0.2.50")
    assert _stored(town, "carol") == legacy
    assert signin.with_password(town.p, "carol", PASSWORD, "192.0.2.50").username == "carol"
    fresh = _stored(town, "carol")
    assert fresh.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert not auth.needs_rehash(fresh)
    # and the new hash holds the same password
    assert signin.with_password(town.p, "carol", PASSWORD, "192.0.2.50").username == "carol"
    assert _stored(town, "carol") == fresh  # not hashed again


def test_an_older_hash_costs_an_argon2id_check_like_an_unknown_user(
        town: Town, scrypt_calls: list[dict[str, Any]]) -> None:
    """scrypt is cheaper than argon2id: without the same argon2id check a wrong password would
    answer sooner for an account still on an older hash than for an unknown one, and the time
    would list the accounts not signed in since the upgrade."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=2**14, r=8, p=1)
    _set_stored(town, "carol", f"scrypt${salt.hex()}${digest.hex()}")
    for who in ("carol", "nobody-at-all"):
        scrypt_calls.clear()
        with pytest.raises(Unauthenticated):
            signin.with_password(town.p, who, "guess-123", "192.0.2.53")
        assert [c["type"] for c in scrypt_calls] == ["ID"], who


def test_a_weaker_argon2_hash_is_rehashed_at_sign_in(town: Town) -> None:
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    _set_stored(town, "carol", weak)
    signin.with_password(town.p, "carol", PASSWORD, "192.0.2.51")
    assert _stored(town, "carol").startswith("$argon2id$v=19$m=65536,t=3,p=4$")


@pytest.mark.parametrize("forged", [
    "scrypt$zz$00", "scrypt$" + "5a" * 16 + "$" + "00" * 64, "$argon2id$v=19$m=8,t=1,p=1$AAAA$AAAA",
    "plain-text-password", "$argon2i$garbage", "",
])
def test_a_corrupt_or_foreign_hash_never_signs_in(town: Town, forged: str) -> None:
    """A hash column written by hand (or damaged) is a refusal, not a crash or a way in."""
    _set_stored(town, "carol", forged)
    for guess in (PASSWORD, forged, "", "plain-text-password"):
        assert not auth.verify_password(guess, forged)
    with pytest.raises(Unauthenticated):
        signin.with_password(town.p, "carol", "plain-text-password", "192.0.2.52")


# -- proxies ------------------------------------------------------------------------------------

def test_secure_cookie_and_client_address_from_a_trusted_proxy(town: Town) -> None:
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    with town.client(peer="10.1.2.3", trusted_proxies=parse_networks("127.0.0.1,10.0.0.0/8"),
                     signin_failures_per_address=3) as c:
        r = portal_sign_in(c, token=town.tokens["carol"], headers=proxied)
        assert r.status_code == 303
        session = r.headers["set-cookie"]
        assert "suanli_session=" in session and "secure" in session.lower()
        # Failures count against the client the proxy names, not against the proxy.
        for _ in range(3):
            assert portal_sign_in(c, username="x", password="guess-123",
                                  headers=proxied).status_code == 401
        assert portal_sign_in(c, username="carol", password=PASSWORD,
                              headers=proxied).status_code == 429
        other = {**proxied, "X-Forwarded-For": "198.51.100.8"}
        assert portal_sign_in(c, username="carol", password=PASSWORD,
                              headers=other).status_code == 303


def test_forged_proxy_headers_from_an_untrusted_peer_are_ignored(town: Town) -> None:
    """An attacker sends X-Forwarded-For with a new address each time: still one address."""
    with town.client(peer="203.0.113.66", trusted_proxies=parse_networks("10.0.0.0/8"),
                     signin_failures_per_address=3) as c:
        for i in range(3):
            forged = {"X-Forwarded-For": f"198.51.100.{i}", "X-Forwarded-Proto": "https"}
            assert portal_sign_in(c, username=f"u{i}", password="guess-123",
                                  headers=forged).status_code == 401
        forged = {"X-Forwarded-For": "198.51.100.99", "X-Forwarded-Proto": "https"}
        assert portal_sign_in(c, username="carol", password=PASSWORD,
                              headers=forged).status_code == 429
    with town.client(peer="203.0.113.67") as c:  # no proxy trusted (the default)
        r = portal_sign_in(c, token=town.tokens["carol"], headers={"X-Forwarded-Proto": "https"})
        assert r.status_code == 303 and "secure" not in r.headers["set-cookie"].lower()


@pytest.mark.parametrize("peer, header, client", [
    ("10.0.0.1", "198.51.100.7", "198.51.100.7"),
    ("10.0.0.1", "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # what the client wrote is skipped
    ("10.0.0.1", "6.6.6.6, 198.51.100.7, 10.0.0.9", "198.51.100.7"),  # two trusted hops
    ("10.0.0.1", "10.0.0.8, 10.0.0.9", "10.0.0.8"),  # trusted all the way: the leftmost
    ("10.0.0.1", "6.6.6.6, not-an-ip", "10.0.0.1"),  # garbage from the proxy: the proxy
    ("192.0.2.1", "198.51.100.7", "192.0.2.1"),  # the peer is not trusted: the header is ignored
])
def test_the_client_behind_a_chain_of_proxies(peer: str, header: str, client: str) -> None:
    assert client_address(peer, header, parse_networks("10.0.0.0/8")) == client


def test_sign_in_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SUANLI_SIGNIN_FAILURES_PER_USER", "SUANLI_SIGNIN_FAILURES_PER_ADDRESS",
                 "SUANLI_SIGNIN_WINDOW", "SUANLI_TRUSTED_PROXIES"):
        monkeypatch.delenv(name, raising=False)
    s = Settings.from_env()
    assert (s.signin_failures_per_user, s.signin_failures_per_address, s.signin_window_s,
            s.trusted_proxies) == (5, 20, 900.0, ())  # no proxy is trusted unless named
    monkeypatch.setenv("SUANLI_SIGNIN_FAILURES_PER_USER", "3")
    monkeypatch.setenv("SUANLI_SIGNIN_FAILURES_PER_ADDRESS", "50")
    monkeypatch.setenv("SUANLI_SIGNIN_WINDOW", "600")
    monkeypatch.setenv("SUANLI_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,::1")
    s = Settings.from_env()
    assert (s.signin_failures_per_user, s.signin_failures_per_address, s.signin_window_s) == \
        (3, 50, 600.0)
    assert [str(n) for n in s.trusted_proxies] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    monkeypatch.setenv("SUANLI_TRUSTED_PROXIES", "10.0.0.0/33")
    with pytest.raises(ValueError, match=re.escape("SUANLI_TRUSTED_PROXIES: '10.0.0.0/33'")):
        Settings.from_env()
    monkeypatch.setenv("SUANLI_TRUSTED_PROXIES", "")
    monkeypatch.setenv("SUANLI_SIGNIN_FAILURES_PER_USER", "0")
    with pytest.raises(ValueError, match="SUANLI_SIGNIN_FAILURES_PER_USER"):
        Settings.from_env()
