"""Formatting at the edge: money in yuan, durations, times, and parsing of durations."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime

from rich.table import Table

from ..domain.money import yuan as yuan  # re-exported: the CLI formats money here
from ..domain.timefmt import duration as duration  # re-exported, shared with the portal

_DURATION = re.compile(r"(\d+)\s*([dhms])")
_UNIT = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> int:
    """'3600', '90s', '30m', '2h', '1d', '1h30m' -> seconds."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    parts = _DURATION.findall(text)
    if not parts or _DURATION.sub("", text).strip():
        raise ValueError(f"not a duration: {text!r} (use e.g. 3600, 90s, 30m, 2h, 1h30m)")
    return sum(int(n) * _UNIT[u] for n, u in parts)


def when(value: str | None) -> str:
    """An ISO time from the API as local-free UTC 'YYYY-MM-DD HH:MM:SS'."""
    if not value:
        return "-"
    t = datetime.fromisoformat(value).astimezone(UTC)
    return t.strftime("%Y-%m-%d %H:%M:%S")


def pflops(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}P" if value >= 0.01 or value == 0 else f"{value * 1000:.1f}T"


def grid(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], *,
         right: Collection[str] = ()) -> Table:
    """A table with a header: `columns` (those in `right` right-justified: amounts, counts)."""
    t = Table(title=title)
    for col in columns:
        t.add_column(col, justify="right" if col in right else "left")
    for row in rows:
        t.add_row(*row)
    return t
