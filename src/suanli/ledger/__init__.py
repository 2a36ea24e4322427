"""Money: the double-entry ledger's rules, pure (no storage). `services/ledger.py` persists them."""

from .entries import Entry, LedgerError, Posting, check, reversal

__all__ = ["Entry", "LedgerError", "Posting", "check", "reversal"]
