"""A job's page in a real browser: stdout and stderr (escaped, the last 64 KB, the full log), the
task it ran (environment variable names, never their values), its outputs downloaded, and the
resubmit button; the platform admin's job list (a tenant column, no submit form); /docs without
the internet."""

from __future__ import annotations

import platform
import re
import tarfile

import httpx
import pytest
from playwright.sync_api import Route, expect

from suanli.config import Settings
from suanli.services.context import Platform
from suanli.store import models as m
from suanli.store.db import Database

from ..integration.conftest import Server
from ..waiting import eventually
from .conftest import Watched, finished, sign_in, sign_out

pytestmark = pytest.mark.integration
SECRET = "s3cr3t-value-never-shown"


def platform_of(srv: Server) -> Platform:
    """The server's own store, opened from the test (same SUANLI_HOME)."""
    url = f"sqlite:///{srv.home / 'suanli.db'}"
    return Platform(db=Database(url), settings=Settings(home=srv.home, database_url=url))


def outputs_kept(srv: Server, job: int) -> None:
    """Wait until the job's packed outputs can be downloaded (stored as its run ends)."""
    with srv.api("tenant_a") as c:
        eventually(lambda: c.get(f"/api/v1/jobs/{job}/outputs").status_code == 200,
                   what=f"job {job}'s outputs kept")


def session_client(srv: Server, w: Watched) -> httpx.Client:
    cookies = {c["name"]: c["value"] for c in w.page.context.cookies()}
    return httpx.Client(base_url=srv.url, cookies={"suanli_session": cookies["suanli_session"]},
                        follow_redirects=False)


def test_job_page_shows_both_logs_the_task_and_downloads_its_outputs(
        portal: Server, tab: Watched) -> None:
    # A real task: variables, declared outputs and a constraint; its run packs what it wrote.
    job = finished(portal, "tenant_a", {
        "name": "both-logs", "resources": {"device": "cpu", "units": 1}, "walltime_s": 60,
        "command": ["sh", "-c", "echo to-stdout; echo '<b id=x>to-stderr</b>' >&2; "
                    "mkdir -p out/sub; printf 'weights 42\\n' > out/model.txt; "
                    "printf 'a,b\\n' > out/sub/log.csv; echo not-kept > scratch.txt"],
        "env": {"HF_TOKEN": SECRET, "EPOCHS": "3"}, "outputs": ["out/*.txt", "out/sub/*"],
        "constraints": {"arch": platform.machine()}})
    outputs_kept(portal, job)
    page = tab.page
    sign_in(tab, portal, "tenant_a")
    page.goto(f"{portal.url}/jobs/{job}")
    expect(page.locator("#logs-stdout")).to_contain_text("to-stdout")
    expect(page.locator("#logs-stderr")).to_be_hidden()
    page.click("#tab-stderr")
    expect(page.locator("#logs-stderr")).to_be_visible()
    expect(page.locator("#logs-stderr")).to_have_text("<b id=x>to-stderr</b>\n")  # text, not markup
    assert page.locator("#x").count() == 0
    expect(page.locator("#logs-stdout")).to_be_hidden()
    # the task: variable names, never their values (they may be secrets), and the page says so
    expect(page.locator("#task-env .env-name")).to_have_text(["EPOCHS", "HF_TOKEN"])
    expect(page.locator("#env-note")).to_be_visible()
    assert SECRET not in page.content()
    expect(page.locator("#task-command")).to_contain_text(  # as one would type it, quotes and all
        "sh -c 'echo to-stdout; echo '\"'\"'<b id=x>to-stderr</b>'\"'\"' >&2; mkdir")
    expect(page.locator("#task-outputs")).to_contain_text("out/*.txt")
    expect(page.locator("#task-constraints")).to_contain_text(platform.machine())
    # the outputs, downloaded from the page: the files the job wrote
    with page.expect_download() as dl:
        page.click("#download-outputs")
    assert dl.value.suggested_filename == f"job-{job}-outputs.tar"
    with tarfile.open(dl.value.path()) as tar:
        got = {mem.name: tar.extractfile(mem).read() for mem in tar.getmembers() if mem.isfile()}  # type: ignore[union-attr]
    assert got == {"out/model.txt": b"weights 42\n", "out/sub/log.csv": b"a,b\n"}
    with session_client(portal, tab) as own:
        full = own.get(f"/jobs/{job}/logs/stderr.txt")
        assert full.status_code == 200 and full.text == "<b id=x>to-stderr</b>\n"
        assert own.get(f"/jobs/{job}/logs/other.txt").status_code == 422  # only the two streams
    # another tenant: neither the outputs nor the logs nor the page (404: not even that it exists)
    sign_out(tab, portal)
    sign_in(tab, portal, "tenant_b")
    with session_client(portal, tab) as other:
        assert other.get(f"/jobs/{job}/outputs").status_code == 404
        assert other.get(f"/jobs/{job}/logs/stdout.txt").status_code == 404
        assert other.get(f"/jobs/{job}/logs?stream=stderr").status_code == 404
    with httpx.Client(base_url=portal.url, follow_redirects=False) as anon:  # nobody signed in
        r = anon.get(f"/jobs/{job}/outputs")
        assert r.status_code == 303 and "/login" in r.headers["location"]
    assert tab.errors == [] or all("404" in e for e in tab.errors), tab.errors


