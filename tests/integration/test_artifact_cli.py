"""`suanli artifact ...` and `suanli data ...` as a user runs them, against a real server."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from .conftest import Server


def test_artifact_upload_list_download_rm(server: Server, tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "train.py").write_text("print('train')\n")
    (proj / "data/big.bin").write_bytes(b"\0" * 5000)
    (proj / ".gitignore").write_text("data/\n")
    r = server.cli("artifact", "upload", str(proj), "--kind", "workdir", "-o", "json")
    assert r.returncode == 0, r.stderr
    art = json.loads(r.stdout)
    assert art["created"] and art["kind"] == "workdir" and art["name"] == "proj"
    again = server.cli("artifact", "upload", str(proj), "--kind", "workdir")
    assert again.returncode == 0 and "nothing transferred" in again.stdout
    listed = server.cli("artifact", "list")
    assert art["sha256"][:12] in listed.stdout and "workdir" in listed.stdout
    assert "of 50.0 GiB" in listed.stdout and "1 of 10,000 artifacts" in listed.stdout
    out = tmp_path / "got.tar"
    r = server.cli("artifact", "download", art["sha256"][:10], "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == art["sha256"]
    with tarfile.open(fileobj=io.BytesIO(out.read_bytes())) as tar:
        assert sorted(tar.getnames()) == [".gitignore", "train.py"]  # data/ was ignored
    # Another tenant sees none of it.
    other = server.cli("artifact", "download", art["sha256"], "-o", str(tmp_path / "x"),
                       token="tenant_b")
    assert other.returncode == 1 and f"no artifact {art['sha256']}" in other.stderr
    assert not (tmp_path / "x").exists()
    bad = server.cli("artifact", "rm", "zz")
    assert bad.returncode == 1 and "first 6 hex digits" in bad.stderr
    r = server.cli("artifact", "rm", art["sha256"][:12])
    assert r.returncode == 0 and "deleted" in r.stdout
    assert json.loads(server.cli("artifact", "list", "-o", "json").stdout)["total"] == 0


def test_data_add_list_rm(server: Server, tmp_path: Path) -> None:
    local = tmp_path / "readable.csv"
    local.write_bytes(b"a,b\n1,2\n")
    r = server.cli("data", "add", "shared", str(local), "--center", "qd-ai", "-o", "json")
    assert r.returncode == 0, r.stderr
    ds = json.loads(r.stdout)
    assert ds["size_bytes"] == 8 and ds["sha256"] == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    r = server.cli("data", "add", "imagenet", "/data/imagenet", "--center", "qd-ai",
                   "--size", "150G")
    assert r.returncode == 0 and "150.0 GiB" in r.stdout, r.stderr
    folder = tmp_path / "small"
    folder.mkdir()
    (folder / "x.txt").write_text("x" * 100)
    r = server.cli("data", "add", "small", str(folder))
    assert r.returncode == 0 and "uploaded" in r.stdout, r.stderr
    listed = server.cli("data", "list")
    assert all(n in listed.stdout for n in ("shared", "imagenet", "small", "qd-ai"))
    kinds = json.loads(server.cli("artifact", "list", "-o", "json").stdout)["items"]
    assert [a["kind"] for a in kinds] == ["dataset"]
    for args, words in ((["nope", "/not/here", "--center", "qd-ai"], "--size"),
                        (["nope", "/not/here"], "does not exist here"),
                        (["nope", "/d", "--center", "atlantis", "--size", "1G"], "atlantis"),
                        (["imagenet", "/d", "--center", "qd-ai", "--size", "1G"], "exists"),
                        (["nope", "/d", "--center", "qd-ai", "--size", "big"], "--size")):
        r = server.cli("data", "add", *args)
        assert r.returncode == 1 and words in r.stderr and "Traceback" not in r.stderr, args
    assert server.cli("data", "rm", "small").returncode == 0
    assert json.loads(server.cli("artifact", "list", "-o", "json").stdout)["total"] == 0
    r = server.cli("data", "rm", "small")
    assert r.returncode == 1 and "no dataset" in r.stderr
    assert server.cli("data", "list", token="tenant_b").stdout.count("imagenet") == 0


def test_a_dataset_registered_at_a_center_keeps_the_job_there(server: Server,
                                                               tmp_path: Path) -> None:
    """Its bytes are not in suanli, so the job cannot run elsewhere: `--dry-run` places it at
    the center holding it, and a job that fits no pool there is refused, naming the dataset."""
    r = server.cli("data", "add", "imagenet", "/data/imagenet", "--center", "qd-ai",
                   "--size", "150G")
    assert r.returncode == 0, r.stderr
    task = tmp_path / "task.yaml"
    task.write_text("name: t\nworkdir: null\nrun: 'true'\nresources: {device: cpu, units: 1}\n"
                    "policy: cheapest\ninputs:\n  - {dataset: imagenet, path: data}\n")
    r = server.cli("run", str(task), "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "would go to qd-ai/kunpeng-920" in r.stdout  # not the cheaper ct-cloud/vcpu
    task.write_text(task.read_text() + "constraints: {arch: x86_64}\n")  # qd-ai's CPUs: aarch64
    for args in (["run", str(task), "--dry-run"], ["run", str(task)]):
        r = server.cli(*args)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stdout + r.stderr
        assert "dataset imagenet is only at qd-ai, where no pool can run it" in r.stderr, \
            r.stderr
    # Tenant B's job naming a dataset of that name: B has none (not tenant A's).
    r = server.cli("run", str(task), "--dry-run", token="tenant_b")
    assert r.returncode == 1 and "dataset 'imagenet' not found" in r.stderr, r.stderr
