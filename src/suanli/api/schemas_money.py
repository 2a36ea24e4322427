"""What the money routes answer: prices, the ledger's trial balance, compute vouchers (算力券),
settlement, bills and the audit log. Amounts are integer fen; times are UTC (`…Z`).

One model per concept, what a client reads (`…Public`); requests are in `schemas.py`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from ..domain.enums import DeviceKind
from .schemas import Input, ProgrammeMode

ApplicationState = Literal["pending", "approved", "partly_approved", "rejected"]
GrantState = Literal["active", "expired"]
ProgrammeStatus = Literal["open", "closed"]
SettlementPeriod = Literal["monthly", "quarterly"]
StatementParty = Literal["center", "tenant", "city"]
ReportDimension = Literal["tenant", "center", "district", "device_kind", "domestic", "month"]


# -- prices and the ledger --------------------------------------------------------------------------

class PricePublic(BaseModel):
    id: int
    pool_id: int
    price_fen_per_unit_hour: int
    valid_from: datetime
    note: str
    created_at: datetime


class AccountBalance(BaseModel):
    account: str = Field(description="the ledger account's code, e.g. tenant:3:prepaid")
    balance_fen: int


class TrialBalance(BaseModel):
    accounts: list[AccountBalance]
    total_fen: int = Field(description="always 0: every transaction's postings sum to 0")
    transactions: int


# -- vouchers ---------------------------------------------------------------------------------------

class RatioOverride(BaseModel):
    """A ratio for the runs that match every field given (the first match wins)."""
    ratio_bp: int
    domestic: bool | None = None
    device_kind: DeviceKind | None = None
    center: str | None = None


class VoucherRules(BaseModel):
    """A programme's rules (docs/vouchers.md): the subsidy ratio in basis points, its overrides,
    each tenant's cap, who may apply, where vouchers pay."""
    ratio_bp: int
    overrides: list[RatioOverride] = Field(default_factory=list)
    tenant_cap_fen: int
    min_spend_fen: int = 0
    districts: list[str] = Field(default_factory=list)
    credit_code_prefixes: list[str] = Field(default_factory=list)
    centers: list[str] = Field(default_factory=list)
    exclude_centers: list[str] = Field(default_factory=list)
    peers: bool = False
    validity_days: int
    settlement_period: SettlementPeriod = "monthly"


class RulesVersion(BaseModel):
    version: int
    rules: VoucherRules
    created_at: datetime


class ProgrammePublic(BaseModel):
    """A year's programme and its pool: budget = available + committed + paid."""
    id: int
    name: str
    year: int
    mode: ProgrammeMode
    status: ProgrammeStatus
    starts_at: datetime
    ends_at: datetime
    rules_version: int
    rules: VoucherRules
    rules_history: list[RulesVersion]
    budget_fen: int
    available_fen: int
    committed_fen: int
    paid_fen: int
    grants: int
    created_at: datetime


class ApplicationPublic(BaseModel):
    id: int
    programme_id: int
    tenant_id: int
    requested_fen: int
    planned_spend_fen: int
    planned_use: str
    state: ApplicationState
    approved_fen: int | None
    reason: str
    reviewed_at: datetime | None
    created_at: datetime
    grant_id: int | None = None


class GrantPublic(BaseModel):
    id: int
    programme_id: int
    tenant_id: int
    application_id: int | None
    amount_fen: int
    left_fen: int
    redeemed_fen: int
    granted_at: datetime
    expires_at: datetime
    state: GrantState
    expired_at: datetime | None


class ClaimPublic(BaseModel):
    """A post-hoc (奖补) claim on a finished period's fees."""
    id: int
    grant_id: int
    period: str
    runs: int
    fees_fen: int
    amount_fen: int
    created_at: datetime


class RedemptionPublic(BaseModel):
    """The voucher part of one bill (or of one claim)."""
    id: int
    run_id: int | None
    grant_id: int
    programme_id: int
    tenant_id: int
    center_id: int | None
    claim_id: int | None
    bill_fen: int
    amount_fen: int
    ratio_bp: int
    rules_version: int
    at: datetime
    clawed_back_at: datetime | None
    clawback_reason: str


