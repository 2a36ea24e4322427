"""Routes: money beyond the ledger basics — prices, credit limits, compute vouchers (算力券),
settlement, invoices, reports and the audit log. Amounts are integer fen."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse

from ..services import (
    audit,
    ledger,
    peer_money,
    prices,
    settlement,
    voucher_reports,
    vouchers,
)
from .deps import NoPeer, PlatformDep, PrincipalDep
from .routes_platform import ERRORS
from .schemas import (
    MAX_ID,
    ApplicationCreate,
    ClaimIn,
    CreditLimitSet,
    PathId,
    PriceSet,
    ProgrammeCreate,
    ReasonIn,
    RelatedPartyIn,
    ReviewIn,
    RulesSet,
    SettleIn,
    TenantAccount,
    page_of,
)
from .schemas import Page as PageOf
from .schemas_money import (
    ApplicationPublic,
    ApplicationState,
    AuditEntryPublic,
    AuditSealIn,
    AuditVerdict,
    Bills,
    ClaimPublic,
    FreezePublic,
    GrantPublic,
    PeerStatement,
    PricePublic,
    ProgrammePublic,
    RedemptionPublic,
    RelatedPartyPublic,
    ReportDimension,
    StatementParty,
    StatementPublic,
    Statements,
    VoucherReport,
)

router = APIRouter(prefix="/api/v1", responses=ERRORS)
Id = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10**9)]
MonthQuery = Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="a month, e.g. 2026-11")]
MonthPath = Annotated[str, Path(pattern=r"^\d{4}-\d{2}$", description="a month, e.g. 2026-11")]
# The CSV exports have their own paths (…/settlements.csv), declared as text/csv: a client reads
# each path as what it is
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}},
          "description": "RFC 4180 CSV (a header line, CRLF); text cells that would start a "
                         "spreadsheet formula begin with an apostrophe"}}


class CSVResponse(PlainTextResponse):
    media_type = "text/csv"  # (Starlette adds "; charset=utf-8" to the header)


# -- prices and credit -------------------------------------------------------------------------------

@router.get("/pools/{pool_id}/prices", tags=["money"])
def list_prices(pool_id: PathId, p: PlatformDep, who: PrincipalDep, limit: Limit = 100,
                offset: Offset = 0) -> PageOf[PricePublic]:
    """A pool's price list: every version with the date it is valid from."""
    return PageOf[PricePublic].model_validate(page_of(prices.list_prices(p, who, pool_id), limit, offset))


@router.post("/pools/{pool_id}/prices", status_code=201, tags=["money"])
def set_price(pool_id: PathId, body: PriceSet, p: PlatformDep, who: PrincipalDep) -> PricePublic:
    """A new price from `valid_from` on (the pool's center operator or a platform admin). Runs are
    billed at the price valid when they started."""
    return PricePublic.model_validate(
        prices.set_price(p, who, pool_id, body.price_fen_per_unit_hour, body.valid_from, body.note))


@router.put("/tenants/{tenant_id}/credit-limit", tags=["money"])
def set_credit_limit(tenant_id: PathId, body: CreditLimitSet, p: PlatformDep,
                     who: PrincipalDep) -> TenantAccount:
    """What the tenant may owe beyond its prepaid money (platform admin)."""
    return TenantAccount.model_validate(ledger.set_credit_limit(p, who, tenant_id, body.credit_limit_fen))


# -- vouchers ---------------------------------------------------------------------------------------

@router.get("/voucher-programmes", tags=["vouchers"], dependencies=[NoPeer])
def list_programmes(p: PlatformDep, who: PrincipalDep, limit: Limit = 100,
                    offset: Offset = 0) -> PageOf[ProgrammePublic]:
    """Every programme with its rules, their history, and the pool (budget = available +
    committed + paid)."""
    return PageOf[ProgrammePublic].model_validate(page_of(vouchers.list_programmes(p, who), limit, offset))


