"""`suanli artifact ...`, `suanli data ...`, `suanli job download` and `suanli tenant
storage-quota`: the bytes a tenant brings and takes back."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import typer

from ..artifacts import DOWNLOAD_MARKER, UnsafeArchive, list_files, unpack
from ..client import Client
from ..client.uploads import upload_path
from ..domain.sizes import human_size, parse_size, plural
from .common import Output, OutputOpt, api_errors, client, console, emit_json, fail, run
from .format import grid, when

artifact_app = typer.Typer(help="Artifacts: uploaded work folders, inputs, datasets and jobs' "
                           "outputs. 制品", no_args_is_help=True)
data_app = typer.Typer(help="Datasets jobs read (`inputs: [{dataset: NAME}]`). 数据集",
                       no_args_is_help=True)
# What `job download` unpacks at most (a tar bomb stops there; the folder is discarded).
UNPACK_MAX_BYTES = 1 << 40


def _resolve(c: Client, ref: str) -> str:
    """A full SHA-256 from a unique prefix of one of the tenant's artifacts (as tables show)."""
    ref = ref.strip().lower()
    if len(ref) == 64:
        return ref
    if len(ref) < 6 or any(ch not in "0123456789abcdef" for ch in ref):
        fail(f"{ref!r}: give an artifact's SHA-256 or at least its first 6 hex digits")
    matches = [a["sha256"] for a in c.list_artifacts(limit=1000)["items"]
               if a["sha256"].startswith(ref)]
    if len(matches) != 1:
        fail(f"{ref!r} matches {len(matches)} of your artifacts; give more digits")
    return str(matches[0])


def _artifact_rows(items: list[dict[str, Any]]) -> list[list[str]]:
    return [[a["sha256"][:12], a["kind"], a["name"] or "-", human_size(a["size_bytes"]),
             str(a["job_id"] or "-"), when(a["created_at"]), when(a.get("expires_at"))]
            for a in items]


@artifact_app.command("list")
def artifact_list(kind: str | None = typer.Option(None, "--kind",
                                                  help="upload, workdir, dataset or outputs"),
                  tenant: int | None = typer.Option(None, "--tenant",
                                                    help="a tenant's (platform admin)"),
                  job: int | None = typer.Option(None, "--job", help="a job's outputs"),
                  limit: int = typer.Option(50, help="at most this many (newest first)"),
                  output: Output = OutputOpt) -> None:
    """List your tenant's artifacts, with the storage used against its quota."""
    def fetch(c: Client) -> tuple[dict[str, Any], dict[str, Any] | None]:
        page = c.list_artifacts(kind=kind, tenant_id=tenant, job_id=job, limit=limit)
        me = c.me()
        owner = tenant or me.get("tenant_id")
        return page, c.storage_quota(owner) if owner else None

    page, use = run(fetch)
    if output is Output.json:
        return emit_json({**page, "storage": use})
    cols = ["sha256", "kind", "name", "size", "job", "created", "expires"]
    console.print(grid(f"artifacts 制品 ({page['total']})", cols, _artifact_rows(page["items"]),
                       right={"size", "job"}))
    if use:
        console.print(f"storage: {human_size(use['used_bytes'])} of "
                      f"{human_size(use['quota_bytes'])}, {use['used_count']:,} of "
                      f"{use['quota_count']:,} artifacts")


@artifact_app.command("upload")
def artifact_upload(path: Path = typer.Argument(..., help="a file or folder (packed as a tar)"),
                    kind: str = typer.Option("upload", "--kind", help="upload, workdir or dataset"),
                    name: str | None = typer.Option(None, "--name", help="a label (default: "
                                                    "the file or folder name)"),
                    output: Output = OutputOpt) -> None:
    """Pack and upload a file or folder; nothing is transferred when you have it already."""
    if not path.exists():
        fail(f"PATH: {path} does not exist")
    data = run(lambda c: upload_path(c, path, kind=kind, name=name or path.resolve().name))
    if output is Output.json:
        return emit_json(data)
    verb = "uploaded" if data["created"] else "already stored (nothing transferred)"
    console.print(f"{data['sha256']} {human_size(data['size_bytes'])} {verb}")