def test_a_long_log_shows_its_end_and_links_the_whole(portal: Server, tab: Watched) -> None:
    # about 190 KB of numbered lines: the page holds the last 64 KB, the link has every line
    job = finished(portal, "tenant_a", {"name": "long-log", "resources": {"device": "cpu", "units": 1},
                                        "walltime_s": 60, "command": ["seq", "1", "32000"]})
    page = tab.page
    sign_in(tab, portal, "tenant_a")
    page.goto(f"{portal.url}/jobs/{job}")
    pre = page.locator("#logs-stdout")
    expect(pre).to_have_attribute("data-loaded", "1")
    text = pre.inner_text()
    assert text.endswith("31999\n32000") or text.endswith("32000\n"), text[-30:]
    assert 60_000 < len(text.encode()) <= 64 * 1024
    assert not text.startswith("1\n")
    expect(page.locator("#pane-logs-stdout .log-skipped")).to_be_visible()
    with session_client(portal, tab) as c:
        full = c.get(f"/jobs/{job}/logs/stdout.txt")
    assert full.text.splitlines() == [str(i) for i in range(1, 32001)]
    assert tab.errors == []


def test_resubmit_makes_a_new_job_of_the_same_task(portal: Server, tab: Watched) -> None:
    job = finished(portal, "tenant_a", {
        "name": "again", "resources": {"device": "cpu", "units": 1}, "walltime_s": 60,
        "command": ["sh", "-c", "echo run-again; mkdir -p out; echo a > out/a.txt"],
        "env": {"EPOCHS": "3"}, "outputs": ["out/*"], "constraints": {"arch": platform.machine()}})
    page = tab.page
    # another tenant cannot resubmit it (with its own valid CSRF token): 404, nothing queued
    sign_in(tab, portal, "tenant_b")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    with portal.api("tenant_b") as b:
        before_b = b.get("/api/v1/jobs").json()["total"]
    with session_client(portal, tab) as other:
        assert other.post(f"/jobs/{job}/resubmit", data={"csrf": csrf}).status_code == 404
    with portal.api("tenant_b") as b:
        assert b.get("/api/v1/jobs").json()["total"] == before_b
    sign_out(tab, portal)
    sign_in(tab, portal, "tenant_a")
    with portal.api("tenant_a") as a:
        before = a.get("/api/v1/jobs").json()["total"]
    with session_client(portal, tab) as own:  # without the form's CSRF token: refused
        assert own.post(f"/jobs/{job}/resubmit", data={}).status_code == 403
    with portal.api("tenant_a") as a:
        assert a.get("/api/v1/jobs").json()["total"] == before
    page.goto(f"{portal.url}/jobs/{job}")
    page.click("#resubmit")
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    new = int(page.url.rsplit("/", 1)[1])
    assert new != job
    expect(page.locator("#job-name")).to_have_text("again")
    expect(page.locator("#history .history-reason").first).to_have_text(
        re.compile(rf"^由 \S+ 按作业 {job} 重新提交$"))
    expect(page.locator("#job-state")).to_have_attribute("data-state", "COMPLETED", timeout=60_000)
    expect(page.locator("#logs-stdout")).to_contain_text("run-again")
    with platform_of(portal).db.session() as s:
        old_row, new_row = s.get(m.Job, job), s.get(m.Job, new)
        assert old_row is not None and new_row is not None
        assert (new_row.command, new_row.env, new_row.outputs, new_row.constraints, new_row.tenant_id) == \
            (old_row.command, old_row.env, old_row.outputs, old_row.constraints, old_row.tenant_id)
        assert new_row.user_id == old_row.user_id
    assert tab.errors == [] or all("404" in e or "403" in e for e in tab.errors), tab.errors


def test_a_task_of_a_dags_array_stage_says_so(portal: Server, tab: Watched) -> None:
    with portal.api("tenant_a") as c:
        r = c.post("/api/v1/dags", json={"name": "d", "stages": [
            {"name": "fan", "resources": {"device": "cpu", "units": 1}, "walltime_s": 60,
             "command": ["true"], "array": "0-1"}]})
        assert r.status_code == 201, r.text
        task = r.json()["stages"][0]["jobs"][1]
        dag, array = r.json()["id"], r.json()["stages"][0]["array_id"]
    sign_in(tab, portal, "tenant_a")
    tab.page.goto(f"{portal.url}/jobs/{task}")
    expect(tab.page.locator("#task-dag")).to_have_text(f"DAG #{dag} · fan")
    expect(tab.page.locator("#task-array")).to_have_text(f"#{array} [1]")