@router.post("/voucher-programmes", status_code=201, tags=["vouchers"], dependencies=[NoPeer])
def create_programme(body: ProgrammeCreate, p: PlatformDep, who: PrincipalDep) -> ProgrammePublic:
    """Open a year's programme (platform admin); the pool is funded at once."""
    return ProgrammePublic.model_validate(vouchers.create_programme(p, who, **body.model_dump()))


@router.get("/voucher-programmes/{programme_id}", tags=["vouchers"], dependencies=[NoPeer])
def get_programme(programme_id: PathId, p: PlatformDep, who: PrincipalDep) -> ProgrammePublic:
    return ProgrammePublic.model_validate(vouchers.get_programme(p, who, programme_id))


@router.put("/voucher-programmes/{programme_id}/rules", tags=["vouchers"], dependencies=[NoPeer])
def update_rules(programme_id: PathId, body: RulesSet, p: PlatformDep,
                 who: PrincipalDep) -> ProgrammePublic:
    """A new version of the rules (platform admin)."""
    return ProgrammePublic.model_validate(vouchers.update_rules(p, who, programme_id, body.rules))


@router.get("/voucher-applications", tags=["vouchers"], dependencies=[NoPeer])
def list_applications(p: PlatformDep, who: PrincipalDep, programme_id: Id = None,
                      state: ApplicationState | None = None, tenant_id: Id = None,
                      limit: Limit = 100, offset: Offset = 0) -> PageOf[ApplicationPublic]:
    rows = vouchers.list_applications(p, who, programme_id=programme_id, state=state,
                                      tenant_id=tenant_id)
    return PageOf[ApplicationPublic].model_validate(page_of(rows, limit, offset))


@router.post("/voucher-applications", status_code=201, tags=["vouchers"], dependencies=[NoPeer])
def apply_for_voucher(body: ApplicationCreate, p: PlatformDep, who: PrincipalDep) -> ApplicationPublic:
    """A tenant admin applies, with the planned use and spend."""
    return ApplicationPublic.model_validate(vouchers.apply(
        p, who, body.programme_id, requested_fen=body.requested_fen,
        planned_spend_fen=body.planned_spend_fen, planned_use=body.planned_use))


@router.post("/voucher-applications/{application_id}/review", tags=["vouchers"], dependencies=[NoPeer])
def review_application(application_id: PathId, body: ReviewIn, p: PlatformDep,
                       who: PrincipalDep) -> ApplicationPublic:
    """Approve (all, or part with a reason) or reject (with a reason) — a reviewer."""
    return ApplicationPublic.model_validate(vouchers.review(
        p, who, application_id, decision=body.decision, approved_fen=body.approved_fen,
        reason=body.reason))


@router.get("/voucher-grants", tags=["vouchers"], dependencies=[NoPeer])
def list_grants(p: PlatformDep, who: PrincipalDep, programme_id: Id = None,
                tenant_id: Id = None, limit: Limit = 100, offset: Offset = 0) -> PageOf[GrantPublic]:
    """Grants with what is left of each."""
    rows = vouchers.list_grants(p, who, programme_id=programme_id, tenant_id=tenant_id)
    return PageOf[GrantPublic].model_validate(page_of(rows, limit, offset))


@router.post("/voucher-grants/{grant_id}/claims", status_code=201, tags=["vouchers"], dependencies=[NoPeer])
def claim_grant(grant_id: PathId, body: ClaimIn, p: PlatformDep, who: PrincipalDep) -> ClaimPublic:
    """A post-hoc (奖补) claim: the subsidy on a finished period's fees (the grant's tenant admin)."""
    return ClaimPublic.model_validate(vouchers.claim(p, who, grant_id, body.period))


@router.get("/voucher-redemptions", tags=["vouchers"], dependencies=[NoPeer])
def list_redemptions(p: PlatformDep, who: PrincipalDep, programme_id: Id = None, tenant_id: Id = None,
                     limit: Limit = 100, offset: Offset = 0) -> PageOf[RedemptionPublic]:
    return PageOf[RedemptionPublic].model_validate(vouchers.list_redemptions(
        p, who, programme_id=programme_id, tenant_id=tenant_id, limit=limit, offset=offset))


