"""Double-entry bookkeeping in integer fen.

An `Entry` (one transaction) is a list of postings to accounts; amounts are signed integers in fen
(debit > 0, credit < 0) and every entry's postings sum to exactly zero — `check` is the one place
that enforces it, and every write goes through it. An entry carries a unique `key` (e.g.
`bill:run:42`): posting the same key twice is a no-op, so retries and restarts never bill twice.
Nothing is ever edited: a correction is a new entry that reverses the old one (`reversal`).
A balance is the sum of an account's postings.

Accounts are named by code:

    tenant:<id>:prepaid      the tenant's deposited money not yet spent (credit balance)
    tenant:<id>:receivable   what the tenant owes the platform beyond it (debit balance)
    center:<id>:payable      what the platform owes the center (credit balance)
    platform:cash            money the platform received (debit balance)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ACCOUNT = re.compile(r"^[a-z]+(:[A-Za-z0-9_.-]+)+$")
MAX_FEN = 10**15  # a hundred billion yuan in one posting is a bug, not a bill


class LedgerError(ValueError):
    """An entry that would break the books (the message says which rule)."""


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    amount_fen: int  # debit > 0, credit < 0


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str  # bill, reversal, ...
    key: str  # unique: the same key is posted at most once
    postings: tuple[Posting, ...]
    memo: str = ""
    refs: dict[str, int] = field(default_factory=dict)  # e.g. {"run_id": 42}


def check(entry: Entry) -> None:
    """Every rule an entry must keep before it is written."""
    if not entry.key or len(entry.key) > 200:
        raise LedgerError("an entry needs a key of 1-200 characters")
    if not entry.kind:
        raise LedgerError("an entry needs a kind")
    if len(entry.postings) < 2:
        raise LedgerError(f"{entry.key}: an entry has at least two postings")
    total = 0
    for p in entry.postings:
        if type(p.amount_fen) is not int:
            raise LedgerError(f"{entry.key}: amounts are whole fen, not {p.amount_fen!r}")
        if p.amount_fen == 0:
            raise LedgerError(f"{entry.key}: a posting of 0 fen to {p.account}")
        if abs(p.amount_fen) > MAX_FEN:
            raise LedgerError(f"{entry.key}: {p.amount_fen} fen to {p.account} is out of range")
        if not ACCOUNT.match(p.account):
            raise LedgerError(f"{entry.key}: {p.account!r} is not an account code")
        total += p.amount_fen
    if total != 0:
        raise LedgerError(f"{entry.key}: postings sum to {total} fen, not 0")


def reversal(entry: Entry, key: str, memo: str = "") -> Entry:
    """The entry that undoes `entry` (every posting negated)."""
    return Entry("reversal", key, tuple(Posting(p.account, -p.amount_fen) for p in entry.postings),
                 memo or f"reverses {entry.key}", dict(entry.refs))


def tenant_receivable(tenant_id: int) -> str:
    return f"tenant:{tenant_id}:receivable"


def tenant_prepaid(tenant_id: int) -> str:
    return f"tenant:{tenant_id}:prepaid"


def center_payable(center_id: int) -> str:
    return f"center:{center_id}:payable"


PLATFORM_CASH = "platform:cash"


def deposit(tenant_id: int, amount_fen: int, reference: str) -> Entry:
    """Money a tenant paid in (a bank transfer with its reference): cash in, the tenant's prepaid
    balance up."""
    if type(amount_fen) is not int or amount_fen <= 0:
        raise LedgerError(f"a deposit is a positive number of fen, not {amount_fen!r}")
    return Entry("deposit", f"deposit:{reference}",
                 (Posting(PLATFORM_CASH, amount_fen), Posting(tenant_prepaid(tenant_id), -amount_fen)),
                 f"deposit {reference}", {"tenant_id": tenant_id})


def bill(run_id: int, tenant_id: int, center_id: int, amount_fen: int, prepaid_fen: int = 0) -> Entry | None:
    """A finished run's bill: paid from the tenant's prepaid money (`prepaid_fen` available) as far
    as it goes, the rest owed; the platform owes the whole amount to the center. None for a run
    that cost nothing."""
    if amount_fen == 0:
        return None
    from_prepaid = min(amount_fen, max(0, prepaid_fen))
    postings = [Posting(center_payable(center_id), -amount_fen)]
    if from_prepaid:
        postings.append(Posting(tenant_prepaid(tenant_id), from_prepaid))
    if amount_fen - from_prepaid:
        postings.append(Posting(tenant_receivable(tenant_id), amount_fen - from_prepaid))
    return Entry("bill", f"bill:run:{run_id}", tuple(postings), f"run {run_id}",
                 {"run_id": run_id, "tenant_id": tenant_id, "center_id": center_id})
