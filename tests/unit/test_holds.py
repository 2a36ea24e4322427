"""A job's hold covers what it can cost, its walltime's grace included, and billing never charges a
job more than was held for it: a tenant cannot spend beyond its money and credit by running past
its walltime (the local executor lets a job run `term_grace_s` after SIGTERM), nor by attempts."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from suanli.domain.enums import CenterKind, DeviceKind
from suanli.domain.errors import PaymentRequired
from suanli.services import jobs as jobsvc
from suanli.services.centers import CenterInput, create_center
from suanli.services.jobs import JobInput
from suanli.services.ledger import record_deposit, set_credit_limit, tenant_account

from ..conftest import World, cpu_pool
from ..money import books

PRICE = 60_000  # fen per unit-hour: 1 unit for one second costs 16.7 fen
MODEL = "Kunpeng 920"  # only the grace center's pool has it
# A job that ignores SIGTERM: it runs its walltime and the whole grace, until SIGKILL.
STUBBORN = ["sh", "-c", "trap '' TERM; sleep 30"]


@pytest.fixture
def graced(world: World) -> World:
    """A local center whose executor gives jobs 1 s after SIGTERM (`term_grace_s`)."""
    create_center(world.p, None, CenterInput(
        slug="grace", name_zh="宽限", name_en="Grace", kind=CenterKind.CLOUD, district="市南区",
        pue=1.0, pools=[cpu_pool("cpu", device_model=MODEL, price_fen_per_unit_hour=PRICE)],
        connector_config={"term_grace_s": 1}))
    return world


def stubborn(walltime_s: int) -> JobInput:
    return JobInput(name="past-walltime", command=STUBBORN, device=DeviceKind.CPU, model=MODEL,
                    units=1, walltime_s=walltime_s)


def test_a_tenant_with_67_fen_runs_past_its_walltime_and_owes_nothing(graced: World) -> None:
    w = graced
    set_credit_limit(w.p, w.admin, w.t1.id, 0)
    record_deposit(w.p, w.admin, w.t1.id, 67, "bank-67")
    assert tenant_account(w.p, w.u1, w.t1.id)["spendable_fen"] == 67
    # The tenant asks for the longest walltime its money is let to cover. 4 s cost 66.7 fen, but
    # with the grace (1 s + 1 s) 100 fen: refused; 2 s and the grace cost 66.7 fen: admitted.
    job = None
    refused = []
    for walltime in (4, 3, 2):
        try:
            job = jobsvc.submit_job(w.p, w.u1, stubborn(walltime))
            break
        except PaymentRequired as exc:
            refused.append((walltime, exc.detail["need_fen"]))  # type: ignore[index]
    assert job is not None
    w.drive(lambda: w.job(job.id).state == "TIMEOUT", timeout=60)
    (run,) = w.runs(job.id)
    assert run.started_at is not None and run.ended_at is not None
    assert (run.ended_at - run.started_at).total_seconds() > job.walltime_s  # it used the grace
    (use,) = w.usage(job.id)
    assert 0 < use.amount_fen <= 67
    acct = tenant_account(w.p, w.u1, w.t1.id)
    assert acct["owed_fen"] == 0
    assert acct["prepaid_fen"] == 67 - use.amount_fen and acct["held_fen"] == 0
    books(w)  # the ledger still balances
    assert refused == [(4, 100), (3, 84)]
    assert (job.walltime_s, job.hold_fen) == (2, 67)


def test_a_job_is_never_billed_more_than_was_held_for_it_across_attempts(graced: World) -> None:
    w = graced
    job = jobsvc.submit_job(w.p, w.u1, stubborn(3))
    held = job.hold_fen
    # The first attempt is lost two seconds in (its machine died): billed for what it ran, and
    # the job is re-queued; the second runs to its walltime and past it, to the kill.
    w.drive(lambda: w.job(job.id).state == "RUNNING")
    first = w.runs(job.id)[0]
    run_dir = next((w.p.home / "runs").rglob(first.run_key))
    w.drive(lambda: (run_dir / "started.json").exists())
    time.sleep(2)
    shim = json.loads((run_dir / "shim.json").read_text())
    started = json.loads((run_dir / "started.json").read_text())
    # A lost run is billed to its supervisor's last heartbeat (every 5 s): let it have just beaten.
    os.utime(run_dir / "started.json")
    os.kill(shim["pid"], signal.SIGKILL)
    os.killpg(started["pgid"], signal.SIGKILL)
    w.drive(lambda: w.job(job.id).state == "TIMEOUT", timeout=60)
    assert [r.state for r in w.runs(job.id)] == ["lost", "timeout"]
    bills = [u.amount_fen for u in w.usage(job.id)]
    assert len(bills) == 2 and bills[0] > 0
    assert sum(bills) == held  # the second attempt is billed what the first left of the hold
    assert tenant_account(w.p, w.u1, w.t1.id)["held_fen"] == 0
    books(w)
    assert held == 84  # 3 s and the grace (1 s + 1 s) at 16.7 fen a second


def test_each_backend_says_how_long_past_its_walltime_a_run_can_go(tmp_path: Path) -> None:
    from suanli.connectors import DEFAULT_KILL_GRACE_S, overrun_s
    from suanli.connectors.local import LocalConnector
    from suanli.connectors.ray import RayConnector
    from suanli.connectors.slurm import SlurmConnector

    assert overrun_s(LocalConnector(tmp_path), 60) == 11  # term_grace_s 10 s, and 1 s to notice
    assert overrun_s(LocalConnector(tmp_path, term_grace_s=2.5), 60) == 4
    assert overrun_s(RayConnector({"url": "http://ray:8265"}, tmp_path), 60) == 10  # timeout -k 10
    slurm = SlurmConnector({"socket": str(tmp_path / "s.sock"), "kill_wait_s": 5}, tmp_path)
    assert overrun_s(slurm, 60) == 5  # KillWait
    assert overrun_s(slurm, 61) == 59 + 5  # Slurm's time limit is 2 minutes
    assert overrun_s(object(), 60) == DEFAULT_KILL_GRACE_S
