"""The tamper-evident audit log: every money and voucher action appends an entry whose hash
covers its own fields and the previous entry's hash (a hash chain, as in Certificate Transparency
or git). `verify` walks the chain and the ledger: an entry edited or deleted directly in the
database, a ledger transaction changed behind the log, or a cached balance that no longer equals
its postings is named.

Appends are serialized by the one `audit_head` row (updated first: a row lock on PostgreSQL, the
write lock on SQLite), which also remembers the last entry, so deleting the log's tail is caught
too. Entries get their ids from the head, in order, without gaps.

A chain alone does not stop someone with write access to the database from rewriting the whole
log and its head consistently. So the log is also *sealed* with a key the database does not hold
(SUANLI_AUDIT_KEY, else $SUANLI_HOME/audit.key): each entry's `mac` is HMAC-SHA256(key, hash) and
the head's `seal` covers (last_id, last_hash, entries). An append checks the head's seal before it
extends it; a head whose seal does not match (rewritten, or sealed under another key) is not
sealed again — it stays unsealed, and `verify` keeps saying so, until an administrator who has
looked seals it again (`reseal`, itself an audited action). Entries written before sealing
existed (mac NULL, an upgraded database) are covered by the chain up to the first sealed entry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from ..domain.enums import Role
from ..domain.errors import Conflict, Forbidden
from ..store import models as m
from ..store.bulk import insert_rows
from .auth import Principal
from .context import Platform

GENESIS = "0" * 64
CHUNK = 5000
log = logging.getLogger("suanli.audit")


@dataclass(frozen=True, slots=True)
class Action:
    action: str  # e.g. ledger.bill, voucher.review
    subject: str  # e.g. ledger:bill:run:42, application:7
    details: dict[str, Any]


def digest(prev_hash: str, entry_id: int, at: datetime, actor_id: int | None, actor: str,
           action: str, subject: str, details: dict[str, Any]) -> str:
    body = json.dumps([prev_hash, entry_id, at.astimezone(UTC).isoformat(), actor_id, actor, action,
                       subject, details], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def head_seal(key: bytes, last_id: int, last_hash: str, entries: int) -> str:
    return mac(key, f"audit-head\n{last_id}\n{last_hash}\n{entries}")


def reseal_proof(key: bytes, head_hash: str) -> str:
    """What `audit seal` must bring: the audit key's HMAC over the head it saw. Only one who holds
    the key (the server's host) can ask for a reseal; a database writer who minted an admin token
    cannot (its API tokens are only hashes in the database)."""
    return mac(key, f"audit-reseal\n{head_hash}")


def same(a: str | None, b: str) -> bool:
    """Two hex digests compared in constant time; a value that is not ASCII (a tampered column)
    is simply not the same."""
    return a is not None and a.isascii() and hmac.compare_digest(a, b)


def _seal_holds(key: bytes, last_id: int, last_hash: str, entries: int, seal: str | None) -> bool:
    if entries == 0 and last_id == 0 and last_hash == GENESIS:
        return True  # an empty log has nothing to seal yet
    return same(seal, head_seal(key, last_id, last_hash, entries))


def actor_fields(actor: Principal | None) -> tuple[int | None, str]:
    return (None, "system") if actor is None else (actor.user_id, actor.username)


def append(s: Session, actions: Iterable[Action], now: datetime, actor: Principal | None = None) -> None:
    """Append entries in the caller's transaction (they commit or roll back with the change they
    record)."""
    items = list(actions)
    if not items:
        return
    key: bytes | None = s.info.get("audit_key")
    s.execute(update(m.AuditHead).where(m.AuditHead.id == 1)
              .values(entries=m.AuditHead.entries + len(items)))
    last_id, last_hash, entries, seal = s.execute(
        select(m.AuditHead.last_id, m.AuditHead.last_hash, m.AuditHead.entries, m.AuditHead.seal)
        .where(m.AuditHead.id == 1)).one()
    # the seal covers the head as it was before this append (`entries` is already counted up)
    sealed = key is not None and _seal_holds(key, last_id, last_hash, entries - len(items), seal)
    if key is not None and not sealed:
        log.error("the audit log's head (entry %s) is not sealed under this platform's audit key: "
                  "it was rewritten, or SUANLI_AUDIT_KEY differs between replicas; it stays "
                  "unsealed until `suanli audit seal`", last_id)
    actor_id, name = actor_fields(actor)
    at = now.astimezone(UTC)
    rows = []
    for a in items:
        prev, last_id = last_hash, last_id + 1
        subject = a.subject[:200]
        last_hash = digest(prev, last_id, at, actor_id, name, a.action, subject, a.details)
        rows.append({"id": last_id, "at": at, "actor_id": actor_id, "actor": name, "action": a.action,
                     "subject": subject, "details": a.details, "prev_hash": prev, "hash": last_hash,
                     "mac": mac(key, last_hash) if key is not None else None})
    insert_rows(s, m.AuditEntry, rows)
    s.execute(update(m.AuditHead).where(m.AuditHead.id == 1).values(
        last_id=last_id, last_hash=last_hash,
        seal=head_seal(key, last_id, last_hash, entries) if sealed and key is not None else None))


def record(s: Session, action: str, subject: str, details: dict[str, Any], now: datetime,
           actor: Principal | None = None) -> None:
    append(s, [Action(action, subject, details)], now, actor)


# -- verification ---------------------------------------------------------------------------------

@dataclass
class Verdict:
    ok: bool
    entries: int
    problems: list[str]
    head_hash: str
    sealed: bool = False  # the head's seal matches under this platform's audit key
    unsealed_before: int = 0  # entries from before sealing existed (covered by the chain)
    # the problems that are not a missing or wrong seal (the chain, the ledger): `reseal` may
    # mend a log only when there are none
    other_problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "problems": self.problems,
                "head_hash": self.head_hash, "sealed": self.sealed,
                "unsealed_before": self.unsealed_before}


def _entries(s: Session) -> Iterator[m.AuditEntry]:
    after = 0
    while True:
        chunk = list(s.scalars(select(m.AuditEntry).where(m.AuditEntry.id > after)
                               .order_by(m.AuditEntry.id).limit(CHUNK)))
        if not chunk:
            return
        yield from chunk
        after = chunk[-1].id
        s.expunge_all()


def tx_digest(key: str, kind: str, postings: Iterable[tuple[str, int]]) -> str:
    """A ledger transaction's fingerprint: its key, kind and postings (any change shows)."""
    body = json.dumps([key, kind, sorted([a, int(f)] for a, f in postings)], ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def ledger_action(txs: list[tuple[str, str, list[tuple[str, int]]]]) -> Action:
    """One audit entry for the ledger transactions one action posted (a bill, a grant, a batch of
    bills): each transaction's fingerprint; with one transaction, its postings too, for reading."""
    kinds = {kind for _, kind, _ in txs}
    key0, kind0, postings0 = txs[0]
    details: dict[str, Any] = {"transactions": {k: tx_digest(k, kind, ps) for k, kind, ps in txs}}
    if len(txs) == 1:
        details["postings"] = sorted([a, f] for a, f in postings0)
        subject = f"ledger:{key0}"
    else:
        subject = f"ledger:{len(txs)} transactions, {key0} …"
    return Action(f"ledger.{kind0}" if len(kinds) == 1 else "ledger.post", subject, details)


def verify(s: Session, max_problems: int = 20) -> Verdict:
    problems: list[str] = []
    other: list[str] = []  # not about a seal

    def bad(text: str, *, seal: bool = False) -> None:
        if len(problems) < max_problems:
            problems.append(text)
            if not seal:
                other.append(text)

    key: bytes | None = s.info.get("audit_key")
    if key is None:
        bad("this process has no audit key: the log's seal cannot be checked")
    prev, expected, count = GENESIS, 1, 0
    first_sealed: int | None = None  # the first entry with a mac: every later one needs one
    forged_macs = 0
    ledger_seen: dict[str, str] = {}
    for e in _entries(s):
        count += 1
        if key is not None:
            if e.mac is None:
                if first_sealed is not None:
                    forged_macs += 1
                    if forged_macs <= 3:
                        bad(f"entry {e.id} has no seal though entry {first_sealed} before it has "
                            "one: it was written or rewritten outside suanli", seal=True)
            else:
                first_sealed = first_sealed or e.id
                if not same(e.mac, mac(key, e.hash)):
                    forged_macs += 1
                    if forged_macs <= 3:
                        bad(f"entry {e.id}'s seal does not match under the audit key: the log was "
                            "rewritten outside suanli (or it was sealed under another key)",
                            seal=True)
        if e.id != expected:
            bad(f"entry {expected} is missing (the next entry is {e.id})" if e.id > expected
                else f"entry {e.id} is out of order")
        if e.prev_hash != prev:
            bad(f"entry {e.id}: its link to the previous entry is broken (an entry before it was "
                "edited or deleted)")
        again = digest(e.prev_hash, e.id, e.at, e.actor_id, e.actor, e.action, e.subject, e.details)
        if again != e.hash:
            bad(f"entry {e.id} ({e.action} {e.subject}) was edited: its hash does not match")
        if e.action.startswith("ledger.") and isinstance(e.details.get("transactions"), dict):
            ledger_seen.update(e.details["transactions"])
        prev, expected = e.hash, e.id + 1
    if forged_macs > 3:
        bad(f"{forged_macs} entries in all have a missing or wrong seal", seal=True)
    head = s.get(m.AuditHead, 1)
    sealed = False
    if head is None:
        bad("the audit head is missing")
    else:
        if head.last_id != expected - 1 or head.last_hash != prev or head.entries != count:
            bad(f"the log ends at entry {expected - 1} but its head says {head.last_id} "
                f"({head.entries} entries): entries at the end were deleted")
        if key is not None:
            sealed = _seal_holds(key, head.last_id, head.last_hash, head.entries, head.seal)
            if not sealed:
                bad("the head's seal does not match under this platform's audit key: the log and "
                    "its head were rewritten together, or sealed under another key (replicas "
                    "must share SUANLI_AUDIT_KEY); an administrator seals it again with "
                    "`suanli audit seal` once the log is known good" if head.seal is not None else
                    "the head is not sealed: it was rewritten, or it predates sealing (an upgraded "
                    "database); an administrator seals it with `suanli audit seal` once the log "
                    "is known good", seal=True)
    _verify_ledger(s, ledger_seen, bad)
    unsealed = (first_sealed - 1) if first_sealed is not None else count
    return Verdict(not problems, count, problems, prev, sealed, unsealed, other)


def _verify_ledger(s: Session, seen: dict[str, str], bad: Any) -> None:
    """Every ledger transaction matches its audit entry and sums to 0; cached balances equal
    postings."""
    after = 0
    while True:
        txs = list(s.execute(select(m.LedgerTransaction.id, m.LedgerTransaction.key,
                                    m.LedgerTransaction.kind)
                             .where(m.LedgerTransaction.id > after)
                             .order_by(m.LedgerTransaction.id).limit(CHUNK)))
        if not txs:
            break
        ids = [t.id for t in txs]
        postings: dict[int, list[tuple[str, int]]] = {i: [] for i in ids}
        for tx_id, code, amount in s.execute(
                select(m.LedgerPosting.transaction_id, m.LedgerAccount.code, m.LedgerPosting.amount_fen)
                .join(m.LedgerAccount, m.LedgerAccount.id == m.LedgerPosting.account_id)
                .where(m.LedgerPosting.transaction_id.in_(ids))):
            postings[tx_id].append((code, amount))
        for t in txs:
            ps = postings[t.id]
            if sum(a for _, a in ps) != 0:
                bad(f"ledger transaction {t.id} ({t.key}) does not sum to 0")
            logged = seen.pop(t.key, None)
            if logged is None:
                bad(f"ledger transaction {t.id} ({t.key}) has no audit entry")
            elif logged != tx_digest(t.key, t.kind, ps):
                bad(f"ledger transaction {t.id} ({t.key}) differs from its audit entry")
        after = ids[-1]
    for key in list(seen)[:5]:
        bad(f"ledger transaction {key} is in the audit log but no longer in the ledger")
    # Postings carry no foreign keys (migration 0009): each must still have its transaction and
    # its account.
    tx, acc = m.LedgerTransaction, m.LedgerAccount
    for posting_id, tx_id, acc_id in s.execute(
            select(m.LedgerPosting.id, m.LedgerPosting.transaction_id, m.LedgerPosting.account_id)
            .outerjoin(tx, tx.id == m.LedgerPosting.transaction_id)
            .outerjoin(acc, acc.id == m.LedgerPosting.account_id)
            .where(or_(tx.id.is_(None), acc.id.is_(None))).order_by(m.LedgerPosting.id).limit(5)):
        bad(f"ledger posting {posting_id} refers to transaction {tx_id} and account {acc_id}, "
            "one of which no longer exists")
    sums = dict(s.execute(select(m.LedgerPosting.account_id, func.sum(m.LedgerPosting.amount_fen))
                          .group_by(m.LedgerPosting.account_id)).all())
    for acc_id, code, cached in s.execute(select(m.LedgerAccount.id, m.LedgerAccount.code,
                                                 m.LedgerAccount.balance_fen)):
        if int(sums.get(acc_id) or 0) != cached:
            bad(f"account {code}: balance {cached} fen but its postings sum to {sums.get(acc_id) or 0}")


def reseal(p: Platform, actor: Principal, proof: str) -> dict[str, Any]:
    """Seal the whole log again under this platform's audit key: an upgraded log (entries from
    before sealing), a key rotated on purpose, a log restored from a backup. A platform
    administrator's deliberate act, after reading `verify`, that must prove it holds the key
    (`proof`: `reseal_proof` over the head it read); the chain and the ledger must verify first
    (only seals may be wrong), and the act is itself an audit entry, sealed with the rest."""
    actor.require(Role.PLATFORM_ADMIN)
    with p.db.session(immediate=True) as s:
        key: bytes = s.info["audit_key"]
        head_hash = s.scalar(select(m.AuditHead.last_hash).where(m.AuditHead.id == 1))
        if head_hash is None or not same(proof, reseal_proof(key, head_hash)):
            raise Forbidden("the proof is not this platform's audit key over the log's current "
                            "head: run `suanli audit seal` where the key is (the server's "
                            "SUANLI_AUDIT_KEY or $SUANLI_HOME/audit.key), and again if the log "
                            "moved meanwhile", field="proof")
        before = verify(s, max_problems=10**6)
        if before.other_problems:
            raise Conflict("the log does not verify apart from its seals, so it is not sealed: "
                           + "; ".join(before.other_problems[:3]))
        head = s.get(m.AuditHead, 1)  # (after verify: its walk lets go of what it loaded)
        assert head is not None
        was = "sealed" if before.ok else ("unsealed" if head.seal is None else "wrong seal")
        after = 0
        while True:  # every entry's mac, in chunks
            chunk = list(s.execute(select(m.AuditEntry.id, m.AuditEntry.hash, m.AuditEntry.mac)
                                   .where(m.AuditEntry.id > after).order_by(m.AuditEntry.id)
                                   .limit(CHUNK)))
            if not chunk:
                break
            for entry_id, entry_hash, old in chunk:
                want = mac(key, entry_hash)
                if old != want:
                    s.execute(update(m.AuditEntry).where(m.AuditEntry.id == entry_id)
                              .values(mac=want))
            after = chunk[-1][0]
        head.seal = head_seal(key, head.last_id, head.last_hash, head.entries)
        s.flush()
        record(s, "audit.seal", f"audit:{head.last_id}",
               {"entries": head.entries, "head_hash": head.last_hash, "was": was}, p.clock.now(),
               actor)
        s.flush()
        return verify(s).as_dict()


def verify_log(p: Platform, actor: Principal) -> dict[str, Any]:
    actor.require(Role.PLATFORM_ADMIN, Role.AUDITOR)
    with p.db.session() as s:
        return verify(s).as_dict()


def list_entries(p: Platform, actor: Principal, *, limit: int = 100, offset: int = 0,
                 subject: str | None = None) -> dict[str, Any]:
    actor.require(Role.PLATFORM_ADMIN, Role.AUDITOR)
    with p.db.session() as s:
        q = select(m.AuditEntry)
        if subject:
            q = q.where(m.AuditEntry.subject == subject)
        total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
        rows = list(s.scalars(q.order_by(m.AuditEntry.id.desc()).limit(limit).offset(offset)))
        items = [{"id": e.id, "at": e.at, "actor": e.actor, "action": e.action, "subject": e.subject,
                  "details": e.details, "hash": e.hash} for e in rows]
    return {"items": items, "total": int(total), "limit": limit, "offset": offset}
