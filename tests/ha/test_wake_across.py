"""A submission through an API replica reaches an engine candidate in another process (another
machine, for all it knows) at once: the replica NOTIFYs suanli_wake and the candidate LISTENs,
instead of the candidate finding the job at its next interval."""

from __future__ import annotations

import time

from ..waiting import eventually
from .conftest import Cluster


def test_a_submission_wakes_an_engine_of_its_own_process_at_once(cluster: Cluster) -> None:
    c = cluster
    c.start_engine(SUANLI_SCHEDULER_INTERVAL="60")  # without a wake-up: placed within a minute
    c.leading_engine()
    time.sleep(2)  # past its first passes: it now waits its interval (or a wake-up)
    with c.client() as api:
        submitted = time.monotonic()
        ids = c.submit(api, 1, ["sh", "-c", "echo woken"], "woken")
        # Placed at once (its end is noticed at a later pass: not what this is about).
        eventually(lambda: c.states(ids)[ids[0]] != "QUEUED", timeout=30, interval=0.1,
                   what="the job placed")
    took = time.monotonic() - submitted
    assert took < 10, f"the engine found the job after {took:.1f} s: no wake-up reached it"
