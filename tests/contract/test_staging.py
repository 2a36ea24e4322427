"""Bring your own work, on every connector that declares STAGING: a work folder and inputs reach
the job's working folder, its variables reach it, and its declared outputs come back — also
when it fails."""

from __future__ import annotations

import os

import pytest

from suanli.connectors import Capability
from suanli.domain.enums import RunState

from .conftest import Backend
from .stage_server import StageServer, names_in, tar_of

pytestmark = pytest.mark.contract


def _staging(backend: Backend) -> None:
    if Capability.STAGING not in backend.connector.capabilities:
        pytest.fail(f"{backend.name} does not declare STAGING: every connector must stage")


def test_a_work_folder_and_inputs_reach_the_job(backend: Backend,
                                                stage_server: StageServer) -> None:
    _staging(backend)
    workdir = stage_server.add(tar_of({
        "run.sh": "echo script-ran; cat data/in.txt; cat extra/notes.txt; cat single.cfg\n",
        "data/": "data/", "data/in.txt": "data-line-1\n"}), local=backend.name == "local")
    extra = stage_server.add(tar_of({"notes.txt": "notes-here\n"}), dest="extra")
    single = stage_server.add(b"cfg=1\n", dest="single.cfg", unpack=False)
    req = backend.staged(["sh", "-c", "sh run.sh; echo var=$GREETING"], stage_server,
                         stage=(workdir, extra, single), env={"GREETING": "ni hao"})
    ext = backend.connector.submit(req)
    st = backend.wait_end(ext, timeout=120)
    assert st.state is RunState.COMPLETED, (st, backend.connector.logs(ext, "stderr"))
    out = backend.connector.logs(ext).decode()
    assert "script-ran\ndata-line-1\nnotes-here\ncfg=1\nvar=ni hao\n" in out, out


def test_declared_outputs_come_back_and_nothing_else(backend: Backend,
                                                     stage_server: StageServer) -> None:
    _staging(backend)
    script = ("mkdir -p out/deep; echo a > out/a.txt; echo b > out/deep/b.txt; echo log > out/c.log;"
              " echo m > model.bin; echo no > other.txt")
    req = backend.staged(["sh", "-c", script], stage_server,
                         outputs=("out/*.txt", "out/deep", "model.bin"))
    ext = backend.connector.submit(req)
    assert backend.wait_end(ext, timeout=120).state is RunState.COMPLETED
    files = names_in(backend.outputs_of(ext, req, stage_server))
    assert files == {"out/a.txt": b"a\n", "out/deep/b.txt": b"b\n", "model.bin": b"m\n"}


def test_a_failed_job_keeps_its_outputs(backend: Backend, stage_server: StageServer) -> None:
    _staging(backend)
    req = backend.staged(["sh", "-c", "mkdir out; echo partial > out/log.txt; exit 3"],
                         stage_server, outputs=("out/**",))
    ext = backend.connector.submit(req)
    st = backend.wait_end(ext, timeout=120)
    assert st.state is RunState.FAILED and st.exit_code == 3, st
    assert names_in(backend.outputs_of(ext, req, stage_server)) == {"out/log.txt": b"partial\n"}


def test_an_unsafe_work_folder_fails_the_run_before_the_job_starts(
        backend: Backend, stage_server: StageServer) -> None:
    _staging(backend)
    bad = stage_server.add(tar_of({"ok.txt": "fine\n", "../escaped.txt": "out\n"}),
                           local=backend.name == "local")
    req = backend.staged(["sh", "-c", "echo JOB-RAN"], stage_server, stage=(bad,))
    try:
        ext = backend.connector.submit(req)
    except Exception as exc:  # refusing it at submit is as good
        assert "escaped.txt" in str(exc) or "outside" in str(exc), exc
        return
    st = backend.wait_end(ext, timeout=120)
    assert st.state is RunState.FAILED, st
    assert b"JOB-RAN" not in backend.connector.logs(ext)


def test_slurm_reads_stage_items_from_a_shared_staging_folder(
        slurm_backend: Backend, stage_server: StageServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A center configured with `staging_dir` gets each item copied there once by suanli (by
    SHA-256); its jobs read it from there, never over HTTP."""
    from dataclasses import replace

    from suanli.connectors import create

    shared = tmp_path_factory.mktemp("shared-stage")
    conn = create("slurm", {**slurm_backend.connector.config,  # type: ignore[attr-defined]
                            "staging_dir": str(shared)}, shared)
    item = replace(stage_server.add(tar_of({"hello.txt": "from the shared folder\n"}),
                                    local=True), url="http://127.0.0.1:1/unreachable")
    req = slurm_backend.staged(["cat", "hello.txt"], stage_server, stage=(item,))
    ext = conn.submit(req)
    st = slurm_backend.wait_end(ext, timeout=120)
    assert st.state is RunState.COMPLETED, (st, conn.logs(ext, "stderr"))
    assert conn.logs(ext) == b"from the shared folder\n"
    assert (shared / item.sha256).read_bytes() == stage_server.blobs[item.sha256]
    # An uploaded dataset (`cache`): its tar is at the center now, counted present; each run
    # unpacks it into its own folder (no read-only bind on Slurm). Removed with the dataset
    # unless another tenant stores the same bytes.
    ds = replace(stage_server.add(tar_of({"d.txt": "dataset\n"}), local=True),
                 url="http://127.0.0.1:1/unreachable", dest="data", cache=True)
    assert not conn.holds_dataset(1, ds.sha256)  # type: ignore[attr-defined]
    ext = conn.submit(slurm_backend.staged(["cat", "data/d.txt"], stage_server, stage=(ds,)))
    assert conn.holds_dataset(1, ds.sha256)  # type: ignore[attr-defined]
    st = slurm_backend.wait_end(ext, timeout=120)
    assert st.state is RunState.COMPLETED and conn.logs(ext) == b"dataset\n", st
    conn.drop_dataset(1, ds.sha256, True)  # type: ignore[attr-defined]
    assert conn.holds_dataset(1, ds.sha256)  # type: ignore[attr-defined]
    conn.drop_dataset(1, ds.sha256, False)  # type: ignore[attr-defined]
    assert not (shared / ds.sha256).exists()
    # A file a job planted under that name is not suanli's copy: not counted present.
    planted = shared / ds.sha256
    planted.write_bytes(b"not the dataset")
    os.chown(planted, 12345, 12345)
    assert not conn.holds_dataset(1, ds.sha256)  # type: ignore[attr-defined]


def test_outputs_that_match_nothing_keep_no_empty_archive(backend: Backend,
                                                          stage_server: StageServer) -> None:
    _staging(backend)
    req = backend.staged(["sh", "-c", "echo kept-nowhere > other.txt"], stage_server,
                         outputs=("out/**",))
    ext = backend.connector.submit(req)
    st = backend.wait_end(ext, timeout=120)
    assert st.state is RunState.COMPLETED, st
    collect = getattr(backend.connector, "collect_outputs", None)
    if collect is not None:  # packed by the center's supervisor: the run's reason says why
        assert collect(ext) is None
        assert "no file matched out/**" in (st.reason or ""), st
    else:  # packed in the job's own wrapper, before the run ends: nothing was uploaded
        assert req.run_key not in stage_server.outputs
        stream = "stdout" if backend.merged_logs else "stderr"
        assert b"no file matched out/**" in backend.connector.logs(ext, stream)
