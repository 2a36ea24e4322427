"""Golden figures: the twin's results on the real traces must not drift (issue 5).

If a change to the scheduler or the twin moves one of these, the change is a behaviour change:
explain it in the commit and update the figures here and in the README together.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from suanli.sim.single import run_trace
from suanli.sim.workload import load

TRACES = Path(__file__).resolve().parents[2] / "data" / "traces"
KEYS = ("jobs", "skipped", "mean_wait_s", "mean_bsld", "utilization", "makespan_s")

GOLDEN = {
    ("KTH-SP2-1996-2.1-cln.swf.gz", "fcfs"): (28467, 9, 389861.059, 7510.7852, 0.6988, 28779758.0),
    ("KTH-SP2-1996-2.1-cln.swf.gz", "easy"): (28467, 9, 6847.183, 91.325, 0.6992, 28763776.0),
    ("HPC2N-2002-2.2-cln.swf.gz", "fcfs"): (202871, 0, 16189.149, 207.8084, 0.5955, 109256855.0),
    ("HPC2N-2002-2.2-cln.swf.gz", "easy"): (202871, 0, 10930.576, 88.925, 0.5955, 109256855.0),
}


@pytest.mark.parametrize(("trace", "scheduler"), list(GOLDEN))
def test_summary_figures_are_golden(trace: str, scheduler: str) -> None:
    s = run_trace(load(TRACES / trace), scheduler=scheduler).summary()
    assert tuple(s[k] for k in KEYS) == GOLDEN[trace, scheduler]