@artifact_app.command("download")
def artifact_download(sha: str = typer.Argument(..., help="SHA-256 (or a unique prefix)"),
                      out: Path | None = typer.Option(None, "--out", "-o",
                                                      help="file to write (default ./SHA12.bin)")
                      ) -> None:
    """Download an artifact's bytes to a file."""
    with api_errors(), client() as c:
        full = _resolve(c, sha)
        target = out or Path(f"{full[:12]}.bin")
        n = _download_to(target, lambda fh: c.download_artifact(full, fh))
    console.print(f"{human_size(n)} written to {target}")


def _download_to(target: Path, fetch: Any) -> int:
    """Download into a temporary file beside `target` and move it there when complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".suanli-download.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            n: int = fetch(fh)
        os.replace(tmp, target)
        return n
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@artifact_app.command("rm")
def artifact_rm(sha: str = typer.Argument(..., help="SHA-256 (or a unique prefix)")) -> None:
    """Delete an artifact (refused while a job that has not ended uses it)."""
    def go(c: Client) -> str:
        full = _resolve(c, sha)
        c.delete_artifact(full)
        return full

    full = run(go)
    console.print(f"artifact {full[:12]} deleted")


def unpack_into(archive: Path, dest: Path) -> int:
    """Unpack a downloaded tar into `dest` (created; it must be empty or absent) without
    letting anything land outside it: extracted into a new folder beside it, moved into place
    when the whole archive passed, removed otherwise. Returns the bytes unpacked."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} exists and is not an empty folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with open(archive, "rb") as fh:
            n = unpack(fh, staging, max_bytes=UNPACK_MAX_BYTES)
        # Downloaded into a work folder, it must not go up again with the next run of it.
        (staging / DOWNLOAD_MARKER).write_text(
            "Outputs downloaded by suanli: this folder is never packed into a work folder.\n")
        if dest.exists():
            dest.rmdir()
        staging.rename(dest)
        return n
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def job_download(job_id: int = typer.Argument(..., help="job id"),
                 to: Path | None = typer.Option(None, "--to", help="folder to unpack into "
                                                "(default ./job-N-outputs; must be new or empty)"),
                 tar: Path | None = typer.Option(None, "--tar", help="keep the archive in this "
                                                 "file (unpacked too only with --to)")) -> None:
    """Download what a job's declared `outputs` kept, unpacked safely into a folder."""
    dest = to if to is not None or tar is None else None
    if dest is None and tar is None:
        dest = Path(f"job-{job_id}-outputs")
    if dest is not None and dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        fail(f"--to: {dest} exists and is not an empty folder")
    with api_errors(), client() as c:
        if tar is not None:
            archive = tar
            n = _download_to(tar, lambda fh: c.job_outputs(job_id, fh))
        else:
            fd, name = tempfile.mkstemp(prefix=f"suanli-job-{job_id}.", suffix=".tar")
            os.close(fd)
            archive = Path(name)
            try:
                n = c.job_outputs(job_id, archive)
            except BaseException:
                archive.unlink(missing_ok=True)
                raise
    try:
        if tar is not None:
            console.print(f"job {job_id}'s outputs: {human_size(n)} written to {tar}")
        if dest is not None:
            try:
                unpacked = unpack_into(archive, dest)
            except (UnsafeArchive, FileExistsError) as exc:
                fail(f"job {job_id}'s outputs were not unpacked: {exc}")
            files = sum(1 for f in dest.rglob("*") if f.is_file() and f.name != DOWNLOAD_MARKER)
            console.print(f"job {job_id}'s outputs: {plural(files, 'file')}, "
                          f"{human_size(unpacked)} in {dest}/")
    finally:
        if tar is None:
            archive.unlink(missing_ok=True)


# -- datasets ------------------------------------------------------------------------------------
def _local_size_and_sha(path: Path) -> tuple[int, str | None]:
    """A readable file: its size and SHA-256; a folder: its files' total size (no checksum)."""
    st = path.stat()
    if stat.S_ISREG(st.st_mode):
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        return st.st_size, digest.hexdigest()
    return sum(f.size for f in list_files(path)), None


def _dataset_rows(items: list[dict[str, Any]]) -> list[list[str]]:
    return [[d["name"], human_size(d["size_bytes"]), "uploaded" if d["uploaded"] else "center",
             ", ".join(f"{x['center']}:{x['path']}" if x["path"] else x["center"]
                       for x in d["locations"]) or "-",
             (d["sha256"] or "-")[:12], when(d["created_at"])] for d in items]


