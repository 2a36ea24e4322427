"""Money is integer fen (分) everywhere; this turns it into text for messages and tables."""

from __future__ import annotations


def yuan(fen: int | None) -> str:
    """Integer fen as ¥1,234.56 (exact: no float on the way)."""
    if fen is None:
        return "-"
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"
