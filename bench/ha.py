"""Engine takeover after `kill -9` of the leader (issue 17), on a real PostgreSQL.

A `suanli serve --demo --no-engine` replica and two `suanli engine` candidates run as separate
processes on a fresh PostgreSQL (tests/services/postgres.sh, started and removed here). Each round
kills the leader with SIGKILL, submits a job through the replica at once, and measures from the
kill to (a) the new leader seen in `GET /api/v1/health` and (b) the first run placed under the
new epoch committed in the database (`runs.epoch`); then the killed candidate is started again,
so that two candidates are always there. Goal: p50 <= 5 s, max <= 10 s to the first placement.

Prints a table, writes bench/results/ha-latest.json; removes everything it made.

    python bench/ha.py [--kills 10] [--lease 10] [--renew 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from demo_server import BIN, free_port
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from suanli.store import models as m
from suanli.store.db import Database

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG = ROOT / "tests" / "services" / "postgres.sh"


def start_postgres() -> dict[str, str]:
    state = tempfile.mkdtemp(prefix="suanli-bench-pg.")
    os.chmod(state, 0o755)
    env = dict(os.environ, PG_STATE_DIR=state)
    out = subprocess.run([str(PG), "start"], env=env, check=True, capture_output=True, text=True,
                         timeout=120).stdout
    for line in out.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = value.strip("'\"")
    return env


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = check()
        if found:
            return found
        time.sleep(interval)
    raise TimeoutError(f"not reached in {timeout:.0f} s: {what}")


@dataclass
class Plane:
    home: Path
    url: str
    lease: float
    renew: float
    port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = dict(os.environ, SUANLI_HOME=str(self.home), SUANLI_DATABASE_URL=self.url,
                   SUANLI_LEASE_S=str(self.lease), SUANLI_LEASE_RENEW_S=str(self.renew),
                   SUANLI_SCHEDULER_INTERVAL="1", SUANLI_LOG_LEVEL="WARNING",
                   SUANLI_ENGINE_NICE="0")
        env.pop("SUANLI_TOKEN", None)
        return env

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.home / f"{args[0]}-{len(self.procs)}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen([str(BIN / "suanli"), *args], env=self.env(), stdout=log,
                                stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> bool:
        try:
            return httpx.get(f"{self.base}/api/v1/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def leader(self) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] | None = httpx.get(f"{self.base}/api/v1/health",
                                                     timeout=2).json().get("leader")
            return found
        except (httpx.HTTPError, ValueError):
            return None

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def run(kills: int, lease: float, renew: float) -> list[dict[str, float]]:
    pg = start_postgres()
    home = Path(tempfile.mkdtemp(prefix="suanli-bench-ha."))
    plane = Plane(home, pg["SQLALCHEMY_URL"], lease, renew)
    db = Database(plane.url)
    rounds: list[dict[str, float]] = []
    try:
        plane.spawn("serve", "--demo", "--no-engine", "--port", str(plane.port))
        wait_for(plane.up, 120, "the API replica answering")
        token = json.loads((home / "demo-credentials.json").read_text())["tenant_a"]
        api = httpx.Client(base_url=plane.base, timeout=10,
                           headers={"Authorization": f"Bearer {token}"})
        engines = {p.pid: p for p in (plane.spawn("engine"), plane.spawn("engine"))}

        def submit(name: str) -> None:
            r = api.post("/api/v1/jobs", json={"name": name, "command": ["true"],
                                               "walltime_s": 60,
                                               "resources": {"device": "cpu", "units": 1}})
            r.raise_for_status()

        def placed_under(epoch: int) -> bool:
            with db.session() as s:
                return bool(s.scalar(select(func.count()).select_from(m.Run)
                                     .where(m.Run.epoch == epoch)))

        for i in range(kills):
            lead = wait_for(lambda: (ld := plane.leader()) and ld["pid"] in engines
                            and ld["expires_in_s"] > 0 and ld, 120, "a leader")
            epoch = int(lead["epoch"])
            submit(f"warm-{i}")  # the leader is placing: kill it in the middle of its work
            wait_for(lambda e=epoch: placed_under(e), 60, "a placement by the leader")
            victim = engines.pop(int(lead["pid"]))
            victim.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            victim.wait()
            submit(f"after-kill-{i}")
            new = wait_for(lambda e=epoch: (ld := plane.leader()) and ld["epoch"] > e and ld,
                           120, "the next leader")
            seen = time.monotonic() - killed
            wait_for(lambda e=int(new["epoch"]): placed_under(e), 120,
                     "a placement by the next leader")
            placed = time.monotonic() - killed
            rounds.append({"leader_seen_s": round(seen, 2), "first_placement_s": round(placed, 2)})
            print(f"kill {i + 1}/{kills}: new leader after {seen:.2f} s, first placement after "
                  f"{placed:.2f} s", file=sys.stderr)
            proc = plane.spawn("engine")  # two candidates again
            engines[proc.pid] = proc
        api.close()
    finally:
        plane.stop()
        db.dispose()
        subprocess.run([str(PG), "stop"], env=pg, check=False, capture_output=True, timeout=60)
        shutil.rmtree(pg["PG_STATE_DIR"], ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    return rounds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--lease", type=float, default=10.0, help="SUANLI_LEASE_S")
    ap.add_argument("--renew", type=float, default=2.0, help="SUANLI_LEASE_RENEW_S")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root: PostgreSQL is started through tests/services/postgres.sh",
              file=sys.stderr)
        return 2
    rounds = run(args.kills, args.lease, args.renew)
    table = Table(title=f"takeover after kill -9 of the leader (lease {args.lease:g} s, renew "
                        f"{args.renew:g} s, {len(rounds)} kills)")
    for col in ("measured from the kill to", "p50 s", "max s", "goal"):
        table.add_column(col, justify="left" if col.startswith("measured") else "right")
    summary: dict[str, Any] = {}
    for key, label, goal in (("leader_seen_s", "the next leader in health", ""),
                             ("first_placement_s", "its first committed placement",
                              "p50 <= 5, max <= 10")):
        values = [r[key] for r in rounds]
        p50, top = statistics.median(values), max(values)
        summary[key] = {"p50": p50, "max": top}
        table.add_row(label, f"{p50:.2f}", f"{top:.2f}", goal)
    Console(width=120).print(table)
    out = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "lease_s": args.lease,
           "renew_s": args.renew, "kills": len(rounds), "rounds": rounds, "summary": summary,
           "goal": {"first_placement_p50_s": 5, "first_placement_max_s": 10},
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ha-latest.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
