"""A voucher programme's rules (算力券规则): data, validated here, versioned by the service.

Pure: no storage. The service keeps every version of a programme's rules and records which
version priced each redemption, so a rule change never rewrites the past.

    ratio_bp            the subsidy ratio in basis points (2000 = 20 % of each bill)
    overrides           higher (or lower) ratios for some runs, first match wins:
                        [{"domestic": true, "ratio_bp": 3000}, {"device_kind": "npu", ...},
                         {"center": "qd-ai", ...}]
    tenant_cap_fen      the most one tenant may receive in the programme (default 1,000,000 RMB)
    min_spend_fen       the least planned spend an application must show to qualify
    districts           eligible tenants' districts (e.g. registered in the city)
    credit_code_prefixes eligible tenants' unified social credit code prefixes (e.g. 913702);
                        a tenant qualifies when it matches a district or a prefix (no list: all)
    centers             whitelisted centers by slug (empty: every center of the city's own)
    exclude_centers     centers it never pays for, by slug
    peers               whether it pays for runs on peer platforms' centers (federation) that
                        `centers` does not name (default false: the city's vouchers pay for the
                        city's compute; list a peer's center in `centers` to pay for it alone)
    validity_days       how long a grant may be spent (default 365)
    settlement_period   monthly | quarterly (post-hoc claims and the city's payments)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

MAX_BP = 10_000
DEFAULT_BUDGET_FEN = 20_000_000 * 100
DEFAULT_CAP_FEN = 1_000_000 * 100
MODES = ("point_of_sale", "post_hoc")
PERIODS = ("monthly", "quarterly")


class RulesError(ValueError):
    """Rules that cannot be applied (the message names the field)."""


@dataclass(frozen=True, slots=True)
class Override:
    ratio_bp: int
    domestic: bool | None = None
    device_kind: str | None = None
    center: str | None = None

    def matches(self, *, domestic: bool, device_kind: str, center: str) -> bool:
        return ((self.domestic is None or self.domestic == domestic)
                and (self.device_kind is None or self.device_kind == device_kind)
                and (self.center is None or self.center == center))


@dataclass(frozen=True, slots=True)
class Rules:
    ratio_bp: int = 2000
    overrides: tuple[Override, ...] = ()
    tenant_cap_fen: int = DEFAULT_CAP_FEN
    min_spend_fen: int = 0
    districts: tuple[str, ...] = ()
    credit_code_prefixes: tuple[str, ...] = ()
    centers: tuple[str, ...] = ()
    exclude_centers: tuple[str, ...] = ()
    peers: bool = False
    validity_days: int = 365
    settlement_period: str = "monthly"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rules:
        """Validated rules from JSON-like data; unknown keys are refused, missing ones default."""
        if not isinstance(data, dict):
            raise RulesError("rules are an object")
        known = {"ratio_bp", "overrides", "tenant_cap_fen", "min_spend_fen", "districts",
                 "credit_code_prefixes", "centers", "exclude_centers", "peers", "validity_days",
                 "settlement_period"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RulesError(f"unknown rule {unknown[0]!r}; rules are {', '.join(sorted(known))}")
        d = Rules()
        ratio = _int(data, "ratio_bp", d.ratio_bp, 0, MAX_BP)
        overrides = []
        raw = data.get("overrides", [])
        if not isinstance(raw, list) or len(raw) > 20:
            raise RulesError("overrides is a list of at most 20 objects")
        for i, o in enumerate(raw):
            if not isinstance(o, dict) or set(o) - {"ratio_bp", "domestic", "device_kind", "center"}:
                raise RulesError(f"overrides[{i}] has ratio_bp and any of domestic, device_kind, center")
            dom = o.get("domestic")
            if dom is not None and not isinstance(dom, bool):
                raise RulesError(f"overrides[{i}].domestic is true or false")
            kind, center = o.get("device_kind"), o.get("center")
            if kind is not None and kind not in ("cpu", "gpu", "npu"):
                raise RulesError(f"overrides[{i}].device_kind is cpu, gpu or npu")
            if center is not None and (not isinstance(center, str) or not 0 < len(center) <= 64):
                raise RulesError(f"overrides[{i}].center is a center's slug")
            if "ratio_bp" not in o:
                raise RulesError(f"overrides[{i}] needs ratio_bp")
            overrides.append(Override(_int(o, "ratio_bp", 0, 0, MAX_BP, f"overrides[{i}]."),
                                      dom, kind, center))
        peers = data.get("peers", d.peers)
        if not isinstance(peers, bool):
            raise RulesError("peers is true or false")
        period = data.get("settlement_period", d.settlement_period)
        if period not in PERIODS:
            raise RulesError("settlement_period is monthly or quarterly")
        return cls(
            ratio_bp=ratio, overrides=tuple(overrides),
            tenant_cap_fen=_int(data, "tenant_cap_fen", d.tenant_cap_fen, 1, 10**13),
            min_spend_fen=_int(data, "min_spend_fen", d.min_spend_fen, 0, 10**13),
            districts=_strings(data, "districts", 64),
            credit_code_prefixes=_strings(data, "credit_code_prefixes", 18),
            centers=_strings(data, "centers", 64),
            exclude_centers=_strings(data, "exclude_centers", 64), peers=peers,
            validity_days=_int(data, "validity_days", d.validity_days, 1, 3660),
            settlement_period=str(period),
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["overrides"] = [{k: v for k, v in asdict(o).items() if v is not None}
                            for o in self.overrides]
        for k in ("districts", "credit_code_prefixes", "centers", "exclude_centers"):
            out[k] = list(out[k])
        return out

    def ratio_for(self, *, domestic: bool, device_kind: str, center: str) -> int:
        """The subsidy ratio (basis points) for a run on such a pool."""
        for o in self.overrides:
            if o.matches(domestic=domestic, device_kind=device_kind, center=center):
                return o.ratio_bp
        return self.ratio_bp

    def tenant_ineligible(self, *, district: str, credit_code: str) -> str | None:
        """Why a tenant may not apply, or None when it may."""
        if not self.districts and not self.credit_code_prefixes:
            return None
        if district in self.districts:
            return None
        if any(credit_code.startswith(p) for p in self.credit_code_prefixes):
            return None
        where = ", ".join([*self.districts, *(f"credit code {p}…" for p in self.credit_code_prefixes)])
        return f"the programme is for tenants registered in: {where}"

    def center_allowed(self, slug: str, *, peer: bool = False) -> bool:
        """Whether the programme pays for runs on the center `slug` (`peer`: a peer platform's
        center, paid only when named in `centers` or with `peers`)."""
        if slug in self.exclude_centers:
            return False
        if self.centers:
            return slug in self.centers
        return not peer or self.peers


def _int(data: dict[str, Any], key: str, default: int, lo: int, hi: int, prefix: str = "") -> int:
    value = data.get(key, default)
    if type(value) is not int or not lo <= value <= hi:
        raise RulesError(f"{prefix}{key} is a whole number from {lo} to {hi}, not {value!r}")
    return value


def _strings(data: dict[str, Any], key: str, max_len: int) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or len(value) > 200 or not all(
            isinstance(v, str) and 0 < len(v) <= max_len for v in value):
        raise RulesError(f"{key} is a list of strings of 1-{max_len} characters")
    return tuple(value)


def subsidy(bill_fen: int, ratio_bp: int, *limits: int) -> int:
    """The voucher's part of a bill: the bill × ratio rounded down to the fen (never more than the
    ratio), and never more than any of `limits` (the grant's remainder, the tenant's cap left)."""
    return max(0, min(bill_fen * ratio_bp // MAX_BP, *limits)) if limits else bill_fen * ratio_bp // MAX_BP


def period_of(at: datetime, settlement_period: str) -> str:
    """The settlement period an instant falls in: 2026-11 (monthly) or 2026-Q4 (quarterly)."""
    at = at.astimezone(UTC)
    if settlement_period == "quarterly":
        return f"{at.year}-Q{(at.month - 1) // 3 + 1}"
    return f"{at.year}-{at.month:02d}"


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """[start, end) of 2026-11 or 2026-Q4, in UTC."""
    try:
        year_text, part = period.split("-")
        year = int(year_text)
        if part.startswith("Q"):
            q = int(part[1:])
            if not 1 <= q <= 4:
                raise ValueError
            first, months = 3 * (q - 1) + 1, 3
        else:
            first, months = int(part), 1
            if not 1 <= first <= 12 or len(part) != 2:
                raise ValueError
        if not 2000 <= year <= 2999:
            raise ValueError
    except ValueError:
        raise RulesError(f"not a period: {period!r} (2026-11 or 2026-Q4)") from None
    start = datetime(year, first, 1, tzinfo=UTC)
    end_month = first + months
    end = datetime(year + (end_month - 1) // 12, (end_month - 1) % 12 + 1, 1, tzinfo=UTC)
    return start, end
