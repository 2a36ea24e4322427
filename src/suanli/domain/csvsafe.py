"""CSV exports that a spreadsheet opens as data, never as formulas.

A cell that starts with `=`, `+`, `-`, `@` (or their full-width forms), a tab or a line break is
read as a formula by Excel, LibreOffice and WPS: a tenant named `=HYPERLINK("http://…","发票")`
would put a live link (or worse, with DDE) into the city's settlement sheet. Every text cell that
starts so gets a leading apostrophe (OWASP's advice: the spreadsheet shows the text as it is,
and the apostrophe says it was escaped). Numbers are written as they are (a negative amount stays
a number)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠", "﹦", "﹢", "﹣",
                 "﹫")


def safe_cell(value: Any) -> Any:
    """A text cell a spreadsheet would read as a formula (even after leading spaces, which some
    strip first: ` =1+1`, a no-break or an ideographic space), with an apostrophe before it."""
    if isinstance(value, str) and (value.startswith(FORMULA_START)
                                   or value.lstrip(" \u00a0\u3000").startswith(FORMULA_START)):
        return "'" + value
    return value


def to_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """The rows as CSV (a header line, then one line per row, only `columns`, in order)."""
    out = io.StringIO()
    # RFC 4180's CRLF: the writer then quotes a cell holding either \r or \n, so no text can
    # start a row of its own (with "\n" alone, a bare \r went out unquoted)
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([safe_cell(row.get(c, "")) for c in columns])
    return out.getvalue()
