"""Software environment and hardware constraints (issue 16): a pool's arch, features and named
environments; a job's constraints and environment; placement by the real bytes to move."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from suanli.domain.enums import CenterKind, DeviceKind, Policy, Precision
from suanli.domain.errors import Infeasible, InvalidInput
from suanli.domain.model import DataToMove, JobRequirements, PoolSpec, Resources
from suanli.domain.task import Constraints
from suanli.scheduling import PoolState, QueuedJob, explain_job, schedule, static_reasons
from suanli.services import jobs as jobsvc
from suanli.services.centers import CenterInput, add_pool, create_center
from suanli.services.jobs import JobInput
from suanli.services.snapshot import pool_states, queued_jobs
from suanli.store import models as m

from ..conftest import World, cpu_pool

NOW = datetime(2026, 11, 1, tzinfo=UTC)
GB = 10**9


def spec(arch: str = "x86_64", features: tuple[str, ...] = (),
         environments: tuple[str, ...] = ()) -> PoolSpec:
    return PoolSpec(device_kind=DeviceKind.CPU, device_model="cpu", domestic=False,
                    units_per_node=4, nodes=2, memory_gb_per_node=64, price_fen_per_unit_hour=10,
                    tflops_fp64=0.1, tflops_fp32=0.2, arch=arch, features=frozenset(features),
                    environments=frozenset(environments))


def req(**kw: Any) -> JobRequirements:
    return JobRequirements(resources=Resources(DeviceKind.CPU, 1), walltime_s=600, **kw)


POOLS = [
    PoolState.idle(1, 1, "gpu-c", "x86", spec("x86_64", ("cuda-12.4", "mpi"), ("pytorch-2.4",))),
    PoolState.idle(2, 2, "sw-c", "sunway", spec("sw_64", ("mpi", "athread"))),
    PoolState.idle(3, 3, "npu-c", "ascend", spec("aarch64", ("cann-8.0",), ("pytorch-2.4",))),
]


def test_a_pool_is_chosen_only_where_arch_features_and_environment_hold() -> None:
    want = req(constraints=Constraints("x86_64", ("cuda-12.4",)), environment="pytorch-2.4")
    by = {c.pool_id: c for c in explain_job(want, POOLS, NOW).candidates}
    assert by[1].feasible and by[1].chosen and by[1].reasons == []
    assert by[2].reasons == ["arch sw_64, not x86_64", "lacks feature cuda-12.4",
                             "no environment pytorch-2.4"]
    assert by[3].reasons == ["arch aarch64, not x86_64", "lacks feature cuda-12.4"]
    # Several missing features are all named; no constraints at all: every pool may run it.
    assert static_reasons(req(constraints=Constraints(None, ("mpi", "cann-8.0", "x"))),
                          POOLS[1]) == ["lacks feature cann-8.0, x"]
    assert all(not static_reasons(req(), p) for p in POOLS)


def test_the_scheduler_commits_a_job_only_to_a_pool_that_suits_it() -> None:
    jobs = [QueuedJob(i, 1, NOW + timedelta(seconds=i), req(constraints=c, environment=e))
            for i, (c, e) in enumerate([(Constraints("sw_64"), None),
                                        (Constraints(None, ("cann-8.0",)), None),
                                        (Constraints("aarch64"), "pytorch-2.4"),
                                        (Constraints("x86_64"), "pytorch-2.4"),
                                        (Constraints("riscv64"), None)])]
    where = {d.job_id: d.target_pool_id for d in schedule(POOLS, jobs, NOW)}
    assert where == {0: 2, 1: 3, 2: 3, 3: 1, 4: None}


def test_bytes_to_move_count_a_dataset_only_where_it_is_missing() -> None:
    data = DataToMove(artifact_bytes=5, datasets=((50 * GB, frozenset({"a"})), (7, frozenset())))
    assert data.bytes_to("a") == 5 + 7
    assert data.bytes_to("b") == 5 + 50 * GB + 7
    moving = req(data=data)
    pools = [PoolState.idle(1, 1, "a", "p", spec()), PoolState.idle(2, 2, "b", "p", spec())]
    by = {c.pool_id: c for c in explain_job(moving, pools, NOW).candidates}
    assert by[1].chosen and by[1].transfer_s == pytest.approx(12 * 8 / 10e9)
    assert by[2].transfer_s == pytest.approx(40.0, rel=1e-6)  # 50 GB over 10 Gbit/s
    # The typed data_gb still works for jobs that bring no artifacts; real bytes win when given.
    typed = req(data_site="b", data_gb=50.0)
    assert {c.pool_id: c.transfer_s for c in explain_job(typed, pools, NOW).candidates} == {
        1: 40.0, 2: 0.0}
    both = req(data_site="b", data_gb=50.0, data=data)
    assert explain_job(both, pools, NOW).candidates[1].transfer_s == pytest.approx(40.0, rel=1e-6)


# --- pools declare them: validation --------------------------------------------------------


@pytest.mark.parametrize("change, field, words", [
    ({"arch": "sparc"}, "arch", "not one of"),
    ({"arch": ""}, "arch", "not one of"),
    ({"features": ["cuda 12.4"]}, "features", "is not a name"),
    ({"features": ["../../etc"]}, "features", "is not a name"),
    ({"features": "mpi"}, "features", "a list"),
    ({"features": [f"f{i}" for i in range(101)]}, "features", "up to 100"),
    ({"environments": {"bad name": "true"}}, "environments", "is not a name"),
    ({"environments": {"pytorch-2.4": "  "}}, "environments.pytorch-2.4", "shell lines"),
    ({"environments": {"pytorch-2.4": "a\x00b"}}, "environments.pytorch-2.4", "NUL"),
    ({"environments": ["pytorch-2.4"]}, "environments", "a map"),
])
def test_a_pool_with_bad_software_facts_is_refused(world: World, change: dict[str, Any],
                                                   field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        add_pool(world.p, world.admin, world.alpha.id, cpu_pool("bad", **change))
    assert exc.value.field == field and words in exc.value.message
    with world.p.db.session() as s:  # nothing half-added
        assert s.scalar(select(m.Pool.id).where(m.Pool.name == "bad")) is None


def test_a_pools_features_are_stored_without_duplicates(world: World) -> None:
    pool = add_pool(world.p, world.admin, world.alpha.id, cpu_pool(
        "gpu-like", arch="aarch64", features=["cann-8.0", "mpi", "cann-8.0"],
        environments={"pytorch-2.4": "export SUANLI_ENV=pytorch-2.4"}))
    assert pool.arch == "aarch64" and pool.features == ["cann-8.0", "mpi"]
    assert pool.spec().features == frozenset({"cann-8.0", "mpi"})
    assert pool.spec().environments == frozenset({"pytorch-2.4"})


# --- jobs state them: submission ------------------------------------------------------------


def cpu_job(cmd: str, **kw: Any) -> JobInput:
    base: dict[str, Any] = dict(name="t", command=["sh", "-c", cmd], device=DeviceKind.CPU,
                                units=1, walltime_s=60)
    base.update(kw)
    return JobInput(**base)


@pytest.mark.parametrize("kw, field, words", [
    ({"constraints": {"arch": "sparc"}}, "constraints.arch", "not one of"),
    ({"constraints": {"features": ["no such!"]}}, "constraints.features", "not a feature name"),
    ({"constraints": {"cpu": "fast"}}, "constraints", "unknown key(s) cpu"),
    ({"environment": "$(rm -rf /)"}, "environment", "is not a name"),
])
def test_malformed_constraints_are_refused(world: World, kw: dict[str, Any], field: str,
                                           words: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        jobsvc.submit_job(world.p, world.u1, cpu_job("true", **kw))
    assert exc.value.field == field and words in exc.value.message


@pytest.mark.parametrize("kw, field, words", [
    ({"constraints": {"features": ["mpi", "cuda-99.9"]}}, "constraints.features",
     "no pool has feature cuda-99.9"),
    ({"constraints": {"arch": "riscv64"}}, "constraints.arch", "no pool has arch riscv64"),
    ({"environment": "tensorflow-1.0"}, "environment",
     "no pool offers environment tensorflow-1.0"),
])
def test_a_job_no_pool_suits_is_refused_naming_what_is_missing(
        world: World, kw: dict[str, Any], field: str, words: str) -> None:
    add_pool(world.p, world.admin, world.beta.id, cpu_pool("mpi", features=["mpi"]))
    with pytest.raises(Infeasible) as exc:
        jobsvc.submit_job(world.p, world.u1, cpu_job("true", **kw))
    assert exc.value.field == field and words in exc.value.message
    assert all(r["reasons"] for r in exc.value.detail)


def test_the_environment_is_activated_before_setup_and_the_command(world: World) -> None:
    """On the real local executor: the activation's variable is seen by setup and command, and
    the job lands on the one pool that offers the environment."""
    gamma = create_center(world.p, None, CenterInput(
        slug="gamma", name_zh="丙", name_en="Gamma", kind=CenterKind.AI, pools=[cpu_pool(
            "torch", environments={"pytorch-2.4": "export SUANLI_ENV=pytorch-2.4\n"
                                                  "echo activating >&2"})]))
    job = jobsvc.submit_job(world.p, world.u1, cpu_job(
        'echo "run saw $SUANLI_ENV $STEP"', environment="pytorch-2.4",
        setup='echo "setup saw $SUANLI_ENV"; export STEP=after-setup', policy=Policy.CHEAPEST))
    world.drive(lambda: world.job(job.id).state == "COMPLETED")
    (run,) = world.runs(job.id)
    assert run.center_id == gamma.id  # the cheaper pools offer no pytorch-2.4
    out = jobsvc.job_logs(world.p, world.u1, job.id).data
    assert out == "setup saw pytorch-2.4\nrun saw pytorch-2.4 after-setup\n"
    assert "activating" in jobsvc.job_logs(world.p, world.u1, job.id, stream="stderr").data
    # Without asking for it, the activation does not run (and the cheapest pool is taken).
    plain = jobsvc.submit_job(world.p, world.u1, cpu_job('echo "[$SUANLI_ENV]"',
                                                         policy=Policy.CHEAPEST))
    world.drive(lambda: world.job(plain.id).state == "COMPLETED")
    assert jobsvc.job_logs(world.p, world.u1, plain.id).data == "[]\n"
    assert world.runs(plain.id)[0].center_id == world.beta.id


def test_a_failing_activation_fails_the_job_before_its_command(world: World) -> None:
    create_center(world.p, None, CenterInput(
        slug="broken", name_zh="坏", name_en="Broken", kind=CenterKind.AI, pools=[cpu_pool(
            "torch", environments={"pytorch-2.4": "false"})]))
    job = jobsvc.submit_job(world.p, world.u1, cpu_job("echo ran", environment="pytorch-2.4"))
    world.drive(lambda: world.job(job.id).state == "FAILED")
    assert jobsvc.job_logs(world.p, world.u1, job.id).data == ""


# --- placement by the real bytes to move ----------------------------------------------------


def _twin_centers(world: World) -> tuple[m.Center, m.Center]:
    """Two centers equal in everything but their slug, in a district of their own."""
    made = []
    for slug in ("east", "west"):
        made.append(create_center(world.p, None, CenterInput(
            slug=slug, name_zh=slug, name_en=slug, kind=CenterKind.CLOUD, district="市北区",
            pools=[cpu_pool("cpu")])))
    return made[0], made[1]


def _dataset(world: World, tenant_id: int, name: str, size: int, *at: m.Center,
             uploaded: bool = True) -> None:
    """A dataset of `size` bytes at centers `at`: uploaded to suanli (it may travel), or only
    registered at them (it never moves)."""
    now = world.p.clock.now()
    art = hashlib.sha256(name.encode()).hexdigest() if uploaded else None
    with world.p.db.session() as s:
        ds = m.Dataset(tenant_id=tenant_id, name=name, size_bytes=size, created_at=now,
                       artifact_sha256=art)
        s.add(ds)
        s.flush()
        for c in at:
            s.add(m.DatasetLocation(dataset_id=ds.id, center_id=c.id, present_since=now))


def _locate(world: World, name: str, tenant_id: int, center: m.Center) -> None:
    with world.p.db.session() as s:
        ds = s.scalar(select(m.Dataset).where(m.Dataset.tenant_id == tenant_id,
                                              m.Dataset.name == name))
        assert ds is not None
        s.add(m.DatasetLocation(dataset_id=ds.id, center_id=center.id,
                                present_since=world.p.clock.now()))


def _current(world: World, job_id: int) -> dict[str, dict[str, Any]]:
    exp = jobsvc.placement_explanation(world.p, world.u1, job_id)["current"]
    return {c["pool"]: c for c in exp["candidates"]}


def test_a_job_goes_where_its_uploaded_dataset_is_until_it_is_copied(world: World) -> None:
    east, west = _twin_centers(world)
    _dataset(world, world.t1.id, "corpus", 50 * GB, east)
    # Another tenant's dataset of the same name, already at west, is not this job's data.
    _dataset(world, world.t2.id, "corpus", 50 * GB, west)
    job = jobsvc.submit_job(world.p, world.u1, cpu_job(
        "true", district="市北区", walltime_s=600, precision=Precision.FP64,
        inputs=[{"dataset": "corpus", "path": "data"}]))
    by = _current(world, job.id)
    assert by["east/cpu"]["chosen"] and by["east/cpu"]["transfer_s"] == 0.0
    assert by["west/cpu"]["transfer_s"] == pytest.approx(40.0) and by["west/cpu"]["wait_s"] >= 40
    with world.p.db.session() as s:
        (queued,) = queued_jobs(s, [job.id])
        pools = pool_states(s)
    (d,) = schedule(pools, [queued], world.p.clock.now())
    assert d.target_pool_id == next(p.pool_id for p in pools if p.label == "east/cpu")

    _locate(world, "corpus", world.t1.id, west)  # copied once: present at west too
    by = _current(world, job.id)
    assert by["west/cpu"]["transfer_s"] == 0.0 and by["east/cpu"]["transfer_s"] == 0.0
    assert by["west/cpu"]["finish_s"] == by["east/cpu"]["finish_s"]


def test_artifacts_the_job_brings_weigh_the_same_everywhere(world: World) -> None:
    east, _ = _twin_centers(world)
    now = world.p.clock.now()
    with world.p.db.session() as s:
        for tenant, size in ((world.t1.id, 20 * GB), (world.t2.id, 1)):
            s.add(m.Artifact(tenant_id=tenant, sha256="a" * 64, size_bytes=size, kind="workdir",
                             created_at=now))
    _dataset(world, world.t1.id, "corpus", 50 * GB, east)
    job = jobsvc.submit_job(world.p, world.u1, cpu_job(
        "true", district="市北区", workdir_sha256="a" * 64,
        inputs=[{"dataset": "corpus", "path": "d"}]))
    by = _current(world, job.id)
    # Its own 20 GB work folder, not the other tenant's 1 byte (an artifact the tenant does not
    # have is refused at submission: tests/unit/test_task_api.py).
    assert by["east/cpu"]["transfer_s"] == pytest.approx(16.0)
    assert by["west/cpu"]["transfer_s"] == pytest.approx(56.0)
    assert by["east/cpu"]["chosen"]


def test_a_dataset_registered_only_at_a_center_pins_the_job_there(world: World) -> None:
    """A dataset suanli holds no bytes of cannot travel: only centers holding it are candidates,
    and the others say why; a job that fits nowhere it is says so at submission."""
    east, west = _twin_centers(world)
    _dataset(world, world.t1.id, "imagenet", 10, east, uploaded=False)
    _dataset(world, world.t2.id, "imagenet", 10, west, uploaded=False)  # not tenant one's
    # West is cheaper by far and equal otherwise: without the constraint it would win.
    with world.p.db.session() as s:
        s.execute(update(m.Pool).where(m.Pool.center_id == west.id)
                  .values(price_fen_per_unit_hour=1))
    task = cpu_job("true", district="市北区", policy=Policy.CHEAPEST,
                   inputs=[{"dataset": "imagenet", "path": "data"}])
    est = {c["pool"]: c for c in jobsvc.estimate(world.p, world.u1, task)["candidates"]}
    assert est["east/cpu"]["chosen"] and est["east/cpu"]["feasible"]
    assert not est["west/cpu"]["feasible"]
    assert "dataset imagenet is not at this center" in est["west/cpu"]["reasons"]
    job = jobsvc.submit_job(world.p, world.u1, task)
    by = _current(world, job.id)
    assert by["east/cpu"]["chosen"] and not by["west/cpu"]["feasible"]
    assert by["west/cpu"]["reasons"] == ["dataset imagenet is not at this center"]
    with world.p.db.session() as s:
        (queued,) = queued_jobs(s, [job.id])
        pools = pool_states(s)
    (d,) = schedule(pools, [queued], world.p.clock.now())
    assert d.target_pool_id == next(p.pool_id for p in pools if p.label == "east/cpu")
    # Asking for what only west has: the job fits nowhere, and the error names the dataset.
    add_pool(world.p, world.admin, west.id, cpu_pool("mpi", features=["mpi"]))
    with pytest.raises(Infeasible) as exc:
        jobsvc.submit_job(world.p, world.u1, replace(task, constraints={"features": ["mpi"]}))
    assert exc.value.message == "no pool in the network can ever run this job: dataset " \
        "imagenet is only at east, where no pool can run it"
    assert exc.value.field == "inputs"
    why = {r["pool"]: r["reasons"] for r in exc.value.detail}
    assert why["west/mpi"] == ["dataset imagenet is not at this center"]
    assert why["east/cpu"] == ["lacks feature mpi"]


# --- the demo city ----------------------------------------------------------------------------


def test_the_demo_city_keeps_x86_programs_off_sunway() -> None:
    """`echo hello` on one CPU core at FP64, fastest: Sunway's 14 TFLOPS win, unless the job says
    it is an x86_64 program; `sw_64` goes to Sunway only; an unknown feature is a 422 naming it."""
    from ..demo_app import demo_app

    with demo_app() as (client, creds, _):
        h = {"Authorization": f"Bearer {creds['tenant_a']}"}
        hello = {"name": "hello", "command": ["echo", "hello"], "walltime_s": 600,
                 "resources": {"device": "cpu", "units": 1}, "precision": "fp64",
                 "policy": "fastest"}

        def placed(**extra: Any) -> dict[str, dict[str, Any]]:
            r = client.post("/api/v1/jobs", json={**hello, **extra}, headers=h)
            assert r.status_code == 201, r.text
            exp = client.get(f"/api/v1/jobs/{r.json()['id']}/placement", headers=h).json()
            return {c["pool"]: c for c in exp["current"]["candidates"]}

        anywhere = placed()
        assert anywhere["qd-sc/sunway"]["chosen"]  # what an x86 program must be kept from
        x86 = placed(constraints={"arch": "x86_64"})
        assert not x86["qd-sc/sunway"]["feasible"] and not x86["qd-sc/sunway"]["chosen"]
        assert "arch sw_64, not x86_64" in x86["qd-sc/sunway"]["reasons"]
        assert "arch aarch64, not x86_64" in x86["qd-ai/kunpeng-920"]["reasons"]
        assert any(c["chosen"] for c in x86.values())
        sw = placed(constraints={"arch": "sw_64"})
        assert [k for k, c in sw.items() if c["feasible"]] == ["qd-sc/sunway"]
        assert sw["qd-sc/sunway"]["chosen"]

        r = client.post("/api/v1/jobs", json={**hello, "constraints": {"features": ["cuda-99.9"]}},
                        headers=h)
        assert r.status_code == 422 and "cuda-99.9" in r.json()["error"], r.text
        # On the GPU, NPU and DCU pools PyTorch is one name away; Ascend's needs CANN on aarch64.
        torch = {**hello, "resources": {"device": "npu", "units": 1}, "precision": "fp16",
                 "environment": "pytorch-2.4", "constraints": {"features": ["cann-8.0"]}}
        r = client.post("/api/v1/jobs", json=torch, headers=h)
        assert r.status_code == 201, r.text
        pools = client.get("/api/v1/pools", headers=h).json()["items"]
        by = {(p["center_id"], p["name"]): p for p in pools}
        assert all(p["arch"] == "aarch64" and "cann-8.0" in p["features"]
                   and "pytorch-2.4" in p["environments"]
                   for (_, name), p in by.items() if name == "ascend-910b")
        assert all(p["arch"] == "sw_64" for (_, name), p in by.items() if name == "sunway")
        assert all("dtk-24.04" in p["features"] for (_, n), p in by.items() if n == "dcu-k100")
        assert all("cuda-12.4" in p["features"] for (_, n), p in by.items()
                   if n in ("a100", "a800", "l40s"))

        # The center operator's portal page shows its pools' arch, features and environments.
        from fastapi.testclient import TestClient

        portal = TestClient(client.app, follow_redirects=False)
        portal.get("/login")
        r = portal.post("/login", data={"csrf": portal.cookies["suanli_login_csrf"],
                                        "token": creds["center_operator"], "next": "/"})
        assert r.status_code == 303, r.text
        page = portal.get("/center").text
        row = page.split('data-pool="')[1].split("</tr>")[0]  # qd-ai's Ascend pool
        assert "aarch64 · cann-8.0, mpi · pytorch-2.4" in row, row


def test_every_demo_environment_activates_on_this_machine() -> None:
    """The demo's centers are emulated by the local executor: each activation must work here."""
    import subprocess

    from suanli.domain.task import Script
    from suanli.services.demo import demo_centers, local_center

    seen = 0
    for center in [*demo_centers(), local_center()]:
        for pool in center.pools:
            for name, script in pool.environments.items():
                argv = Script(["sh", "-c", 'echo "$SUANLI_ENV"'], None, script).argv()
                done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
                assert done.returncode == 0 and done.stdout == f"{name}\n", (center.slug, done)
                seen += 1
    assert seen >= 6


