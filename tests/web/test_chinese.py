"""The portal in Chinese is Chinese throughout: every page of every role, read in a real browser,
shows no English word (a run of 3 or more Latin letters) except the names of things (centers,
pools, device models, users: taken from the platform itself), the units and acronyms people use
as they are, and the switch to English. What people typed (job names, commands, logs, reasons)
and identifiers (`code`) are theirs and not read."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from ..integration.conftest import Server
from ..waiting import eventually
from .conftest import Watched, finished, sign_in

pytestmark = pytest.mark.integration

# What a Chinese page may say in Latin letters besides names: units and acronyms as Chinese text
# writes them, the backends by name, the time zone, and the language switch ("English").
ALLOWED = {"GPU", "CPU", "NPU", "kWh", "CST", "API", "CSV", "DAG", "Slurm", "Ray", "English"}
# Not read: names and text people typed, identifiers and logs.
NOT_READ = "code, pre, .name, .user, script, style, noscript"

VISIBLE_TEXT = """(skip) => {
  const out = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest(skip) || !el.checkVisibility()) continue;
    out.push(n.textContent);
  }
  return out.join(" ");
}"""


def names_of_things(srv: Server) -> set[str]:
    """Every word of the names the platform shows: centers, pools, device models, a pool's
    architecture, features and environments (cann-8.0, pytorch-2.4: names, not prose), users."""
    text: list[str] = []
    with srv.api("platform_admin") as c:
        for center in c.get("/api/v1/centers").json()["items"]:
            text += [center["slug"], center.get("name_en") or ""]
            for pool in center["pools"]:
                text += [pool["name"], pool.get("device_model") or "", pool.get("arch") or "",
                         *(pool.get("features") or []), *(pool.get("environments") or {})]
    for role in srv.creds():
        with srv.api(role) as c:
            me = c.get("/api/v1/users/me")
            if me.status_code == 200:
                text.append(me.json()["username"])
    return {w for t in text for w in re.findall(r"[A-Za-z]{3,}", t)}


def english_in(text: str, allowed: set[str]) -> list[str]:
    return sorted({w for w in re.findall(r"[A-Za-z]{3,}", text) if w not in allowed})


@pytest.mark.parametrize("role", ["tenant_a", "reviewer", "auditor", "center_operator", "platform_admin"])
def test_every_page_in_chinese_has_no_english(portal: Server, tab: Watched, role: str) -> None:
    allowed = ALLOWED | names_of_things(portal)
    page = tab.page
    sign_in(tab, portal, role)
    nav = page.locator("header nav a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    links = [h for h in nav if not h.startswith("/lang/")]
    if role in ("tenant_a", "platform_admin", "center_operator"):
        # a job that ran (history, runs, placement with every other pool's reason) and one that
        # failed (its exit code), on the operator's center (Kunpeng CPUs are at qd-ai only)
        res = {"device": "cpu", "units": 1, "model": "Kunpeng 920"}
        done = finished(portal, "tenant_a", {"name": "zh-ok", "command": ["echo", "hi"],
                                             "resources": res, "walltime_s": 60, "budget_fen": 5000})
        with portal.api("tenant_a") as c:
            failed = c.post("/api/v1/jobs", json={"name": "zh-fail", "command": ["sh", "-c", "exit 3"],
                                                  "resources": res, "walltime_s": 60}).json()["id"]
            eventually(lambda: c.get(f"/api/v1/jobs/{failed}").json()["state"] == "FAILED",
                       what="the job FAILED")
        links += [f"/jobs/{done}", f"/jobs/{failed}"]
    if role == "platform_admin":
        links.append("/dashboard?screen=1")
    page.goto(f"{portal.url}/lang/zh?next=/")
    found: dict[str, list[str]] = {}
    for href in links:
        resp = page.goto(f"{portal.url}{href}")
        assert resp is not None and resp.status == 200, (href, resp and resp.status)
        page.wait_for_load_state("networkidle")
        words = english_in(page.evaluate(VISIBLE_TEXT, NOT_READ), allowed)
        if words:
            found[href] = words
    assert found == {}, found
    if role == "tenant_a":  # the failed job says why, in Chinese
        page.goto(f"{portal.url}{links[-1]}")
        assert "退出码 3" in page.locator("#history").inner_text()
    # the read-only tables of decided applications name the amount, without the reviewer's form
    # hint ("empty: all"), which belongs to the review form only
    table = {"tenant_a": ("/account", "#applications"), "reviewer": ("/review", "#decided")}.get(role)
    if table:
        page.goto(f"{portal.url}{table[0]}")
        column = 3 if role == "tenant_a" else 4
        expect(page.locator(f"{table[1]} thead th").nth(column)).to_have_text("批准金额")
        assert "留空" not in page.locator(table[1]).inner_text()
    if role == "reviewer" and page.locator("form.decide").count():
        assert "留空为全额" in page.locator("form.decide").first.inner_text()  # the form keeps it
    assert tab.errors == [], tab.errors
