"""The artifact store, datasets and a job's outputs: the services and the REST API in-process."""

from __future__ import annotations

import hashlib
import io
import os
import shlex
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from suanli.api.app import create_app
from suanli.artifacts import BlobStore
from suanli.domain.clock import FixedClock
from suanli.domain.enums import DeviceKind, Role
from suanli.domain.errors import Busy, Conflict, TooLarge
from suanli.domain.jobstate import JobState
from suanli.services import artifacts, datasets
from suanli.services.auth import create_user, issue_token, principal_of
from suanli.services.context import Platform
from suanli.services.jobs import JobInput, cancel_job, submit_job
from suanli.store import models as m

from ..conftest import World

GOOD_JOB: dict[str, Any] = {"name": "hello", "command": ["echo", "hi"],
                            "resources": {"device": "cpu", "units": 1}, "walltime_s": 60}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_files(p: Platform, tenant_id: int | None = None) -> list[Path]:
    """Every file in the store (or one tenant's part of it), temporary ones included."""
    root = Path(p.settings.artifacts_location)
    if tenant_id is not None:
        root = root / str(tenant_id)
    return sorted(f for f in root.rglob("*") if f.is_file()) if root.exists() else []


@dataclass
class Api:
    client: TestClient
    world: World
    tokens: dict[str, str]

    def h(self, who: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}", **extra}

    def put(self, who: str, data: bytes, *, kind: str = "upload", name: str = "x",
            digest: str | None = "auto") -> Any:
        headers = self.h(who)
        if digest == "auto":
            headers["X-Content-SHA256"] = sha(data)
        elif digest is not None:
            headers["X-Content-SHA256"] = digest
        return self.client.put("/api/v1/artifacts", params={"kind": kind, "name": name},
                               content=data, headers=headers)


@pytest.fixture
def api(world: World) -> Iterator[Api]:
    p = world.p
    auditor = principal_of(create_user(p, None, username="aud", role=Role.AUDITOR))
    users = {"u1": world.u1, "u2": world.u2, "admin": world.admin, "op": world.op_alpha,
             "reviewer": world.reviewer, "auditor": auditor}
    tokens = {k: issue_token(p, u.user_id)[1] for k, u in users.items()}
    with TestClient(create_app(p, run_engine=False)) as client:
        yield Api(client, world, tokens)


def test_upload_download_dedup_and_list(api: Api) -> None:
    p = api.world.p
    data = b"print('hello')\n" * 1000
    r = api.put("u1", data, kind="workdir", name="proj")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["sha256"] == sha(data) and body["size_bytes"] == len(data)
    assert body["kind"] == "workdir" and body["name"] == "proj"
    assert body["tenant_id"] == api.world.t1.id and body["job_id"] is None
    stored = blob_files(p, api.world.t1.id)
    assert [f.name for f in stored] == [sha(data)]
    mtime = stored[0].stat().st_mtime_ns
    # The same content again: 200, nothing stored a second time.
    r = api.put("u1", data, kind="workdir", name="again")
    assert r.status_code == 200 and r.json()["name"] == "proj"
    assert blob_files(p, api.world.t1.id) == stored and stored[0].stat().st_mtime_ns == mtime
    # Without the checksum header the server finds the same content by itself.
    assert api.put("u1", data, digest=None).status_code == 200
    assert api.client.head(f"/api/v1/artifacts/{sha(data)}", headers=api.h("u1")).status_code == 200
    r = api.client.get(f"/api/v1/artifacts/{sha(data)}", headers=api.h("u1"))
    assert r.status_code == 200 and r.content == data
    assert r.headers["x-content-sha256"] == sha(data)
    page = api.client.get("/api/v1/artifacts", headers=api.h("u1")).json()
    assert page["total"] == 1 and page["items"][0]["sha256"] == sha(data)
    assert api.client.get("/api/v1/artifacts", params={"kind": "outputs"},
                          headers=api.h("u1")).json()["total"] == 0
    # The same content is another tenant's own artifact, stored under it.
    assert api.put("u2", data).status_code == 201
    assert [f.name for f in blob_files(p, api.world.t2.id)] == [sha(data)]


