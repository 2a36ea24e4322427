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
)

router = APIRouter(prefix="/api/v1", responses=ERRORS)
Id = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10**9)]
Format = Annotated[str, Query(pattern="^(json|csv)$", description="json (default) or csv")]
MonthQuery = Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="a month, e.g. 2026-11")]
MonthPath = Annotated[str, Path(pattern=r"^\d{4}-\d{2}$", description="a month, e.g. 2026-11")]
AppState = Annotated[str | None, Query(pattern="^(pending|approved|partly_approved|rejected)$")]
CSV = "text/csv; charset=utf-8"


# -- prices and credit -------------------------------------------------------------------------------

@router.get("/pools/{pool_id}/prices", tags=["money"])
def list_prices(pool_id: PathId, p: PlatformDep, who: PrincipalDep) -> list[dict[str, Any]]:
    """A pool's price list: every version with the date it is valid from."""
    return prices.list_prices(p, who, pool_id)


@router.post("/pools/{pool_id}/prices", status_code=201, tags=["money"])
def set_price(pool_id: PathId, body: PriceSet, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    """A new price from `valid_from` on (the pool's center operator or a platform admin). Runs are
    billed at the price valid when they started."""
    return prices.set_price(p, who, pool_id, body.price_fen_per_unit_hour, body.valid_from, body.note)


@router.put("/tenants/{tenant_id}/credit-limit", tags=["money"])
def set_credit_limit(tenant_id: PathId, body: CreditLimitSet, p: PlatformDep,
                     who: PrincipalDep) -> TenantAccount:
    """What the tenant may owe beyond its prepaid money (platform admin)."""
    return TenantAccount.model_validate(ledger.set_credit_limit(p, who, tenant_id, body.credit_limit_fen))


# -- vouchers ---------------------------------------------------------------------------------------

@router.get("/voucher-programmes", tags=["vouchers"], dependencies=[NoPeer])
def list_programmes(p: PlatformDep, who: PrincipalDep) -> list[dict[str, Any]]:
    """Every programme with its rules, their history, and the pool (budget = available +
    committed + paid)."""
    return vouchers.list_programmes(p, who)


@router.post("/voucher-programmes", status_code=201, tags=["vouchers"], dependencies=[NoPeer])
def create_programme(body: ProgrammeCreate, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    """Open a year's programme (platform admin); the pool is funded at once."""
    return vouchers.create_programme(p, who, **body.model_dump())


@router.get("/voucher-programmes/{programme_id}", tags=["vouchers"], dependencies=[NoPeer])
def get_programme(programme_id: PathId, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    return vouchers.get_programme(p, who, programme_id)


@router.put("/voucher-programmes/{programme_id}/rules", tags=["vouchers"], dependencies=[NoPeer])
def update_rules(programme_id: PathId, body: RulesSet, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    """A new version of the rules (platform admin)."""
    return vouchers.update_rules(p, who, programme_id, body.rules)


@router.get("/voucher-applications", tags=["vouchers"], dependencies=[NoPeer])
def list_applications(p: PlatformDep, who: PrincipalDep, programme_id: Id = None,
                      state: AppState = None, tenant_id: Id = None) -> list[dict[str, Any]]:
    return vouchers.list_applications(p, who, programme_id=programme_id, state=state, tenant_id=tenant_id)


@router.post("/voucher-applications", status_code=201, tags=["vouchers"], dependencies=[NoPeer])
def apply(body: ApplicationCreate, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    """A tenant admin applies, with the planned use and spend."""
    return vouchers.apply(p, who, body.programme_id, requested_fen=body.requested_fen,
                          planned_spend_fen=body.planned_spend_fen, planned_use=body.planned_use)


@router.post("/voucher-applications/{application_id}/review", tags=["vouchers"], dependencies=[NoPeer])
def review(application_id: PathId, body: ReviewIn, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    """Approve (all, or part with a reason) or reject (with a reason) — a reviewer."""
    return vouchers.review(p, who, application_id, decision=body.decision,
                           approved_fen=body.approved_fen, reason=body.reason)


@router.get("/voucher-grants", tags=["vouchers"], dependencies=[NoPeer])
def list_grants(p: PlatformDep, who: PrincipalDep, programme_id: Id = None,
                tenant_id: Id = None) -> list[dict[str, Any]]:
    """Grants with what is left of each."""
    return vouchers.list_grants(p, who, programme_id=programme_id, tenant_id=tenant_id)


@router.post("/voucher-grants/{grant_id}/claims", status_code=201, tags=["vouchers"], dependencies=[NoPeer])
def claim(grant_id: PathId, body: ClaimIn, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    """A post-hoc (奖补) claim: the subsidy on a finished period's fees (the grant's tenant admin)."""
    return vouchers.claim(p, who, grant_id, body.period)


@router.get("/voucher-redemptions", tags=["vouchers"], dependencies=[NoPeer])
def list_redemptions(p: PlatformDep, who: PrincipalDep, programme_id: Id = None, tenant_id: Id = None,
                     limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    return vouchers.list_redemptions(p, who, programme_id=programme_id, tenant_id=tenant_id,
                                     limit=limit, offset=offset)


@router.post("/voucher-redemptions/{redemption_id}/clawback", tags=["vouchers"], dependencies=[NoPeer])
def clawback(redemption_id: PathId, body: ReasonIn, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    """Take back an improper redemption (auditor): reversing entries, the tenant owes it."""
    return vouchers.clawback(p, who, redemption_id, body.reason)


@router.post("/tenants/{tenant_id}/freeze", tags=["vouchers"], dependencies=[NoPeer])
def freeze(tenant_id: PathId, body: ReasonIn, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    """Freeze a tenant's vouchers (auditor): no applications, no redemptions."""
    return vouchers.freeze(p, who, tenant_id, body.reason)


@router.post("/tenants/{tenant_id}/unfreeze", tags=["vouchers"], dependencies=[NoPeer])
def unfreeze(tenant_id: PathId, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    return vouchers.freeze(p, who, tenant_id, "", frozen=False)


@router.get("/tenants/{tenant_id}/related-parties", tags=["vouchers"], dependencies=[NoPeer])
def list_related(tenant_id: PathId, p: PlatformDep, who: PrincipalDep) -> list[dict[str, Any]]:
    return vouchers.list_related(p, who, tenant_id)


@router.post("/tenants/{tenant_id}/related-parties", status_code=201, tags=["vouchers"],
             dependencies=[NoPeer])
def declare_related(tenant_id: PathId, body: RelatedPartyIn, p: PlatformDep,
                    who: PrincipalDep) -> dict[str, Any]:
    """Declare a center related to the tenant: vouchers never pay for runs there."""
    return vouchers.declare_related(p, who, tenant_id, body.center_id, body.relation)


@router.get("/voucher-reports", tags=["vouchers"], response_model=None, dependencies=[NoPeer])
def voucher_report(programme_id: Annotated[int, Query(ge=1, le=MAX_ID)], p: PlatformDep, who: PrincipalDep,
                   by: Annotated[str, Query(pattern="^(tenant|center|district|device_kind|domestic|month)$")]
                   = "tenant", format: Format = "json") -> dict[str, Any] | PlainTextResponse:
    """Where the money went, the pool's burn-down, P·h per yuan of subsidy (CSV: the rows)."""
    data = voucher_reports.report(p, who, programme_id, by)
    if format == "csv":
        return PlainTextResponse(voucher_reports.to_csv(data), media_type=CSV)
    return data


# -- settlement, invoices, audit ------------------------------------------------------------------

@router.post("/settlements", tags=["settlement"])
def settle(body: SettleIn, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    """Settle a month that is over (platform admin): statements and payments; idempotent. With
    `preview`, the statements of any month so far, neither stored nor paid."""
    return settlement.settle(p, who, body.month, preview=body.preview)


@router.get("/settlements", tags=["settlement"], response_model=None)
def statements(month: MonthQuery, p: PlatformDep, who: PrincipalDep,
               party: Annotated[str | None, Query(
                   pattern="^(center|tenant|city|peer:[a-z0-9][a-z0-9-]{1,62})$")] = None,
               party_id: Id = None, format: Format = "json") -> dict[str, Any] | PlainTextResponse:
    """A settled month's statements: per center (runs, unit-hours, P·h, amount, voucher part), per
    tenant (the invoice) and per voucher programme (the city's payment). `party=peer:NAME`: the
    month with a peer platform, run by run — what it borrowed from us (`lent`) and what we
    borrowed from it (`borrowed`); a peer's own account gets the lent view of itself (JSON)."""
    if party is not None and party.startswith("peer:"):
        return peer_money.statement(p, who, month, party.removeprefix("peer:"))
    data = settlement.statements(p, who, month, party=party, party_id=party_id)
    if format == "csv":
        return PlainTextResponse(settlement.to_csv(data["items"]), media_type=CSV)
    return data


@router.get("/invoices", tags=["settlement"], response_model=None)
def invoices(month: MonthQuery, p: PlatformDep, who: PrincipalDep,
             format: Format = "json") -> dict[str, Any] | PlainTextResponse:
    """A month's tenant invoices (a tenant's users see theirs): gross, voucher, adjustments, net."""
    data = settlement.statements(p, who, month, party="tenant")
    if format == "csv":
        return PlainTextResponse(settlement.to_csv(data["items"]), media_type=CSV)
    return data


@router.get("/bills", tags=["settlement"])
def bills(p: PlatformDep, who: PrincipalDep,
          months: Annotated[int, Query(ge=1, le=120)] = 12) -> dict[str, Any]:
    """The caller's own statements month by month, newest first (a tenant's invoices, a center
    operator's statements); months not settled yet are computed so far, `settled: false`."""
    return settlement.history(p, who, months=months)


@router.get("/invoices/{month}/{tenant_id}", tags=["settlement"])
def invoice(month: MonthPath, tenant_id: PathId, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    return settlement.invoice(p, who, month, tenant_id)


@router.get("/audit", tags=["audit"])
def audit_log(p: PlatformDep, who: PrincipalDep, limit: Limit = 100, offset: Offset = 0,
              subject: Annotated[str | None, Query(max_length=200)] = None) -> dict[str, Any]:
    """The audit log, newest first (platform admin, auditor)."""
    return audit.list_entries(p, who, limit=limit, offset=offset, subject=subject)


@router.get("/audit/verify", tags=["audit"])
def audit_verify(p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    """Walk the hash chain, the seals and the ledger: ok, or the first problems found."""
    return audit.verify_log(p, who)


@router.post("/audit/seal", tags=["audit"])
def audit_seal(p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    """Seal the log again under this platform's audit key (platform admin; an upgraded log, a
    rotated key). Refused (409) unless the chain and the ledger verify; recorded in the log."""
    return audit.reseal(p, who)