def test_the_example_center_file_registers_with_its_software_and_bad_values_are_named() -> None:
    from pathlib import Path

    import yaml

    from ..demo_app import demo_app

    body = yaml.safe_load((Path(__file__).parents[2] / "examples" / "center.yaml").read_text())
    with demo_app() as (client, creds, _):
        h = {"Authorization": f"Bearer {creds['platform_admin']}"}
        r = client.post("/api/v1/centers", json=body, headers=h)
        assert r.status_code == 201, r.text
        (pool,) = r.json()["pools"]
        assert pool["arch"] == "x86_64" and pool["features"] == ["cuda-12.4", "mpi"]
        assert "export SUANLI_ENV=pytorch-2.4" in pool["environments"]["pytorch-2.4"]
        bad = {**body, "slug": "edge-bad", "pools": [{**body["pools"][0], "arch": "i386"}]}
        r = client.post("/api/v1/centers", json=bad, headers=h)
        assert r.status_code == 422 and r.json()["field"] == "arch" and "i386" in r.json()["error"]
        bad["pools"][0] = {**body["pools"][0], "features": ["ok", "not ok"]}
        r = client.post("/api/v1/centers", json=bad, headers=h)
        assert r.status_code == 422 and "'not ok'" in r.json()["error"], r.text
        centers = client.get("/api/v1/centers", headers=h).json()["items"]
        assert "edge-bad" not in {c["slug"] for c in centers}  # nothing half-registered
        # A tenant may not add a pool, whatever it claims to offer.
        t = {"Authorization": f"Bearer {creds['tenant_a']}"}
        r = client.post(f"/api/v1/centers/{centers[0]['id']}/pools", headers=t,
                        json={**body["pools"][0], "name": "mine", "features": ["cuda-12.4"]})
        assert r.status_code == 403


def test_discovery_keeps_what_every_node_agrees_on() -> None:
    from suanli.connectors.base import pool_software

    assert pool_software(["aarch64", "aarch64"], [{"cann-8.0", "mpi", "a b"}, {"cann-8.0"}]) == {
        "arch": "aarch64", "features": ["cann-8.0"]}
    # Nodes of two architectures, or one suanli does not know: no arch claimed (x86_64 default).
    assert pool_software(["x86_64", "aarch64"], [set(), set()]) == {"features": []}
    assert pool_software(["i686"], [{"$(reboot)", "../x", "mpi"}]) == {"features": ["mpi"]}
