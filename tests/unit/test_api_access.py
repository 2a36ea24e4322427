"""Least privilege, from each role's side: what a reviewer, an auditor and a center operator may
read through the API and the portal (and what they may not), and that another tenant's id is "not
found" for a tenant whether that tenant exists or not (no existence oracle). The real app over the
demo city (`seed_demo`), requests through TestClient."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from suanli.domain.money import yuan
from suanli.engine import Engine
from suanli.services.context import Platform

from ..api_routes import api_routes, body_model
from ..demo_app import demo_app, signed_in

GHOST = 999_999  # an id nothing has


@dataclass
class Demo:
    client: TestClient
    creds: dict[str, str]
    ids: dict[str, int]
    platform: Platform
    portals: dict[str, TestClient] = field(default_factory=dict)

    def call(self, role: str, method: str, path: str, body: Any = None) -> Any:
        return self.client.request(method, path.format(**self.ids), json=body,
                                   headers={"Authorization": f"Bearer {self.creds[role]}"})

    def portal(self, role: str) -> TestClient:
        """A browser-like client of the portal signed in as `role` (its own cookie jar)."""
        if role not in self.portals:
            self.portals[role] = signed_in(self.client.app, self.creds[role])
        return self.portals[role]


@contextmanager
def demo_city() -> Iterator[Demo]:
    """The demo city with a job of tenant_a queued, and the ids the tables below use."""
    with demo_app("suanli-access.") as (client, creds, p):
        d = Demo(client, creds, {}, p)
        me = {k: d.call(k, "GET", "/api/v1/users/me").json()
              for k in ("tenant_a", "tenant_b", "center_operator")}
        own_center = me["center_operator"]["center_id"]
        pools = d.call("platform_admin", "GET", "/api/v1/pools").json()["items"]
        job = d.call("tenant_a", "POST", "/api/v1/jobs", {
            "name": "secret sauce", "command": ["sh", "-c", "echo s3cret"],
            "resources": {"device": "cpu", "units": 1}, "walltime_s": 60})
        assert job.status_code == 201, job.text
        d.ids.update(
            tenant_a=me["tenant_a"]["tenant_id"], tenant_b=me["tenant_b"]["tenant_id"],
            own_center=own_center,
            other_center=next(pl["center_id"] for pl in pools if pl["center_id"] != own_center),
            own_pool=next(pl["id"] for pl in pools if pl["center_id"] == own_center),
            other_pool=next(pl["id"] for pl in pools if pl["center_id"] != own_center),
            job=job.json()["id"], ghost=GHOST)
        yield d


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    """One city for the module's tables: they only read, or are refused."""
    with demo_city() as d:
        yield d


JOB = {"name": "x", "command": ["true"], "resources": {"device": "cpu", "units": 1}, "walltime_s": 60}

