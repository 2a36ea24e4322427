"""Federation: a job through a peer platform against the same job at home, in the same run.

Two real `suanli serve --demo` processes on this machine: Yantai (CN-SD-YT) lends, Qingdao
(CN-SD-QD) borrows (joined with `peer invite` / `peer add` over the API). For each work-folder
size, the same task — read the folder's file, write one output — is submitted at Qingdao, in
turns, pinned to its own real pool (`local/cpu`) and to Yantai's (`yantai/local-cpu`); each
job is followed by polling (every 50 ms) from submission to RUNNING and to its outputs being
downloadable at Qingdao. The peer's extra time is compared with what moving the bytes takes
(the folder up to the peer, the outputs back: measured here as one upload of the same size);
the goal is peer ≤ 1.3 × home + transfer. Also: the quote round trip (the connector's
`POST /jobs/estimate` to the peer), p50 and p95.

    .venv/bin/python bench/federation.py [--runs 5] [--sizes 1000,1000000,20000000] [--seed 7]

Prints a table, writes bench/results/federation-latest.json; removes everything it made.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    def __init__(self, name: str, network: str) -> None:
        self.name, self.home, self.port = name, Path(tempfile.mkdtemp(prefix=f"fed-{name}.")), _port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}
        env.update(SUANLI_HOME=str(self.home), SUANLI_NETWORK_ID=network,
                   SUANLI_SCHEDULER_INTERVAL="0.2", SUANLI_ENGINE_NICE="0")
        self.log = open(self.home / "server.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([str(BIN / "suanli"), "serve", "--demo", "--port",
                                      str(self.port)], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self) -> None:
        for _ in range(600):
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200 and \
                        (self.home / "demo-credentials.json").exists():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"{self.name} did not start: {(self.home / 'server.log').read_text()[-2000:]}")

    def api(self, role: str) -> httpx.Client:
        token = json.loads((self.home / "demo-credentials.json").read_text())[role]
        return httpx.Client(base_url=self.url, timeout=60,
                            headers={"Authorization": f"Bearer {token}"})

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        subprocess.run(["pkill", "-f", str(self.home)], check=False)
        shutil.rmtree(self.home, ignore_errors=True)


def _folder(size: int, rng: random.Random) -> tuple[bytes, str]:
    """A packed work folder holding one file of `size` random bytes: (tar, sha256)."""
    buf = io.BytesIO()
    data = rng.randbytes(size)
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("in.bin")
        info.size, info.mode, info.mtime = size, 0o644, 0
        tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return raw, hashlib.sha256(raw).hexdigest()


def _upload(c: httpx.Client, raw: bytes, sha: str) -> float:
    t0 = time.perf_counter()
    r = c.put("/api/v1/artifacts", params={"kind": "workdir"}, content=raw,
              headers={"X-Content-SHA256": sha, "Content-Type": "application/octet-stream"})
    assert r.status_code in (200, 201), r.text
    return time.perf_counter() - t0


def _one(c: httpx.Client, sha: str, place: str, work_s: float) -> tuple[float, float]:
    """Seconds from submission to RUNNING and to the outputs downloadable."""
    t0 = time.perf_counter()
    r = c.post("/api/v1/jobs", json={
        "name": f"bench-{place}",
        "command": ["sh", "-c", f"mkdir -p out; wc -c < in.bin > out/n; sleep {work_s:g}"],
        "resources": {"device": "cpu", "units": 1}, "walltime_s": 300, "workdir": sha,
        "outputs": ["out/**"], "centers": [place]})
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    running = None
    while True:
        state = c.get(f"/api/v1/jobs/{job}").json()["state"]
        now = time.perf_counter() - t0
        if running is None and state in ("RUNNING", "COMPLETED"):
            running = now
        if state in ("FAILED", "CANCELLED", "TIMEOUT"):
            raise SystemExit(f"job {job} at {place}: {state}")
        if state == "COMPLETED" and c.get(f"/api/v1/jobs/{job}/outputs").status_code == 200:
            return running or now, now
        if now > 180:
            raise SystemExit(f"job {job} at {place}: still {state} after 180 s")
        time.sleep(0.05)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", default="1000,1000000,20000000", help="work folder bytes")
    ap.add_argument("--work", default="0,5", help="seconds each job computes (sleeps)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quotes", type=int, default=40)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    sizes = [int(x) for x in args.sizes.split(",")]
    works = [float(x) for x in args.work.split(",")]
    yantai, qingdao = Node("yantai", "CN-SD-YT"), Node("qingdao", "CN-SD-QD")
    rows: list[tuple[int, float, float, float, float, float, float, float]] = []
    out: dict[str, object] = {"runs": args.runs, "seed": args.seed, "sizes": {}}
    try:
        yantai.wait()
        qingdao.wait()
        with yantai.api("platform_admin") as a:
            token = a.post("/api/v1/peers/invitations",
                           json={"name": "qingdao", "credit_limit_fen": 10**9}).json()["token"]
        with qingdao.api("platform_admin") as b:
            r = b.post("/api/v1/peers", json={"name": "yantai", "url": yantai.url, "token": token})
            assert r.status_code == 201, r.text
        from suanli.connectors import create

        conn = create("suanli", {"url": yantai.url, "token": token, "center": "yantai",
                                 "pools": {"local-cpu": {"place": "local/cpu"}}}, qingdao.home)
        body = {"resources": {"device": "cpu", "units": 1}, "walltime_s": 60, "precision": "fp32"}
        conn.quote("local-cpu", body)  # (warm)
        lat = []
        for _ in range(args.quotes):
            t0 = time.perf_counter()
            q = conn.quote("local-cpu", body)  # type: ignore[attr-defined]
            lat.append((time.perf_counter() - t0) * 1000)
            assert q["wait_s"] is not None, q
        lat.sort()
        out["quote_ms"] = {"p50": round(statistics.median(lat), 1),
                           "p95": round(lat[int(0.95 * (len(lat) - 1))], 1), "n": len(lat)}
        with qingdao.api("tenant_a") as c, yantai.api("tenant_b") as probe:
            for size, work_s in [(s, w) for w in works for s in sizes]:
                raw, sha = _folder(size, rng)
                _upload(c, raw, sha)
                transfer = statistics.median(_upload(probe, raw, sha) for _ in range(3))
                home: list[tuple[float, float]] = []
                peer: list[tuple[float, float]] = []
                for k in range(args.runs):  # in turns: both see the same machine's load
                    order = [("local/cpu", home), ("yantai/local-cpu", peer)]
                    for place, acc in order if k % 2 == 0 else order[::-1]:
                        acc.append(_one(c, sha, place, work_s))
                h_run = statistics.median(x[0] for x in home)
                h_out = statistics.median(x[1] for x in home)
                p_run = statistics.median(x[0] for x in peer)
                p_out = statistics.median(x[1] for x in peer)
                goal = 1.3 * h_out + 2 * transfer
                out["sizes"][f"{size}B-{work_s:g}s"] = {
                    "home_running_s": round(h_run, 3), "home_outputs_s": round(h_out, 3),
                    "peer_running_s": round(p_run, 3), "peer_outputs_s": round(p_out, 3),
                    "transfer_s": round(transfer, 4), "ratio_outputs": round(p_out / h_out, 2),
                    "goal_s": round(goal, 3), "meets_goal": p_out <= goal}
                rows.append((size, work_s, h_run, p_run, h_out, p_out, transfer, goal))
    finally:
        qingdao.stop()
        yantai.stop()
    table = Table(title=f"a job through a peer vs at home (median of {args.runs}, seed {args.seed}); "
                        f"quote round trip p50 {out['quote_ms']['p50']} ms, p95 "
                        f"{out['quote_ms']['p95']} ms")
    for col in ("work folder", "job runs", "home: running", "peer: running", "home: outputs back",
                "peer: outputs back", "ratio", "transfer", "goal ≤ 1.3×home+2×transfer"):
        table.add_column(col, justify="right")
    for size, work_s, h_run, p_run, h_out, p_out, transfer, goal in rows:
        table.add_row(f"{size:,} B", f"{work_s:g} s", f"{h_run:.2f} s", f"{p_run:.2f} s", f"{h_out:.2f} s",
                      f"{p_out:.2f} s", f"×{p_out / h_out:.2f}", f"{transfer:.3f} s",
                      ("✓ " if p_out <= goal else "✗ ") + f"{goal:.2f} s")
    Console(width=150).print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "federation-latest.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