def test_uploads_pass_the_request_body_limit_other_bodies_do_not(api: Api) -> None:
    big = bytes(range(256)) * (12 * 1024)  # 3 MiB > the 1 MiB body limit
    assert api.put("u1", big).status_code == 201
    r = api.client.post("/api/v1/jobs", content=b"{" + b" " * (2 << 20) + b"}",
                        headers=api.h("u1", **{"Content-Type": "application/json"}))
    assert r.status_code == 413


def test_checksum_mismatch_is_422_and_keeps_nothing(api: Api) -> None:
    r = api.put("u1", b"real bytes", digest=sha(b"other bytes"))
    assert r.status_code == 422 and r.json()["field"] == "X-Content-SHA256"
    assert "nothing was kept" in r.json()["error"]
    r = api.put("u1", b"real bytes", digest="not-a-sha")
    assert r.status_code == 422 and r.json()["field"] == "X-Content-SHA256"
    assert blob_files(api.world.p) == []
    assert api.client.get("/api/v1/artifacts", headers=api.h("u1")).json()["total"] == 0


def test_over_the_largest_artifact_size_is_413(api: Api) -> None:
    p = api.world.p
    p.settings = replace(p.settings, artifact_max_bytes=1000)
    r = api.put("u1", b"x" * 1001)
    assert r.status_code == 413 and "largest artifact size" in r.json()["error"]
    assert api.put("u1", b"x" * 1000).status_code == 201
    assert [f.name for f in blob_files(p)] == [sha(b"x" * 1000)]


def test_storage_quota_by_bytes_and_count(api: Api) -> None:
    t1 = api.world.t1.id
    url = f"/api/v1/tenants/{t1}/storage-quota"
    r = api.client.get(url, headers=api.h("u1")).json()
    assert r["default_bytes"] and r["quota_bytes"] == api.world.p.settings.storage_quota_bytes
    # Only the platform admin sets it; another tenant's id is not found.
    assert api.client.put(url, json={"bytes": 10}, headers=api.h("u1")).status_code == 403
    assert api.client.put(url, json={"bytes": 10}, headers=api.h("u2")).status_code == 404
    assert api.client.get(url, headers=api.h("u2")).status_code == 404
    assert api.client.put(url, json={"bytes": -1}, headers=api.h("admin")).status_code == 422
    r = api.client.put(url, json={"bytes": 2500, "count": 2}, headers=api.h("admin"))
    assert r.status_code == 200 and r.json()["quota_bytes"] == 2500
    assert not r.json()["default_bytes"]
    assert api.put("u1", b"a" * 1000).status_code == 201
    r = api.put("u1", b"b" * 1600)
    assert r.status_code == 413 and "storage quota" in r.json()["error"]
    assert api.put("u1", b"b" * 1500).status_code == 201
    r = api.put("u1", b"c")
    assert r.status_code == 413 and "2 artifacts" in r.json()["error"]
    # Content it has already takes no room: a second upload of it is still fine.
    assert api.put("u1", b"a" * 1000).status_code == 200
    use = api.client.get(url, headers=api.h("admin")).json()
    assert (use["used_bytes"], use["used_count"]) == (2500, 2)
    assert len(blob_files(api.world.p, t1)) == 2
    # Back to the defaults: room again.
    api.client.put(url, json={"bytes": None, "count": None}, headers=api.h("admin"))
    assert api.put("u1", b"c").status_code == 201


def test_who_may_touch_artifacts(api: Api) -> None:
    data = b"tenant one's work"
    api.put("u1", data)
    path = f"/api/v1/artifacts/{sha(data)}"
    for who in ("reviewer", "auditor", "op"):
        assert api.put(who, b"x").status_code == 403
        assert api.client.get(path, headers=api.h(who)).status_code == 403
        assert api.client.head(path, headers=api.h(who)).status_code == 403
        assert api.client.delete(path, headers=api.h(who)).status_code == 403
        assert api.client.get("/api/v1/artifacts", headers=api.h(who)).status_code == 403
        assert api.client.get("/api/v1/datasets", headers=api.h(who)).status_code == 403
    # The platform admin lists every tenant's, but reads no bytes.
    page = api.client.get("/api/v1/artifacts", headers=api.h("admin")).json()
    assert [a["tenant_id"] for a in page["items"]] == [api.world.t1.id]
    assert api.client.get("/api/v1/artifacts", params={"tenant_id": api.world.t2.id},
                          headers=api.h("admin")).json()["total"] == 0
    assert api.client.get(path, headers=api.h("admin")).status_code == 403
    assert api.put("admin", b"x").status_code == 403
    # A tenant asking for another tenant's list is told it does not exist.
    assert api.client.get("/api/v1/artifacts", params={"tenant_id": api.world.t1.id},
                          headers=api.h("u2")).status_code == 404
    assert api.client.get("/api/v1/artifacts", headers=api.h("u2")).json()["total"] == 0
    assert api.client.get(path).status_code == 401


