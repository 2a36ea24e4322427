"""Byte sizes for people: `12.3 MiB` out, `10G` / `500MiB` / `1.5GB` / `4096` in."""

from __future__ import annotations

import re

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def human_size(n: int) -> str:
    """1536 -> '1.5 KiB'; bytes below 1 KiB as a plain count ('512 B')."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def parse_size(text: str) -> int:
    """'4096', '10G', '10GiB', '1.5gb', '500M' -> bytes (binary units: G is 2**30). ValueError
    with the text when it is not a size."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 4096, 500M, 10G, 1.5TiB)")
    number, prefix, _ = match.groups()
    size = float(number) * 1024 ** _POWER[prefix.lower()]
    if size != int(size) and not prefix:
        raise ValueError(f"not a size: {text!r} (a whole number of bytes)")
    return int(size)


def plural(n: int, noun: str) -> str:
    """'1 file', '2 files', '10,000 files'."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")
