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
    platform:cash            money the platform holds (debit balance)

and for each voucher programme <p> (算力券), whose grants <g> are tracked one by one:

    voucher:<p>:budget       the city's funding of the programme (credit balance: − budget)
    voucher:<p>:available    the pool not yet granted (debit; never below 0)
    voucher:<p>:grant:<g>    a grant's unspent part (debit; never below 0)
    voucher:<p>:paid         what the programme has paid on bills (debit)
    city:<p>:receivable      what the city owes the platform for those payments (debit)

so that −budget = available + Σ grants + paid at every moment: a grant moves money from
available to the grant, a redemption from the grant to paid, an expiry or a clawback back to
available.
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
# What the platform keeps (or loses) between what it billed its tenants for runs on peer
# platforms and what those platforms billed it (credit balance: a margin earned).
PEER_MARGIN = "platform:peer_margin"


def deposit(tenant_id: int, amount_fen: int, reference: str) -> Entry:
    """Money a tenant paid in (a bank transfer with its reference): cash in, the tenant's prepaid
    balance up."""
    _positive(amount_fen, "a deposit")
    return Entry("deposit", f"deposit:{reference}",
                 (Posting(PLATFORM_CASH, amount_fen), Posting(tenant_prepaid(tenant_id), -amount_fen)),
                 f"deposit {reference}", {"tenant_id": tenant_id})


def voucher_budget(programme_id: int) -> str:
    return f"voucher:{programme_id}:budget"


def voucher_available(programme_id: int) -> str:
    return f"voucher:{programme_id}:available"


def voucher_grant(programme_id: int, grant_id: int) -> str:
    return f"voucher:{programme_id}:grant:{grant_id}"


def voucher_paid(programme_id: int) -> str:
    return f"voucher:{programme_id}:paid"


def city_receivable(programme_id: int) -> str:
    return f"city:{programme_id}:receivable"


def _positive(amount_fen: int, what: str) -> None:
    if type(amount_fen) is not int or amount_fen <= 0:
        raise LedgerError(f"{what} is a positive number of fen, not {amount_fen!r}")


@dataclass(frozen=True, slots=True)
class VoucherPart:
    """The part of a bill a voucher grant pays."""

    programme_id: int
    grant_id: int
    amount_fen: int


def _tenant_pays(tenant_id: int, amount_fen: int, prepaid_fen: int) -> list[Posting]:
    """The tenant's share: from its prepaid money as far as it goes, the rest owed."""
    from_prepaid = min(amount_fen, max(0, prepaid_fen))
    out = []
    if from_prepaid:
        out.append(Posting(tenant_prepaid(tenant_id), from_prepaid))
    if amount_fen - from_prepaid:
        out.append(Posting(tenant_receivable(tenant_id), amount_fen - from_prepaid))
    return out


def _redeem(v: VoucherPart) -> list[Posting]:
    """A redemption: the grant pays `v`, which the city now owes the platform."""
    return [Posting(voucher_grant(v.programme_id, v.grant_id), -v.amount_fen),
            Posting(voucher_paid(v.programme_id), v.amount_fen),
            Posting(city_receivable(v.programme_id), v.amount_fen)]


def bill(run_id: int, tenant_id: int, center_id: int, amount_fen: int, prepaid_fen: int = 0,
         voucher: VoucherPart | None = None) -> Entry | None:
    """A finished run's bill: the platform owes the whole amount to the center; a voucher grant
    pays its part (point of sale); the tenant pays the rest from its prepaid money (`prepaid_fen`
    available) as far as it goes, and owes what is left. None for a run that cost nothing."""
    if amount_fen == 0:
        return None
    v = voucher.amount_fen if voucher is not None else 0
    if not 0 <= v <= amount_fen:
        raise LedgerError(f"bill:run:{run_id}: a voucher part of {v} fen on a bill of {amount_fen}")
    postings = [Posting(center_payable(center_id), -amount_fen),
                *_tenant_pays(tenant_id, amount_fen - v, prepaid_fen)]
    refs = {"run_id": run_id, "tenant_id": tenant_id, "center_id": center_id}
    if voucher is not None and v:
        postings += _redeem(voucher)
        refs |= {"programme_id": voucher.programme_id, "grant_id": voucher.grant_id}
    return Entry("bill", f"bill:run:{run_id}", tuple(postings), f"run {run_id}", refs)


