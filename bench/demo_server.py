"""`suanli serve --demo` in its own process, for the benchmarks (shared by bench/*.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def demo_server(home: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """Start the demo platform in `home` on a free port; yield its URL and demo credentials once
    its scheduler has made a pass.
    Stopped with SIGTERM (killed after 15 s) on the way out."""
    url = f"http://127.0.0.1:{free_port()}"
    env = dict(os.environ, SUANLI_HOME=str(home), SUANLI_LOG_LEVEL="WARNING")
    server = subprocess.Popen([str(BIN / "suanli"), "serve", "--demo", "--port",
                               url.rsplit(":", 1)[1]],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Ready when the scheduler (its own process) has made a pass: a benchmark measures the
        # running platform, not its start.
        for _ in range(600):
            try:
                r = httpx.get(f"{url}/api/v1/health", timeout=1)
                if r.status_code == 200 and r.json()["scheduler"].get("last_pass_at"):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield url, json.loads((home / "demo-credentials.json").read_text())
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
