"""The portal to WCAG 2.1 AA (GB/T 37668-2019): axe-core (from the npm lock, served as a file only
in test mode, so each page's own CSP stays in force) on every page of every role in both
languages fails on any serious or critical violation; a keyboard-only user signs in, submits a
job, follows it while it runs without losing focus, and signs out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from ..integration.conftest import Server, running_server
from ..waiting import eventually
from .conftest import Watched, finished, sign_in

pytestmark = pytest.mark.integration

AXE = "/static/vendor/test/axe.min.js"
RUN_AXE = """async () => {
  const r = await axe.run(document, {runOnly: {type: "tag",
      values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}, resultTypes: ["violations"]});
  return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.slice(0, 3).map(n => n.target.join(" ") + " :: " + n.failureSummary)}));
}"""
# Beyond WCAG's own tags (axe files these under best practices, at moderate impact): the page
# structure GB/T 37668 reviewers check, held to no violation at all.
STRUCTURE = ["page-has-heading-one", "heading-order", "landmark-unique", "landmark-one-main",
             "region", "bypass", "scrollable-region-focusable", "aria-allowed-role"]
RUN_STRUCTURE = """async (rules) => {
  const r = await axe.run(document, {runOnly: {type: "rule", values: rules},
                                     resultTypes: ["violations"]});
  return r.violations.map(v => ({id: v.id, impact: v.impact,
      nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
}"""
# What the page itself must have: one h1, named navigation, the other language marked, every
# chart an image with a label and its figures in a table, the log viewer reachable by keyboard.
PAGE_FACTS = """() => {
  const q = (s) => Array.from(document.querySelectorAll(s));
  const charts = q(".chart").filter((c) => !c.hidden).map((c) => {
    const table = document.getElementById(c.getAttribute("aria-describedby") || "");
    return {id: c.id, role: c.getAttribute("role"), label: c.getAttribute("aria-label") || "",
            rows: table ? table.querySelectorAll("tbody tr").length : -1};
  });
  return {
    h1: q("h1").length,
    unnamedNav: q("nav").filter((n) => !n.getAttribute("aria-label")).length,
    switchLang: (document.getElementById("lang-switch") || {}).lang || null,
    firstFocus: (q("a[href], button, input, select, textarea, [tabindex]")
                 .find((e) => e.tabIndex >= 0) || {}).className || null,
    charts,
    logs: q("pre.log").map((p) => ({tab: p.tabIndex, role: p.getAttribute("role"),
                                   label: p.getAttribute("aria-label") || ""})),
  };
}"""
ROLES = ("tenant_a", "platform_admin", "center_operator", "reviewer", "auditor")


@pytest.fixture(scope="module")
def a11y_portal() -> Iterator[Server]:
    with running_server("suanli-a11y.", env={"SUANLI_WEB_TEST_ASSETS": "1"}) as srv:
        yield srv


def axe_violations(w: Watched) -> list[dict[str, Any]]:
    """WCAG 2.1 A/AA violations of serious or critical impact, and any structural one."""
    page = w.page
    page.add_script_tag(url=AXE)
    found: list[dict[str, Any]] = page.evaluate(RUN_AXE)
    structure: list[dict[str, Any]] = page.evaluate(RUN_STRUCTURE, STRUCTURE)
    return [v for v in found if v["impact"] in ("serious", "critical")] + structure


def page_problems(w: Watched, lang: str) -> list[str]:
    facts: dict[str, Any] = w.page.evaluate(PAGE_FACTS)
    out = []
    if facts["h1"] != 1:
        out.append(f"{facts['h1']} h1")
    if facts["unnamedNav"]:
        out.append("an unnamed nav")
    if facts["switchLang"] not in (None, "zh-CN" if lang == "en" else "en"):  # (none: the wall)
        out.append(f"the language switch is marked {facts['switchLang']!r}")
    if facts["firstFocus"] != "skip":
        out.append(f"the first stop is {facts['firstFocus']!r}, not the skip link")
    for c in facts["charts"]:
        if c["role"] != "img" or not c["label"].strip() or c["rows"] < 1:
            out.append(f"chart {c}")
    for log in facts["logs"]:
        if log["tab"] != 0 or log["role"] != "region" or not log["label"]:
            out.append(f"log viewer {log}")
    return out


def pages_of(srv: Server, w: Watched, role: str) -> list[str]:
    nav = w.page.locator("header nav a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    links = ["/"] + [h for h in nav if not h.startswith("/lang/")]
    if role in ("tenant_a", "platform_admin", "center_operator"):
        done = finished(srv, "tenant_a", {"name": "a11y", "command": ["echo", "hi"],
                                          "resources": {"device": "cpu", "units": 1,
                                                        "model": "Kunpeng 920"},
                                          "walltime_s": 60})
        links.append(f"/jobs/{done}")
    if role == "platform_admin":
        links.append("/dashboard?screen=1")
    return list(dict.fromkeys(links))


def test_axe_is_not_served_outside_test_mode(portal: Server) -> None:
    import httpx

    assert httpx.get(f"{portal.url}{AXE}").status_code == 404


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("role", ROLES)
def test_every_page_has_no_serious_violation(a11y_portal: Server, tab: Watched, role: str,
                                             lang: str) -> None:
    page = tab.page
    sign_in(tab, a11y_portal, role)
    links = pages_of(a11y_portal, tab, role)
    page.goto(f"{a11y_portal.url}/lang/{lang}?next=/")
    found: dict[str, list[dict[str, Any]]] = {}
    for href in links:
        resp = page.goto(f"{a11y_portal.url}{href}")
        assert resp is not None and resp.status == 200, (href, resp and resp.status)
        page.wait_for_load_state("networkidle")
        if href.startswith(("/dashboard", "/center")):  # the charts have drawn their tables
            eventually(lambda: page.evaluate(
                "() => Array.from(document.querySelectorAll('.chart-data')).every("
                "d => d.hidden || d.querySelectorAll('tbody tr').length > 0)"),
                what=f"the chart tables of {href}")
        bad: list[Any] = axe_violations(tab) + page_problems(tab, lang)
        if bad:
            found[href] = bad
    assert found == {}, found
    assert tab.errors == [], tab.errors  # axe loaded under the page's CSP: no refusal logged


def test_the_sign_in_page_and_its_error_are_accessible(a11y_portal: Server, tab: Watched) -> None:
    page = tab.page
    for lang in ("zh", "en"):
        page.goto(f"{a11y_portal.url}/lang/{lang}?next=/login")
        page.goto(f"{a11y_portal.url}/login")
        assert axe_violations(tab) == [] and page_problems(tab, lang) == []
        # a wrong password: the error is announced, the fields say they are wrong, focus is on them
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "not-it")
        page.press("input[name=password]", "Enter")
        page.wait_for_selector("#login-error")
        assert page.get_attribute("#login-error", "role") == "alert"
        assert page.get_attribute("input[name=username]", "aria-invalid") == "true"
        assert page.get_attribute("input[name=username]", "aria-describedby") == "login-error"
        assert page.evaluate("document.activeElement.name") == "username"
        assert axe_violations(tab) == []


def tab_to(w: Watched, selector: str, limit: int = 80) -> None:
    """Press Tab until the element `selector` has the focus (as a keyboard user would)."""
    page = w.page
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)",
                         selector):
            return
    raise AssertionError(f"{selector} never got the focus in {limit} presses of Tab")


def focused_id(w: Watched) -> str:
    return str(w.page.evaluate("() => document.activeElement ? document.activeElement.id : ''"))


def test_a_keyboard_user_signs_in_submits_follows_and_signs_out(a11y_portal: Server,
                                                                 tab: Watched) -> None:
    page = tab.page
    srv = a11y_portal
    page.goto(f"{srv.url}/login")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"  # the first stop
    tab_to(tab, "input[name=token]")
    page.keyboard.type(srv.creds()["tenant_a"])
    page.keyboard.press("Enter")
    page.wait_for_selector("#sign-out")
    tab_to(tab, "header nav a[href='/jobs']")
    page.keyboard.press("Enter")
    page.wait_for_selector("#submit-form")
    tab_to(tab, "#submit-form input[name=name]")
    page.keyboard.type("keyboard")
    tab_to(tab, "#submit-form input[name=command]")
    page.keyboard.type("sleep 6; echo typed by keyboard")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/jobs/" in url)
    job = int(page.url.rstrip("/").rsplit("/", 1)[1])
    # the log viewer takes the focus (and the arrow keys scroll it); it keeps it when the page
    # reloads itself at the job's end
    tab_to(tab, "#logs-stdout")
    eventually(lambda: "typed by keyboard" in page.locator("#logs-stdout").inner_text(),
               timeout=90, what="the job's output, followed")
    page.wait_for_load_state("load")
    eventually(lambda: page.locator(".state").first.get_attribute("data-state") == "COMPLETED"
               and focused_id(tab) == "logs-stdout", timeout=30,
               what="the page reloaded with the job COMPLETED and the focus on the log")
    # the list refreshes its rows every 3 s while a job runs: the focused row link stays focused
    with srv.api("tenant_a") as c:
        r = c.post("/api/v1/jobs", json={"name": "long", "command": ["sleep", "60"],
                                         "resources": {"device": "cpu"}, "walltime_s": 120})
        long_job = r.json()["id"]
    page.goto(f"{srv.url}/jobs")
    link = f"tr[data-job='{long_job}'] a"
    tab_to(tab, link)
    page.evaluate("() => { document.activeElement.dataset.before = '1'; }")
    eventually(lambda: page.evaluate(
        f"() => document.querySelector(\"{link}\").dataset.before === undefined"),
        timeout=20, what="the rows replaced by a refresh")
    eventually(lambda: page.evaluate("(s) => document.activeElement.matches(s)", link),
               timeout=5, what="the focus on the same row's link in the new rows")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{srv.url}/jobs/{long_job}")
    with srv.api("tenant_a") as c:
        c.post(f"/api/v1/jobs/{long_job}/cancel")
    assert job != long_job
    tab_to(tab, "#sign-out")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: url.endswith("/login"))
    assert tab.errors == [], tab.errors


LATIN_WORD = re.compile(r"[A-Za-z]{3,}")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_form_errors_are_announced_marked_focused_and_in_the_pages_language(
        a11y_portal: Server, tab: Watched, lang: str) -> None:
    """The job form and the voucher application, filled in wrong in a real browser: the page
    comes back with what was typed, the error as an alert in the page's language, the field
    marked invalid and described by it, and the focus on that field."""
    page = tab.page
    sign_in(tab, a11y_portal, "tenant_a")
    page.goto(f"{a11y_portal.url}/lang/{lang}?next=/jobs")
    cases = [("/jobs", "#submit-form", {"command": "echo hi", "budget_yuan": "很多"},
              "budget_yuan", "#submit-error"),
             ("/account", "#apply-form", {"requested_yuan": "很多", "planned_spend_yuan": "100",
                                          "planned_use": "训练"}, "requested_yuan", "#apply-error")]
    for path, form, values, field, error in cases:
        page.goto(f"{a11y_portal.url}{path}")
        for name, value in values.items():
            page.fill(f"{form} [name={name}]", value)
        page.locator(f"{form} [type=submit]").first.click()
        page.wait_for_selector(error)
        text = page.locator(error).inner_text()
        assert page.get_attribute(error, "role") == "alert", path
        assert page.get_attribute(f"{form} [name={field}]", "aria-invalid") == "true", path
        assert page.get_attribute(f"{form} [name={field}]", "aria-describedby") == error[1:]
        assert page.evaluate("document.activeElement.name") == field, path
        assert page.input_value(f"{form} [name={field}]") == values[field]  # kept as typed
        if lang == "zh":  # the server's message, in Chinese (amounts, units and names aside)
            assert not LATIN_WORD.findall(text), (path, text)
        assert axe_violations(tab) == [], path


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_refused_review_marks_its_own_form(a11y_portal: Server, tab: Watched, lang: str) -> None:
    page = tab.page
    sign_in(tab, a11y_portal, "reviewer")
    page.goto(f"{a11y_portal.url}/lang/{lang}?next=/review")
    form = page.locator("form.decide").first
    app = form.get_attribute("action")
    form.locator("[name=approved_yuan]").fill("99999999")  # far over what was asked
    form.locator("button.approve").click()
    page.wait_for_selector("#review-error")
    own = page.locator(f"form.decide[action='{app}'] [name=approved_yuan]")
    assert own.get_attribute("aria-invalid") == "true"
    assert own.get_attribute("aria-describedby") == "review-error"
    assert own.input_value() == "99999999"
    assert page.evaluate("document.activeElement.name") == "approved_yuan"
    assert page.locator("[aria-invalid=true]").count() == 1  # only that application's field
    if lang == "zh":
        assert not LATIN_WORD.findall(page.locator("#review-error").inner_text())
    assert axe_violations(tab) == []