@router.post("/voucher-redemptions/{redemption_id}/clawback", tags=["vouchers"], dependencies=[NoPeer])
def claw_back(redemption_id: PathId, body: ReasonIn, p: PlatformDep,
              who: PrincipalDep) -> RedemptionPublic:
    """Take back an improper redemption (auditor): reversing entries, the tenant owes it."""
    return RedemptionPublic.model_validate(vouchers.clawback(p, who, redemption_id, body.reason))


@router.post("/tenants/{tenant_id}/freeze", tags=["vouchers"], dependencies=[NoPeer])
def freeze_tenant(tenant_id: PathId, body: ReasonIn, p: PlatformDep, who: PrincipalDep) -> FreezePublic:
    """Freeze a tenant's vouchers (auditor): no applications, no redemptions."""
    return FreezePublic.model_validate(vouchers.freeze(p, who, tenant_id, body.reason))


@router.post("/tenants/{tenant_id}/unfreeze", tags=["vouchers"], dependencies=[NoPeer])
def unfreeze_tenant(tenant_id: PathId, p: PlatformDep, who: PrincipalDep) -> FreezePublic:
    return FreezePublic.model_validate(vouchers.freeze(p, who, tenant_id, "", frozen=False))


@router.get("/tenants/{tenant_id}/related-parties", tags=["vouchers"], dependencies=[NoPeer])
def list_related_parties(tenant_id: PathId, p: PlatformDep, who: PrincipalDep, limit: Limit = 100,
                         offset: Offset = 0) -> PageOf[RelatedPartyPublic]:
    rows = vouchers.list_related(p, who, tenant_id)
    return PageOf[RelatedPartyPublic].model_validate(page_of(rows, limit, offset))


@router.post("/tenants/{tenant_id}/related-parties", status_code=201, tags=["vouchers"],
             dependencies=[NoPeer])
def declare_related_party(tenant_id: PathId, body: RelatedPartyIn, p: PlatformDep,
                          who: PrincipalDep) -> RelatedPartyPublic:
    """Declare a center related to the tenant: vouchers never pay for runs there."""
    return RelatedPartyPublic.model_validate(
        vouchers.declare_related(p, who, tenant_id, body.center_id, body.relation))


ProgrammeQuery = Annotated[int, Query(ge=1, le=MAX_ID)]


@router.get("/voucher-reports", tags=["vouchers"], dependencies=[NoPeer])
def voucher_report(programme_id: ProgrammeQuery, p: PlatformDep, who: PrincipalDep,
                   by: ReportDimension = "tenant") -> VoucherReport:
    """Where the money went, the pool's burn-down, P·h per yuan of subsidy."""
    return VoucherReport.model_validate(voucher_reports.report(p, who, programme_id, by))


@router.get("/voucher-reports.csv", tags=["vouchers"], dependencies=[NoPeer],
            response_class=CSVResponse, responses=CSV_RESPONSE)
def voucher_report_csv(programme_id: ProgrammeQuery, p: PlatformDep, who: PrincipalDep,
                       by: ReportDimension = "tenant") -> CSVResponse:
    """The report's rows as CSV."""
    return CSVResponse(voucher_reports.to_csv(voucher_reports.report(p, who, programme_id, by)))


# -- settlement, invoices, audit ------------------------------------------------------------------

PartyQuery = Annotated[str | None, Query(
    pattern="^(center|tenant|city|peer:[a-z0-9][a-z0-9-]{1,62})$",
    description="center, tenant, city, or peer:NAME (the month with a peer platform)")]


@router.post("/settlements", tags=["settlement"])
def settle(body: SettleIn, p: PlatformDep, who: PrincipalDep) -> Statements:
    """Settle a month that is over (platform admin): statements and payments; idempotent. With
    `preview`, the statements of any month so far, neither stored nor paid."""
    return Statements.model_validate(settlement.settle(p, who, body.month, preview=body.preview))


