"""Process identity helpers: a PID plus its start time names a process even after PID reuse."""

from __future__ import annotations

import os


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        if fields[0] == "Z":  # a zombie has finished; only its exit status is left
            return None
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def is_alive(pid: int, ticks: int | None) -> bool:
    """True when `pid` runs and is the same process that was started (same start time)."""
    if pid <= 0:
        return False
    current = start_ticks(pid)
    if current is None:
        return False
    return ticks is None or current == ticks


def signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
