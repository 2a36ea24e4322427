"""A real `suanli serve --demo` and Debian's Chromium driven by Playwright (never `playwright
install`: tests/services/chromium.sh installs the browser and CJK fonts)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from ..integration.conftest import Server, running_server
from ..waiting import eventually

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def portal() -> Iterator[Server]:
    with running_server("suanli-web.") as srv:
        yield srv


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: run tests/services/chromium.sh install (make test does)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


@dataclass
class Watched:
    """A page, and everything it said that a user should never see."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture
def tab(browser: Browser) -> Iterator[Watched]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = ctx.new_page()
    w = Watched(page)

    def console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            w.errors.append(msg.text)

    page.on("console", console)
    page.on("pageerror", lambda exc: w.errors.append(str(exc)))

    def dialog(d: object) -> None:
        w.dialogs.append(getattr(d, "message", "?"))
        d.dismiss()  # type: ignore[attr-defined]

    page.on("dialog", dialog)
    yield w
    ctx.close()


def sign_in(w: Watched, srv: Server, role: str) -> None:
    page = w.page
    page.goto(f"{srv.url}/login")
    page.fill("input[name=token]", srv.creds()[role])
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#sign-out")


def sign_out(w: Watched, srv: Server) -> None:
    """Sign out through the page, and check the session is gone (the home page asks to sign in)."""
    page = w.page
    page.click("#sign-out")
    page.wait_for_url(re.compile(r"/login$"))
    page.goto(f"{srv.url}/")
    assert re.search(r"/login(\?|$)", page.url), page.url


def finished(srv: Server, role: str, body: dict[str, object]) -> int:
    """A job submitted through the API by `role`, waited for until COMPLETED; its id."""
    with srv.api(role) as c:
        r = c.post("/api/v1/jobs", json=body)
        assert r.status_code == 201, r.text
        job = int(r.json()["id"])

        def completed() -> bool:
            state = c.get(f"/api/v1/jobs/{job}").json()["state"]
            if state in ("FAILED", "CANCELLED", "TIMEOUT"):
                pytest.fail(f"job {job} ended {state}")
            return bool(state == "COMPLETED")

        eventually(completed, what=f"job {job} COMPLETED")
        return job