class FreezePublic(BaseModel):
    tenant_id: int
    frozen_at: datetime | None
    frozen_reason: str


class RelatedPartyPublic(BaseModel):
    tenant_id: int
    center_id: int
    relation: str
    declared_at: datetime


class ReportRow(BaseModel):
    key: str = Field(description="the tenant's name, the center's slug, the district, the device "
                                 "kind, domestic/other or the month")
    runs: int
    bill_fen: int
    voucher_fen: int
    pflops_hours: float
    unit_hours: float


class ReportTotals(BaseModel):
    runs: int
    bill_fen: int
    voucher_fen: int
    pflops_hours: float
    pflops_hours_per_yuan: float | None


class PoolFigures(BaseModel):
    budget_fen: int
    available_fen: int
    committed_fen: int
    paid_fen: int


class BurnMonth(BaseModel):
    month: str
    paid_fen: int
    left_fen: int
    plan_left_fen: int


class VoucherReport(BaseModel):
    """Where a programme's money went, its pool and its burn-down."""
    programme_id: int
    name: str
    by: ReportDimension
    rows: list[ReportRow]
    totals: ReportTotals
    pool: PoolFigures
    burn_down: list[BurnMonth]


# -- settlement and bills ---------------------------------------------------------------------------

class StatementPublic(BaseModel):
    """One party's month: a center's statement, a tenant's invoice or a programme's payment."""
    month: str
    party: StatementParty
    party_id: int
    name: str
    runs: int
    unit_hours: float
    pflops_hours: float
    gross_fen: int
    voucher_fen: int
    adjustments_fen: int
    net_fen: int
    ledger_tx_id: int | None
    created_at: datetime | None
    settled: bool | None = Field(default=None, description="in bills: whether the month is "
                                                            "settled (else computed so far)")


class StatementTotals(BaseModel):
    runs: int
    gross_fen: int
    voucher_fen: int


class Statements(BaseModel):
    month: str
    settled: bool
    items: list[StatementPublic]
    totals: StatementTotals


class Bills(BaseModel):
    """The caller's own statements month by month, newest first."""
    party: StatementParty
    party_id: int
    name: str
    items: list[StatementPublic]


class LentJob(BaseModel):
    run_key: str
    job_id: int
    started_at: datetime
    ended_at: datetime
    unit_seconds: int
    amount_fen: int


class Lent(BaseModel):
    """What a peer that borrows from us owes us for a month."""
    items: list[LentJob]
    runs: int
    unit_seconds: int
    amount_fen: int


class BorrowedRun(BaseModel):
    run_key: str
    job_id: int
    run_id: int
    started_at: datetime
    ended_at: datetime
    unit_seconds: int
    amount_fen: int
    billed_fen: int


class Borrowed(BaseModel):
    """What we owe a peer that lends us compute for a month, and our margin."""
    items: list[BorrowedRun]
    runs: int
    unit_seconds: int
    amount_fen: int
    billed_fen: int
    margin_fen: int


class PeerStatement(BaseModel):
    """`party=peer:NAME`: the month with a peer platform, each side null when it is not that kind
    of peer."""
    month: str
    party: str
    lent: Lent | None
    borrowed: Borrowed | None
    network_id: str | None = None


# -- the audit log ----------------------------------------------------------------------------------

class AuditEntryPublic(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, object]
    hash: str


class AuditSealIn(Input):
    proof: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description=(
        "HMAC-SHA256 under the audit key of \"audit-reseal\\n\" + the head's hash "
        "(GET audit/verify's head_hash), in hex"))]


class AuditVerdict(BaseModel):
    ok: bool
    entries: int
    problems: list[str] = Field(description="the first problems found: `tampered` (an entry "
                                            "edited, deleted, out of order; the ledger) or a seal")
    head_hash: str
    sealed: bool = Field(description="the head's seal matches under this platform's audit key")
    unsealed_before: int = Field(description="entries from before sealing existed (covered by "
                                             "the hash chain)")
