"""An uploaded dataset's copy at a local center (issue 16): unpacked once into the center's cache
(root's, per tenant), bound read-only into each run that names it, counted present there once
suanli made it, removed with the dataset — and attacked: another tenant's job, a job writing or
deleting the copy, crafted archives, two first runs at once. Real platform, real engine passes,
real local executor (sandboxed jobs)."""

from __future__ import annotations

import os
import stat
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from suanli.connectors import local_shim
from suanli.domain.enums import DeviceKind
from suanli.domain.jobstate import JobState
from suanli.services import datasets
from suanli.services.auth import Principal
from suanli.services.jobs import JobInput, estimate, submit_job
from suanli.store import models as m

from ..conftest import World
from ..contract.stage_server import tar_of
from .test_staging_attacks import _crafted, finish, put_artifact, stdout

pytestmark = pytest.mark.integration


def add_uploaded(world: World, who: Principal, tenant_id: int, name: str,
                 files: dict[str, str] | bytes) -> str:
    data = files if isinstance(files, bytes) else tar_of(files)
    sha = put_artifact(world, tenant_id, data, kind="dataset")
    datasets.add_dataset(world.p, who, name=name, artifact=sha)
    return sha


def task(script: str, name: str = "ds", path: str = "data",
         district: str | None = "崂山区") -> JobInput:
    # District 崂山区: the world's alpha center (so the copy is made where the test looks).
    return JobInput(name="probe", command=["sh", "-c", script], device=DeviceKind.CPU, units=1,
                    walltime_s=60, district=district, inputs=[{"dataset": name, "path": path}])


def cache_of(world: World, tenant_id: int, sha: str, center: str = "alpha") -> Path:
    return world.p.home / "datasets" / center / f"t{tenant_id}" / sha


def centers_of(world: World, who: Principal, name: str) -> tuple[str, ...]:
    return next(d.centers for d in datasets.list_datasets(world.p, who).items if d.name == name)


def test_an_uploaded_dataset_is_unpacked_once_and_shared_read_only(world: World) -> None:
    w = world
    sha = add_uploaded(w, w.u1, w.t1.id, "ds", {"a.txt": "hello\n", "sub/b.txt": "deep\n",
                                                 "big.bin": "x" * 3_000_000})  # 2.4 ms to move
    anywhere = task("true", district=None)
    before = {c["pool"]: c for c in estimate(w.p, w.u1, anywhere)["candidates"]}
    assert before["alpha/cpu"]["transfer_s"] == before["beta/cpu"]["transfer_s"] > 0
    probe = ("cat data/a.txt data/sub/b.txt; "
             "echo x > data/new 2>/dev/null && echo WROTE; "
             "echo x >> data/a.txt 2>/dev/null && echo APPENDED; "
             "rm -f data/a.txt 2>/dev/null; [ -e data/a.txt ] || echo DELETED; "
             "rm -rf data/sub 2>/dev/null; [ -e data/sub/b.txt ] || echo DELETED-DIR; "
             "chmod 777 data/a.txt 2>/dev/null && echo CHMOD; "
             "mv data/a.txt data/c.txt 2>/dev/null && echo MOVED; "
             "umount data 2>/dev/null && echo UNMOUNTED; "
             "echo mine > own.txt && cat own.txt")  # the rest of the work folder is writable
    first, second = (submit_job(w.p, w.u1, task(probe)).id for _ in range(2))
    for jid in (first, second):
        assert finish(w, jid).state == JobState.COMPLETED.value, w.runs(jid)[-1].reason
        assert stdout(w, jid) == "hello\ndeep\nmine\n", stdout(w, jid)
    copy = cache_of(w, w.t1.id, sha)
    assert (copy / "a.txt").read_text() == "hello\n" and (copy / "sub/b.txt").exists()
    assert sorted(p.name for p in copy.iterdir()) == ["a.txt", "big.bin", "sub"]  # as it was
    assert copy.stat().st_uid == 0 and stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
    assert not [p for p in copy.parent.iterdir() if ".tmp" in p.name]
    # Counted present at alpha now (and only there): the next job's data moves nothing.
    assert centers_of(w, w.u1, "ds") == ("alpha",)
    after = {c["pool"]: c for c in estimate(w.p, w.u1, anywhere)["candidates"]}
    assert after["alpha/cpu"]["transfer_s"] == 0.0 and after["beta/cpu"]["transfer_s"] > 0
    with w.p.db.session() as s:
        assert datasets.dataset_bytes_to_move(s, w.t1.id, task("true").inputs, w.alpha.id) == 0
    # A third run reuses the copy as it is: not unpacked again.
    inode = copy.stat().st_ino
    third = submit_job(w.p, w.u1, task("cat data/a.txt")).id
    assert finish(w, third).state == JobState.COMPLETED.value and stdout(w, third) == "hello\n"
    assert copy.stat().st_ino == inode
    # Deleting the dataset removes the copy and its location.
    datasets.delete_dataset(w.p, w.u1, "ds")
    assert not copy.exists()
    with w.p.db.session() as s:
        assert s.scalar(select(m.DatasetLocation.id)) is None