# role, method, path, body, the status that role gets. The 200s are what the role needs for its
# work (so that least privilege does not stop it working); the rest are what it must not read.
API_RULES: list[tuple[str, str, str, Any, int]] = [
    # A reviewer judges voucher applications: the tenant, its money, usage and invoices.
    ("reviewer", "GET", "/api/v1/voucher-applications", None, 200),
    ("reviewer", "GET", "/api/v1/tenants/{tenant_b}", None, 200),
    ("reviewer", "GET", "/api/v1/ledger/tenants/{tenant_b}", None, 200),
    ("reviewer", "GET", "/api/v1/usage?tenant_id={tenant_b}", None, 200),
    ("reviewer", "GET", "/api/v1/settlements?month=2026-10", None, 200),
    # ... not what tenants compute: no job, its command, logs or placement, no DAG, no estimate.
    ("reviewer", "GET", "/api/v1/jobs", None, 403),
    ("reviewer", "GET", "/api/v1/jobs/{job}", None, 403),
    ("reviewer", "GET", "/api/v1/jobs/{ghost}", None, 403),  # the same for every id
    ("reviewer", "GET", "/api/v1/jobs/{job}/logs", None, 403),
    ("reviewer", "GET", "/api/v1/jobs/{job}/placement", None, 403),
    ("reviewer", "POST", "/api/v1/jobs/estimate", JOB, 403),
    ("reviewer", "GET", "/api/v1/dags", None, 403),
    ("reviewer", "GET", "/api/v1/dags/{ghost}", None, 403),
    ("reviewer", "GET", "/api/v1/audit", None, 403),
    # An auditor reads the audit log and the money, and the job records vouchers paid for ...
    ("auditor", "GET", "/api/v1/audit", None, 200),
    ("auditor", "GET", "/api/v1/ledger/trial-balance", None, 200),
    ("auditor", "GET", "/api/v1/voucher-redemptions", None, 200),
    ("auditor", "GET", "/api/v1/usage", None, 200),
    ("auditor", "GET", "/api/v1/jobs/{job}", None, 200),
    # ... never their output.
    ("auditor", "GET", "/api/v1/jobs/{job}/logs", None, 403),
    ("auditor", "GET", "/api/v1/jobs/{job}/logs?stream=stderr", None, 403),
    ("auditor", "POST", "/api/v1/jobs/estimate", JOB, 403),
    # A center operator reads and sets its own center's prices, and no other center's.
    ("center_operator", "GET", "/api/v1/pools/{own_pool}/prices", None, 200),
    ("center_operator", "GET", "/api/v1/pools/{other_pool}/prices", None, 404),
    ("center_operator", "GET", "/api/v1/pools/{ghost}/prices", None, 404),
    ("center_operator", "POST", "/api/v1/pools/{other_pool}/prices",
     {"price_fen_per_unit_hour": 1}, 404),
    ("center_operator", "GET", "/api/v1/centers/{other_center}", None, 404),
    ("center_operator", "GET", "/api/v1/centers/{other_center}/pools", None, 404),
    ("center_operator", "POST", "/api/v1/jobs/estimate", JOB, 403),  # it prices every pool
    ("center_operator", "GET", "/api/v1/jobs/{job}", None, 404),  # never ran at its center
    ("center_operator", "GET", "/api/v1/tenants/{tenant_a}", None, 404),
    ("center_operator", "GET", "/api/v1/voucher-applications", None, 403),
    # A tenant still reads every pool's prices (the market) and its own job's output.
    ("tenant_a", "GET", "/api/v1/pools/{other_pool}/prices", None, 200),
    ("tenant_a", "GET", "/api/v1/jobs/{job}/logs", None, 200),
    ("tenant_a", "POST", "/api/v1/jobs/estimate", JOB, 200),
    ("platform_admin", "GET", "/api/v1/jobs/{job}/logs", None, 200),
]


@pytest.mark.parametrize("role, method, path, body, status", API_RULES,
                         ids=[f"{r}-{m}-{p}" for r, m, p, _, _ in API_RULES])
def test_each_role_reads_what_its_work_needs_and_no_more(
        demo: Demo, role: str, method: str, path: str, body: Any, status: int) -> None:
    r = demo.call(role, method, path, body)
    assert r.status_code == status, (r.status_code, r.text)
    if status >= 400:
        assert r.json()["error"]  # a JSON error saying why, like the rest of the API
        assert "s3cret" not in r.text


def test_a_center_operator_sees_only_its_own_center_in_a_placement() -> None:
    """A job that ran at the operator's center: the placement's candidates at other centers carry
    their prices (cost) and loads; the operator sees only its own center's."""
    with demo_city() as d:
        _placement_seen_by_the_operator(d)


def _placement_seen_by_the_operator(d: Demo) -> None:
    kunpeng = next(pl for pl in d.call("platform_admin", "GET", "/api/v1/pools").json()["items"]
                   if pl["center_id"] == d.ids["own_center"] and pl["device_kind"] == "cpu")
    # Free CPUs at the operator's center: the cheapest pool, so the job goes there.
    r = d.call("platform_admin", "POST", f"/api/v1/pools/{kunpeng['id']}/prices",
               {"price_fen_per_unit_hour": 0, "note": "test"})
    assert r.status_code == 201, r.text
    job = d.call("tenant_b", "POST", "/api/v1/jobs", {
        "name": "here", "command": ["true"], "resources": {"device": "cpu", "units": 8},
        "walltime_s": 3600, "policy": "cheapest"}).json()
    Engine(d.platform).tick()
    seen_by_admin = d.call("platform_admin", "GET", f"/api/v1/jobs/{job['id']}/placement").json()
    centers = {c["center_id"] for c in seen_by_admin["current"]["candidates"]}
    assert d.ids["own_center"] in centers and len(centers) > 1  # it was weighed against others
    r = d.call("center_operator", "GET", f"/api/v1/jobs/{job['id']}/placement")
    assert r.status_code == 200, r.text
    seen = r.json()
    shown = [c for pl in [*seen["placements"], seen["current"]] for c in pl["candidates"]]
    assert shown and {c["center_id"] for c in shown} == {d.ids["own_center"]}
    # The portal's job page shows the operator the same: its own pools only.
    page = d.portal("center_operator").get(f"/jobs/{job['id']}")
    assert page.status_code == 200
    others = {c["pool"] for c in seen_by_admin["current"]["candidates"]
              if c["center_id"] != d.ids["own_center"]}
    assert not any(name in page.text for name in others), others


