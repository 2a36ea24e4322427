"""Health checks, offline marking, failover without double billing, stale attempts cancelled."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import select

from suanli.connectors import Capability, Health, RunRequest, RunStatus, register
from suanli.connectors.local import LocalConnector
from suanli.connectors.local import create as create_local
from suanli.domain.enums import CenterKind, DeviceKind, Policy
from suanli.services import jobs as jobsvc
from suanli.services.centers import CenterInput, create_center
from suanli.services.jobs import JobInput
from suanli.store import models as m

from ..conftest import World, cpu_pool

DOWN: set[str] = set()


class Flaky(LocalConnector):
    """The local executor whose control plane can be switched off; its jobs keep running."""

    name = "flaky"

    def __init__(self, base: LocalConnector, key: str) -> None:
        super().__init__(base.root, term_grace_s=1)
        self.key = key

    def health(self) -> Health:
        return Health(False, "controller unreachable") if self.key in DOWN else super().health()

    def submit(self, req: RunRequest) -> str:
        return super().submit(replace(req, env={**req.env, "ON_FLAKY": "1"}))


def flaky(config: Mapping[str, Any], home: Path) -> Flaky:
    return Flaky(create_local(config, home), str(config["center"]))


def test_center_fails_job_moves_and_stale_attempt_is_cancelled(world: World) -> None:
    register("flaky", flaky)
    p = world.p
    p.settings = replace(p.settings, health_interval_s=0, health_failures=2, failover_grace_s=0.5)
    hpc = create_center(p, None, CenterInput(
        slug="flaky-hpc", name_zh="会掉线", name_en="Flaky", kind=CenterKind.SUPERCOMPUTING,
        connector="flaky", connector_config={"center": "flaky-hpc"},
        pools=[cpu_pool("cpu", price_fen_per_unit_hour=1, tflops_fp32=1.0)]))
    job = jobsvc.submit_job(p, world.u1, JobInput(
        name="moves", device=DeviceKind.CPU, walltime_s=600, policy=Policy.CHEAPEST,
        command=["sh", "-c", 'if [ -n "$ON_FLAKY" ]; then sleep 300; fi; echo done']))
    world.drive(lambda: world.job(job.id).state == "RUNNING")
    (first,) = world.runs(job.id)
    assert first.center_id == hpc.id

    DOWN.add("flaky-hpc")
    world.drive(lambda: world.job(job.id).state == "COMPLETED", timeout=30)
    with p.db.session() as s:
        center = s.get(m.Center, hpc.id)
        assert center is not None
        assert center.status == "offline" and center.status_source == "health"
        assert "controller unreachable" in center.status_reason
    runs = world.runs(job.id)
    assert [r.state for r in runs] == ["lost", "completed"]
    assert runs[0].stale and runs[1].center_id != hpc.id
    assert runs[0].ended_at is not None and runs[1].started_at is not None
    assert runs[0].ended_at <= runs[1].started_at  # no overlap is billed
    usage = world.usage(job.id)
    assert sorted(u.run_id for u in usage) == [runs[0].id, runs[1].id]  # each run metered once
    # The old attempt still runs on the unreachable center...
    conn = p.connector_for(center)
    assert runs[0].external_id is not None
    assert conn.status(runs[0].external_id).state.value == "running"
    # ...until the center answers again: back online, the stale attempt is cancelled.
    DOWN.discard("flaky-hpc")
    world.drive(lambda: not world.runs(job.id)[0].stale, timeout=30)
    world.drive(lambda: conn.status(runs[0].external_id or "").state.is_terminal, timeout=15)
    assert conn.status(runs[0].external_id).state.value == "cancelled"
    with p.db.session() as s:
        center = s.get(m.Center, hpc.id)
        assert center is not None and center.status == "online"
        reasons = [e.reason for e in s.scalars(select(m.JobEvent)
                                               .where(m.JobEvent.job_id == job.id))]
    assert any("lost" in r and "offline" in r for r in reasons)
    assert any("stale attempt" in r and "cancelled" in r for r in reasons)
    assert len(world.usage(job.id)) == 2  # cancelling the stale attempt bills nothing more


def test_requeue_false_fails_and_operator_offline_is_sticky(world: World) -> None:
    register("flaky", flaky)
    p = world.p
    p.settings = replace(p.settings, health_interval_s=0, health_failures=1, failover_grace_s=0)
    hpc = create_center(p, None, CenterInput(
        slug="flaky-2", name_zh="二", name_en="Two", kind=CenterKind.CLOUD, connector="flaky",
        connector_config={"center": "flaky-2"},
        pools=[cpu_pool("cpu", price_fen_per_unit_hour=1, tflops_fp32=1.0)]))
    job = jobsvc.submit_job(p, world.u1, JobInput(
        name="stays", device=DeviceKind.CPU, walltime_s=600, policy=Policy.CHEAPEST,
        requeue=False, command=["sleep", "300"]))
    world.drive(lambda: world.job(job.id).state == "RUNNING")
    DOWN.add("flaky-2")
    world.drive(lambda: world.job(job.id).state == "FAILED", timeout=20)
    assert "requeue is off" in world.job(job.id).state_reason
    DOWN.discard("flaky-2")
    from suanli.domain.enums import CenterStatus
    from suanli.services.centers import set_center_status

    set_center_status(p, world.admin, hpc.id, CenterStatus.OFFLINE, "maintenance")
    world.engine.tick()
    world.engine.tick()
    with p.db.session() as s:
        c = s.get(m.Center, hpc.id)
        assert c is not None and c.status == "offline" and c.status_source == "operator"


class Batching(LocalConnector):
    """The local executor answering for many runs in one call, and counting the calls."""

    name = "batching"
    capabilities = LocalConnector.capabilities | {Capability.BATCH_STATUS}
    calls: ClassVar[list[tuple[str, int]]] = []

    def __init__(self, base: LocalConnector) -> None:
        super().__init__(base.root, term_grace_s=1)

    def status(self, external_id: str) -> RunStatus:
        Batching.calls.append(("status", 1))
        return super().status(external_id)

    def statuses(self, external_ids: list[str]) -> dict[str, RunStatus]:
        Batching.calls.append(("statuses", len(external_ids)))
        return {e: super(Batching, self).status(e) for e in external_ids[1:]}  # forgets one


def test_engine_asks_a_batching_center_once_per_pass(world: World) -> None:
    register("batching", lambda config, home: Batching(create_local(config, home)))
    p = world.p
    create_center(p, None, CenterInput(
        slug="batch-hpc", name_zh="批量", name_en="Batch", kind=CenterKind.SUPERCOMPUTING,
        connector="batching", pools=[cpu_pool("cpu", price_fen_per_unit_hour=0, tflops_fp32=9.0,
                                              units_per_node=8)]))
    ids = [jobsvc.submit_job(p, world.u1, JobInput(
        name=f"b{i}", device=DeviceKind.CPU, walltime_s=600, policy=Policy.CHEAPEST,
        command=["sh", "-c", f"sleep 1; exit {i}"])).id for i in range(3)]
    world.drive(lambda: all(world.job(i).state in ("COMPLETED", "FAILED") for i in ids),
                timeout=30)
    assert [world.job(i).exit_code for i in ids] == [0, 1, 2]
    assert all(world.runs(i)[0].center_id == world.runs(ids[0])[0].center_id for i in ids)
    batches = [n for kind, n in Batching.calls if kind == "statuses"]
    singles = sum(1 for kind, _ in Batching.calls if kind == "status")
    assert batches and max(batches) == 3  # the three runs in one call
    # The run the batch forgot is asked on its own (its exit code above came that way): one
    # single call per batch, plus at most one per run in a pass where it was the only one left.
    assert len(batches) <= singles <= len(batches) + len(ids)
