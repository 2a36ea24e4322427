"""Properties of the CLI's formatters: yuan round-trips fen exactly; numbers never use an
exponent and keep their value to the digits they show."""

from __future__ import annotations

import math
import re

from hypothesis import given
from hypothesis import strategies as st

from suanli.cli.format import fen_from_yuan, number, pfh, yuan
from suanli.domain.money import MAX_YUAN_FEN

EXPONENT = re.compile(r"\de[-+]?\d", re.IGNORECASE)


@given(st.integers(min_value=1, max_value=MAX_YUAN_FEN))
def test_yuan_round_trips_fen(fen: int) -> None:
    shown = yuan(fen)
    assert re.fullmatch(r"¥\d{1,3}(,\d{3})*\.\d{2}", shown)
    assert fen_from_yuan(shown, "--budget") == fen
    assert fen_from_yuan(shown.replace(",", "").lstrip("¥"), "--budget") == fen


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=1, max_value=9))
def test_three_decimals_are_refused(whole: int, thousandth: int) -> None:
    try:
        fen_from_yuan(f"{whole}.00{thousandth}", "--budget")
    except ValueError as exc:
        assert "--budget" in str(exc)
    else:
        raise AssertionError("a fraction of a fen was accepted")


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_never_use_an_exponent(v: float) -> None:
    for text in (number(v), pfh(v), number(v, sig=5)):
        assert not EXPONENT.search(text), (v, text)


# Down to 1e-8: three significant digits within number()'s ten decimals.
@given(st.floats(min_value=1e-8, max_value=1e12, allow_nan=False))
def test_numbers_keep_three_significant_digits(v: float) -> None:
    shown = float(number(v).replace(",", ""))
    assert math.isclose(shown, v, rel_tol=5e-3), (v, number(v))
