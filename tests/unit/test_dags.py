"""DAG jobs with real processes: stages in dependency order on their own pools; a failed stage
fails the DAG; bad graphs are refused with the reason (issue 5)."""

from __future__ import annotations

import re

import pytest

from suanli.domain.enums import DeviceKind, Policy
from suanli.domain.errors import Forbidden, Infeasible, InvalidInput, NotFound
from suanli.services import dags as dagsvc
from suanli.services import jobs as jobsvc
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


# -- array stages and stage outputs (issue 16) ----------------------------------------------------
def outputs_of(world: World, job_id: int) -> str | None:
    runs = world.runs(job_id)
    return runs[-1].outputs_sha256 if runs else None


def test_an_array_stage_completes_when_every_task_did_and_passes_each_tasks_outputs(
        world: World) -> None:
    """`array: 0-3%2`: four tasks, at most two at once; the next stage is queued only when all
    four completed, and reads each task's outputs at DIR/<index>."""
    dag = dagsvc.submit_dag(world.p, world.u1, "sweep", [
        stage("prep", "mkdir -p out && echo base > out/base.txt", outputs=["out/**"]),
        StageInput("fan", JobInput(
            name="fan", device=DeviceKind.CPU, walltime_s=60, policy=Policy.FASTEST,
            command=["sh", "-c", "mkdir -p out && echo $(cat in/out/base.txt)-$SUANLI_ARRAY_INDEX"
                     " > out/part.txt && sleep 0.3"],
            inputs=[{"stage": "prep", "path": "in"}], outputs=["out/**"]),
            ["prep"], array="0-3%2"),
        stage("join", "cat parts/*/out/part.txt | tr '\\n' ' ' && ls parts",
              deps=["fan"], inputs=[{"stage": "fan", "path": "parts"}], outputs=["x"]),
    ])
    seen_running: set[int] = set()

    def progress() -> bool:
        v = view(world, dag.id)
        fan = v["stages"][1]
        if fan["jobs"]:
            running = sum(world.job(j).state in ("PLACED", "RUNNING") for j in fan["jobs"])
            seen_running.add(running)
            if fan["state"] != "COMPLETED":  # the next stage waits for every task
                assert v["stages"][2]["state"] == "WAITING"
        return v["state"] != "RUNNING"

    world.drive(progress, timeout=60)
    v = view(world, dag.id)
    assert v["state"] == "COMPLETED", v["reason"]
    fan = v["stages"][1]
    assert fan["array"] == "0-3%2" and fan["tasks"] == 4 and fan["done"] == 4
    assert fan["job_id"] is None and fan["array_id"] is not None and max(seen_running) <= 2
    tasks = [world.job(j) for j in fan["jobs"]]
    assert [t.array_index for t in tasks] == [0, 1, 2, 3]
    assert all(t.dag_id == dag.id and t.dag_stage == "fan" for t in tasks)
    join = world.job(v["stages"][2]["job_id"])
    # each task's outputs, at parts/<index>, in index order
    assert join.inputs == [{"artifact": outputs_of(world, t.id), "path": f"parts/{t.array_index}"}
                           for t in tasks]
    assert tasks[0].inputs == [{"artifact": outputs_of(world, int(v["stages"][0]["job_id"])),
                                "path": "in"}]
    text = jobsvc.job_logs(world.p, world.u1, join.id).data
    assert text.startswith("base-0 base-1 base-2 base-3 ") and "0\n1\n2\n3" in text


def test_a_failed_array_task_fails_the_stage_and_the_dag(world: World) -> None:
    dag = dagsvc.submit_dag(world.p, world.u1, "sweep", [
        StageInput("fan", JobInput(
            name="fan", device=DeviceKind.CPU, walltime_s=60, policy=Policy.FASTEST,
            command=["sh", "-c", "[ $SUANLI_ARRAY_INDEX != 1 ] && sleep 0.2"]), [],
            array="0-5%1"),
        stage("after", "true", deps=["fan"]),
    ])
    world.drive(lambda: view(world, dag.id)["state"] != "RUNNING", timeout=40)
    v = view(world, dag.id)
    assert v["state"] == "FAILED" and "stage fan failed (task 1, job" in v["reason"], v["reason"]
    assert v["stages"][0]["state"] == "FAILED" and v["stages"][1]["state"] == "CANCELLED"
    world.drive(lambda: all(world.job(j).state in ("COMPLETED", "FAILED", "CANCELLED")
                            for j in v["stages"][0]["jobs"]))
    states = [world.job(j).state for j in v["stages"][0]["jobs"]]
    # the task before it completed; the tasks not placed yet were cancelled, not run
    assert states[:2] == ["COMPLETED", "FAILED"] and set(states[2:]) == {"CANCELLED"}, states
    assert all(not world.runs(j) for j in v["stages"][0]["jobs"][2:])


def test_a_stage_whose_input_stage_kept_nothing_is_not_run(world: World) -> None:
    """The stage it reads completed but nothing matched its outputs: the DAG fails with the
    reason, and the stage never runs without its data."""
    dag = dagsvc.submit_dag(world.p, world.u1, "empty", [
        stage("prep", "true", outputs=["out/**"]),
        stage("train", "true", deps=["prep"], inputs=[{"stage": "prep", "path": "data"}]),
    ])
    world.drive(lambda: view(world, dag.id)["state"] != "RUNNING", timeout=30)
    v = view(world, dag.id)
    assert v["state"] == "FAILED" and v["stages"][0]["state"] == "COMPLETED"
    assert v["stages"][1]["state"] == "CANCELLED" and v["stages"][1]["job_id"] is None
    assert "stage train cannot be queued: inputs[0]: stage prep's job" in v["reason"]
    assert v["reason"].endswith("completed without outputs: no file matched out/**"), v["reason"]


@pytest.mark.parametrize(("stages", "field", "message"), [
    ([stage("a", "true", outputs=["o"]),
      stage("b", "true", inputs=[{"stage": "a", "path": "d"}])],
     "stages[1].inputs[0].stage", "stage 'b': inputs[0].stage: 'a' is not a stage this one "
                                  "depends on"),
    ([stage("a", "true", outputs=["o"]),
      stage("b", "true", deps=["a"], inputs=[{"stage": "nope", "path": "d"}])],
     "stages[1].inputs[0].stage", "'nope' is not a stage this one depends on, directly or "
                                  "through others (those: a)"),
    ([stage("a", "true"), stage("b", "true", deps=["a"], inputs=[{"stage": "a", "path": "d"}])],
     "stages[1].inputs[0].stage", "stage 'a' keeps no outputs"),
    ([stage("a", "true", outputs=["o"]),
      stage("b", "true", deps=["a"], inputs=[{"stage": "a", "path": "/etc"}])],
     "stages[1].inputs[0].path", "must stay inside the work folder"),
    ([StageInput("a", stage("a", "true").job, [], array="0-9%0")],
     "stages[0].array", "stage 'a': array: the limit after % must be a positive whole number"),
    ([stage("a", "true"), StageInput("b", stage("b", "true").job, ["a"], array="x")],
     "stages[1].array", "stage 'b': array: 'x' is not an index or a range"),
])
def test_bad_stage_inputs_and_arrays_are_refused_naming_the_stage(
        world: World, stages: list[StageInput], field: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)) as err:
        dagsvc.submit_dag(world.p, world.u1, "bad", stages)
    assert err.value.field == field
    assert dagsvc.list_dags(world.p, world.u1)[1] == 0
