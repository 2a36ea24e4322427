"""The tamper-evident audit log: every money and voucher action appends an entry whose hash
covers its own fields and the previous entry's hash (a hash chain, as in Certificate Transparency
or git). `verify` walks the chain and the ledger: an entry edited or deleted directly in the
database, a ledger transaction changed behind the log, or a cached balance that no longer equals
its postings is named.

Appends are serialized by the one `audit_head` row (updated first: a row lock on PostgreSQL, the
write lock on SQLite), which also remembers the last entry, so deleting the log's tail is caught
too. Entries get their ids from the head, in order, without gaps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from ..domain.enums import Role
from ..store import models as m
from ..store.bulk import insert_rows
from .auth import Principal
from .context import Platform

GENESIS = "0" * 64
CHUNK = 5000


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


def actor_fields(actor: Principal | None) -> tuple[int | None, str]:
    return (None, "system") if actor is None else (actor.user_id, actor.username)


def append(s: Session, actions: Iterable[Action], now: datetime, actor: Principal | None = None) -> None:
    """Append entries in the caller's transaction (they commit or roll back with the change they
    record)."""
    items = list(actions)
    if not items:
        return
    s.execute(update(m.AuditHead).where(m.AuditHead.id == 1)
              .values(entries=m.AuditHead.entries + len(items)))
    last_id, last_hash = s.execute(select(m.AuditHead.last_id, m.AuditHead.last_hash)
                                   .where(m.AuditHead.id == 1)).one()
    actor_id, name = actor_fields(actor)
    at = now.astimezone(UTC)
    rows = []
    for a in items:
        prev, last_id = last_hash, last_id + 1
        subject = a.subject[:200]
        last_hash = digest(prev, last_id, at, actor_id, name, a.action, subject, a.details)
        rows.append({"id": last_id, "at": at, "actor_id": actor_id, "actor": name, "action": a.action,
                     "subject": subject, "details": a.details, "prev_hash": prev, "hash": last_hash})
    insert_rows(s, m.AuditEntry, rows)
    s.execute(update(m.AuditHead).where(m.AuditHead.id == 1)
              .values(last_id=last_id, last_hash=last_hash))


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

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "problems": self.problems,
                "head_hash": self.head_hash}


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

    def bad(text: str) -> None:
        if len(problems) < max_problems:
            problems.append(text)

    prev, expected, count = GENESIS, 1, 0
    ledger_seen: dict[str, str] = {}
    for e in _entries(s):
        count += 1
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
    head = s.get(m.AuditHead, 1)
    if head is None:
        bad("the audit head is missing")
    elif head.last_id != expected - 1 or head.last_hash != prev or head.entries != count:
        bad(f"the log ends at entry {expected - 1} but its head says {head.last_id} "
            f"({head.entries} entries): entries at the end were deleted")
    _verify_ledger(s, ledger_seen, bad)
    return Verdict(not problems, count, problems, prev)


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
