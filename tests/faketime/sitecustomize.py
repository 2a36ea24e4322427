"""Loaded through PYTHONPATH only when the suite runs under libfaketime (`make test-dates`).

Debian's libfaketime 0.9.10 fakes the wall clock well, but its wrapper of clock_nanosleep
(absolute deadlines on CLOCK_MONOTONIC, which `time.sleep` uses) fails with EINVAL when the
monotonic clock is left real (FAKETIME_DONT_FAKE_MONOTONIC=1), and faking the monotonic clock
instead hangs every timed lock wait (sem_clockwait is not wrapped). So the monotonic clock stays
real and `time.sleep` waits with select(), whose timeout is relative."""

from __future__ import annotations

import os
import select
import time

if os.environ.get("FAKETIME"):

    def _sleep(seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        select.select([], [], [], seconds)

    time.sleep = _sleep
