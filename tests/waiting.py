"""One way for a test to wait for something a real process does: `eventually()`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T | None], *, timeout: float = 60.0, interval: float = 0.1,
               what: str = "") -> T:
    """Call `check` until it returns something truthy, and return that. An AssertionError from
    `check` counts as "not yet"; after `timeout` seconds the last one (or a plain AssertionError
    naming `what`) is raised. The timeout is a bound on a hang, not a measurement: keep it
    generous, since CI shares two cores with real servers."""
    deadline = time.monotonic() + timeout
    last: AssertionError | None = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = None
        except AssertionError as exc:
            last = exc
        if time.monotonic() >= deadline:
            if last is not None:
                raise last
            raise AssertionError(f"not reached in {timeout:.0f} s: {what or check}")
        time.sleep(interval)
