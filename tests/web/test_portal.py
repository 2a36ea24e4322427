"""The portal in a real browser: a tenant submits through the form and follows the job to the
end; sign-out; the language switch; escaping, CSRF, isolation, headers and console errors."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from ..integration.conftest import Server
from .conftest import Watched, sign_in, sign_out

pytestmark = pytest.mark.integration
XSS = "<img src=x onerror=alert(1)>"


def test_tenant_submits_through_the_form_and_follows_the_job(portal: Server, tab: Watched) -> None:
    page = tab.page
    sign_in(tab, portal, "tenant_a")
    assert page.url.endswith("/jobs")
    page.fill("input[name=name]", XSS)
    page.fill("input[name=command]", "echo 你好 portal; sleep 1; echo done")
    page.fill("input[name=walltime_s]", "120")
    # the estimate shows before anything is submitted
    expect(page.locator("#estimate-cost")).to_contain_text("¥", timeout=10_000)
    expect(page.locator("#estimate-start")).to_have_text("立即开始")  # the demo city is idle
    page.click("#submit")
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator("#job-name")).to_have_text(XSS)  # text, not markup
    expect(page.locator("#job-state")).to_have_attribute("data-state", "COMPLETED", timeout=60_000)
    expect(page.locator("#job-state")).to_have_text("已完成")  # shown in the page's language
    expect(page.locator("#logs-stdout")).to_contain_text("你好 portal")
    expect(page.locator("#logs-stdout")).to_contain_text("done")
    run = page.locator("#runs tbody tr")  # usage and cost, per run
    expect(run).to_have_count(1)
    expect(run.locator(".run-cost")).to_contain_text("¥")
    assert page.locator("#job-cost").inner_text() == run.locator(".run-cost").inner_text()
    chosen = page.locator("#candidates tbody tr.chosen")  # the placement and why
    expect(chosen).to_have_count(1)
    expect(chosen.locator(".why")).to_have_text("按策略得分最优")
    others = page.locator("#candidates tbody tr:not(.chosen) .why")
    assert all(text for text in others.all_inner_texts())  # every other pool says why not
    assert page.locator("#history tbody tr").count() >= 3
    # the list shows it too, escaped
    page.goto(f"{portal.url}/jobs")
    expect(page.locator("#jobs td.name").first).to_have_text(XSS)
    page.click("#sign-out")
    page.wait_for_url(re.compile(r"/login$"))
    page.goto(f"{portal.url}/jobs")
    assert "/login" in page.url  # the session is gone
    assert tab.dialogs == [] and tab.errors == []


def test_sign_in_with_a_username_and_password(portal: Server, tab: Watched) -> None:
    with portal.api("tenant_a") as c:
        tenant = c.get("/api/v1/users/me").json()["tenant_id"]
    args = ("user", "add", "carol", "--role", "tenant_user", "--tenant", str(tenant), "--password")
    short = portal.cli(*args, token="platform_admin", stdin="short\nshort\n")
    assert short.returncode == 1 and "Traceback" not in short.stderr + short.stdout
    made = portal.cli(*args, token="platform_admin", stdin="carol-pass-1\ncarol-pass-1\n")
    assert made.returncode == 0, made.stderr
    page = tab.page
    page.goto(f"{portal.url}/login")
    page.fill("input[name=username]", "carol")
    page.fill("input[name=password]", "wrong-pass-1")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_be_visible()
    assert page.locator("#sign-out").count() == 0
    page.fill("input[name=username]", "carol")
    page.fill("input[name=password]", "carol-pass-1")
    page.click("#login-form button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs$"))
    expect(page.locator(".who")).to_contain_text("carol")
    sign_out(tab, portal)
    assert tab.dialogs == []


def test_the_job_list_follows_live_status(portal: Server, tab: Watched) -> None:
    page = tab.page
    sign_in(tab, portal, "tenant_b")
    with portal.api("tenant_b") as c:
        job = c.post("/api/v1/jobs", json={"name": "live", "command": ["sh", "-c", "sleep 4"],
                                           "resources": {"device": "cpu", "units": 1},
                                           "walltime_s": 60}).json()["id"]
    page.goto(f"{portal.url}/jobs")
    page.evaluate("window.notReloaded = true")
    state = page.locator(f"#jobs tr[data-job='{job}'] .state")
    expect(state).not_to_have_attribute("data-state", "COMPLETED")
    expect(state).to_have_attribute("data-state", "COMPLETED", timeout=30_000)  # by itself
    assert page.evaluate("window.notReloaded === true")  # not by reloading the page
    expect(page.locator("#job-rows")).not_to_have_attribute("hx-trigger", re.compile(".*"))
    assert tab.errors == []


def rendered_fonts(page: Page, selector: str) -> list[dict[str, object]]:
    """The fonts Chromium drew a node's text with (DevTools: CSS.getPlatformFontsForNode)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    return list(cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"])


