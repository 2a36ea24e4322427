"""CSV exports never carry a formula a spreadsheet would run."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from suanli.domain.csvsafe import FORMULA_START, to_csv

BLANKS = " \u00a0\u3000"
TEXT = st.text(alphabet=st.sampled_from([*FORMULA_START, *BLANKS, "a", "发", '"', ",", "'", "1"]),
               max_size=12)


@given(st.lists(st.tuples(TEXT, st.integers(-10**9, 10**9)), max_size=8))
def test_no_cell_starts_a_formula_and_every_cell_reads_back(rows: list[tuple[str, int]]) -> None:
    text = to_csv([{"name": n, "fen": f} for n, f in rows], ("name", "fen"))
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[0] == ["name", "fen"] and len(parsed) == len(rows) + 1
    for (name, fen), (cell, amount) in zip(rows, parsed[1:], strict=True):
        assert not cell.lstrip(BLANKS).startswith(FORMULA_START)  # spaces first do not hide one
        assert cell == ("'" + name if name.lstrip(BLANKS).startswith(FORMULA_START) else name)
        assert int(amount) == fen  # numbers stay numbers, negative ones too