def test_admin_sees_every_tenants_jobs_without_a_submit_form(portal: Server, tab: Watched) -> None:
    job_a = finished(portal, "tenant_a", {"name": "of-a", "resources": {"device": "cpu", "units": 1},
                                          "walltime_s": 60, "command": ["true"]})
    job_b = finished(portal, "tenant_b", {"name": "of-b", "resources": {"device": "cpu", "units": 1},
                                          "walltime_s": 60, "command": ["true"]})
    with portal.api("platform_admin") as c:
        names = {t["id"]: t["name"] for t in c.get("/api/v1/tenants").json()["items"]}
        owner = {j: c.get(f"/api/v1/jobs/{j}").json()["tenant_id"] for j in (job_a, job_b)}
    page = tab.page
    sign_in(tab, portal, "platform_admin")
    page.click("header nav a[href='/jobs']")
    page.wait_for_url(re.compile(r"/jobs$"))
    assert page.locator("#submit-form").count() == 0
    for j in (job_a, job_b):
        expect(page.locator(f"#jobs tr[data-job='{j}'] td.tenant")).to_have_text(names[owner[j]])
    expect(page.locator("#jobs thead th").nth(1)).to_have_text("企业")
    # the admin's job page: no resubmit (admins do not submit), and a posted one is refused
    page.goto(f"{portal.url}/jobs/{job_a}")
    assert page.locator("#resubmit").count() == 0
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    bearer = {"Authorization": f"Bearer {portal.creds()['platform_admin']}"}
    with session_client(portal, tab) as admin:
        assert admin.post(f"/jobs/{job_a}/resubmit", data={"csrf": csrf}).status_code == 403
        before = admin.get("/api/v1/jobs", headers=bearer).json()["total"]
        r = admin.post("/jobs", data={"csrf": csrf, "name": "x", "command": "true", "device": "cpu",
                                      "units": "1", "walltime_s": "60", "policy": "balanced"})
        assert r.status_code == 403 and "作业由企业用户提交" in r.text
        assert admin.get("/api/v1/jobs", headers=bearer).json()["total"] == before
    sign_out(tab, portal)
    sign_in(tab, portal, "tenant_a")  # a tenant's user still has the form, and no tenant column
    expect(page.locator("#submit-form")).to_be_visible()
    assert page.locator("#jobs td.tenant").count() == 0
    assert tab.errors == [] or all("403" in e for e in tab.errors), tab.errors


def test_docs_render_without_the_internet(portal: Server, tab: Watched) -> None:
    page = tab.page
    asked: list[str] = []

    def only_suanli(route: Route) -> None:
        url = route.request.url
        if url.startswith(portal.url + "/"):
            route.continue_()
        else:
            asked.append(url)
            route.abort()

    page.route("**/*", only_suanli)
    resp = page.goto(f"{portal.url}/docs")
    assert resp is not None and resp.status == 200
    assert "script-src 'self'" in resp.headers["content-security-policy"]
    expect(page.locator(".opblock").first).to_be_visible(timeout=20_000)
    assert page.locator(".opblock").count() > 20  # the API's operations, listed
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/jobs").first).to_be_visible()
    assert asked == []  # nothing from anywhere else (no CDN, no validator)
    assert page.goto(f"{portal.url}/redoc").status == 404  # type: ignore[union-attr]
    assert tab.errors == [] or all("404" in e for e in tab.errors), tab.errors


def test_estimate_errors_and_reasons_in_chinese(portal: Server, tab: Watched) -> None:
    page = tab.page
    sign_in(tab, portal, "tenant_a")
    page.fill("input[name=command]", "echo x")
    page.fill("input[name=units]", "100000")  # more than any pool has
    expect(page.locator("#estimate-error")).to_have_text(  # with the largest pool, in Chinese
        re.compile(r"^网络中没有任何资源池能运行此作业；最大的 CPU 资源池是 \S+："), timeout=10_000)
    pools = page.locator("#estimate-pools li")
    assert pools.count() >= 1
    assert all(re.search(r"[\u4e00-\u9fff]", text) for text in pools.all_inner_texts())
    page.fill("input[name=units]", "1")
    page.fill("input[name=budget_yuan]", "0.01")
    expect(page.locator("#estimate-figures, #estimate-error").first).to_be_visible(timeout=10_000)
    assert tab.errors == []

