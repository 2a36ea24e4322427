"""Every other role in a real browser, each signing in, doing its main task and signing out: the
reviewer works the voucher queue, the admin's dashboard draws every chart, a tenant's money and
bills, the auditor verifies and claws back, a center operator's load and statements."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from suanli.domain.money import yuan

from ..integration.conftest import Server
from .conftest import Watched, finished, sign_in, sign_out

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
    expect(row.locator(".app-state")).to_have_attribute("data-state", "partly_approved")
    expect(row.locator(".app-state")).to_have_text("部分批准")
    expect(row).to_contain_text("¥1,000.00")
    expect(row).to_contain_text("首期先批一部分")
    with portal.api("reviewer") as c:
        grants = c.get("/api/v1/voucher-grants").json()["items"]
    assert any(g["amount_fen"] == 100_000 for g in grants)  # the grant is committed, in fen
    # a tenant may not open the queue
    page.click("#sign-out")
    sign_in(tab, portal, "tenant_a")
    page.goto(f"{portal.url}/review")
    expect(page.locator("#problem")).to_have_text("无权访问")
    sign_out(tab, portal)
    assert tab.dialogs == []


def test_admin_dashboard_renders_every_chart_with_data(portal: Server, tab: Watched) -> None:
    finished(portal, "tenant_a", {"name": "dash", "command": ["sh", "-c", "sleep 2"],  # usage today
                                  "resources": {"device": "cpu", "units": 2}, "walltime_s": 60})
    page = tab.page
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if "data.json" in r.url else None)
    sign_in(tab, portal, "platform_admin")
    assert page.url.endswith("/dashboard")
    for chart in ("map", "utilization", "capacity-kind", "capacity-precision", "jobs", "domestic",
                  "burn"):
        loc = page.locator(f"#chart-{chart}")
        expect(loc).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"), timeout=15_000)
        assert loc.locator("canvas").count() >= 1
    expect(page.locator("#kpi-jobs")).not_to_have_text("-")
    assert len(fetched) == 1  # the preloaded figures are the ones drawn: not fetched twice
    assert float(page.locator("#kpi-peak").inner_text().split()[0]) > 0
    page.goto(f"{portal.url}/dashboard?screen=1")  # the wall display
    expect(page.locator("#chart-map")).to_have_attribute("data-points", re.compile(r"^[1-9]"),
                                                         timeout=15_000)
    assert page.locator("#sign-out").count() == 0  # the wall display is read-only: no controls
    page.goto(f"{portal.url}/dashboard")
    sign_out(tab, portal)
    assert tab.errors == [], tab.errors


def test_tenant_sees_its_money_and_grants_and_applies_for_vouchers(portal: Server, tab: Watched) -> None:
    page = tab.page
    sign_in(tab, portal, "tenant_a")
    page.goto(f"{portal.url}/account")
    with portal.api("tenant_a") as c:
        me = c.get("/api/v1/voucher-grants").json()["items"]
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
    expect(row.locator(".app-state")).to_have_attribute("data-state", "pending")
    expect(row).to_contain_text("¥50,000.00")
    # bills month by month: this month so far, what it will say if nothing changes
    with portal.api("tenant_a") as c:
        bills = c.get("/api/v1/bills").json()["items"]
    expect(page.locator("#bills tbody tr")).to_have_count(len(bills))
    this = page.locator(f"#bills tr[data-month='{bills[0]['month']}']")
    expect(this.locator(".bill-state")).to_have_text("本月至今(未结算)")
    expect(this.locator(".bill-net")).to_have_text(yuan(bills[0]["net_fen"]))
    with page.expect_download() as dl:
        page.click("#bills-csv")
    csv_lines = Path(dl.value.path()).read_text().splitlines()
    assert csv_lines[0].endswith(",settled") and len(csv_lines) == len(bills) + 1
    sign_out(tab, portal)
    assert tab.errors == [] and tab.dialogs == []


def test_auditor_verifies_the_log(portal: Server, tab: Watched) -> None:
    page = tab.page
    sign_in(tab, portal, "auditor")
    assert page.url.endswith("/audit")
    assert page.locator("#entries tbody tr").count() >= 5  # the demo city's money actions
    page.click("#verify")
    expect(page.locator("#verdict")).to_have_attribute("data-ok", "1")
    expect(page.locator("#verdict")).to_contain_text("日志完整")
    sign_out(tab, portal)
    assert tab.errors == []


def test_center_operator_sees_its_center(portal: Server, tab: Watched) -> None:
    # a run on the operator's center (Kunpeng 920 CPUs are only at qd-ai): load and a bill
    finished(portal, "tenant_a", {"name": "op", "command": ["sh", "-c", "sleep 2"],
                                  "resources": {"device": "cpu", "units": 8, "model": "Kunpeng 920"},
                                  "walltime_s": 60})
    page = tab.page
    sign_in(tab, portal, "center_operator")
    assert page.url.endswith("/center")
    with portal.api("center_operator") as c:
        mine = c.get("/api/v1/centers").json()["items"]
        bills = c.get("/api/v1/bills").json()["items"]
    assert len(mine) == 1 and mine[0]["slug"] == "qd-ai"  # an operator sees its own center only
    expect(page.locator("#pools tbody tr")).to_have_count(len(mine[0]["pools"]))
    chart = page.locator("#chart-load")
    expect(chart).to_have_attribute("data-pools", str(len(mine[0]["pools"])))
    expect(chart).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))  # the run's hour
    assert chart.locator("canvas").count() == 1
    assert bills[0]["runs"] >= 1 and not bills[0]["settled"]
    this = page.locator(f"#bills tr[data-month='{bills[0]['month']}']")
    expect(this.locator(".bill-net")).to_have_text(yuan(bills[0]["net_fen"]))
    page.goto(f"{portal.url}/dashboard")  # the city dashboard is the platform's
    expect(page.locator("#problem")).to_have_text("无权访问")
    sign_out(tab, portal)
    assert tab.errors == [] or all("403" in e for e in tab.errors), tab.errors


def test_auditor_claws_back_a_redemption(portal: Server, tab: Watched) -> None:
    finished(portal, "tenant_a", {"name": "gpu", "command": ["sh", "-c", "sleep 5"],  # a voucher pays part
                                  "resources": {"device": "gpu", "units": 8}, "walltime_s": 60})
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
    sign_out(tab, portal)
    assert tab.errors == []


@pytest.mark.parametrize("role", ["tenant_a", "reviewer", "auditor", "center_operator", "platform_admin"])
def test_every_page_of_every_role_in_both_languages_without_console_errors(
        portal: Server, tab: Watched, role: str) -> None:
    page = tab.page
    sign_in(tab, portal, role)
    nav = page.locator("header nav a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    links = [h for h in nav if not h.startswith("/lang/")]
    assert links, "the role has pages"
    if role == "tenant_a":
        job = finished(portal, role, {"name": "walk", "command": ["echo", "hi"],
                                      "resources": {"device": "cpu", "units": 1}, "walltime_s": 60})
        links.append(f"/jobs/{job}")
    if role == "platform_admin":
        links.append("/dashboard?screen=1")
    seen = 0
    for lang in ("en", "zh"):
        page.goto(f"{portal.url}/lang/{lang}?next=/")
        for href in links:
            resp = page.goto(f"{portal.url}{href}")
            assert resp is not None and resp.status == 200, (href, resp and resp.status)
            page.wait_for_load_state("networkidle")
            expect(page.locator("html")).to_have_attribute("lang", "en" if lang == "en" else "zh-CN")
            seen += 1
    assert seen == 2 * len(links)
    assert tab.errors == [], tab.errors
    assert tab.dialogs == []
