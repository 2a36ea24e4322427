"""Outside review of issue 16 (the per-center dataset cache, Slurm's staging_dir copies, the
client's pack cache): attacker tests for what the review found. Real platform, real engine
passes, real local executor (sandboxed jobs), real processes of another uid."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from suanli.domain.jobstate import JobState
from suanli.services.jobs import submit_job

from ..conftest import World
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
