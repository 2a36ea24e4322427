"""Looking at a sandboxed run from outside: which of its processes still live."""

from __future__ import annotations

import os
from pathlib import Path


def namespace_members(namespace: str) -> list[int]:
    """Live processes in a PID namespace (a sandboxed run's, from its started.json); a zombie
    waiting for the machine's init to reap it runs nothing and does not count."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "pid") != namespace:
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2] != "Z":
            found.append(int(entry.name))
    return found
