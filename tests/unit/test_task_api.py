"""A task's fields through the API and the engine: checks, references to the tenant's own
artifacts and datasets, arrays (held together, at most N placed at once), resubmit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from suanli.api.app import create_app
from suanli.domain.enums import DeviceKind
from suanli.domain.errors import InvalidInput, NotFound
from suanli.domain.task import parse_array
from suanli.services import arrays
from suanli.services import jobs as jobsvc
from suanli.services.context import Platform
from suanli.services.demo import ensure_credentials, seed_demo
from suanli.services.jobs import JobInput
from suanli.store import models as m

from ..conftest import World

JOB: dict[str, Any] = {"name": "task", "command": ["/bin/bash", "-c", "echo hi"],
                       "resources": {"device": "cpu", "units": 1}, "walltime_s": 60}
SHA_A = "a" * 64
SHA_B = "b" * 64


@pytest.fixture
def api(platform: Platform) -> Iterator[tuple[TestClient, dict[str, str]]]:
    seed_demo(platform)
    creds = ensure_credentials(platform, platform.home / "demo-credentials.json")
    with TestClient(create_app(platform, run_engine=False)) as client:
        yield client, creds


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tenant_of(client: TestClient, token: str) -> int:
    tid = client.get("/api/v1/users/me", headers=auth(token)).json()["tenant_id"]
    assert isinstance(tid, int)
    return tid


def own(p: Platform, tenant_id: int, sha: str, kind: str = "workdir") -> None:
    """An artifact the tenant stored (the artifacts API is another part's; the row is what a
    submission is checked against)."""
    with p.db.session() as s:
        s.add(m.Artifact(tenant_id=tenant_id, sha256=sha, size_bytes=10, kind=kind, name="w",
                         created_at=p.clock.now()))


def counts(p: Platform) -> tuple[int, int, int]:
    with p.db.session() as s:
        return (s.scalar(select(func.count()).select_from(m.Job)) or 0,
                s.scalar(select(func.count()).select_from(m.JobArray)) or 0,
                s.scalar(select(func.coalesce(func.sum(m.Tenant.held_fen), 0))) or 0)


def test_task_fields_are_stored(api: tuple[TestClient, dict[str, str]],
                                platform: Platform) -> None:
    client, creds = api
    own(platform, tenant_of(client, creds["tenant_a"]), SHA_A)
    own(platform, tenant_of(client, creds["tenant_a"]), SHA_B, kind="upload")
    body = {**JOB, "env": {"LR": 0.1, "NAME": "x"}, "setup": "mkdir -p out", "workdir": SHA_A,
            "inputs": [{"artifact": SHA_B, "path": "data"}], "outputs": ["out/**", "log.txt"],
            "constraints": {"arch": "x86_64"}}
    r = client.post("/api/v1/jobs", json=body, headers=auth(creds["tenant_a"]))
    assert r.status_code == 201, r.text
    shown = client.get(f"/api/v1/jobs/{r.json()['id']}", headers=auth(creds["tenant_a"])).json()
    assert shown["workdir"] == SHA_A and shown["env_names"] == ["LR", "NAME"]
    assert shown["outputs"] == ["out/**", "log.txt"] and shown["setup"] == "mkdir -p out"
    with platform.db.session() as s:
        job = s.get(m.Job, r.json()["id"])
        assert job is not None
        assert job.env == {"LR": "0.1", "NAME": "x"} and job.setup == "mkdir -p out"
        assert job.workdir_sha256 == SHA_A
        assert job.inputs == [{"artifact": SHA_B, "path": "data"}]
        assert job.outputs == ["out/**", "log.txt"] and job.constraints == {"arch": "x86_64"}


@pytest.mark.parametrize("extra, field, words", [
    ({"env": {"PATH": "/evil"}}, "env", "PATH is set by suanli"),
    ({"env": {"LD_PRELOAD": "/tmp/x.so"}}, "env", "LD_PRELOAD is set by suanli"),
    ({"env": {"SUANLI_ARRAY_INDEX": "3"}}, "env", "set by suanli"),
    ({"env": {"1BAD": "x"}}, "env", "not a variable name"),
    ({"env": {"A": ["list"]}}, "env", "text or a number"),
    ({"workdir": "not-a-sha"}, "workdir", "SHA-256"),
    ({"inputs": [{"artifact": SHA_A, "path": "../up"}]}, "inputs[0].path", "inside the work"),
    ({"inputs": [{"path": "d"}]}, "inputs[0]", "either artifact"),
    ({"inputs": [{"artifact": SHA_A, "dataset": "x", "path": "d"}]}, "inputs[0]", "either"),
    ({"inputs": [{"artifact": SHA_A, "mount": "/d"}]}, "inputs[0]", "unknown key(s) mount"),
    ({"outputs": ["/etc/passwd"]}, "outputs[0]", "inside the work folder"),
    ({"outputs": ["a/../../b"]}, "outputs[0]", "inside the work folder"),
    ({"outputs": ["."]}, "outputs", "not the folder itself"),
    ({"constraints": {"arch": "z80"}}, "constraints.arch", "not one of"),
    ({"constraints": {"gpu": "any"}}, "constraints", "unknown key(s) gpu"),
    ({"environment": "bad name!"}, "environment", "not a name"),
    ({"array": "5-1"}, "array", "empty"),
    ({"array": "0-9%0"}, "array", "positive whole number"),
    ({"array": "x"}, "array", "not an index"),
])
def test_bad_task_fields_are_422_naming_the_field(
        api: tuple[TestClient, dict[str, str]], platform: Platform, extra: dict[str, Any],
        field: str, words: str) -> None:
    client, creds = api
    r = client.post("/api/v1/jobs", json={**JOB, **extra}, headers=auth(creds["tenant_a"]))
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and words in r.json()["error"], r.json()
    assert counts(platform) == (0, 0, 0)


def test_another_tenants_workdir_is_not_found(api: tuple[TestClient, dict[str, str]],
                                               platform: Platform) -> None:
    """An attacker who learnt the SHA-256 of tenant B's work folder cannot run it: the same
    "not found" as a SHA nobody has, and no job."""
    client, creds = api
    own(platform, tenant_of(client, creds["tenant_b"]), SHA_A)
    for sha in (SHA_A, "c" * 64):
        r = client.post("/api/v1/jobs", json={**JOB, "workdir": sha},
                        headers=auth(creds["tenant_a"]))
        assert r.status_code == 422 and r.json()["field"] == "workdir"
        assert "not found" in r.json()["error"]
        r = client.post("/api/v1/jobs", json={**JOB, "inputs": [{"artifact": sha, "path": "d"}]},
                        headers=auth(creds["tenant_a"]))
        assert r.status_code == 422 and r.json()["field"] == "inputs[0].artifact"
    r = client.post("/api/v1/jobs", json={**JOB, "inputs": [{"dataset": "imagenet", "path": "d"}]},
                    headers=auth(creds["tenant_a"]))
    assert r.status_code == 422 and r.json()["field"] == "inputs[0].dataset"
    assert "'imagenet' not found" in r.json()["error"]
    # the same in a DAG stage, named by its place
    dag = {"name": "d", "stages": [{**JOB, "name": "a"}, {**JOB, "name": "b", "workdir": SHA_A}]}
    r = client.post("/api/v1/dags", json=dag, headers=auth(creds["tenant_a"]))
    assert r.status_code == 422 and r.json()["field"] == "stages[1].workdir", r.json()
    assert counts(platform)[0] == 0
    # tenant B runs its own
    r = client.post("/api/v1/jobs", json={**JOB, "workdir": SHA_A}, headers=auth(creds["tenant_b"]))
    assert r.status_code == 201


def test_dag_stage_takes_task_fields_and_an_array(
        api: tuple[TestClient, dict[str, str]], platform: Platform) -> None:
    client, creds = api
    dag: dict[str, Any] = {"name": "d", "stages": [{**JOB, "name": "a", "env": {"X": "1"},
                                                    "setup": "true", "outputs": ["out/**"]}]}
    r = client.post("/api/v1/dags", json=dag, headers=auth(creds["tenant_a"]))
    assert r.status_code == 201, r.text
    with platform.db.session() as s:
        job = s.scalar(select(m.Job))
        assert job is not None and job.env == {"X": "1"} and job.outputs == ["out/**"]
    dag["stages"][0]["array"] = "0-3%2"
    r = client.post("/api/v1/dags", json=dag, headers=auth(creds["tenant_a"]))
    assert r.status_code == 201, r.text
    stage = r.json()["stages"][0]
    assert stage["array"] == "0-3%2" and stage["tasks"] == 4 and stage["done"] == 0
    assert stage["state"] == "QUEUED" and stage["job_id"] is None and len(stage["jobs"]) == 4
    view = client.get(f"/api/v1/arrays/{stage['array_id']}", headers=auth(creds["tenant_a"]))
    assert view.json()["max_running"] == 2 and view.json()["jobs"] == stage["jobs"]
    with platform.db.session() as s:
        tasks = list(s.scalars(select(m.Job).where(m.Job.id.in_(stage["jobs"]))
                               .order_by(m.Job.array_index)))
        assert [(j.name, j.array_index, j.dag_stage) for j in tasks] == \
            [(f"a[{i}]", i, "a") for i in range(4)]
    dag["stages"][0]["array"] = "5-1"
    r = client.post("/api/v1/dags", json=dag, headers=auth(creds["tenant_a"]))
    assert r.status_code == 422 and r.json()["field"] == "stages[0].array"
    assert "stage 'a': array: range '5-1' is empty" in r.json()["error"]


def test_dag_stage_inputs_name_only_its_own_dags_stages(
        api: tuple[TestClient, dict[str, str]], platform: Platform) -> None:
    """An input `{stage: NAME}` is looked up among the DAG's own stages that the stage depends
    on: a crafted body cannot reach another DAG's stage, another tenant's job or its outputs."""
    client, creds = api
    a, b = auth(creds["tenant_a"]), auth(creds["tenant_b"])
    prep = {**JOB, "name": "prep", "outputs": ["out/**"]}
    ok = {"name": "d", "stages": [prep, {**JOB, "name": "train", "depends_on": ["prep"],
                                         "inputs": [{"stage": "prep", "path": "data"}]}]}
    r = client.post("/api/v1/dags", json=ok, headers=a)
    assert r.status_code == 201, r.text
    assert r.json()["stages"][1]["reads"] == ["prep"]
    with platform.db.session() as s:  # tenant A's prep outputs, which B tries to reach
        prep_job = s.scalar(select(m.Job).where(m.Job.dag_stage == "prep"))
        assert prep_job is not None
    own(platform, tenant_of(client, creds["tenant_a"]), SHA_A, kind="outputs")
    before = counts(platform)

    def refused(body: dict[str, Any], field: str, words: str, who: dict[str, str] = b) -> None:
        r = client.post("/api/v1/dags", json=body, headers=who)
        assert r.status_code == 422, r.text
        assert r.json()["field"] == field and words in r.json()["error"], r.json()

    def train(*inputs: dict[str, Any], deps: list[str] | None = None) -> dict[str, Any]:
        return {"name": "x", "stages": [{**JOB, "name": "mine", "outputs": ["o"]},
                                        {**JOB, "name": "train", "depends_on": deps or ["mine"],
                                         "inputs": list(inputs)}]}

    # tenant B names A's stage "prep" (not a stage of B's DAG), A's job id, A's DAG, A's outputs
    refused(train({"stage": "prep", "path": "d"}), "stages[1].inputs[0].stage",
            "stage 'train': inputs[0].stage: 'prep' is not a stage this one depends on")
    refused(train({"stage": "mine", "path": "d", "job": prep_job.id}), "stages[1].inputs[0]",
            "unknown key(s) job")
    refused(train({"stage": "mine", "path": "d", "dag": prep_job.dag_id}),
            "stages[1].inputs[0]", "unknown key(s) dag")
    refused(train({"stage": prep_job.id, "path": "d"}), "stages[1].inputs[0].stage",
            "the name of a stage")
    refused(train({"artifact": SHA_A, "path": "d"}), "stages[1].inputs[0].artifact", "not found")
    # within one's own DAG: only a stage it depends on, that keeps outputs; not itself
    refused(train({"stage": "train", "path": "d"}), "stages[1].inputs[0].stage",
            "'train' is not a stage this one depends on", who=a)
    side = {"name": "x", "stages": [{**JOB, "name": "mine", "outputs": ["o"]},
                                    {**JOB, "name": "side", "outputs": ["o"]},
                                    {**JOB, "name": "t", "depends_on": ["mine"],
                                     "inputs": [{"stage": "side", "path": "d"}]}]}
    refused(side, "stages[2].inputs[0].stage", "'side' is not a stage this one depends on", a)
    bare = train({"stage": "mine", "path": "d"})
    bare["stages"][0]["outputs"] = []
    refused(bare, "stages[1].inputs[0].stage", "stage 'mine' keeps no outputs", who=a)
    refused(train({"stage": "mine", "path": "../up"}), "stages[1].inputs[0].path",
            "must stay inside", who=a)
    refused(train({"stage": "mine", "artifact": SHA_A, "path": "d"}), "stages[1].inputs[0]",
            "give either artifact", who=a)
    # an array of 101 tasks is 101 inputs: more than a job takes
    big = train({"stage": "mine", "path": "d"})
    big["stages"][0]["array"] = "0-100"
    refused(big, "stages[1].inputs", "at most 100", who=a)
    # a plain job (or an array) does not name stages
    r = client.post("/api/v1/jobs", json={**JOB, "inputs": [{"stage": "prep", "path": "d"}]},
                    headers=a)
    assert r.status_code == 422 and r.json()["field"] == "inputs[0].stage"
    assert "only a stage of a DAG" in r.json()["error"]
    assert counts(platform) == before  # nothing was queued by any of them
    # a stage two steps down reads it too (through another)
    deep = {"name": "x", "stages": [{**JOB, "name": "a", "outputs": ["o"]},
                                    {**JOB, "name": "b", "depends_on": ["a"]},
                                    {**JOB, "name": "c", "depends_on": ["b"],
                                     "inputs": [{"stage": "a", "path": ""}]}]}
    assert client.post("/api/v1/dags", json=deep, headers=b).status_code == 201


def test_array_creates_one_job_per_index_held_together(
        api: tuple[TestClient, dict[str, str]], platform: Platform) -> None:
    client, creds = api
    r = client.post("/api/v1/jobs", json={**JOB, "array": "0-4%2"}, headers=auth(creds["tenant_a"]))
    assert r.status_code == 201, r.text
    out = r.json()
    assert set(out) == {"array_id", "jobs"} and len(out["jobs"]) == 5
    with platform.db.session() as s:
        rows = list(s.scalars(select(m.Job).where(m.Job.array_id == out["array_id"])
                              .order_by(m.Job.array_index)))
        assert [j.name for j in rows] == [f"task[{i}]" for i in range(5)]
        assert [j.array_index for j in rows] == list(range(5)) and all(j.hold_fen > 0 for j in rows)
        held = sum(j.hold_fen for j in rows)
        tenant = s.get(m.Tenant, rows[0].tenant_id)
        assert tenant is not None and tenant.held_fen == held
    view = client.get(f"/api/v1/arrays/{out['array_id']}", headers=auth(creds["tenant_a"]))
    assert view.status_code == 200
    assert view.json()["states"] == {"QUEUED": 5} and view.json()["max_running"] == 2
    assert view.json()["jobs"] == out["jobs"] and view.json()["spec"] == "0-4%2"
    # another tenant's array: not found
    assert client.get(f"/api/v1/arrays/{out['array_id']}",
                      headers=auth(creds["tenant_b"])).status_code == 404


def test_array_over_the_limit_or_the_money_leaves_nothing(
        api: tuple[TestClient, dict[str, str]], platform: Platform) -> None:
    client, creds = api
    r = client.post("/api/v1/jobs", json={**JOB, "array": "0-10000"},
                    headers=auth(creds["tenant_a"]))
    assert r.status_code == 422 and r.json()["field"] == "array"
    assert "at most 10000 tasks" in r.json()["error"]
    assert counts(platform) == (0, 0, 0)
    # every task's hold or none: far more than the tenant's money covers
    big = {**JOB, "resources": {"device": "npu", "units": 8}, "walltime_s": 3600,
           "array": "0-9999"}
    r = client.post("/api/v1/jobs", json=big, headers=auth(creds["tenant_a"]))
    assert r.status_code == 402 and "the array's 10000 tasks may cost" in r.json()["error"]
    assert counts(platform) == (0, 0, 0)
    # a few tasks that fit are queued, each holding its own estimate
    r = client.post("/api/v1/jobs", json={**big, "array": "0-2"}, headers=auth(creds["tenant_a"]))
    assert r.status_code == 201 and counts(platform)[:2] == (3, 1)


def test_resubmit_makes_a_new_job_of_the_same_task(
        api: tuple[TestClient, dict[str, str]], platform: Platform) -> None:
    client, creds = api
    body = {**JOB, "env": {"A": "1"}, "setup": "true", "outputs": ["out/**"]}
    first = client.post("/api/v1/jobs", json=body, headers=auth(creds["tenant_a"])).json()
    r = client.post(f"/api/v1/jobs/{first['id']}/resubmit", headers=auth(creds["tenant_a"]))
    assert r.status_code == 201, r.text
    again = r.json()
    assert again["id"] != first["id"] and again["name"] == first["name"]
    assert again["command"] == first["command"] and again["state"] == "QUEUED"
    with platform.db.session() as s:
        job = s.get(m.Job, again["id"])
        assert job is not None and job.env == {"A": "1"} and job.setup == "true"
        assert job.outputs == ["out/**"]
    # another tenant's job: 404, no job
    r = client.post(f"/api/v1/jobs/{first['id']}/resubmit", headers=auth(creds["tenant_b"]))
    assert r.status_code == 404
    assert counts(platform)[0] == 2


def cpu_task(cmd: str, **kw: Any) -> JobInput:
    base: dict[str, Any] = dict(name="t", command=["/bin/bash", "-c", cmd],
                                device=DeviceKind.CPU, units=1, walltime_s=60)
    base.update(kw)
    return JobInput(**base)


def active_and_queued(world: World, ids: list[int]) -> tuple[int, int]:
    states = [world.job(j).state for j in ids]
    return (sum(s in ("PLACED", "RUNNING") for s in states), states.count("QUEUED"))


def test_engine_places_at_most_n_tasks_of_an_array(world: World) -> None:
    _, ids = arrays.submit_array(world.p, world.u1, cpu_task("sleep 30"), parse_array("0-5%2"))
    for _ in range(4):  # room for all six (16 cpu units); the limit holds four back
        world.engine.tick()
    assert active_and_queued(world, ids) == (2, 4)
    assert {world.job(j).array_index for j in ids if world.job(j).state != "QUEUED"} == {0, 1}
    jobsvc.cancel_job(world.p, world.u1, ids[0])
    world.drive(lambda: world.job(ids[0]).state == "CANCELLED")
    world.drive(lambda: world.job(ids[2]).state in ("PLACED", "RUNNING"))
    for _ in range(3):
        world.engine.tick()
    assert active_and_queued(world, ids) == (2, 3)
    # an array without a limit, beside it, is not held back
    _, free = arrays.submit_array(world.p, world.u1, cpu_task("sleep 30"), parse_array("0-3"))
    world.drive(lambda: active_and_queued(world, free) == (4, 0))
    for j in ids[1:] + free:
        jobsvc.cancel_job(world.p, world.u1, j)


def test_a_task_runs_its_setup_env_and_array_index(world: World) -> None:
    task = cpu_task('echo "$GREETING $SUANLI_ARRAY_INDEX $(cat marker)"',
                    env={"GREETING": "hello"}, setup="echo from-setup > marker")
    _, ids = arrays.submit_array(world.p, world.u1, task, parse_array("3,7"))
    world.drive(lambda: all(world.job(j).state == "COMPLETED" for j in ids))
    logs = [jobsvc.job_logs(world.p, world.u1, j).data for j in ids]
    assert logs == ["hello 3 from-setup\n", "hello 7 from-setup\n"]
    failing = jobsvc.submit_job(world.p, world.u1, cpu_task("echo never", setup="exit 4"))
    world.drive(lambda: world.job(failing.id).state == "FAILED")
    assert world.job(failing.id).exit_code == 4
    assert jobsvc.job_logs(world.p, world.u1, failing.id).data == ""


def test_resubmit_service_keeps_the_array_index(world: World) -> None:
    _, ids = arrays.submit_array(world.p, world.u1, cpu_task("echo $SUANLI_ARRAY_INDEX"),
                                 parse_array("5"))
    again = jobsvc.resubmit_job(world.p, world.u1, ids[0])
    assert again.array_index == 5 and again.array_id == world.job(ids[0]).array_id
    with pytest.raises(NotFound):
        jobsvc.resubmit_job(world.p, world.u2, ids[0])
    with pytest.raises(InvalidInput):
        jobsvc.submit_job(world.p, world.u1, cpu_task("true", workdir_sha256="f" * 64))