def _queue(p: Platform, who: Any, **kw: Any) -> m.Job:
    return submit_job(p, who, JobInput(name="uses", command=["true"], device=DeviceKind.CPU,
                                       walltime_s=60, **kw))


def test_delete_refused_while_a_job_not_ended_uses_it(api: Api) -> None:
    p, w = api.world.p, api.world
    work, data = b"work folder", b"input data"
    api.put("u1", work, kind="workdir")
    api.put("u1", data)
    job_a = _queue(p, w.u1, workdir_sha256=sha(work))
    job_b = _queue(p, w.u1, inputs=[{"artifact": sha(data), "path": "in"}])
    for content, job in ((work, job_a), (data, job_b)):
        r = api.client.delete(f"/api/v1/artifacts/{sha(content)}", headers=api.h("u1"))
        assert r.status_code == 409 and str(job.id) in r.json()["error"]
        assert r.json()["detail"] == {"jobs": [job.id]}
    cancel_job(p, w.u1, job_a.id)
    assert w.job(job_a.id).state == JobState.CANCELLED
    r = api.client.delete(f"/api/v1/artifacts/{sha(work)}", headers=api.h("u1"))
    assert r.status_code == 204
    assert api.client.head(f"/api/v1/artifacts/{sha(work)}", headers=api.h("u1")).status_code == 404
    assert sha(work) not in [f.name for f in blob_files(p)]
    assert sha(data) in [f.name for f in blob_files(p)]
    r = api.client.delete(f"/api/v1/artifacts/{sha(work)}", headers=api.h("u1"))
    assert r.status_code == 404


def _outputs_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _finished_job_with_outputs(w: World, files: dict[str, bytes]) -> tuple[m.Job, str]:
    """A job of tenant one that writes `files` and runs to its end on a real local center; the
    staging code packs its declared outputs and stores them as an artifact of the job."""
    p = w.p
    script = "".join(f"mkdir -p $(dirname {name}); printf %s {shlex.quote(content.decode())} > {name}; "
                     for name, content in files.items())
    job = submit_job(p, w.u1, JobInput(name="writes", command=["/bin/sh", "-c", script],
                                       device=DeviceKind.CPU, walltime_s=60, outputs=["out/*"]))
    w.drive(lambda: w.job(job.id).state == JobState.COMPLETED
            and w.runs(job.id)[-1].outputs_sha256 is not None)
    digest = w.runs(job.id)[-1].outputs_sha256
    assert digest is not None
    return job, digest


