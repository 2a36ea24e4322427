"""`make screenshots`: PNGs of the portal's main pages, in Chinese and English, for the README.

A real `suanli serve --demo` in a fresh data directory with a generated month of usage (4,000
finished jobs written by bench/dashboard.py's `fill` and billed by the real billing code, so the
dashboard, the bills and the center's load have a history to draw), a few real jobs run through
the platform, and Debian's Chromium driven by Playwright. Writes docs/screenshots/<page>-<lang>.png."""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
from dashboard import fill
from demo_server import demo_server
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
PAGES = [  # (file name, role, path, element that shows the page is ready)
    ("login", None, "/login", "#login-form"),
    ("jobs", "tenant_a", "/jobs", "#estimate-figures"),
    ("job", "tenant_a", "/jobs/{job}", "#job-state.state-completed"),  # and its log, below
    ("account", "tenant_a", "/account", "#grants"),
    ("review", "reviewer", "/review", "#decided"),
    ("audit", "auditor", "/audit", "#entries"),
    ("center", "center_operator", "/center", "#chart-load[data-points]"),
    ("dashboard", "platform_admin", "/dashboard", "#dashboard[data-drawn-ms]"),
]


def sign_in(page: Page, url: str, token: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{url}/login")
    page.fill("input[name=token]", token)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#sign-out")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="suanli-shots."))
    try:
        fill(home, 4000, random.Random(7), days=30, bill=True)
        with demo_server(home) as (url, creds):
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {creds['tenant_a']}"}) as c:
                jobs = [c.post("/api/v1/jobs", json={
                    "name": name, "command": ["sh", "-c", cmd], "walltime_s": 120,
                    "resources": {"device": "cpu", "units": 2, **extra}}).json()["id"]
                    for name, cmd, extra in (
                        ("预处理 preprocess", "echo 读取数据 loading; sleep 2; echo 完成 done", {}),
                        # on the operator's center (qd-ai), so its page shows some load
                        ("训练 train", "for i in 1 2 3; do echo step $i; sleep 1; done",
                         {"units": 64, "model": "Kunpeng 920"}))]
                for _ in range(200):
                    if all(c.get(f"/api/v1/jobs/{j}").json()["state"] == "COMPLETED" for j in jobs):
                        break
                    time.sleep(0.2)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
                    "--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking"])
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                for lang in ("zh", "en"):
                    for name, role, path, ready in PAGES:
                        if role:
                            sign_in(page, url, creds[role])
                        page.goto(f"{url}/lang/{lang}?next=/login")
                        page.goto(url + path.format(job=jobs[0]))
                        if name == "jobs":
                            page.fill("input[name=command]", "python train.py")
                        page.wait_for_selector(ready, timeout=30_000)
                        if name == "job":
                            page.wait_for_selector("#logs-stdout[data-loaded='1']", timeout=30_000)
                        time.sleep(1.5 if name in ("dashboard", "center") else 0.3)  # animations
                        page.screenshot(path=str(OUT / f"{name}-{lang}.png"), full_page=name != "jobs")
                        print(f"docs/screenshots/{name}-{lang}.png")
                browser.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