# -- the portal ------------------------------------------------------------------------------------

PAGE_RULES: list[tuple[str, str, int]] = [
    ("reviewer", "/review", 200),
    ("reviewer", "/jobs", 403),
    ("reviewer", "/jobs/{job}", 403),
    ("reviewer", "/jobs/{job}/logs", 403),
    ("auditor", "/audit", 200),
    ("auditor", "/jobs/{job}/logs", 403),
    ("center_operator", "/center", 200),
    ("tenant_a", "/jobs/{job}/logs", 200),
]


@pytest.mark.parametrize("role, path, status", PAGE_RULES, ids=[f"{r}-{p}" for r, p, _ in PAGE_RULES])
def test_each_role_in_the_portal(demo: Demo, role: str, path: str, status: int) -> None:
    r = demo.portal(role).get(path.format(**demo.ids))
    assert r.status_code == status, (r.status_code, r.text[:500])
    if status >= 400:
        assert "s3cret" not in r.text and "secret sauce" not in r.text


def test_the_reviewer_judges_by_the_tenant_its_money_and_usage(demo: Demo) -> None:
    """The queue shows, beside each pending application, who the tenant is, what it paid in, was
    billed and owes, and what it ran (runs, unit-hours, P·h): what the API gives a reviewer."""
    pending = demo.call("reviewer", "GET", "/api/v1/voucher-applications?state=pending").json()["items"]
    tenant = pending[0]["tenant_id"]
    name = demo.call("reviewer", "GET", f"/api/v1/tenants/{tenant}").json()["name"]
    money = demo.call("reviewer", "GET", f"/api/v1/ledger/tenants/{tenant}").json()
    page = demo.portal("reviewer").get("/review")
    assert page.status_code == 200
    article = page.text.split(f'data-application="{pending[0]["id"]}"')[1].split("</article>")[0]
    assert name in article and 'class="tenant-summary' in article
    assert yuan(money["deposited_fen"]) in article and yuan(money["billed_fen"]) in article


def test_the_auditor_reads_a_job_page_without_its_output(demo: Demo) -> None:
    page = demo.portal("auditor").get("/jobs/{job}".format(**demo.ids))
    assert page.status_code == 200
    assert 'id="logs-stdout"' not in page.text and "/logs" not in page.text  # no log pane, no polling
    assert 'id="cancel"' not in page.text  # nor a button it may not use
    tenant_page = demo.portal("tenant_a").get("/jobs/{job}".format(**demo.ids))
    assert 'id="logs-stdout"' in tenant_page.text and 'id="cancel"' in tenant_page.text


# -- another tenant's id: 404, whether it exists or not --------------------------------------------

