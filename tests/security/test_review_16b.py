"""Outside review of issue 16 (the per-center dataset cache, Slurm's staging_dir copies, the
client's pack cache): attacker tests for what the review found. Real platform, real engine
passes, real local executor (sandboxed jobs), real processes of another uid."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from suanli.artifacts import packcache
from suanli.client.uploads import pack_local
from suanli.connectors.slurm import SlurmConnector
from suanli.domain.jobstate import JobState
from suanli.services.jobs import submit_job

from ..conftest import World
from ..contract.stage_server import tar_of
from .test_dataset_cache import add_uploaded, cache_of, centers_of, task
from .test_staging_attacks import finish, stdout

pytestmark = pytest.mark.integration
MB = 1 << 20


def gzip_bomb(name: str, size: int) -> bytes:
    """A gzip-compressed tar holding one file of `size` zero bytes (about size/1000 stored)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = size
        tar.addfile(info, _Zeros(size))
    return gzip.compress(raw.getvalue(), compresslevel=9)


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return b"\0" * n


def tree_bytes(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_compressed_dataset_does_not_grow_past_its_size_in_the_centers_cache(
        world: World) -> None:
    """The cache is on the disk holding $SUANLI_HOME (the database's), outside the run's scratch
    limit: a gzip bomb of a few KiB stored (within any quota) must not become hundreds of MiB
    there, kept for good, nor fill it down to disk_reserve for every tenant. What the cache
    keeps of a tenant's dataset weighs at most what the tenant stores; a dataset that expands
    past that is unpacked into the run's own scratch space instead (bounded by work_limit)."""
    w = world
    bomb = gzip_bomb("zeros.bin", 200 * MB)
    assert len(bomb) < MB
    sha = add_uploaded(w, w.u1, w.t1.id, "bomb", bomb)
    jid = submit_job(w.p, w.u1, task("wc -c < data/zeros.bin", name="bomb")).id
    finish(w, jid, timeout=120)
    tenant_dir = cache_of(w, w.t1.id, sha).parent
    kept = tree_bytes(tenant_dir) if tenant_dir.exists() else 0
    stored = len(bomb)
    assert kept <= stored, f"{kept:,} bytes in the center's cache for {stored:,} stored"
    # The job still got its data (from its own scratch space): it works, it is not cached.
    assert w.job(jid).state == JobState.COMPLETED.value, w.runs(jid)[-1].reason
    assert stdout(w, jid).strip() == str(200 * MB)
    assert centers_of(w, w.u1, "bomb") == ()


# -- Slurm's shared staging_dir ------------------------------------------------------------------
JOB_UID = 12345  # a job of the center's nodes: another Unix user than suanli's


def as_job(*command: str) -> None:
    """Run `command` as another Unix user (a job on the nodes sharing `staging_dir`)."""
    subprocess.run(["setpriv", f"--reuid={JOB_UID}", f"--regid={JOB_UID}", "--clear-groups",
                    *command], check=True, capture_output=True, timeout=30)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder the nodes' jobs can reach and write (what docs/staging.md guards against)."""
    top = Path(tempfile.mkdtemp(prefix="suanli-stage-", dir="/tmp"))
    os.chmod(top, 0o777)
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def slurm_with_staging(tmp_path: Path, shared: Path) -> SlurmConnector:
    return SlurmConnector({"url": "http://127.0.0.1:1", "staging_dir": str(shared)}, tmp_path)


def blob(tmp_path: Path, name: str, data: bytes) -> dict[str, Any]:
    path = tmp_path / name
    path.write_bytes(data)
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "dest": "data",
            "unpack": True, "local_path": str(path), "url": "http://suanli/stage", "cache": True}


def test_a_job_renaming_suanlis_staged_file_does_not_make_a_dataset_present(
        tmp_path: Path, shared: Path) -> None:
    """A job that renames a file suanli staged (any artifact: its own work folder, say) to a
    dataset's SHA-256 leaves a regular file of suanli's user under that name: its bytes are not
    the dataset's, so the dataset is not at the center (placement would send runs there for
    nothing to move, and each would fail its staging)."""
    conn = slurm_with_staging(tmp_path, shared)
    other = blob(tmp_path, "workdir.tar", tar_of({"job.sh": "echo mine\n"}))
    dataset = blob(tmp_path, "dataset.tar", tar_of({"d.txt": "the dataset\n"}))
    conn._staged_copy(other)
    assert conn.holds_dataset(1, other["sha256"])  # (suanli's own, right bytes)
    as_job("mv", str(shared / other["sha256"]), str(shared / dataset["sha256"]))
    assert (shared / dataset["sha256"]).stat().st_uid == os.getuid()
    assert not conn.holds_dataset(1, dataset["sha256"])


def test_a_file_planted_under_a_datasets_name_is_not_what_runs_read(tmp_path: Path,
                                                                    shared: Path) -> None:
    """A job that plants a file named like a dataset (of any tenant: the names are listed there)
    before suanli's first copy must not leave every later run of it at that center reading the
    planted bytes (each failing its SHA-256 check): suanli's copy replaces it, or the run
    fetches the item over HTTP."""
    conn = slurm_with_staging(tmp_path, shared)
    dataset = blob(tmp_path, "dataset.tar", tar_of({"d.txt": "the dataset\n"}))
    as_job("sh", "-c", f"echo planted > {shared / dataset['sha256']}")
    got = conn._staged_copy(dataset)
    if got["local_path"] is not None:
        data = Path(got["local_path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == dataset["sha256"]
    else:
        assert got["url"]
    assert conn.holds_dataset(1, dataset["sha256"]) == (got["local_path"] is not None)


# -- the client's pack cache ----------------------------------------------------------------------
def test_entries_planted_while_the_pack_cache_was_shared_are_not_believed(
        tmp_path: Path, shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pack cache folder that others could write (a shared SUANLI_CACHE_DIR, a group folder)
    is not believed, until the user's first upload makes it 0700: what another user planted
    in it meanwhile (an entry naming an older artifact of the tenant for another folder of the
    user's) must not be believed then — the upload would be skipped and the job would run that
    artifact instead of the folder, which the server cannot notice."""
    cache = shared / "packs"
    cache.mkdir()
    os.chmod(cache, 0o777)
    monkeypatch.setenv("SUANLI_CACHE_DIR", str(cache))
    os.chmod(tmp_path, 0o755)
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, text in ((first, "one"), (second, "two")):
        folder.mkdir()
        (folder / "run.sh").write_text(f"echo {text}\n")
        os.utime(folder / "run.sh", (1, 1))
    old = time.time_ns() + int(10e9)  # (both listings older than the racy window)
    real = pack_local(second, use_cache=False)
    key = packcache.fingerprint(second).key
    older = "ab" * 32  # what the other user wants the job to run
    as_job("sh", "-c", f"mkdir -m 777 {cache / key[:2]} && printf '%s' "
           f"'{{\"sha256\": \"{older}\", \"size\": {real.size}}}' > {cache / key[:2] / key}")
    assert packcache.lookup(packcache.fingerprint(second)) is None  # not trusted: shared
    fp = packcache.fingerprint(first)
    assert packcache.remember(fp, "cd" * 32, 10, now_ns=old)  # the user's first upload
    assert packcache.lookup(fp) == ("cd" * 32, 10)  # the user's own entries are believed
    assert pack_local(second).sha256 == real.sha256
