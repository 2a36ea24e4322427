"""The audit log against someone who can write the database but does not hold the platform's
audit key: rewriting entries and recomputing the whole hash chain and its head (which the chain
alone cannot catch) is caught by the seals, the next append does not bless it, and only a
platform administrator's audited `seal` (refused while the chain itself is broken) seals again."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from suanli.api.app import create_app
from suanli.domain.errors import Conflict, Forbidden
from suanli.services import audit
from suanli.services.context import Platform
from suanli.services.ledger import record_deposit
from suanli.store import models as m
from suanli.store.db import Database

from ..conftest import World
from ..money import fixed_world


@pytest.fixture
def fw(platform: Platform) -> World:
    w, _ = fixed_world(platform)
    for i in range(4):
        record_deposit(w.p, w.admin, w.t2.id, 1000 + i, f"wire-{i}")
    return w


def _verify(p: Platform) -> audit.Verdict:
    with p.db.session() as s:
        return audit.verify(s)


def _proof(p: Platform) -> str:
    """What `suanli audit seal` brings where the key is: the key's HMAC over the current head."""
    return audit.reseal_proof(p.db.audit_key, _verify(p).head_hash)


def _rewrite_from(p: Platform, first: int, *, keep_macs: bool = True) -> None:
    """What an attacker with the database (and this code) but not the key can do: change entry
    `first`'s details, then recompute every hash after it and the head, so the chain is whole."""
    with p.db.sessions() as s, s.begin():
        entries = list(s.scalars(select(m.AuditEntry).order_by(m.AuditEntry.id)))
        prev = audit.GENESIS
        for e in entries:
            if e.id == first:
                e.details = {**e.details, "memo": "rewritten"}
            if e.id >= first:
                e.prev_hash = prev
                e.hash = audit.digest(prev, e.id, e.at, e.actor_id, e.actor, e.action, e.subject,
                                      e.details)
                if not keep_macs:
                    e.mac = None
            prev = e.hash
        s.execute(update(m.AuditHead).where(m.AuditHead.id == 1).values(
            last_hash=prev, seal=None if not keep_macs else m.AuditHead.seal))


def test_a_fresh_log_is_sealed_entry_by_entry(fw: World) -> None:
    v = _verify(fw.p)
    assert v.ok and v.sealed and v.entries >= 4 and v.unsealed_before == 0
    with fw.p.db.session() as s:
        macs = list(s.scalars(select(m.AuditEntry.mac)))
    assert all(x is not None and len(x) == 64 for x in macs)
    # the key is not in the database: it is the owner-only file in the data directory
    key_file = fw.p.home / "audit.key"
    assert key_file.stat().st_mode & 0o077 == 0
    dump = "\n".join(str(r) for r in fw.p.db.engine.connect().execute(text("SELECT * FROM audit_head")))
    assert key_file.read_text().strip() not in dump


def test_rewriting_the_log_and_its_head_together_is_caught_by_the_seals(fw: World) -> None:
    _rewrite_from(fw.p, 2)
    v = _verify(fw.p)
    # the chain itself is whole again: only the seals tell
    assert not any("edited" in x or "broken" in x or "deleted" in x for x in v.problems), v.problems
    assert not v.ok and not v.sealed
    assert any(x.startswith("entry 2's seal does not match") for x in v.problems), v.problems
    assert any("the head's seal does not match" in x for x in v.problems), v.problems


def test_stripping_every_seal_is_caught_too(fw: World) -> None:
    _rewrite_from(fw.p, 1, keep_macs=False)
    v = _verify(fw.p)
    assert not v.ok and any("the head is not sealed" in x for x in v.problems), v.problems


def test_the_next_append_does_not_bless_a_rewritten_log(fw: World) -> None:
    _rewrite_from(fw.p, 2)
    record_deposit(fw.p, fw.admin, fw.t2.id, 500, "wire-after")  # a legitimate action
    v = _verify(fw.p)
    assert not v.ok and any("head is not sealed" in x for x in v.problems), v.problems
    with fw.p.db.session() as s:
        assert s.get(m.AuditHead, 1).seal is None  # type: ignore[union-attr]


def test_seal_is_refused_while_the_chain_is_broken_and_only_for_the_platform_admin(fw: World) -> None:
    with fw.p.db.engine.begin() as c:  # an edit the chain catches by itself
        c.execute(text("UPDATE audit_log SET details = '{\"amount_fen\": 1}' WHERE id = 3"))
    with pytest.raises(Conflict, match="entry 3"):
        audit.reseal(fw.p, fw.admin, _proof(fw.p))
    with pytest.raises(Forbidden):
        audit.reseal(fw.p, fw.auditor, _proof(fw.p))  # type: ignore[attr-defined]
    with pytest.raises(Forbidden):
        audit.reseal(fw.p, fw.u2, _proof(fw.p))