def test_another_tenants_job_cannot_reach_the_copy(world: World) -> None:
    w = world
    sha = add_uploaded(w, w.u1, w.t1.id, "ds", {"secret.txt": "tenant-one-secret\n"})
    jid = submit_job(w.p, w.u1, task("cat data/secret.txt")).id
    assert finish(w, jid).state == JobState.COMPLETED.value
    copy = cache_of(w, w.t1.id, sha)
    assert copy.is_dir()
    # Tenant two's job, at the same center, with a dataset of the same name of its own.
    add_uploaded(w, w.u2, w.t2.id, "ds", {"mine.txt": "two\n"})
    spy = (f"cat data/mine.txt; cat {copy}/secret.txt 2>/dev/null; ls {copy.parent} "
           f"{w.p.home}/datasets 2>/dev/null; grep -rs tenant-one-secret /work /tmp /etc /dev/shm "
           f"2>/dev/null; find / -xdev -name {sha} 2>/dev/null; find / -maxdepth 6 -name "
           f"secret.txt 2>/dev/null; true")
    other = submit_job(w.p, w.u2, task(spy)).id
    assert finish(w, other, timeout=120).state == JobState.COMPLETED.value
    assert stdout(w, other) == "two\n", stdout(w, other)
    # Tenant two's copy is its own folder; tenant one's dataset is not counted present for it.
    assert cache_of(w, w.t2.id, sha).parent != copy.parent


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink-then-file",
                                  "relative-symlink-then-file", "hardlink-out", "device"])
def test_a_crafted_dataset_cannot_escape_the_cache(world: World, kind: str) -> None:
    w = world
    marker = f"suanli-pwned-{uuid.uuid4().hex}"
    sha = add_uploaded(w, w.u1, w.t1.id, "bad", _crafted(kind, marker))
    jid = submit_job(w.p, w.u1, task("echo JOB-RAN", name="bad")).id
    assert finish(w, jid).state == JobState.FAILED.value
    assert "staging failed" in w.runs(jid)[-1].reason, w.runs(jid)[-1].reason
    assert "JOB-RAN" not in stdout(w, jid)
    assert not Path("/tmp", marker).exists() and not list(Path("/").glob(f"*/{marker}"))
    assert not list(w.p.home.rglob(marker))
    assert Path("/etc/passwd").stat().st_nlink == 1
    tenant_dir = cache_of(w, w.t1.id, sha).parent
    assert not cache_of(w, w.t1.id, sha).exists()  # no copy, whole or half
    assert not [p for p in tenant_dir.iterdir() if p.is_dir()]
    assert centers_of(w, w.u1, "bad") == ()  # never counted present


def test_two_first_runs_unpack_once_and_never_show_half_a_copy(tmp_path: Path) -> None:
    """The supervisor's own code, in two threads at once (each takes the lock like a separate
    supervisor process does): one unpacks, the other waits and gets the whole copy; a watcher
    never sees the copy's folder before it is complete."""
    kit = local_shim._stagekit()
    files = {f"f{i:03d}.txt": "x" * 5000 for i in range(200)}
    data = tar_of(files)
    src = tmp_path / "blob"
    src.write_bytes(data)
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    item: dict[str, Any] = {"sha256": sha, "size": len(data), "dest": "data", "unpack": True,
                            "local_path": str(src), "url": "", "cache": True}
    cache = tmp_path / "cache" / "t1"
    final = cache / sha
    calls: list[int] = []
    real = kit.fetch_item

    def counting(*args: Any, **kw: Any) -> int:
        calls.append(1)
        time.sleep(0.3)  # a slow unpack: the other run must wait for it
        return int(real(*args, **kw))

    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if final.is_dir():
                seen.append(len(os.listdir(final)))
            time.sleep(0.001)

    kit.fetch_item = counting
    got: list[str] = []
    try:
        watcher = threading.Thread(target=watch)
        watcher.start()
        runs = [threading.Thread(target=lambda: got.append(
            local_shim._cached(kit, item, str(cache), "", 0))) for _ in range(2)]
        for t in runs:
            t.start()
        for t in runs:
            t.join()
        time.sleep(0.05)  # the watcher sees the finished copy too
        done.set()
        watcher.join()
    finally:
        kit.fetch_item = real
    assert got == [str(final), str(final)] and len(calls) == 1
    assert seen and set(seen) == {200}  # whenever visible, whole
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert not [p for p in cache.iterdir() if ".tmp" in p.name]
