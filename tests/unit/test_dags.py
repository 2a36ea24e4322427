"""DAG jobs with real processes: stages in dependency order on their own pools; a failed stage
fails the DAG; bad graphs are refused with the reason (issue 5)."""

from __future__ import annotations

import pytest

from suanli.domain.enums import DeviceKind, Policy
from suanli.domain.errors import Forbidden, Infeasible, InvalidInput, NotFound
from suanli.services import dags as dagsvc
from suanli.services.dags import StageInput
from suanli.services.jobs import JobInput

from ..conftest import World


def stage(name: str, cmd: str, *, deps: list[str] | None = None, device: DeviceKind = DeviceKind.CPU,
          units: int = 1, **kw: object) -> StageInput:
    job = JobInput(name=name, command=["sh", "-c", cmd], device=device, units=units, walltime_s=60,
                   policy=Policy.FASTEST, **kw)  # type: ignore[arg-type]
    return StageInput(name, job, deps or [])


def view(world: World, dag_id: int) -> dict:  # type: ignore[type-arg]
    return dagsvc.dag_view(world.p, world.u1, dag_id)


def test_stages_run_in_dependency_order_each_on_its_own_pool(world: World) -> None:
    dag = dagsvc.submit_dag(world.p, world.u1, "pipeline", [
        stage("evaluate", "sleep 0.5", deps=["train"]),
        stage("preprocess", "sleep 0.5"),
        stage("train", "sleep 0.5", deps=["preprocess"], device=DeviceKind.NPU, units=2),
    ])
    v = view(world, dag.id)
    # stored in dependency order; only the root is queued at first
    assert [s["name"] for s in v["stages"]] == ["preprocess", "train", "evaluate"]
    assert [s["state"] for s in v["stages"]] == ["QUEUED", "WAITING", "WAITING"]
    world.drive(lambda: view(world, dag.id)["state"] != "RUNNING", timeout=40)
    v = view(world, dag.id)
    assert v["state"] == "COMPLETED" and all(s["state"] == "COMPLETED" for s in v["stages"])

    # when each ran, as the supervisors recorded it
    (pre,), (train,), (ev,) = (world.runs(int(st["job_id"])) for st in v["stages"])
    assert pre.ended_at is not None and train.started_at is not None
    assert train.started_at >= pre.ended_at
    assert train.ended_at is not None and ev.started_at is not None
    assert ev.started_at >= train.ended_at
    centers = {s["name"]: s["center"] for s in v["stages"]}
    assert centers["train"] == "alpha"  # the only NPU pool
    jobs = {s["name"]: world.job(s["job_id"]) for s in v["stages"]}
    assert jobs["train"].dag_id == dag.id and jobs["train"].dag_stage == "train"
    assert jobs["train"].device_kind == "npu" and jobs["evaluate"].device_kind == "cpu"


def test_a_failed_stage_fails_the_dag_and_cancels_what_follows(world: World) -> None:
    dag = dagsvc.submit_dag(world.p, world.u1, "broken", [
        stage("prep", "exit 3"),
        stage("side", "sleep 0.2"),
        stage("train", "true", deps=["prep"]),
        stage("report", "true", deps=["train", "side"]),
    ])
    world.drive(lambda: view(world, dag.id)["state"] != "RUNNING", timeout=30)
    v = view(world, dag.id)
    states = {s["name"]: s["state"] for s in v["stages"]}
    assert v["state"] == "FAILED" and "stage prep failed" in v["reason"]
    assert states["prep"] == "FAILED" and states["train"] == "CANCELLED" and states["report"] == "CANCELLED"
    assert {s["name"]: s["job_id"] for s in v["stages"]}["train"] is None  # never queued
    assert world.job(next(s["job_id"] for s in v["stages"] if s["name"] == "prep")).exit_code == 3


def test_cancelling_a_dag_cancels_its_running_stage(world: World) -> None:
    dag = dagsvc.submit_dag(world.p, world.u1, "long",
                            [stage("a", "sleep 30"), stage("b", "true", deps=["a"])])
    world.drive(lambda: view(world, dag.id)["stages"][0]["state"] == "RUNNING")
    dagsvc.cancel_dag(world.p, world.u1, dag.id)
    world.drive(lambda: view(world, dag.id)["stages"][0]["state"] == "CANCELLED")
    v = view(world, dag.id)
    assert v["state"] == "CANCELLED" and v["stages"][1]["state"] == "CANCELLED"
    with pytest.raises(NotFound):
        dagsvc.dag_view(world.p, world.u2, dag.id)  # another tenant does not see it


@pytest.mark.parametrize(("stages", "message"), [
    ([stage("a", "true", deps=["b"]), stage("b", "true", deps=["a"])], "form a cycle"),
    ([stage("a", "true", deps=["a"])], "depends on itself"),
    ([stage("a", "true", deps=["zzz"])], "'zzz', which is not a stage"),
    ([stage("a", "true"), stage("a", "true")], "two stages are named 'a'"),
    ([stage("bad name!", "true")], "a stage name is"),
    ([], "a DAG has 1-100 stages"),
])
def test_bad_graphs_are_refused(world: World, stages: list[StageInput], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        dagsvc.submit_dag(world.p, world.u1, "bad", stages)


def test_a_stage_no_pool_can_run_is_named(world: World) -> None:
    with pytest.raises(Infeasible, match="stage 'huge'") as err:
        dagsvc.submit_dag(world.p, world.u1, "x", [stage("ok", "true"),
                                                   stage("huge", "true", deps=["ok"], units=999)])
    assert err.value.field == "stages[1].resources"
    with pytest.raises(Forbidden):
        dagsvc.submit_dag(world.p, world.admin, "x", [stage("ok", "true")])
