"""Durations and times for people, shared by the CLI and the portal: 45s, 12m05s, 3h20m, 2d04h;
`2026-12-04 19:05 CST` in the display zone ($SUANLI_TZ, Beijing time by default)."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


DEFAULT_ZONE = "Asia/Shanghai"
CST = timezone(timedelta(hours=8), "CST")
_ZONES: dict[str, tzinfo] = {"cst": CST, "beijing": CST, "asia/shanghai": CST, "prc": CST,
                             "utc": UTC, "z": UTC, "gmt": UTC}
_OFFSET = re.compile(r"(?:utc|gmt)?([+-])(\d{1,2})(?::?(\d{2}))?")


def zone_of(name: str) -> tzinfo:
    """'CST' (Beijing time, UTC+8, the default), 'UTC', '+05:30', or an IANA name
    ('Europe/Berlin'). ValueError otherwise."""
    key = name.strip().lower()
    if key in _ZONES:
        return _ZONES[key]
    m = _OFFSET.fullmatch(key)
    if m:
        sign, hh, mm = m.groups()
        delta = timedelta(hours=int(hh), minutes=int(mm or 0))
        if delta > timedelta(hours=14):
            raise ValueError(f"time zone offset out of range: {name!r}")
        delta = -delta if sign == "-" else delta
        return timezone(delta, f"{sign}{int(hh):02d}:{int(mm or 0):02d}")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use e.g. CST, UTC, +08:00, "
                         "Europe/Berlin)") from None


def display_zone(name: str | None = None) -> tzinfo:
    """The zone times are shown in, to people: `name`, else $SUANLI_TZ, else Beijing time (CST).
    A name that is not a zone is a ValueError naming it."""
    text = (name if name is not None else os.environ.get("SUANLI_TZ", "")).strip() or DEFAULT_ZONE
    try:
        return zone_of(text)
    except ValueError as exc:
        raise ValueError(f"SUANLI_TZ={text!r}: {exc}") from None


def local_time(at: datetime | None, zone: tzinfo, *, seconds: bool = True) -> str:
    """`at` in `zone`, with the zone's name: `2026-12-04 19:05:31 CST`. A naive `at` is UTC (as
    the store keeps them)."""
    if at is None:
        return "-"
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    shown = at.astimezone(zone)
    return shown.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")
