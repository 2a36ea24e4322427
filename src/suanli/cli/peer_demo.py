"""`suanli serve --demo --peer-demo`: three platforms on one machine, already joined — the
national node (CN) and two cities, Qingdao (CN-SD-QD, this server) and Yantai (CN-SD-YT) — so
that a reviewer sees a job from Qingdao run at Yantai and the money reconcile (docs/federation.md).

This server is Qingdao on its port; the national node and Yantai are `suanli serve --demo` child
processes on the next two ports, with data directories under `$SUANLI_HOME/peer-demo/`, stopped
with this one. Once all three answer: the national node invites both cities, which report to it;
Yantai invites Qingdao, which borrows from it; one job of Qingdao's tenant runs at Yantai.
Joining again after a restart skips what is joined already.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..client import ApiError, Client

NATIONAL = {"SUANLI_NETWORK_ID": "CN", "SUANLI_NETWORK_NAME": "国家算力网 National (Jinan hub)",
            "SUANLI_NETWORK_LOCATION": "117.00,36.65"}
YANTAI = {"SUANLI_NETWORK_ID": "CN-SD-YT", "SUANLI_NETWORK_NAME": "烟台 Yantai",
          "SUANLI_NETWORK_LOCATION": "121.45,37.46"}
QINGDAO = {"SUANLI_NETWORK_NAME": "青岛 Qingdao", "SUANLI_NETWORK_LOCATION": "120.38,36.07"}


@dataclass
class Node:
    name: str
    home: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, role: str) -> str:
        data: dict[str, str] = json.loads((self.home / "demo-credentials.json").read_text())
        return data[role]

    def client(self, role: str = "platform_admin") -> Client:
        return Client(self.url, self.token(role), timeout=30)


def _die_with_us() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


def start(home: Path, port: int) -> tuple[list[Node], Node]:
    """Start the national node and Yantai (children of this process); returns them and this
    server (Qingdao) as nodes."""
    base = home / "peer-demo"
    children = [Node("national", base / "national", port + 1, NATIONAL),
                Node("yantai", base / "yantai", port + 2, YANTAI)]
    for node in children:
        node.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items()
               if k not in ("SUANLI_DATABASE_URL", "SUANLI_TOKEN", "SUANLI_URL", "SUANLI_PORT")}
        env.update(node.env, SUANLI_HOME=str(node.home), SUANLI_PEER_DISCOVERY_S="10")
        log = open(node.home / "server.log", "ab")  # noqa: SIM115 - the child's, closed with it
        node.proc = subprocess.Popen(
            [sys.executable, "-c", "from suanli.cli.main import app; app()", "serve", "--demo",
             "--port", str(node.port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_us)  # (only prctl: safe between fork and exec)
    return children, Node("qingdao", home, port, QINGDAO)


def _answers(node: Node) -> bool:
    try:
        Client(node.url, None, timeout=2).health()
        return (node.home / "demo-credentials.json").exists()
    except ApiError:
        return False


def join(nodes: list[Node], qingdao: Node, out: Any = print, timeout: float = 120) -> None:
    """Wait for the three, then join them (what is joined already is left as it is)."""
    national, yantai = nodes
    deadline = time.monotonic() + timeout
    for node in (*nodes, qingdao):
        while not _answers(node):
            if time.monotonic() > deadline or (node.proc is not None and node.proc.poll() is not None):
                out(f"peer demo: {node.name} did not start (see {node.home / 'server.log'})")
                return
            time.sleep(0.5)
    _link(national, qingdao, "qingdao", "national", report=True)
    _link(national, yantai, "yantai", "national", report=True)
    _link(yantai, qingdao, "qingdao", "yantai", report=False)
    with qingdao.client("tenant_a") as c:
        if not c.list_jobs(name="peer-demo-*")["total"]:
            c.submit_job({"name": "peer-demo-yantai", "command": [
                "sh", "-c", "echo hello from Yantai, for a tenant of Qingdao; sleep 5"],
                "resources": {"device": "cpu", "units": 1}, "walltime_s": 600,
                "centers": ["yantai"]})
    out("peer demo: joined — national " + national.url + " (CN), Qingdao " + qingdao.url +
        " (CN-SD-QD), Yantai " + yantai.url + " (CN-SD-YT); a job of Qingdao's tenant_a runs at "
        "Yantai (suanli job list); tokens in each data directory's demo-credentials.json: "
        + ", ".join(str(n.home) for n in (national, qingdao, yantai)))


def _link(lender: Node, borrower: Node, as_borrower: str, as_lender: str, *, report: bool) -> None:
    with borrower.client() as b:
        if any(p["name"] == as_lender and p["direction"] == "lends" for p in b.list_peers()["items"]):
            return
        with lender.client() as a:
            if any(p["name"] == as_borrower for p in a.list_peers()["items"]):
                a.remove_peer(as_borrower)  # invited before, never added: invite again
            token = a.invite_peer(as_borrower, 1_000_000)["token"]
        b.add_peer(as_lender, lender.url, token, report=report)


def run_in_background(home: Path, port: int) -> list[Node]:
    """Start the two other platforms and join all three once this server answers."""
    children, qingdao = start(home, port)

    def joiner() -> None:
        try:
            join(children, qingdao, out=lambda text: print(text, flush=True))
        except Exception as exc:  # a demo: say what went wrong, the servers run on
            print(f"peer demo: joining failed: {exc}", flush=True)

    threading.Thread(target=joiner, name="suanli-peer-demo", daemon=True).start()
    return children


def stop(children: list[Node]) -> None:
    for node in children:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.terminate()
    for node in children:
        if node.proc is not None:
            try:
                node.proc.wait(15)
            except subprocess.TimeoutExpired:
                node.proc.kill()
