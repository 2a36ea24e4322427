"""Unified social credit code (统一社会信用代码), GB 32100-2015.

18 characters: registration authority (1), organisation type (1), administrative division (6
digits), organisation code (9) and a check character computed over the first 17.
"""

from __future__ import annotations

from .errors import InvalidInput

# The 31 characters of the code, in value order: digits and upper-case letters without I, O, S, V, Z.
ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_VALUE = {c: i for i, c in enumerate(ALPHABET)}


def check_character(first17: str) -> str:
    """The 18th character for the given first 17 (which must use the code's alphabet)."""
    total = sum(_VALUE[c] * w for c, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def validate_credit_code(code: str) -> str:
    """Return the normalised (upper-case, trimmed) code, or raise InvalidInput saying what is wrong."""
    normalised = code.strip().upper()
    if len(normalised) != 18:
        raise InvalidInput(
            f"unified social credit code must have 18 characters, got {len(normalised)}",
            field="credit_code",
        )
    bad = [c for c in normalised if c not in _VALUE]
    if bad:
        raise InvalidInput(
            f"unified social credit code contains characters not allowed by GB 32100-2015: "
            f"{''.join(sorted(set(bad)))!r} (I, O, S, V, Z and punctuation are never used)",
            field="credit_code",
        )
    if not normalised[2:8].isdigit():
        raise InvalidInput(
            "unified social credit code: characters 3-8 must be the 6-digit administrative "
            f"division code, got {normalised[2:8]!r}",
            field="credit_code",
        )
    expected = check_character(normalised[:17])
    if normalised[17] != expected:
        raise InvalidInput(
            f"unified social credit code {normalised} fails the GB 32100-2015 check: "
            f"the 18th character should be {expected!r}, not {normalised[17]!r}",
            field="credit_code",
        )
    return normalised


def division_code(code: str) -> str:
    """The 6-digit administrative division code of a valid credit code (e.g. 370212 = Laoshan)."""
    return code[2:8]
