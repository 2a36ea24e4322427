"""Formatting at the edge, the CLI's one place for it: money in yuan (in flags and on screen),
numbers without scientific notation, times with their zone (Beijing time by default), durations
and walltimes. JSON output (`-o json`) stays in the API's units: fen and UTC ISO times."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, date, datetime, tzinfo

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from ..domain.errors import InvalidInput
from ..domain.money import parse_yuan
from ..domain.money import yuan as yuan  # re-exported: the CLI formats money here
from ..domain.task import parse_walltime
from ..domain.timefmt import CST as CST  # re-exported
from ..domain.timefmt import duration as duration  # re-exported, shared with the portal
from ..domain.timefmt import zone_of as zone_of  # re-exported: --tz and SUANLI_TZ, as the portal reads them

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


def parse_walltime_text(text: str, flag: str = "--walltime") -> int:
    """A walltime as people type it -> seconds: '3600' (seconds), '90s', '30m', '2h', '1h30m',
    or Slurm's '01:00:00', '1-12:00:00', '1-12'. ValueError naming `flag` otherwise.

    A bare number is seconds here (as in every suanli flag), unlike sbatch, where it is minutes."""
    t = str(text).strip()
    if ":" in t or "-" in t:
        try:
            return parse_walltime(t, field_name=flag)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
    try:
        seconds = parse_duration(t)
    except ValueError:
        raise ValueError(f"{flag}: {text!r} is not a duration (e.g. 3600, 30m, 2h, 1h30m, "
                         "01:00:00, 1-12:00:00)") from None
    if seconds < 1:
        raise ValueError(f"{flag}: must be at least 1 second")
    return seconds


# --- money -----------------------------------------------------------------------------------

_AMOUNT = re.compile(r"¥?\s*(\d{1,3}(,\d{3})+|\d+)(\.\d*)?|¥?\s*\.\d+")

def fen_from_yuan(text: str, flag: str, *, zero: bool = False) -> int:
    """'120' or '120.5' yuan -> 12000 / 12050 fen, exactly (Decimal, no float): more than 2
    decimals, negative or out of range is a ValueError naming `flag`."""
    if not _AMOUNT.fullmatch(str(text).strip()):
        raise ValueError(f"{flag}: an amount in yuan is a number like 120 or 120.50 (at most 2 "
                         f"decimals), not {text!r}")
    try:
        return parse_yuan(str(text), zero=zero)
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None


# --- numbers ---------------------------------------------------------------------------------

def number(value: float | None, *, sig: int = 3, min_decimals: int = 0,
           max_decimals: int = 10) -> str:
    """A number in fixed point with at least `sig` significant digits, never in scientific
    notation: 7.78e-06 -> '0.00000778', 1234.5 -> '1,234' (sig=3), 0 -> '0'. A value smaller
    than the last shown decimal is '<0.0000000001'."""
    if value is None:
        return "-"
    v = float(value)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if v == 0:
        return f"{0:.{min_decimals}f}"
    magnitude = math.floor(math.log10(abs(v)))
    decimals = min(max(min_decimals, sig - 1 - magnitude, 0), max_decimals)
    text = f"{v:,.{decimals}f}"
    if not text.strip("-0.,"):  # rounded away: say so rather than print 0
        return ("-" if v < 0 else "") + "<" + f"{10.0 ** -max_decimals:.{max_decimals}f}"
    return text


def pflops(value: float | None) -> str:
    """Peak or free PFLOPS: '102.40P', '0.000100P'."""
    return "-" if value is None else number(value, sig=3, min_decimals=2) + "P"


def pfh(value: float | None) -> str:
    """Standard P·h (PFLOPS-hours), for tables whose header says P·h: '0.00000778', '12.346'."""
    return number(value, sig=3, min_decimals=3)


def hours(value: float | None) -> str:
    """unit-hours: '0.0139', '12.50'."""
    return number(value, sig=3, min_decimals=2)


def kwh(wh: float | None) -> str:
    return "-" if wh is None else number(wh / 1000, sig=3, min_decimals=3)


# --- times -----------------------------------------------------------------------------------

_zone: tzinfo | None = None


def set_zone(name: str | None) -> None:
    """The zone times are shown and read in (the `--tz` flag); None: $SUANLI_TZ or CST."""
    global _zone
    _zone = zone_of(name) if name else None


def display_zone() -> tzinfo:
    global _zone
    if _zone is None:
        env = os.environ.get("SUANLI_TZ", "").strip()
        _zone = zone_of(env) if env else CST
    return _zone


def _label(t: datetime) -> str:
    name = t.tzname() or ""
    if name and not name.startswith(("+", "-", "UTC+", "UTC-")):
        return name  # CST, UTC, CET, ...
    z = t.strftime("%z")
    return f"{z[:3]}:{z[3:5]}"


def when(value: str | datetime | None, *, seconds: bool = True) -> str:
    """An API time (UTC ISO) shown in the display zone with its zone: '2026-12-05 03:10:21 CST'."""
    if not value:
        return "-"
    t = datetime.fromisoformat(value) if isinstance(value, str) else value
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    t = t.astimezone(display_zone())
    return t.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + " " + _label(t)


def day(value: str | datetime | None) -> str:
    """The date of an API time in the display zone: '2027-12-05'."""
    if not value:
        return "-"
    t = datetime.fromisoformat(value) if isinstance(value, str) else value
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(display_zone()).strftime("%Y-%m-%d")


def parse_time(text: str, flag: str) -> datetime:
    """A time the user typed: ISO with a zone as given; without one (or a date alone, midnight)
    in the display zone. ValueError naming `flag` otherwise."""
    t = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
            d = date.fromisoformat(t)
            parsed = datetime(d.year, d.month, d.day)
        else:
            parsed = datetime.fromisoformat(t.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise ValueError(f"{flag}: {text!r} is not a date or time (e.g. 2026-12-01, "
                         "2026-12-01T08:00, 2026-12-01T00:00Z)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=display_zone())
    return parsed


def zone_name() -> str:
    """The display zone as shown after times ('CST', 'UTC', '+05:30', 'CET')."""
    return _label(datetime.now(UTC).astimezone(display_zone()))


def grid(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], *,
         right: Collection[str] = (), whole: Collection[str] = ()) -> Table:
    """A table with a header: `columns` (those in `right` right-justified: amounts, counts).
    Amounts, counts and the `whole` columns (times) are never wrapped or cut short: a narrow
    terminal squeezes the text columns instead."""
    rows = [list(r) for r in rows]
    t = Table(title=title)
    for i, col in enumerate(columns):
        keep = col in right or col in whole
        width = max([cell_len(col)] + [cell_len(Text.from_markup(r[i]).plain) for r in rows]) \
            if keep else None
        t.add_column(col, justify="right" if col in right else "left", no_wrap=keep,
                     min_width=width)
    for row in rows:
        t.add_row(*row)
    return t
