"""Artifact upload benchmark (issue 16): a work folder packed and uploaded through a real server,
against `tar | cp` of the same folder on the same disk in the same run.

Two work folders are made in a temporary directory (random bytes, so nothing compresses):
  * big:   --size-mb in 8 files (default 1024 MB);
  * small: --files small files of 1-8 KiB in 100 folders (default 10,000).

For each, five ways are timed, the page cache warm for all (each folder is read once first):
  * baseline:   `tar -C DIR -cf - . | cp /dev/stdin OUT` (one read, one write);
  * suanli:     what `suanli artifact upload` and `suanli run` do the first time
                (client.uploads.upload_path): pack once to learn the archive's SHA-256 (an
                archive up to 64 MiB kept in memory), HEAD (does the tenant have it?), then send
                it from memory or packed again as it streams into `PUT /api/v1/artifacts`, where
                the server hashes it again and writes it into its store;
  * again:      the same upload from the same machine: the folder's listing is as when it was
                packed (artifacts.packcache), so it is not read; HEAD answers yes, nothing moves;
  * elsewhere:  the same upload from a machine that never packed it (no memory of it): packed
                and hashed, HEAD answers yes, nothing is transferred;
  * one pass:   for reference, the folder packed straight into the upload without asking
                first (what an uploader without deduplication costs).
The ratio is suanli / baseline (goal: within 1.5x). While the big upload streams, the server
process's resident memory (VmRSS in /proc/PID/status) is sampled every 20 ms: what it adds over
its level before the upload (goal: < 100 MB).

A real `suanli serve --demo` runs with a fresh SUANLI_HOME next to the data (same disk). Prints a
table, writes bench/results/artifacts-upload.json; removes everything it made.

    python bench/artifacts.py [--size-mb 1024] [--files 10000] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from demo_server import BIN, free_port
from rich.console import Console
from rich.table import Table

from suanli.artifacts import packcache
from suanli.client import Client
from suanli.client.uploads import Discard, PackReader, pack_path, upload_path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MB = 1 << 20


@contextmanager
def server(home: Path) -> Iterator[tuple[str, dict[str, str], int]]:
    """`suanli serve --demo` in `home`; yields its URL, the demo tokens and the API process id."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, SUANLI_HOME=str(home), SUANLI_LOG_LEVEL="WARNING",
               SUANLI_ARTIFACT_MAX_BYTES=str(64 << 30))
    proc = subprocess.Popen([str(BIN / "suanli"), "serve", "--demo", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield url, json.loads((home / "demo-credentials.json").read_text()), proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval = pid, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_big(root: Path, size_mb: int, rng: random.Random) -> None:
    root.mkdir()
    per = size_mb // 8
    for i in range(8):
        with open(root / f"shard-{i}.bin", "wb") as fh:
            for _ in range(per):
                fh.write(rng.randbytes(MB))


def make_small(root: Path, files: int, rng: random.Random) -> None:
    for i in range(files):
        d = root / f"d{i % 100:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.txt").write_bytes(rng.randbytes(rng.randint(1024, 8192)))


def folder_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def warm(root: Path) -> None:
    subprocess.run(["tar", "-C", str(root), "-cf", "/dev/null", "."], check=True)
    for f in root.rglob("*"):  # tar skips reading file data when writing to /dev/null
        if f.is_file():
            with open(f, "rb") as fh:
                while fh.read(8 * MB):
                    pass


def baseline(src: Path, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(f"tar -C '{src}' -cf - . | cp /dev/stdin '{out}'", shell=True, check=True)
    os.sync()
    took = time.perf_counter() - t0
    out.unlink()
    return took


def suanli_upload(c: Client, src: Path) -> dict[str, Any]:
    """What `suanli artifact upload` does (pack to learn the SHA-256, HEAD, pack streamed into
    the PUT), timed until the server's store is on disk."""
    t0 = time.perf_counter()
    art = upload_path(c, src, kind="workdir", name=src.name)
    os.sync()
    return {"sha256": art["sha256"], "size": art["size_bytes"],
            "total_s": time.perf_counter() - t0, "transferred": art["created"]}


def one_pass(c: Client, src: Path) -> float:
    """For reference: the folder packed straight into the upload (chunked, no digest announced,
    the server hashes it), without asking first whether the tenant has it: one pass, but
    content the server has is sent again. The price of asking first is the difference."""
    t0 = time.perf_counter()
    reader = PackReader(src)
    try:
        resp = c._http.put("/api/v1/artifacts", params={"kind": "workdir", "name": src.name},
                           content=iter(lambda: reader.read(1 << 20), b""),
                           headers={"Content-Type": "application/octet-stream"})
    finally:
        reader.close()
    resp.raise_for_status()
    os.sync()
    took = time.perf_counter() - t0
    c.delete_artifact(resp.json()["sha256"])
    return took


def pack_only(src: Path) -> float:
    t0 = time.perf_counter()
    pack_path(src, Discard())  # type: ignore[arg-type]
    return time.perf_counter() - t0


def run_case(c: Client, pid: int, name: str, src: Path, scratch: Path) -> dict[str, Any]:
    warm(src)
    time.sleep(packcache.RACY_S)  # a folder changed just now is never remembered
    base = baseline(src, scratch / "baseline.tar")
    rss_before = rss_bytes(pid)
    packing = pack_only(src)
    single = one_pass(c, src)
    with RssSampler(pid) as rss:
        up = suanli_upload(c, src)
    again = suanli_upload(c, src)
    shutil.rmtree(packcache.cache_dir(), ignore_errors=True)
    elsewhere = suanli_upload(c, src)
    c.delete_artifact(up["sha256"])
    data = folder_bytes(src)
    return {"case": name, "bytes": data, "archive_bytes": up["size"],
            "baseline_s": round(base, 3), "suanli_s": round(up["total_s"], 3),
            "pack_and_hash_s": round(packing, 3),
            "one_pass_s": round(single, 3), "one_pass_ratio": round(single / base, 2),
            "ratio": round(up["total_s"] / base, 2),
            "suanli_mb_s": round(data / MB / up["total_s"], 1),
            "baseline_mb_s": round(data / MB / base, 1),
            "dedup_s": round(again["total_s"], 3), "dedup_transferred": again["transferred"],
            "elsewhere_s": round(elsewhere["total_s"], 3),
            "elsewhere_transferred": elsewhere["transferred"],
            "server_rss_before_mb": round(rss_before / MB, 1),
            "server_rss_added_mb": round(max(0, rss.peak - rss_before) / MB, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024, help="the big work folder's size")
    ap.add_argument("--files", type=int, default=10_000, help="the small files' count")
    ap.add_argument("--seed", type=int, default=1, help="the folders' random bytes")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()),
                    help="where the data and the server's home go (one disk)")
    args = ap.parse_args()
    free = shutil.disk_usage(args.dir).free
    need = 4 * args.size_mb * MB
    if free < need + (2 << 30):
        print(f"only {free / 2**30:.1f} GiB free in {args.dir}; use a smaller --size-mb",
              file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="suanli-bench-artifacts.", dir=args.dir))
    os.environ["SUANLI_CACHE_DIR"] = str(work / "pack-cache")  # not the user's ~/.cache
    rows = []
    try:
        big, small, scratch, home = (work / "big", work / "small", work / "scratch",
                                     work / "home")
        scratch.mkdir()
        home.mkdir()
        make_big(big, args.size_mb, rng)
        make_small(small, args.files, rng)
        with server(home) as (url, creds, pid), Client(url, creds["tenant_a"],
                                                       timeout=120) as c:
            rows.append(run_case(c, pid, f"{args.size_mb} MB in 8 files", big, scratch))
            rows.append(run_case(c, pid, f"{args.files:,} small files", small, scratch))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    table = Table(title=f"artifact upload vs tar | cp, same disk (seed {args.seed})")
    for col in ("work folder", "MB", "tar|cp s", "suanli s", "ratio", "MB/s", "pack+hash s",
                "one pass s", "again s", "elsewhere s", "server RSS +MB"):
        table.add_column(col, justify="left" if col == "work folder" else "right")
    for r in rows:
        table.add_row(r["case"], f"{r['bytes'] / MB:,.0f}", f"{r['baseline_s']:.2f}",
                      f"{r['suanli_s']:.2f}", f"{r['ratio']:.2f}x", f"{r['suanli_mb_s']:,.0f}",
                      f"{r['pack_and_hash_s']:.2f}",
                      f"{r['one_pass_s']:.2f} ({r['one_pass_ratio']:.2f}x)", f"{r['dedup_s']:.2f}",
                      f"{r['elsewhere_s']:.2f}", f"{r['server_rss_added_mb']:.1f}")
    Console(width=150).print(table)
    out = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "seed": args.seed,
           "size_mb": args.size_mb, "files": args.files, "results": rows,
           "goals": {"ratio_max": 1.5, "server_rss_added_mb_max": 100},
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "platform": platform.platform()}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "artifacts-upload.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