@router.get("/settlements", tags=["settlement"])
def list_statements(month: MonthQuery, p: PlatformDep, who: PrincipalDep, party: PartyQuery = None,
                    party_id: Id = None) -> Statements | PeerStatement:
    """A settled month's statements: per center (runs, unit-hours, P·h, amount, voucher part), per
    tenant (the invoice) and per voucher programme (the city's payment). `party=peer:NAME`: the
    month with a peer platform, run by run — what it borrowed from us (`lent`) and what we
    borrowed from it (`borrowed`); a peer's own account gets the lent view of itself."""
    if party is not None and party.startswith("peer:"):
        return PeerStatement.model_validate(
            peer_money.statement(p, who, month, party.removeprefix("peer:")))
    return Statements.model_validate(
        settlement.statements(p, who, month, party=party, party_id=party_id))


@router.get("/settlements.csv", tags=["settlement"], response_class=CSVResponse,
            responses=CSV_RESPONSE)
def statements_csv(month: MonthQuery, p: PlatformDep, who: PrincipalDep,
                   party: StatementParty | None = None, party_id: Id = None) -> CSVResponse:
    """A settled month's statements as CSV (not the peer statements: JSON only)."""
    data = settlement.statements(p, who, month, party=party, party_id=party_id)
    return CSVResponse(settlement.to_csv(data["items"]))


@router.get("/invoices", tags=["settlement"])
def list_invoices(month: MonthQuery, p: PlatformDep, who: PrincipalDep) -> Statements:
    """A month's tenant invoices (a tenant's users see theirs): gross, voucher, adjustments, net."""
    return Statements.model_validate(settlement.statements(p, who, month, party="tenant"))


@router.get("/invoices.csv", tags=["settlement"], response_class=CSVResponse,
            responses=CSV_RESPONSE)
def invoices_csv(month: MonthQuery, p: PlatformDep, who: PrincipalDep) -> CSVResponse:
    """A month's tenant invoices as CSV."""
    return CSVResponse(settlement.to_csv(settlement.statements(p, who, month, party="tenant")["items"]))


@router.get("/bills", tags=["settlement"])
def list_bills(p: PlatformDep, who: PrincipalDep,
               months: Annotated[int, Query(ge=1, le=120)] = 12) -> Bills:
    """The caller's own statements month by month, newest first (a tenant's invoices, a center
    operator's statements); months not settled yet are computed so far, `settled: false`."""
    return Bills.model_validate(settlement.history(p, who, months=months))


@router.get("/invoices/{month}/{tenant_id}", tags=["settlement"])
def get_invoice(month: MonthPath, tenant_id: PathId, p: PlatformDep, who: PrincipalDep) -> StatementPublic:
    return StatementPublic.model_validate(settlement.invoice(p, who, month, tenant_id))


@router.get("/audit", tags=["audit"])
def audit_log(p: PlatformDep, who: PrincipalDep, limit: Limit = 100, offset: Offset = 0,
              subject: Annotated[str | None, Query(max_length=200)] = None) -> PageOf[AuditEntryPublic]:
    """The audit log, newest first (platform admin, auditor)."""
    return PageOf[AuditEntryPublic].model_validate(
        audit.list_entries(p, who, limit=limit, offset=offset, subject=subject))


@router.get("/audit/verify", tags=["audit"])
def audit_verify(p: PlatformDep, who: PrincipalDep) -> AuditVerdict:
    """Walk the hash chain, the seals and the ledger: ok, or the first problems found."""
    return AuditVerdict.model_validate(audit.verify_log(p, who))


@router.post("/audit/seal", tags=["audit"])
def audit_seal(body: AuditSealIn, p: PlatformDep, who: PrincipalDep) -> AuditVerdict:
    """Seal the log again under this platform's audit key (platform admin; an upgraded log, a
    rotated key), proving the key is at hand: `proof` is HMAC-SHA256(key, "audit-reseal\n" +
    the current head's hash), which `suanli audit seal` computes where the key is (403 else).
    Refused (409) unless the chain and the ledger verify; recorded in the log."""
    return AuditVerdict.model_validate(audit.reseal(p, who, body.proof))