def _members(tar: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        return {i.name: t.extractfile(i).read() for i in t if i.isfile()}  # type: ignore[union-attr]


def test_job_outputs_download_and_retention(api: Api) -> None:
    w, p = api.world, api.world.p
    files = {"out/model.bin": b"weights", "out/log.txt": b"done"}
    job, digest = _finished_job_with_outputs(w, files)
    r = api.client.get(f"/api/v1/jobs/{job.id}/outputs", headers=api.h("u1"))
    assert r.status_code == 200 and _members(r.content) == files
    assert r.headers["content-type"] == "application/x-tar"
    assert f"job-{job.id}-outputs.tar" in r.headers["content-disposition"]
    # A generic client asks for plain bytes: the same bytes, labelled as it asked.
    for accept, kind in (("application/octet-stream", "application/octet-stream"),
                         ("application/x-tar, application/octet-stream", "application/x-tar"),
                         ("*/*", "application/x-tar")):
        again = api.client.get(f"/api/v1/jobs/{job.id}/outputs",
                               headers={**api.h("u1"), "Accept": accept})
        assert again.headers["content-type"] == kind and again.content == r.content, accept
        assert again.headers["vary"] == "Accept"
        assert again.headers["cache-control"] == "private, no-store"
    listed = api.client.get("/api/v1/artifacts", params={"job_id": job.id},
                            headers=api.h("u1")).json()["items"]
    assert [(a["kind"], a["sha256"]) for a in listed] == [("outputs", digest)]
    assert listed[0]["expires_at"] is not None
    # Not the other tenant's, nor the roles that do not read a tenant's work.
    assert api.client.get(f"/api/v1/jobs/{job.id}/outputs", headers=api.h("u2")).status_code == 404
    for who in ("reviewer", "auditor", "op", "admin"):
        assert api.client.get(f"/api/v1/jobs/{job.id}/outputs",
                              headers=api.h(who)).status_code == 403
    # A job that declared none says so.
    plain = _queue(p, w.u1)
    r = api.client.get(f"/api/v1/jobs/{plain.id}/outputs", headers=api.h("u1"))
    assert r.status_code == 404 and "declared no outputs" in r.json()["error"]
    # Retention: kept until its day, removed by the engine's housekeeping after.
    clock = FixedClock(p.clock.now())
    p.clock = clock
    clock.advance(p.settings.outputs_retention_days * 86400 - 60)
    w.engine.housekeeping()
    assert api.client.get(f"/api/v1/jobs/{job.id}/outputs", headers=api.h("u1")).status_code == 200
    clock.advance(120)
    w.engine.housekeeping()
    r = api.client.get(f"/api/v1/jobs/{job.id}/outputs", headers=api.h("u1"))
    assert r.status_code == 404 and "no longer kept" in r.json()["error"]
    assert blob_files(p, w.t1.id) == []
    assert api.client.get("/api/v1/artifacts", headers=api.h("u1")).json()["total"] == 0


def test_reaping_spares_outputs_a_waiting_job_reads(world: World) -> None:
    p = world.p
    _, digest = _finished_job_with_outputs(world, {"out/a": b"a"})
    reader = _queue(p, world.u1, inputs=[{"artifact": digest, "path": "prev"}])
    clock = FixedClock(p.clock.now())
    p.clock = clock
    clock.advance((p.settings.outputs_retention_days + 1) * 86400)
    assert artifacts.reap_expired_outputs(p) == 0
    cancel_job(p, world.u1, reader.id)
    assert artifacts.reap_expired_outputs(p) == 1
    assert not p.blobs.exists(world.t1.id, digest)


def test_datasets_register_upload_list_and_remove(api: Api) -> None:
    w, p = api.world, api.world.p
    h = api.h("u1")
    body = {"name": "imagenet", "center": "alpha", "path": "/data/imagenet",
            "size_bytes": 150 << 30, "sha256": "ab" * 32}
    r = api.client.post("/api/v1/datasets", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["locations"] == [{"center": "alpha", "path": "/data/imagenet"}]
    assert api.client.post("/api/v1/datasets", json=body, headers=h).status_code == 409
    for bad, field in (({"path": "data/rel"}, "path"), ({"path": "/a/../b"}, "path"),
                       ({"center": "nowhere"}, "center"), ({"name": "a b"}, "name"),
                       ({"size_bytes": None}, "size_bytes")):
        r = api.client.post("/api/v1/datasets", json={**body, "name": "other", **bad}, headers=h)
        assert r.status_code in (404, 422) and r.json()["field"] == field, (bad, r.text)
    # An uploaded one: a tar artifact of the tenant.
    tar = _outputs_tar({"train.csv": b"1,2\n"})
    api.put("u1", tar, kind="dataset", name="small")
    r = api.client.post("/api/v1/datasets", json={"name": "small", "artifact": sha(tar)},
                        headers=h)
    assert r.status_code == 201 and r.json()["uploaded"] and r.json()["locations"] == []
    # Another tenant's artifact cannot become this tenant's dataset.
    other = b"tenant two's"
    api.put("u2", other)
    r = api.client.post("/api/v1/datasets", json={"name": "stolen", "artifact": sha(other)},
                        headers=h)
    assert r.status_code == 404
    page = api.client.get("/api/v1/datasets", headers=h).json()
    assert [d["name"] for d in page["items"]] == ["imagenet", "small"]
    assert api.client.get("/api/v1/datasets", headers=api.h("u2")).json()["total"] == 0
    # The dataset's artifact cannot be deleted under it; a waiting job keeps the dataset.
    r = api.client.delete(f"/api/v1/artifacts/{sha(tar)}", headers=h)
    assert r.status_code == 409 and "small" in r.json()["error"]
    job = _queue(p, w.u1, inputs=[{"dataset": "small", "path": "data"}])
    assert api.client.delete("/api/v1/datasets/small", headers=h).status_code == 409
    cancel_job(p, w.u1, job.id)
    assert api.client.delete("/api/v1/datasets/small", headers=h).status_code == 204
    assert not p.blobs.exists(w.t1.id, sha(tar))  # an uploaded dataset's bytes go with it
    assert api.client.delete("/api/v1/datasets/small", headers=h).status_code == 404
    assert api.client.delete("/api/v1/datasets/imagenet", headers=api.h("u2")).status_code == 404


def test_bytes_to_move_counts_what_is_not_at_the_center(world: World) -> None:
    p, w = world.p, world
    work = p.blobs.put(w.t1.id, [b"w" * 300], max_size=10**6)
    up = p.blobs.put(w.t1.id, [b"u" * 50], max_size=10**6)
    with p.db.session() as s:
        for stored, kind in ((work, "workdir"), (up, "upload")):
            s.add(m.Artifact(tenant_id=w.t1.id, sha256=stored.sha256, size_bytes=stored.size,
                             kind=kind, created_at=p.clock.now()))
    datasets.add_dataset(p, w.u1, name="big", center="alpha", path="/d/big", size_bytes=10_000)
    inputs = [{"dataset": "big", "path": "d"}, {"artifact": up.sha256, "path": "u"},
              {"dataset": "unknown", "path": "x"}]
    with p.db.session() as s:
        assert datasets.dataset_bytes_to_move(s, w.t1.id, inputs, w.alpha.id,
                                              workdir_sha256=work.sha256) == 350
        assert datasets.dataset_bytes_to_move(s, w.t1.id, inputs, w.beta.id,
                                              workdir_sha256=work.sha256) == 10_350
        assert datasets.bytes_to_move(s, w.t1.id, inputs, [w.alpha.id, w.beta.id]) == {
            w.alpha.id: 50, w.beta.id: 10_050}
        # Another tenant's names and shas move nothing of tenant one's.
        assert datasets.dataset_bytes_to_move(s, w.t2.id, inputs, w.beta.id) == 0
        ds_id = s.scalar(select(m.Dataset.id).where(m.Dataset.name == "big"))
        assert ds_id is not None
    with p.db.session() as s:
        assert datasets.record_dataset_copied(s, ds_id, w.beta.id, p.clock.now())
    with p.db.session() as s:
        assert not datasets.record_dataset_copied(s, ds_id, w.beta.id, p.clock.now())
        assert datasets.dataset_bytes_to_move(s, w.t1.id, inputs, w.beta.id) == 50
    listed = datasets.list_datasets(p, w.u1).items[0]
    assert listed.centers == ("alpha", "beta")


def test_services_refuse_the_wrong_kind_and_name(world: World) -> None:
    p = world.p
    with pytest.raises(Exception, match="kind"):
        artifacts.store_upload(p, world.u1, [b"x"], kind="outputs")
    with pytest.raises(Exception, match="name"):
        artifacts.store_upload(p, world.u1, [b"x"], name="a\nb")
    row, new = artifacts.store_upload(p, world.u1, iter([b"ab", b"cd"]))
    assert new and row.sha256 == sha(b"abcd") and row.size_bytes == 4
    datasets.add_dataset(p, world.u1, name="d", center="alpha", path="/d", size_bytes=1)
    with pytest.raises(Conflict):
        datasets.add_dataset(p, world.u1, name="d", center="alpha", path="/d", size_bytes=1)


def test_a_store_at_another_fsspec_url(world: World, tmp_path: Path) -> None:
    """The store is any fsspec URL: the same upload through `memory://`."""
    p = world.p
    p.settings = replace(p.settings, artifacts_url="memory://suanli-test-store")
    p._blobs = None
    row, new = artifacts.store_upload(p, world.u1, [b"in memory"])
    assert new and p.blobs.url.startswith("memory://") and p.blobs.local_path(1, row.sha256) is None
    assert b"".join(p.blobs.iter_bytes(world.t1.id, row.sha256)) == b"in memory"
    assert isinstance(p.blobs, BlobStore)


def test_temporary_files_of_a_dead_upload_are_swept_after_a_day(world: World) -> None:
    """A server killed mid-upload leaves its temporary file; the next day's sweep removes it,
    never one of an upload still streaming."""
    p = world.p
    incoming = Path(p.blobs.root) / str(world.t1.id) / ".incoming"
    incoming.mkdir(parents=True)
    dead, live = incoming / "dead", incoming / "live"
    dead.write_bytes(b"x" * 100)
    live.write_bytes(b"y")
    now = p.clock.now().timestamp()
    os.utime(dead, (now - 2 * 86400, now - 2 * 86400))
    assert artifacts.sweep_incoming(p) == 1
    assert not dead.exists() and live.exists()


def test_outputs_arriving_side_by_side_stay_within_the_quota(world: World) -> None:
    """Two runs' outputs both fitted the room left when each began to arrive; the second to be
    recorded finds it gone and is not kept (a review stored 1.9 GB past a 400 MiB quota so)."""
    p = world.p
    with p.db.session() as s:
        tenant = s.get(m.Tenant, world.t1.id)
        assert tenant is not None
        tenant.storage_quota_bytes = 1000
    job1, job2 = _queue(p, world.u1), _queue(p, world.u1)
    first = p.blobs.put(world.t1.id, [b"a" * 600], max_size=10_000)
    second = p.blobs.put(world.t1.id, [b"b" * 600], max_size=10_000)
    with p.db.session(immediate=True) as s:
        artifacts.record_outputs(s, p, tenant_id=world.t1.id, job_id=job1.id, stored=first,
                                 now=p.clock.now())
    with pytest.raises(TooLarge), p.db.session(immediate=True) as s:
        artifacts.record_outputs(s, p, tenant_id=world.t1.id, job_id=job2.id, stored=second,
                                 now=p.clock.now())
    artifacts.drop_unrecorded(p, world.t1.id, second.sha256)
    assert p.blobs.exists(world.t1.id, first.sha256)
    assert not p.blobs.exists(world.t1.id, second.sha256)


def test_one_tenant_cannot_stream_more_uploads_at_once_than_allowed(world: World) -> None:
    """Each upload may grow to the largest artifact size before the quota check: a tenant
    opening many at once gets 429 past SUANLI_UPLOADS_PER_TENANT, others are not held up, and
    a slot frees when an upload ends (refused or not)."""
    import threading

    p = world.p
    p.settings = replace(p.settings, uploads_per_tenant=2)
    go = threading.Event()
    started = threading.Semaphore(0)
    results: list[object] = []

    def slow(tag: bytes) -> Iterator[bytes]:
        started.release()
        go.wait(10)
        yield tag

    def upload(tag: bytes) -> None:
        results.append(artifacts.store_upload(p, world.u1, slow(tag))[0].sha256)

    threads = [threading.Thread(target=upload, args=(t,)) for t in (b"one", b"two")]
    for t in threads:
        t.start()
    for _ in threads:
        assert started.acquire(timeout=10)
    with pytest.raises(Busy, match="2 uploads of your tenant are already in progress"):
        artifacts.store_upload(p, world.u1, [b"three"])
    other = artifacts.store_upload(p, world.u2, [b"another tenant"])[0]  # not held up
    assert other.size_bytes == len(b"another tenant")
    go.set()
    for t in threads:
        t.join(10)
    assert sorted(results) == sorted([sha(b"one"), sha(b"two")])  # type: ignore[type-var]
    with pytest.raises(TooLarge):  # a refused upload frees its slot too
        p.settings = replace(p.settings, artifact_max_bytes=1)
        artifacts.store_upload(p, world.u1, [b"too big"])
    p.settings = replace(p.settings, artifact_max_bytes=1 << 20)
    for tag in (b"three", b"four", b"five"):
        assert artifacts.store_upload(p, world.u1, [tag])[1]
