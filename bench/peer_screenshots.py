"""PNGs of the three-node demo for the README (part of `make screenshots`): `suanli serve --demo
--peer-demo` in a fresh data directory — the national node and two cities, joined — and
Debian's Chromium driven by Playwright. Writes docs/screenshots/peer-network-<lang>.png (the
national node's dashboard: its member cities on the map, their load and the runs exchanged)
and peer-job-<lang>.png (Qingdao's job that ran at Yantai)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright
from screenshots import OUT, sign_in

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:  # three ports in a row free (this one and the next two)
        for base in range(18100, 19000, 10):
            try:
                for k in range(3):
                    with socket.socket() as t:
                        t.bind(("127.0.0.1", base + k))
                return base
            except OSError:
                continue
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, check: object, timeout: float = 180) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()  # type: ignore[operator]
        except (httpx.HTTPError, OSError, KeyError, ValueError):
            found = None
        if found:
            return found
        time.sleep(1)
    raise SystemExit(f"{what}: not reached in {timeout:.0f} s")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="suanli-peer-shots."))
    port = _port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}
    env.update(SUANLI_HOME=str(home), SUANLI_PEER_DISCOVERY_S="5",
               SUANLI_NETWORK_NAME="青岛 Qingdao", SUANLI_NETWORK_LOCATION="120.38,36.07")
    log = open(home / "demo.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(Path(sys.executable).parent / "suanli"), "serve", "--demo",
                             "--peer-demo", "--port", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        qd, national = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
        _wait("the three joined", lambda: "joined" in (home / "demo.log").read_text())
        creds = {"qingdao": json.loads((home / "demo-credentials.json").read_text()),
                 "national": json.loads((home / "peer-demo" / "national" /
                                         "demo-credentials.json").read_text())}
        hdr = {"Authorization": f"Bearer {creds['national']['platform_admin']}"}
        _wait("both cities' reports at the national node", lambda: [
            m for m in httpx.get(f"{national}/api/v1/network", headers=hdr).json()["members"]
            if m["location"] and any(e.get("lent_runs") or e.get("borrowed_runs")
                                     for e in m["exchanged"])])
        qhdr = {"Authorization": f"Bearer {creds['qingdao']['tenant_a']}"}
        job = _wait("the job at Yantai", lambda: next(
            (j for j in httpx.get(f"{qd}/api/v1/jobs", headers=qhdr).json()["items"]
             if j["state"] == "COMPLETED"), None))
        time.sleep(6)  # the next reports: the exchanged run counted at both cities
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for lang in ("zh", "en"):
                sign_in(page, national, creds["national"]["platform_admin"])
                page.goto(f"{national}/lang/{lang}?next=/dashboard")
                page.wait_for_selector("#chart-network[data-points]", timeout=60_000)
                time.sleep(2)
                page.locator("#network-card").scroll_into_view_if_needed()
                page.screenshot(path=str(OUT / f"peer-network-{lang}.png"))
                sign_in(page, qd, creds["qingdao"]["tenant_a"])
                page.goto(f"{qd}/lang/{lang}?next=/jobs/{job['id']}")  # type: ignore[index]
                page.wait_for_selector("#logs-stdout[data-loaded='1']", timeout=30_000)
                page.screenshot(path=str(OUT / f"peer-job-{lang}.png"), full_page=True)
                print(f"docs/screenshots/peer-network-{lang}.png, peer-job-{lang}.png")
            browser.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
