"""The ledger in the database: entries checked by `ledger.check`, posted once by key, balances as
sums of postings, and the trial balance (every account's balance; together they sum to 0)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..domain.enums import Role
from ..domain.errors import Conflict, InvalidInput, NotFound, PaymentRequired
from ..domain.money import yuan
from ..ledger import Entry, Posting, check
from ..ledger.entries import LedgerError, deposit, reversal, tenant_prepaid, tenant_receivable
from ..store import models as m
from ..store.bulk import among, bump, insert_rows
from . import audit
from .auth import Principal, hide_other_tenant
from .context import Platform

MAX_CREDIT_FEN = 10**12  # ten billion yuan


def _account_id(s: Session, code: str, now: datetime) -> int:
    found = s.scalar(select(m.LedgerAccount.id).where(m.LedgerAccount.code == code))
    if found is not None:
        return found
    try:
        with s.begin_nested():  # another writer may create the same account at the same moment
            acc = m.LedgerAccount(code=code, created_at=now)
            s.add(acc)
            s.flush()
            return acc.id
    except IntegrityError:
        found = s.scalar(select(m.LedgerAccount.id).where(m.LedgerAccount.code == code))
        assert found is not None
        return found


def _postings_of(s: Session, tx_ids: list[int]) -> dict[int, list[Posting]]:
    out: dict[int, list[Posting]] = {i: [] for i in tx_ids}
    for cond in among(s, m.LedgerPosting.transaction_id, tx_ids):
        rows = s.execute(select(m.LedgerPosting.transaction_id, m.LedgerAccount.code,
                                m.LedgerPosting.amount_fen)
                         .join(m.LedgerAccount, m.LedgerAccount.id == m.LedgerPosting.account_id)
                         .where(cond)
                         .order_by(m.LedgerPosting.id))
        for tx_id, code, amount in rows:
            out[tx_id].append(Posting(code, amount))
    return out


def _same(a: Iterable[Posting], b: Iterable[Posting]) -> bool:
    return sorted((p.account, p.amount_fen) for p in a) == sorted((p.account, p.amount_fen) for p in b)


def _account_ids(s: Session, codes: set[str], now: datetime) -> dict[str, int]:
    ids: dict[str, int] = {}
    todo = sorted(codes)
    for cond in among(s, m.LedgerAccount.code, todo):
        ids.update(s.execute(select(m.LedgerAccount.code, m.LedgerAccount.id).where(cond)).all())
    for code in todo:
        if code not in ids:
            ids[code] = _account_id(s, code, now)
    return ids


def post_many(s: Session, entries: list[Entry], now: datetime, *, actor: Principal | None = None,
              reverses: dict[str, int] | None = None, fresh: bool = False) -> list[int]:
    """Write entries in the caller's transaction, each once: an entry whose key was posted
    already is found instead (it must be the same entry, or Conflict). Every new transaction
    moves its accounts' cached balances and appends its audit entry. Returns the transactions'
    ids, in order. `fresh`: the caller has proven under its locks that no key was posted (billing
    does, by the runs' usage records written in the same transactions), so the keys are not
    looked up; the unique index on the key still refuses a duplicate."""
    by_key: dict[str, Entry] = {}
    for e in entries:
        check(e)
        if e.key in by_key and not _same(by_key[e.key].postings, e.postings):
            raise Conflict(f"ledger key {e.key} was posted with other amounts")
        by_key[e.key] = e
    keys = list(by_key)
    ids: dict[str, int] = {}
    for cond in () if fresh else among(s, m.LedgerTransaction.key, keys):
        ids.update(s.execute(select(m.LedgerTransaction.key, m.LedgerTransaction.id).where(cond)).all())
    if ids:
        posted = _postings_of(s, list(ids.values()))
        for key, tx_id in ids.items():
            if not _same(posted[tx_id], by_key[key].postings):
                raise Conflict(f"ledger key {key} was posted with other amounts")
    new = [e for k, e in by_key.items() if k not in ids]
    if new:
        reverses = reverses or {}
        ids.update((row[0], row[1]) for row in insert_rows(
            s, m.LedgerTransaction,
            [{"kind": e.kind, "key": e.key, "at": now, "memo": e.memo[:500], "refs": dict(e.refs),
              "reverses_id": reverses.get(e.key)} for e in new], returning=("key", "id")))
        accounts = _account_ids(s, {p.account for e in new for p in e.postings}, now)
        deltas: dict[int, int] = defaultdict(int)
        rows = []
        for e in new:
            for p in e.postings:
                rows.append({"transaction_id": ids[e.key], "account_id": accounts[p.account],
                             "amount_fen": p.amount_fen})
                deltas[accounts[p.account]] += p.amount_fen
        # Move the cached balances first: lock the accounts in id order (FOR NO KEY UPDATE), so
        # concurrent writers queue instead of deadlocking; then one UPDATE moves them all (`bump`);
        # then the postings.
        moved = sorted(a for a, d in deltas.items() if d)
        for cond in among(s, m.LedgerAccount.id, moved):
            s.execute(select(m.LedgerAccount.id).where(cond)
                      .order_by(m.LedgerAccount.id).with_for_update(key_share=True))
        bump(s, m.LedgerAccount, "balance_fen", {a: deltas[a] for a in moved})
        insert_rows(s, m.LedgerPosting, rows)
        audit.append(s, [audit.ledger_action([(e.key, e.kind, [(p.account, p.amount_fen)
                                                               for p in e.postings]) for e in new])],
                     now, actor)
    return [ids[e.key] for e in entries]


def post(s: Session, entry: Entry, now: datetime, *, reverses_id: int | None = None,
         actor: Principal | None = None) -> int:
    """Write one entry (see `post_many`). Returns its transaction's id."""
    return post_many(s, [entry], now, actor=actor,
                     reverses={entry.key: reverses_id} if reverses_id else None)[0]


def reverse(s: Session, tx_id: int, key: str, now: datetime, memo: str = "",
            actor: Principal | None = None) -> int:
    """A correction: a new entry with every posting of `tx_id` negated."""
    tx = s.get(m.LedgerTransaction, tx_id)
    if tx is None:
        raise NotFound(f"no ledger transaction {tx_id}")
    original = Entry(tx.kind, tx.key, tuple(_postings_of(s, [tx_id])[tx_id]), tx.memo, dict(tx.refs or {}))
    return post(s, reversal(original, key, memo), now, reverses_id=tx_id, actor=actor)


def balance(s: Session, code: str) -> int:
    """An account's balance (its cached sum of postings; 0 for an account never posted to)."""
    total = s.scalar(select(m.LedgerAccount.balance_fen).where(m.LedgerAccount.code == code))
    return int(total or 0)


def balances_of(s: Session, codes: list[str]) -> dict[str, int]:
    out = dict.fromkeys(codes, 0)
    for cond in among(s, m.LedgerAccount.code, codes):
        out.update(s.execute(select(m.LedgerAccount.code, m.LedgerAccount.balance_fen).where(cond)).all())
    return out


def balances(s: Session) -> dict[str, int]:
    """Every account's balance as the sum of its postings (the truth the cache is checked
    against)."""
    rows = s.execute(select(m.LedgerAccount.code, func.coalesce(func.sum(m.LedgerPosting.amount_fen), 0))
                     .join(m.LedgerPosting, m.LedgerPosting.account_id == m.LedgerAccount.id, isouter=True)
                     .group_by(m.LedgerAccount.code).order_by(m.LedgerAccount.code))
    return {code: int(total) for code, total in rows}


def trial_balance(p: Platform, actor: Principal) -> dict[str, Any]:
    """Every account with its balance in fen; the balances sum to exactly 0 (platform admin,
    auditor)."""
    actor.require(Role.PLATFORM_ADMIN, Role.AUDITOR)
    with p.db.session() as s:
        accounts = balances(s)
        transactions = s.scalar(select(func.count(m.LedgerTransaction.id))) or 0
    return {"accounts": [{"account": code, "balance_fen": fen} for code, fen in accounts.items()],
            "total_fen": sum(accounts.values()), "transactions": int(transactions)}


def record_deposit(p: Platform, actor: Principal, tenant_id: int, amount_fen: int,
                   reference: str) -> dict[str, Any]:
    """Record money a tenant paid in (platform admin). The reference (e.g. the bank transfer's)
    makes it idempotent: the same reference again records nothing more."""
    hide_other_tenant(actor, tenant_id)
    actor.require(Role.PLATFORM_ADMIN)
    reference = reference.strip()
    if not reference or len(reference) > 100:
        raise InvalidInput("a deposit needs a reference of 1-100 characters", field="reference")
    try:
        entry = deposit(tenant_id, amount_fen, reference)
    except LedgerError as exc:
        raise InvalidInput(str(exc), field="amount_fen") from exc
    with p.db.session() as s:
        if s.get(m.Tenant, tenant_id) is None:
            raise NotFound(f"no tenant {tenant_id}")
        post(s, entry, p.clock.now(), actor=actor)
    return tenant_account(p, actor, tenant_id)


def tenant_account(p: Platform, actor: Principal, tenant_id: int) -> dict[str, Any]:
    """The tenant's money: prepaid (deposited, not yet spent), owed beyond it, deposited and billed
    in total. The platform's roles see every tenant; a tenant's users see their own."""
    visible = actor.role.is_platform or (actor.role.is_tenant and actor.tenant_id == tenant_id)
    with p.db.session() as s:
        if not visible or s.get(m.Tenant, tenant_id) is None:
            raise NotFound(f"no tenant {tenant_id}")
        prepaid = -balance(s, tenant_prepaid(tenant_id))
        owed = balance(s, tenant_receivable(tenant_id))
        deposited = s.scalar(
            select(func.coalesce(func.sum(-m.LedgerPosting.amount_fen), 0))
            .join(m.LedgerTransaction, m.LedgerTransaction.id == m.LedgerPosting.transaction_id)
            .join(m.LedgerAccount, m.LedgerAccount.id == m.LedgerPosting.account_id)
            .where(m.LedgerTransaction.kind == "deposit", m.LedgerAccount.code == tenant_prepaid(tenant_id)))
        billed = s.scalar(
            select(func.coalesce(func.sum(m.LedgerPosting.amount_fen), 0))
            .join(m.LedgerTransaction, m.LedgerTransaction.id == m.LedgerPosting.transaction_id)
            .join(m.LedgerAccount, m.LedgerAccount.id == m.LedgerPosting.account_id)
            .where(m.LedgerTransaction.kind == "bill",
                   m.LedgerAccount.code.in_([tenant_prepaid(tenant_id), tenant_receivable(tenant_id)])))
        money = spendable(s, tenant_id)
    return {"tenant_id": tenant_id, "prepaid_fen": prepaid, "owed_fen": owed,
            "deposited_fen": int(deposited or 0), "billed_fen": int(billed or 0),
            "credit_limit_fen": money["credit_limit_fen"], "held_fen": money["held_fen"],
            "spendable_fen": money["spendable_fen"]}


def lock_tenant(s: Session, tenant_id: int) -> None:
    """Serialize money decisions about one tenant (a row lock on PostgreSQL; on SQLite the write
    lock, taken before anything is read)."""
    s.execute(update(m.Tenant).where(m.Tenant.id == tenant_id)
              .values(credit_limit_fen=m.Tenant.credit_limit_fen))


def spendable(s: Session, tenant_id: int) -> dict[str, int]:
    """What the tenant can still commit: prepaid + credit limit − owed − what its unfinished jobs
    hold (each job's cost estimate less what it was billed already; kept in `tenants.held_fen`:
    raised at admission, lowered by billing and when a job ends)."""
    row = s.execute(select(m.Tenant.credit_limit_fen, m.Tenant.held_fen)
                    .where(m.Tenant.id == tenant_id)).one_or_none()
    if row is None:
        raise NotFound(f"no tenant {tenant_id}")
    credit, held = int(row[0]), int(row[1])
    money = balances_of(s, [tenant_prepaid(tenant_id), tenant_receivable(tenant_id)])
    prepaid, owed = -money[tenant_prepaid(tenant_id)], money[tenant_receivable(tenant_id)]
    return {"prepaid_fen": prepaid, "owed_fen": owed, "credit_limit_fen": credit, "held_fen": held,
            "spendable_fen": prepaid + credit - owed - held}


_ADMIT = text(
    "UPDATE tenants SET held_fen = held_fen + :hold WHERE id = :tenant AND credit_limit_fen - held_fen"
    " - COALESCE((SELECT balance_fen FROM ledger_accounts WHERE code = :prepaid), 0)"
    " - COALESCE((SELECT balance_fen FROM ledger_accounts WHERE code = :owed), 0) >= :need")


def admit(s: Session, tenant_id: int, need_fen: int, what: str = "the job", *,
          reserve: bool = True) -> None:
    """Refuse (402, with the numbers) a commitment the tenant's money does not cover; with
    `reserve`, hold it. One conditional UPDATE checks and holds at once (atomic under the row's
    lock), in the transaction that records the commitment: two submissions cannot both spend the
    same money."""
    if need_fen <= 0:
        return
    done = s.connection().execute(_ADMIT, {
        "hold": need_fen if reserve else 0, "tenant": tenant_id, "need": need_fen,
        "prepaid": tenant_prepaid(tenant_id), "owed": tenant_receivable(tenant_id)})
    if cast(CursorResult[Any], done).rowcount == 1:
        return
    a = spendable(s, tenant_id)
    raise PaymentRequired(
        f"{what} may cost up to {yuan(need_fen)} but tenant {tenant_id} can commit only "
        f"{yuan(a['spendable_fen'])} (prepaid {yuan(a['prepaid_fen'])} + credit limit "
        f"{yuan(a['credit_limit_fen'])} − owed {yuan(a['owed_fen'])} − held by unfinished jobs "
        f"{yuan(a['held_fen'])}); deposit money or ask for a higher credit limit",
        field="walltime_s", detail={**a, "need_fen": need_fen})


def set_credit_limit(p: Platform, actor: Principal, tenant_id: int, credit_limit_fen: int) -> dict[str, Any]:
    """How much a tenant may owe beyond its prepaid money (platform admin)."""
    hide_other_tenant(actor, tenant_id)
    actor.require(Role.PLATFORM_ADMIN)
    if type(credit_limit_fen) is not int or not 0 <= credit_limit_fen <= MAX_CREDIT_FEN:
        raise InvalidInput(f"a credit limit is 0 to {MAX_CREDIT_FEN} fen", field="credit_limit_fen")
    now = p.clock.now()
    with p.db.session() as s:
        tenant = s.get(m.Tenant, tenant_id)
        if tenant is None:
            raise NotFound(f"no tenant {tenant_id}")
        before = tenant.credit_limit_fen
        tenant.credit_limit_fen = credit_limit_fen
        audit.record(s, "tenant.credit_limit", f"tenant:{tenant_id}",
                     {"from_fen": before, "to_fen": credit_limit_fen}, now, actor)
    return tenant_account(p, actor, tenant_id)
