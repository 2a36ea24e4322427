"""The issue's proof under faults: 3 API replicas and 2 engine candidates as separate processes on
one PostgreSQL; 300 jobs submitted round-robin across the replicas to the demo's local centers and
a real Slurm; the leader killed with `kill -9` mid-stream, twice (each time a new candidate is
started, so two are always there). Every job ends exactly once: one run each, Slurm's own
accounting (its job completion log) shows exactly one allocation per suanli run that went there,
each run is metered and billed once, the ledger's trial balance is 0 and `suanli audit verify`
passes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from suanli.connectors.slurm import JOB_PREFIX
from suanli.store import models as m

from ..integration.conftest import BIN
from ..waiting import eventually
from .conftest import Cluster

pytestmark = pytest.mark.integration

JOBS = 300
SLURM_EVERY = 5  # every fifth job asks for the fake GPUs only the Slurm center has
KILL_AT = (90, 190)
# 3,600 yuan a GPU-hour: a one-second job bills 100 fen, so every Slurm run has a bill to count
PRICE_FEN = 360_000


def cli(c: Cluster, who: str, *args: str) -> subprocess.CompletedProcess[str]:
    token = json.loads((c.home / "demo-credentials.json").read_text())[who]
    return subprocess.run([str(BIN / "suanli"), *args], capture_output=True, text=True,
                          env={**c.env(), "SUANLI_URL": c.base, "SUANLI_TOKEN": token},
                          timeout=120)


def slurm_allocations(state_dir: str, keys: set[str]) -> Counter[str]:
    """Slurm's job completion log (`JobCompType=jobcomp/filetxt`): one line per allocation that
    ended, named `suanli-<run key>`; counted for the run keys asked about."""
    log = Path(state_dir) / "jobcomp.txt"
    text = log.read_text() if log.exists() else ""
    names = re.findall(r"\bName=(\S+)", text)
    return Counter(n[len(JOB_PREFIX):] for n in names
                   if n.startswith(JOB_PREFIX) and n[len(JOB_PREFIX):] in keys)


def test_300_jobs_across_3_replicas_survive_two_leader_kills(
        cluster: Cluster, slurm: dict[str, str]) -> None:
    started = time.monotonic()
    c = cluster
    bases = [c.base, c.start_replica(), c.start_replica()]
    out_dir = Path(slurm["SLURM_STATE_DIR"]) / "jobs" / "chaos"
    r = cli(c, "platform_admin", "center", "add", "--connector", "slurm",
            "--config", f"socket={slurm['SLURMRESTD_SOCKET']}", "--config", f"output_dir={out_dir}",
            "--slug", "hpc-chaos", "--name-zh", "混沌超算", "--name-en", "Chaos HPC",
            "--district", "市南区", "--price-fen", str(PRICE_FEN), "-o", "json")
    assert r.returncode == 0, r.stderr
    slurm_center = json.loads(r.stdout)["id"]
    leader, _, epoch = c.start_two_engines()
    token = json.loads((c.home / "demo-credentials.json").read_text())["tenant_a"]
    clients = [httpx.Client(base_url=b, timeout=30, headers={"Authorization": f"Bearer {token}"})
               for b in bases]
    accepted: list[int] = []
    kills: list[tuple[int, int]] = []  # (pid killed, its epoch)
    try:
        for i in range(JOBS):
            if i in KILL_AT:
                # the leader dies mid-stream; a fresh candidate keeps two of them there
                leader.send_signal(signal.SIGKILL)
                leader.wait()
                kills.append((leader.pid, epoch))
                c.start_engine()
            slurm_job = i % SLURM_EVERY == 0
            res = ({"device": "gpu", "model": "fake", "units": 1} if slurm_job
                   else {"device": "cpu", "units": 1})
            body: dict[str, Any] = {
                "name": f"chaos-{i}", "command": ["sleep", "1"] if slurm_job else ["true"],
                "walltime_s": 60 if slurm_job else 300, "resources": res}
            if slurm_job:
                body["district"] = "市南区"
            resp = clients[i % 3].post("/api/v1/jobs", json=body)
            assert resp.status_code == 201, (i, resp.status_code, resp.text)
            accepted.append(int(resp.json()["id"]))
            if i in KILL_AT:
                # the next kill must hit the new leader while it places: wait until it took
                # over and committed a placement of its own
                leader, epoch = c.leading_engine(after_epoch=epoch)
                eventually(lambda e=epoch: any(r.epoch == e for r in c.runs()), timeout=60,
                           interval=0.1, what=f"a placement by epoch {epoch}")
    finally:
        for cl in clients:
            cl.close()
    assert len(accepted) == JOBS and len(kills) == 2
    assert all(pid != leader.pid for pid, _ in kills)

    def all_ended() -> bool:
        states = c.states(accepted)
        bad = {j: s for j, s in states.items() if s in ("FAILED", "CANCELLED", "TIMEOUT")}
        assert not bad, f"jobs ended badly: {bad}"
        return all(s == "COMPLETED" for s in states.values())

    eventually(all_ended, timeout=420, interval=1, what=f"{JOBS} jobs completed")

    # Exactly once: one run per job, each completed, placed under one of the three epochs.
    runs = [r for r in c.runs() if r.job_id in set(accepted)]
    per_job = Counter(r.job_id for r in runs)
    assert sorted(per_job) == sorted(accepted) and set(per_job.values()) == {1}
    assert all(r.state == "completed" for r in runs), [(r.id, r.state, r.reason) for r in runs]
    epochs = {r.epoch for r in runs}
    assert len(epochs) == 3 and max(epochs) == epoch  # each of the three terms placed work
    on_slurm = [r for r in runs if r.center_id == slurm_center]
    assert len(on_slurm) == JOBS // SLURM_EVERY  # every GPU job went to Slurm, no other did
    # Slurm's own accounting: one allocation per suanli run there, none doubled by a takeover.
    keys = {r.run_key for r in on_slurm}
    allocations = eventually(
        lambda: (a := slurm_allocations(slurm["SLURM_STATE_DIR"], keys)) and
        set(a) == keys and a, timeout=60, interval=1, what="Slurm's completion log")
    assert set(allocations.values()) == {1}, {k: n for k, n in allocations.items() if n != 1}
    # Metered and billed once each.
    run_ids = [r.id for r in runs]
    with c.db.session() as s:
        usage = Counter(s.scalars(select(m.UsageRecord.run_id)
                                  .where(m.UsageRecord.run_id.in_(run_ids))))
        bills = Counter(int(k.rsplit(":", 1)[1]) for k in s.scalars(
            select(m.LedgerTransaction.key).where(m.LedgerTransaction.key.like("bill:run:%"))))
        charged = s.scalar(select(func.count()).select_from(m.LedgerTransaction)
                           .where(m.LedgerTransaction.key.like("bill:run:%")))
        slurm_fen = s.scalar(select(func.sum(m.UsageRecord.amount_fen))
                             .where(m.UsageRecord.run_id.in_([r.id for r in on_slurm])))
    assert set(usage) == set(run_ids) and set(usage.values()) == {1}
    assert set(bills.values()) == {1} and charged == len(bills) and set(bills) <= set(run_ids)
    assert {r.id for r in on_slurm} <= set(bills)  # every Slurm run billed, once
    assert slurm_fen is not None and slurm_fen >= 100 * len(on_slurm)
    # The books: a trial balance of 0, and the audit log's hash chain intact.
    tb = cli(c, "platform_admin", "bill", "trial-balance", "-o", "json")
    assert tb.returncode == 0, tb.stderr
    assert json.loads(tb.stdout)["total_fen"] == 0
    audit = cli(c, "auditor", "audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    # The killed leaders' processes are gone and their terms over; one candidate leads now.
    info = c.leader()
    assert info is not None and info["epoch"] == epoch
    print(f"chaos: {JOBS} jobs, {len(on_slurm)} on Slurm, epochs {sorted(epochs)}, "
          f"{len(bills)} bills, killed {kills}, {time.monotonic() - started:.0f} s")