# Every request that names a tenant (in the path, the query or the body), as tenant_a sends it
# about tenant {t}.
NAMING_A_TENANT: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/tenants/{t}", None),
    ("GET", "/api/v1/tenants/{t}/quotas", None),
    ("PUT", "/api/v1/tenants/{t}/peer-rule", {"earlier_by_s": 1}),
    ("PUT", "/api/v1/tenants/{t}/quotas/cpu", {"max_units": 1}),
    ("DELETE", "/api/v1/tenants/{t}/quotas/cpu", None),
    ("PUT", "/api/v1/tenants/{t}/credit-limit", {"credit_limit_fen": 0}),
    ("POST", "/api/v1/tenants/{t}/freeze", {"reason": "x"}),
    ("POST", "/api/v1/tenants/{t}/unfreeze", None),
    ("GET", "/api/v1/tenants/{t}/related-parties", None),
    ("POST", "/api/v1/tenants/{t}/related-parties", {"center_id": 1, "relation": "owner"}),
    ("GET", "/api/v1/ledger/tenants/{t}", None),
    ("POST", "/api/v1/ledger/deposits", {"tenant_id": "{t}", "amount_fen": 1, "reference": "r"}),
    ("GET", "/api/v1/invoices/2026-10/{t}", None),
    ("GET", "/api/v1/voucher-applications?tenant_id={t}", None),
    ("GET", "/api/v1/voucher-grants?tenant_id={t}", None),
    ("GET", "/api/v1/voucher-redemptions?tenant_id={t}", None),
    ("GET", "/api/v1/jobs?tenant_id={t}", None),
    ("GET", "/api/v1/usage?tenant_id={t}", None),
    ("GET", "/api/v1/settlements?month=2026-10&party=tenant&party_id={t}", None),
    ("GET", "/api/v1/settlements.csv?month=2026-10&party=tenant&party_id={t}", None),
    ("POST", "/api/v1/users", {"username": "mallory", "role": "tenant_user", "tenant_id": "{t}"}),
    ("GET", "/api/v1/tenants/{t}/storage-quota", None),
    ("PUT", "/api/v1/tenants/{t}/storage-quota", {"bytes": 1, "count": 1}),
    ("GET", "/api/v1/artifacts?tenant_id={t}", None),
    ("GET", "/api/v1/datasets?tenant_id={t}", None),
]


def _fill(value: Any, t: int) -> Any:
    if isinstance(value, dict):
        return {k: t if v == "{t}" else v for k, v in value.items()}
    return value


@pytest.mark.parametrize("method, path, body", NAMING_A_TENANT,
                         ids=[f"{m}-{p}" for m, p, _ in NAMING_A_TENANT])
def test_another_tenants_id_is_not_found_whether_it_exists_or_not(
        demo: Demo, method: str, path: str, body: Any) -> None:
    answers = {}
    for who in ("tenant_b", "ghost"):
        t = demo.ids[who]
        r = demo.call("tenant_a", method, path.replace("{t}", str(t)), _fill(body, t))
        answers[who] = (r.status_code, re.sub(rf"(?<!\d){t}(?!\d)", "<t>", r.text))
    assert answers["tenant_b"] == answers["ghost"]  # nothing tells the two apart ...
    assert answers["tenant_b"][0] == 404, answers  # ... and neither is "forbidden"


def test_a_role_short_of_an_action_on_its_own_tenant_is_still_forbidden(demo: Demo) -> None:
    """404 is for "not yours"; on its own tenant a tenant admin learns what it may not do."""
    t = demo.ids["tenant_a"]
    assert demo.call("tenant_a", "PUT", f"/api/v1/tenants/{t}/credit-limit",
                     {"credit_limit_fen": 0}).status_code == 403
    assert demo.call("tenant_a", "POST", f"/api/v1/tenants/{t}/freeze",
                     {"reason": "x"}).status_code == 403
    assert demo.call("tenant_a", "GET", f"/api/v1/tenants/{t}/related-parties").status_code == 200


def test_the_table_names_every_route_that_takes_a_tenant(demo: Demo) -> None:
    """A new route taking a tenant id (path, query or body) must join NAMING_A_TENANT."""
    covered = {(m, re.sub(r"\?.*", "", p)) for m, p, _ in NAMING_A_TENANT}
    missing = []
    for route in api_routes(demo.client.app):  # type: ignore[arg-type]
        dep = route.dependant
        names = {f.name for f in (*dep.path_params, *dep.query_params)}
        model = body_model(route)
        if model is not None:
            names |= set(model.model_fields)
        if not names & {"tenant_id", "party_id"}:
            continue
        for method in route.methods:
            path = route.path.replace("{tenant_id}", "{t}").replace("{month}", "2026-10")
            path = path.replace("{device_kind}", "cpu")
            if (method, path) not in covered:
                missing.append(f"{method} {route.path}")
    assert not missing, missing
