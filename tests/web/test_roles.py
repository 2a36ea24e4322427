"""Other roles in a real browser: the reviewer works the voucher application queue."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from ..integration.conftest import Server
from .conftest import Watched, sign_in

pytestmark = pytest.mark.integration


def test_reviewer_partly_approves_the_pending_application(portal: Server, tab: Watched) -> None:
    page = tab.page
    sign_in(tab, portal, "reviewer")
    assert page.url.endswith("/review")
    app = page.locator("article.application").first  # the demo city's pending application
    app_id = app.get_attribute("data-application")
    app.locator("input[name=approved_yuan]").fill("1000")
    app.locator("input[name=reason]").fill("首期先批一部分 (part now)")
    app.locator("button.approve").click()
    page.wait_for_url(re.compile(r"/review$"))
    row = page.locator(f"#decided tr[data-application='{app_id}']")
    expect(row.locator(".app-state")).to_have_text("partly_approved")
    expect(row).to_contain_text("¥1,000.00")
    expect(row).to_contain_text("首期先批一部分")
    with portal.api("reviewer") as c:
        grants = c.get("/api/v1/voucher-grants").json()
    assert any(g["amount_fen"] == 100_000 for g in grants)  # the grant is committed, in fen
    # a tenant may not open the queue
    page.click("#sign-out")
    sign_in(tab, portal, "tenant_a")
    page.goto(f"{portal.url}/review")
    expect(page.locator("#problem")).to_have_text("无权访问")
    assert tab.dialogs == []


def test_admin_dashboard_renders_every_chart_with_data(portal: Server, tab: Watched) -> None:
    with portal.api("tenant_a") as c:  # some usage today
        job = c.post("/api/v1/jobs", json={"name": "dash", "command": ["sh", "-c", "sleep 2"],
                                           "resources": {"device": "cpu", "units": 2},
                                           "walltime_s": 60}).json()["id"]
        for _ in range(300):
            if c.get(f"/api/v1/jobs/{job}").json()["state"] == "COMPLETED":
                break
            time.sleep(0.1)
    page = tab.page
    sign_in(tab, portal, "platform_admin")
    assert page.url.endswith("/dashboard")
    for chart in ("map", "utilization", "capacity-kind", "capacity-precision", "jobs", "domestic",
                  "burn"):
        loc = page.locator(f"#chart-{chart}")
        expect(loc).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"), timeout=15_000)
        assert loc.locator("canvas").count() >= 1
    expect(page.locator("#kpi-jobs")).not_to_have_text("-")
    assert float(page.locator("#kpi-peak").inner_text().split()[0]) > 0
    page.goto(f"{portal.url}/dashboard?screen=1")  # the wall display
    expect(page.locator("#chart-map")).to_have_attribute("data-points", re.compile(r"^[1-9]"),
                                                         timeout=15_000)
    page.screenshot(path=str(portal.home / "dashboard.png"))
    assert tab.errors == [], tab.errors


def test_tenant_sees_its_money_and_grants_and_applies_for_vouchers(portal: Server, tab: Watched) -> None:
    page = tab.page
    sign_in(tab, portal, "tenant_a")
    page.goto(f"{portal.url}/account")
    with portal.api("tenant_a") as c:
        me = c.get("/api/v1/voucher-grants").json()
    expect(page.locator("#grants tbody tr")).to_have_count(len(me))
    assert len(me) >= 1
    expect(page.locator("#grants tbody tr").first).to_contain_text("¥200,000.00")  # the demo's grant
    expect(page.locator("#spendable")).to_contain_text("¥")
    page.fill("input[name=requested_yuan]", "50000")
    page.fill("input[name=planned_spend_yuan]", "250000")
    page.fill("input[name=planned_use]", "推理服务扩容 <b>inference</b>")
    page.click("#apply")
    page.wait_for_url(re.compile(r"/account$"))
    row = page.locator("#applications tbody tr").last
    expect(row.locator(".app-state")).to_have_text("pending")
    expect(row).to_contain_text("¥50,000.00")
    assert tab.errors == [] and tab.dialogs == []


def test_auditor_verifies_the_log(portal: Server, tab: Watched) -> None:
    page = tab.page
    sign_in(tab, portal, "auditor")
    assert page.url.endswith("/audit")
    assert page.locator("#entries tbody tr").count() >= 5  # the demo city's money actions
    page.click("#verify")
    expect(page.locator("#verdict")).to_have_attribute("data-ok", "1")
    expect(page.locator("#verdict")).to_contain_text("日志完整")
    assert tab.errors == []


def test_center_operator_sees_its_center(portal: Server, tab: Watched) -> None:
    page = tab.page
    sign_in(tab, portal, "center_operator")
    assert page.url.endswith("/center")
    with portal.api("center_operator") as c:
        mine = c.get("/api/v1/centers").json()
    assert len(mine) == 1  # an operator sees its own center only
    expect(page.locator("#pools tbody tr")).to_have_count(len(mine[0]["pools"]))
    expect(page.locator("#chart-load")).to_have_attribute("data-points", re.compile(r"^\d+$"))
    assert page.locator("#chart-load canvas").count() == 1
    expect(page.locator("h2").last).to_contain_text("结算单")
    page.goto(f"{portal.url}/dashboard")  # the city dashboard is the platform's
    expect(page.locator("#problem")).to_have_text("无权访问")


def test_auditor_claws_back_a_redemption(portal: Server, tab: Watched) -> None:
    with portal.api("tenant_a") as c:  # a GPU job whose bill a voucher grant partly pays
        job = c.post("/api/v1/jobs", json={"name": "gpu", "command": ["sh", "-c", "sleep 5"],
                                           "resources": {"device": "gpu", "units": 8},
                                           "walltime_s": 60}).json()["id"]
        for _ in range(300):
            if c.get(f"/api/v1/jobs/{job}").json()["state"] == "COMPLETED":
                break
            time.sleep(0.1)
    with portal.api("auditor") as a:
        open_ = [r for r in a.get("/api/v1/voucher-redemptions").json()["items"] if not r["clawed_back_at"]]
    assert open_, "the job's bill was not partly paid by a voucher"
    rid = open_[0]["id"]
    page = tab.page
    sign_in(tab, portal, "auditor")
    row = page.locator(f"#redemptions tr[data-redemption='{rid}']")
    row.locator("input[name=reason]").fill("关联交易 related party")
    row.locator("button").click()
    page.wait_for_url(re.compile(r"/audit$"))
    expect(page.locator(f"#redemptions tr[data-redemption='{rid}'] .clawed")).to_contain_text("关联交易")
    with portal.api("auditor") as a:
        r = next(x for x in a.get("/api/v1/voucher-redemptions").json()["items"] if x["id"] == rid)
    assert r["clawed_back_at"] and r["clawback_reason"] == "关联交易 related party"
    page.click("#verify")  # the claw-back is in the log, and the log is intact
    expect(page.locator("#verdict")).to_have_attribute("data-ok", "1")
    assert tab.errors == []
