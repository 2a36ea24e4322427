"""Money is integer fen (分) everywhere; this turns it into text for messages and tables."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MAX_YUAN_FEN = 10**15


def yuan(fen: int | None) -> str:
    """Integer fen as ¥1,234.56 (exact: no float on the way)."""
    if fen is None:
        return "-"
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"


def parse_yuan(text: str, *, zero: bool = False) -> int:
    """'1,234.56' (or '¥1234.56') yuan → 123456 fen, exactly (no float on the way). ValueError,
    with a message for the user, for anything else (negative, more than 2 decimals, 0 unless
    `zero`, out of range)."""
    try:
        value = Decimal(text.replace(",", "").replace("¥", "").strip())
    except InvalidOperation:
        raise ValueError(f"not an amount in yuan: {text!r}") from None
    fen = value * 100
    if not fen.is_finite() or fen != fen.to_integral_value() or fen < 0 or (fen == 0 and not zero):
        raise ValueError(f"an amount is {'0 or more' if zero else 'positive'} with at most 2 "
                         f"decimals (fen), not {text!r}")
    if fen > MAX_YUAN_FEN:
        raise ValueError(f"{text} yuan is out of range")
    return int(fen)