def test_an_upgraded_log_is_sealed_by_an_audited_admin_act(fw: World) -> None:
    with fw.p.db.engine.begin() as c:  # as migration 0016 leaves a log written before it
        c.execute(text("UPDATE audit_log SET mac = NULL"))
        c.execute(text("UPDATE audit_head SET seal = NULL"))
    v = _verify(fw.p)
    assert not v.ok and v.other_problems == [] and v.unsealed_before == v.entries
    out = audit.reseal(fw.p, fw.admin, _proof(fw.p))
    assert out["ok"] and out["sealed"] and out["unsealed_before"] == 0, out
    with fw.p.db.session() as s:
        last = s.scalars(select(m.AuditEntry).order_by(m.AuditEntry.id.desc())).first()
    assert last is not None and last.action == "audit.seal" and last.details["was"] == "unsealed"
    assert last.actor == fw.admin.username
    record_deposit(fw.p, fw.admin, fw.t2.id, 700, "wire-later")  # appends keep it sealed
    assert _verify(fw.p).ok


def test_another_key_is_told_apart(fw: World, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A replica with a different key (SUANLI_AUDIT_KEY not shared) cannot pass the log off as
    its own, and what it appends leaves the head unsealed."""
    other_home = tmp_path_factory.mktemp("other-replica")
    db = Database(fw.p.db.url)
    other = Platform(db=db, settings=replace(fw.p.settings, home=other_home), clock=fw.p.clock)
    try:
        assert db.audit_key != fw.p.db.audit_key
        v = _verify(other)
        assert not v.ok and any("seal does not match" in x for x in v.problems)
        record_deposit(other, fw.admin, fw.t2.id, 900, "wire-other")
        assert not _verify(fw.p).ok  # the rightful key sees the unsealed head
    finally:
        db.dispose()


def test_the_api_says_which_and_only_an_admin_seals(fw: World) -> None:
    from suanli.services.auth import issue_token

    with fw.p.db.engine.begin() as c:
        c.execute(text("UPDATE audit_head SET seal = NULL"))
    tokens = {name: issue_token(fw.p, who.user_id, name)[1]
              for name, who in (("admin", fw.admin), ("auditor", fw.auditor))}  # type: ignore[attr-defined]
    with TestClient(create_app(fw.p, run_engine=False)) as c:
        auth = {"Authorization": f"Bearer {tokens['auditor']}"}
        v = c.get("/api/v1/audit/verify", headers=auth).json()
        assert v["ok"] is False and v["sealed"] is False
        assert any("the head is not sealed" in x for x in v["problems"])
        r = c.post("/api/v1/audit/seal", headers=auth, json={"proof": _proof(fw.p)})
        assert r.status_code == 403
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        assert c.post("/api/v1/audit/seal", headers=admin).status_code == 422  # no proof
        r = c.post("/api/v1/audit/seal", headers=admin, json={"proof": _proof(fw.p)})
        assert r.status_code == 200 and r.json()["ok"] is True
        assert c.get("/api/v1/audit/verify", headers=auth).json()["ok"] is True


def test_a_database_writer_cannot_have_a_rewrite_sealed(fw: World) -> None:
    """Write access to the database is enough to mint an admin's API token (tokens are stored as
    hashes there) — not to reseal: the request must prove the audit key, which the database does
    not hold. A proof over another head (an old one, or the rewrite's own guess) is refused too."""
    before = _verify(fw.p).head_hash
    _rewrite_from(fw.p, 2, keep_macs=False)  # looks like a log written before sealing
    secret = "sl_minted-in-the-database"
    with fw.p.db.engine.begin() as c:
        c.execute(text("INSERT INTO api_tokens (user_id, name, prefix, token_hash, created_at) "
                       "VALUES (:u, 'x', 'sl_min', :h, '2026-01-01 00:00:00')"),
                  {"u": fw.admin.user_id, "h": hashlib.sha256(secret.encode()).hexdigest()})
    guesses = [hashlib.sha256(b"no key").hexdigest(), audit.reseal_proof(b"x" * 32, before),
               audit.reseal_proof(fw.p.db.audit_key, before)]  # the right key, an old head
    with TestClient(create_app(fw.p, run_engine=False)) as c:
        for proof in guesses:
            r = c.post("/api/v1/audit/seal", json={"proof": proof},
                       headers={"Authorization": f"Bearer {secret}"})
            assert r.status_code == 403 and r.json()["field"] == "proof", r.text
    assert not _verify(fw.p).ok


def test_a_seal_that_is_not_hex_is_reported_not_raised(fw: World) -> None:
    """A non-ASCII value in a seal column (compare_digest raises TypeError on one) is a
    tampering verify reports, and money actions go on (not a 500 on every append)."""
    with fw.p.db.engine.begin() as c:
        c.execute(text("UPDATE audit_head SET seal = :s"), {"s": "é" * 64})
        c.execute(text("UPDATE audit_log SET mac = :s WHERE id = 2"), {"s": "é" * 64})
    v = _verify(fw.p)
    assert not v.ok and any("entry 2" in x for x in v.problems), v.problems
    record_deposit(fw.p, fw.admin, fw.t2.id, 5, "wire-after-garbage")
