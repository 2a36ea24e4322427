"""Durations and times for people, shared by the CLI and the portal: 45s, 12m05s, 3h20m, 2d04h;
`2026-12-04 19:05 CST` in the display zone ($SUANLI_TZ, Beijing time by default)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, tzinfo
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


def display_zone(name: str | None = None) -> tzinfo:
    """The zone times are shown in, to people: `name`, else $SUANLI_TZ, else Beijing time (CST).
    A name that is not an IANA zone (e.g. `Asia/Shanghai`, `UTC`) is a ValueError naming it."""
    text = (name if name is not None else os.environ.get("SUANLI_TZ", "")).strip() or DEFAULT_ZONE
    if text.upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"SUANLI_TZ={text!r} is not a time zone (e.g. Asia/Shanghai or UTC)") from exc


def local_time(at: datetime | None, zone: tzinfo, *, seconds: bool = True) -> str:
    """`at` in `zone`, with the zone's name: `2026-12-04 19:05:31 CST`. A naive `at` is UTC (as
    the store keeps them)."""
    if at is None:
        return "-"
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    shown = at.astimezone(zone)
    return shown.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")
