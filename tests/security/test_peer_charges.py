"""A hostile lending platform (issue 18): what a peer says it billed us for a run is copied into
our books only as far as it could be true — never more than the run could have cost there
(its units for its walltime, plus an hour, at the peer's price), never dated before we placed
the run or after now. The books stay balanced, and the run is then the one `peer reconcile`
names."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from suanli.domain.enums import DeviceKind
from suanli.services import jobs as jobsvc
from suanli.services import peer_money
from suanli.services.jobs import JobInput
from suanli.services.ledger import trial_balance
from suanli.store import models as m

from ..conftest import World


def _a_run_at_a_peer(world: World, margin_bp: int) -> m.Run:
    """A real run (on `alpha`), then `alpha` made a peer platform's center lending to us."""
    p = world.p
    job = jobsvc.submit_job(p, world.u1, JobInput(
        name="at-peer", device=DeviceKind.CPU, units=2, walltime_s=600, command=["true"],
        centers=["alpha/cpu"]))
    world.drive(lambda: world.job(job.id).state == "COMPLETED")
    (run,) = world.runs(job.id)
    with p.db.session() as s:
        s.execute(update(m.Center).where(m.Center.id == run.center_id).values(
            connector="suanli", connector_config={"url": "http://127.0.0.1:1", "token": "x"}))
        s.add(m.Peer(name="alpha", direction="lends", center_id=run.center_id,
                     margin_bp=margin_bp, created_at=p.clock.now()))
    return run


def test_a_peer_cannot_bill_more_than_the_run_could_cost(world: World) -> None:
    run = _a_run_at_a_peer(world, margin_bp=1000)  # our price 100 = the peer's 91 + 10 %
    p = world.p
    now = p.clock.now()
    most = -(-2 * (600 + peer_money.CHARGE_SLACK_S) * 91 // 3600)
    assert peer_money._record(p, run.id, run.run_key, run.center_id, {
        "remote_job_id": 7, "amount_fen": 10**12, "unit_seconds": 10**9,
        "started_at": now - timedelta(days=400), "ended_at": now + timedelta(days=400)}) == 1
    with p.db.session() as s:
        charge = s.scalar(select(m.PeerCharge).where(m.PeerCharge.run_id == run.id))
        billed = s.scalar(select(m.UsageRecord.amount_fen).where(m.UsageRecord.run_id == run.id))
    assert charge is not None
    assert charge.amount_fen == most  # not the trillion it asked
    assert charge.unit_seconds == 2 * (600 + peer_money.CHARGE_SLACK_S)
    assert run.created_at <= charge.started_at <= charge.ended_at <= p.clock.now()
    assert charge.month == peer_money.month_of(charge.ended_at)
    # the difference from what we billed our tenant is our (here: negative) margin
    accounts = {a["account"]: a["balance_fen"] for a in trial_balance(p, world.admin)["accounts"]}
    assert accounts["platform:peer_margin"] == -(billed or 0) + most
    assert trial_balance(p, world.admin)["total_fen"] == 0
    # copied once: asking again records nothing more
    assert peer_money._record(p, run.id, run.run_key, run.center_id, {
        "remote_job_id": 7, "amount_fen": 1, "unit_seconds": 1, "started_at": now,
        "ended_at": now}) == 0


def test_a_fair_charge_is_kept_as_the_peer_metered_it(world: World) -> None:
    run = _a_run_at_a_peer(world, margin_bp=0)
    p = world.p
    now = p.clock.now()
    peer_money._record(p, run.id, run.run_key, run.center_id, {
        "remote_job_id": 8, "amount_fen": 3, "unit_seconds": 100,
        "started_at": run.created_at, "ended_at": now})
    with p.db.session() as s:
        charge = s.scalar(select(m.PeerCharge).where(m.PeerCharge.run_id == run.id))
    assert charge is not None and (charge.amount_fen, charge.unit_seconds) == (3, 100)