def peer_charge(run_id: int, center_id: int, billed_fen: int, charged_fen: int) -> Entry | None:
    """A run on a peer platform's center: we billed our tenant `billed_fen` (and owe the center
    that much since the bill), the peer billed us `charged_fen`. The difference moves between
    what we owe the peer and our margin. None when they are equal."""
    if charged_fen < 0 or billed_fen < 0:
        raise LedgerError(f"peer-charge:run:{run_id}: amounts are not negative")
    diff = billed_fen - charged_fen
    if diff == 0:
        return None
    return Entry("peer-charge", f"peer-charge:run:{run_id}",
                 (Posting(center_payable(center_id), diff), Posting(PEER_MARGIN, -diff)),
                 f"run {run_id}: billed {billed_fen}, the peer charged {charged_fen}",
                 {"run_id": run_id, "center_id": center_id})


def fund_programme(programme_id: int, budget_fen: int) -> Entry:
    """The city's funding of a voucher programme: its whole pool becomes available."""
    _positive(budget_fen, "a programme's budget")
    return Entry("programme", f"programme:{programme_id}:fund",
                 (Posting(voucher_available(programme_id), budget_fen),
                  Posting(voucher_budget(programme_id), -budget_fen)),
                 f"voucher programme {programme_id} funded", {"programme_id": programme_id})


def grant(programme_id: int, grant_id: int, tenant_id: int, amount_fen: int) -> Entry:
    """A grant committed from the programme's pool."""
    _positive(amount_fen, "a grant")
    return Entry("grant", f"grant:{grant_id}",
                 (Posting(voucher_available(programme_id), -amount_fen),
                  Posting(voucher_grant(programme_id, grant_id), amount_fen)),
                 f"grant {grant_id} to tenant {tenant_id}",
                 {"programme_id": programme_id, "grant_id": grant_id, "tenant_id": tenant_id})


def expiry(programme_id: int, grant_id: int, unspent_fen: int) -> Entry:
    """An expired grant's unspent part goes back to the pool."""
    _positive(unspent_fen, "an expiry")
    return Entry("expiry", f"expiry:grant:{grant_id}",
                 (Posting(voucher_grant(programme_id, grant_id), -unspent_fen),
                  Posting(voucher_available(programme_id), unspent_fen)),
                 f"grant {grant_id} expired", {"programme_id": programme_id, "grant_id": grant_id})


def clawback(redemption_id: int, programme_id: int, tenant_id: int, amount_fen: int) -> Entry:
    """An improper redemption taken back: the money returns to the programme's pool, the city no
    longer owes it, and the tenant owes it instead."""
    _positive(amount_fen, "a clawback")
    return Entry("clawback", f"clawback:redemption:{redemption_id}",
                 (Posting(voucher_paid(programme_id), -amount_fen),
                  Posting(voucher_available(programme_id), amount_fen),
                  Posting(city_receivable(programme_id), -amount_fen),
                  Posting(tenant_receivable(tenant_id), amount_fen)),
                 f"redemption {redemption_id} clawed back",
                 {"programme_id": programme_id, "tenant_id": tenant_id, "redemption_id": redemption_id})


def claim(claim_id: int, voucher: VoucherPart, tenant_id: int) -> Entry:
    """A post-hoc (奖补) subsidy on fees already paid: the grant pays it to the tenant's prepaid
    balance."""
    _positive(voucher.amount_fen, "a claim")
    return Entry("claim", f"claim:{claim_id}",
                 (*_redeem(voucher), Posting(tenant_prepaid(tenant_id), -voucher.amount_fen)),
                 f"subsidy claim {claim_id}",
                 {"programme_id": voucher.programme_id, "grant_id": voucher.grant_id,
                  "tenant_id": tenant_id, "claim_id": claim_id})


def center_payout(center_id: int, month: str, amount_fen: int) -> Entry:
    """The platform pays a center what a month's statement says it owes."""
    _positive(amount_fen, "a payout")
    return Entry("payout", f"payout:center:{center_id}:{month}",
                 (Posting(center_payable(center_id), amount_fen), Posting(PLATFORM_CASH, -amount_fen)),
                 f"center {center_id} paid for {month}", {"center_id": center_id})


def city_payment(programme_id: int, month: str, amount_fen: int) -> Entry:
    """The city pays the platform a month's voucher redemptions (net of clawbacks; when those
    exceed the redemptions, a negative amount: the platform refunds the city)."""
    if type(amount_fen) is not int or amount_fen == 0:
        raise LedgerError(f"a city payment is a non-zero number of fen, not {amount_fen!r}")
    return Entry("city_payment", f"citypay:{programme_id}:{month}",
                 (Posting(PLATFORM_CASH, amount_fen), Posting(city_receivable(programme_id), -amount_fen)),
                 f"city paid programme {programme_id} for {month}", {"programme_id": programme_id})
