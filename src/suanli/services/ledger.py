"""The ledger in the database: entries checked by `ledger.check`, posted once by key, balances as
sums of postings, and the trial balance (every account's balance; together they sum to 0)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..domain.enums import Role
from ..domain.errors import Conflict, InvalidInput, NotFound
from ..ledger import Entry, Posting, check
from ..ledger.entries import LedgerError, deposit, reversal, tenant_prepaid, tenant_receivable
from ..store import models as m
from .auth import Principal
from .context import Platform


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


def _postings_of(s: Session, tx_id: int) -> list[Posting]:
    rows = s.execute(select(m.LedgerAccount.code, m.LedgerPosting.amount_fen)
                     .join(m.LedgerAccount, m.LedgerAccount.id == m.LedgerPosting.account_id)
                     .where(m.LedgerPosting.transaction_id == tx_id).order_by(m.LedgerPosting.id))
    return [Posting(code, amount) for code, amount in rows]


def post(s: Session, entry: Entry, now: datetime, *, reverses_id: int | None = None) -> int:
    """Write the entry in the caller's transaction, or find it if its key was posted already
    (then it must be the same entry). Returns the transaction's id."""
    check(entry)
    existing = s.scalar(select(m.LedgerTransaction.id).where(m.LedgerTransaction.key == entry.key))
    if existing is not None:
        if sorted(_postings_of(s, existing), key=lambda p: p.account) != sorted(
                entry.postings, key=lambda p: p.account):
            raise Conflict(f"ledger key {entry.key} was posted with other amounts")
        return existing
    tx = m.LedgerTransaction(kind=entry.kind, key=entry.key, at=now, memo=entry.memo[:500],
                             refs=dict(entry.refs), reverses_id=reverses_id)
    s.add(tx)
    s.flush()
    for p in entry.postings:
        s.add(m.LedgerPosting(transaction_id=tx.id, account_id=_account_id(s, p.account, now),
                              amount_fen=p.amount_fen))
    s.flush()
    return tx.id


def reverse(s: Session, tx_id: int, key: str, now: datetime, memo: str = "") -> int:
    """A correction: a new entry with every posting of `tx_id` negated."""
    tx = s.get(m.LedgerTransaction, tx_id)
    if tx is None:
        raise NotFound(f"no ledger transaction {tx_id}")
    original = Entry(tx.kind, tx.key, tuple(_postings_of(s, tx_id)), tx.memo, dict(tx.refs or {}))
    return post(s, reversal(original, key, memo), now, reverses_id=tx_id)


def balance(s: Session, code: str) -> int:
    total = s.scalar(select(func.coalesce(func.sum(m.LedgerPosting.amount_fen), 0))
                     .join(m.LedgerAccount, m.LedgerAccount.id == m.LedgerPosting.account_id)
                     .where(m.LedgerAccount.code == code))
    return int(total or 0)


def balances(s: Session) -> dict[str, int]:
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
        post(s, entry, p.clock.now())
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
    return {"tenant_id": tenant_id, "prepaid_fen": prepaid, "owed_fen": owed,
            "deposited_fen": int(deposited or 0), "billed_fen": int(billed or 0)}