def test_language_switch_and_chinese_by_default(portal: Server, tab: Watched) -> None:
    page = tab.page
    sign_in(tab, portal, "tenant_a")
    expect(page.locator("#sign-out")).to_have_text("退出")
    # real glyphs: both characters drawn from the CJK font the stylesheet asks for (a missing
    # font shows as the fallback font's missing-glyph boxes: another family is reported)
    fonts = rendered_fonts(page, "#sign-out")
    assert [(f["familyName"], f["glyphCount"]) for f in fonts] == [("Noto Sans CJK SC", 2)], fonts
    page.click("#lang-switch")
    expect(page.locator("#sign-out")).to_have_text("Sign out")
    expect(page.locator("h2").first).to_have_text("Submit a job")
    page.click("#lang-switch")
    expect(page.locator("#sign-out")).to_have_text("退出")
    assert tab.errors == []


def test_csrf_isolation_and_headers(portal: Server, tab: Watched) -> None:
    page = tab.page
    sign_in(tab, portal, "tenant_b")
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    assert "suanli_session" in cookies
    session = next(c for c in page.context.cookies() if c["name"] == "suanli_session")
    assert session["httpOnly"] and session["sameSite"] == "Lax"
    with httpx.Client(base_url=portal.url, cookies={"suanli_session": cookies["suanli_session"]},
                      follow_redirects=False) as c:
        # a form posted without its CSRF token is refused, and nothing is queued
        bearer = {"Authorization": f"Bearer {portal.creds()['tenant_b']}"}
        before = c.get("/api/v1/jobs", headers=bearer).json()["total"]
        r = c.post("/jobs", data={"name": "x", "command": "true", "device": "cpu", "units": "1",
                                  "walltime_s": "60", "policy": "balanced"})
        assert r.status_code == 403
        r = c.post("/jobs", data={"csrf": "0" * 40, "name": "x", "command": "true"})
        assert r.status_code == 403
        after = c.get("/api/v1/jobs", headers=bearer).json()["total"]
        assert after == before
        # with its token, a bad amount is the form's error (422, named), and nothing is applied for
        csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
        apps = c.get("/api/v1/voucher-applications", headers=bearer).json()["total"]
        r = c.post("/account/apply", data={"csrf": csrf, "programme_id": "1", "requested_yuan": "lots",
                                           "planned_spend_yuan": "1", "planned_use": "x"})
        assert r.status_code == 422 and "不是以元为单位的金额：&#39;lots&#39;" in r.text
        assert c.get("/api/v1/voucher-applications", headers=bearer).json()["total"] == apps
        # another tenant's job page is a 404
        with portal.api("tenant_a") as a:
            other = a.post("/api/v1/jobs", json={"name": "mine", "command": ["true"],
                                                 "resources": {"device": "cpu", "units": 1},
                                                 "walltime_s": 60}).json()["id"]
        assert c.get(f"/jobs/{other}").status_code == 404
        page_resp = c.get("/jobs")
        csp = page_resp.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        assert page_resp.headers["x-frame-options"] == "DENY"
    page.goto(f"{portal.url}/jobs/{other}")
    expect(page.locator("#problem")).to_have_text("未找到")
    assert tab.errors == [] or all("404" in e for e in tab.errors)
