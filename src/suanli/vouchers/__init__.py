"""Compute vouchers (算力券): a programme's rules and the subsidy arithmetic, pure (no storage).
`services/vouchers.py` runs the programme: applications, review, grants, redemption, expiry,
clawback."""

from .rules import MODES, Override, Rules, RulesError, period_bounds, period_of, subsidy

__all__ = ["MODES", "Override", "Rules", "RulesError", "period_bounds", "period_of", "subsidy"]