@data_app.command("add")
def data_add(name: str = typer.Argument(..., help="dataset name (letters, digits, . _ + -)"),
             path: str = typer.Argument(..., help="with --center: its path there; without: a "
                                        "local file or folder to upload"),
             center: str | None = typer.Option(None, "--center", help="the center (slug) where "
                                               "PATH already is: register it, move nothing"),
             size: str | None = typer.Option(None, "--size", help="its size (e.g. 120G) when "
                                             "PATH is not readable here"),
             sha256: str | None = typer.Option(None, "--sha256", help="its checksum, if known"),
             output: Output = OutputOpt) -> None:
    """Register data already at a center (--center), or upload a local file or folder."""
    body: dict[str, Any] = {"name": name, "sha256": sha256.lower() if sha256 else None}
    local = Path(path)
    if center is not None:
        body.update(center=center, path=path)
        if size is not None:
            try:
                body["size_bytes"] = parse_size(size)
            except ValueError as exc:
                fail(f"--size: {exc}")
        elif local.exists():
            body["size_bytes"], found = _local_size_and_sha(local)
            body["sha256"] = body["sha256"] or found
        else:
            fail(f"--size: {path} is not readable here; give the dataset's size")
        data = run(lambda c: c.add_dataset(body))
    else:
        if size is not None:
            fail("--size: only with --center (an upload's size is what is uploaded)")
        if not local.exists():
            fail(f"PATH: {path} does not exist here (data already at a center: add --center)")

        def upload(c: Client) -> Any:
            art = upload_path(c, local, kind="dataset", name=name)
            return c.add_dataset({**body, "artifact": art["sha256"]})

        data = run(upload)
    if output is Output.json:
        return emit_json(data)
    where = f"at {center}" if center else "uploaded"
    console.print(f"dataset {data['name']} ({human_size(data['size_bytes'])}) {where}")


@data_app.command("list")
def data_list(tenant: int | None = typer.Option(None, "--tenant", help="a tenant's (platform "
                                                "admin)"),
              output: Output = OutputOpt) -> None:
    """List your tenant's datasets and the centers holding a copy."""
    page = run(lambda c: c.list_datasets(tenant_id=tenant, limit=1000))
    if output is Output.json:
        return emit_json(page)
    console.print(grid(f"datasets 数据集 ({page['total']})",
                       ["name", "size", "source", "at centers", "sha256", "created"],
                       _dataset_rows(page["items"]), right={"size"}))


@data_app.command("rm")
def data_rm(name: str = typer.Argument(..., help="dataset name")) -> None:
    """Forget a dataset (an uploaded one's bytes too; data at a center stays there)."""
    run(lambda c: c.delete_dataset(name))
    console.print(f"dataset {name} removed")


# -- storage quota (platform admin) --------------------------------------------------------------
def storage_quota(tenant: int = typer.Argument(..., help="tenant id"),
                  quota_bytes: str | None = typer.Option(None, "--bytes", help="most bytes "
                                                         "stored, e.g. 100G; 'default' for the "
                                                         "platform's"),
                  count: str | None = typer.Option(None, "--count", help="most artifacts; "
                                                   "'default' for the platform's"),
                  output: Output = OutputOpt) -> None:
    """Show a tenant's artifact storage and quota; with --bytes/--count, set it (platform
    admin)."""
    new_bytes: int | None = None
    new_count: int | None = None
    try:
        if quota_bytes is not None and quota_bytes != "default":
            new_bytes = parse_size(quota_bytes)
    except ValueError as exc:
        fail(f"--bytes: {exc}")
    if count is not None and count != "default":
        if not count.isdigit():
            fail(f"--count: {count!r} is not a whole number (or 'default')")
        new_count = int(count)

    def go(c: Client) -> Any:
        use = c.storage_quota(tenant)
        if quota_bytes is None and count is None:
            return use
        keep_bytes = None if use["default_bytes"] else use["quota_bytes"]
        keep_count = None if use["default_count"] else use["quota_count"]
        return c.set_storage_quota(
            tenant, quota_bytes=keep_bytes if quota_bytes is None else new_bytes,
            quota_count=keep_count if count is None else new_count)

    use = run(go)
    if output is Output.json:
        return emit_json(use)
    note = {True: " (platform default)", False: ""}
    console.print(f"tenant {tenant} storage: {human_size(use['used_bytes'])} of "
                  f"{human_size(use['quota_bytes'])}{note[use['default_bytes']]}; "
                  f"{use['used_count']:,} of {use['quota_count']:,} artifacts"
                  f"{note[use['default_count']]}")
