"""The REST API in-process: auth, bad input, isolation, errors, metrics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from suanli.api.app import create_app
from suanli.services.auth import issue_token
from suanli.services.context import Platform
from suanli.services.demo import ensure_credentials, seed_demo

GOOD_JOB: dict[str, Any] = {"name": "hello", "command": ["echo", "hi"],
                            "resources": {"device": "cpu", "units": 1}, "walltime_s": 60}


@pytest.fixture
def api(platform: Platform) -> Iterator[tuple[TestClient, dict[str, str]]]:
    seed_demo(platform)
    creds = ensure_credentials(platform, platform.home / "demo-credentials.json")
    app = create_app(platform, run_engine=False)
    with TestClient(app) as client:
        yield client, creds


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_needs_no_token(api: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = api
    r = client.get("/api/v1/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_the_printed_api_address_answers_with_where_things_are(
        api: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = api  # `suanli serve` prints http://HOST:PORT/api/v1: it must not be a 404
    index = client.get("/api/v1").json()
    assert index["name"] == "suanli" and index["health"] == "/api/v1/health"
    for link in ("openapi", "health"):
        assert client.get(index[link]).status_code == 200


@pytest.mark.parametrize("headers, words", [
    ({}, "missing bearer token"),
    ({"Authorization": "Bearer nope"}, "invalid API token"),
    ({"Authorization": "Bearer sl_wrongwrongwrong"}, "invalid API token"),
    ({"Authorization": "Basic abc"}, "missing bearer token"),
])
def test_bad_tokens_are_401(api: tuple[TestClient, dict[str, str]], headers: dict[str, str],
                            words: str) -> None:
    client, _ = api
    r = client.get("/api/v1/jobs", headers=headers)
    assert r.status_code == 401 and words in r.json()["error"]


def test_tokens_are_shown_once_hashed_and_revocable(
        api: tuple[TestClient, dict[str, str]], platform: Platform) -> None:
    client, creds = api
    r = client.post("/api/v1/tokens", json={"name": "ci"}, headers=auth(creds["tenant_a"]))
    assert r.status_code == 201
    secret, tid = r.json()["token"], r.json()["id"]
    assert client.get("/api/v1/users/me", headers=auth(secret)).json()["username"] == "alice"
    listed = client.get("/api/v1/tokens", headers=auth(secret)).json()["items"]
    assert all("token" not in t for t in listed)
    raw = platform.db.engine.raw_connection()
    try:
        rows = raw.cursor().execute("select token_hash from api_tokens").fetchall()
    finally:
        raw.close()
    assert secret not in {r[0] for r in rows}  # only hashes are stored
    assert client.delete(f"/api/v1/tokens/{tid}", headers=auth(secret)).status_code == 200
    r = client.get("/api/v1/users/me", headers=auth(secret))
    assert r.status_code == 401 and "revoked" in r.json()["error"]
    # Another user's token id is a 404 for a tenant user.
    issue_token(platform, 1)
    assert client.delete("/api/v1/tokens/1", headers=auth(creds["tenant_b"])).status_code == 404


BAD_JOBS: list[tuple[dict[str, Any], int, str]] = [
    ({**GOOD_JOB, "resources": {"device": "cpu", "units": 0}}, 422, "resources.units"),
    ({**GOOD_JOB, "resources": {"device": "cpu", "units": -3}}, 422, "resources.units"),
    ({**GOOD_JOB, "resources": {"device": "cpu", "units": "two"}}, 422, "resources.units"),
    ({**GOOD_JOB, "resources": {"device": "tpu"}}, 422, "resources.device"),
    ({**GOOD_JOB, "walltime_s": 10**9}, 422, "walltime_s"),
    ({**GOOD_JOB, "walltime_s": 30 * 86400}, 422, "resources"),  # over every pool's limit
    ({**GOOD_JOB, "command": []}, 422, "command"),
    ({**GOOD_JOB, "command": "echo hi"}, 422, "command"),
    ({**GOOD_JOB, "resources": {"device": "npu", "units": 100000}}, 422, "resources"),
    ({**GOOD_JOB, "policy": "fastest-ever"}, 422, "policy"),
    ({**GOOD_JOB, "deadline": "2000-01-01T00:00:00Z"}, 422, "deadline"),
    ({**GOOD_JOB, "deadline": "2099-01-01T00:00:00"}, 422, "deadline"),
    ({**GOOD_JOB, "surprise": 1}, 422, "surprise"),
    ({k: v for k, v in GOOD_JOB.items() if k != "name"}, 422, "name"),
]


@pytest.mark.parametrize("body, status, field", BAD_JOBS)
def test_bad_jobs_get_4xx_naming_the_field_and_change_nothing(
        api: tuple[TestClient, dict[str, str]], body: dict[str, Any], status: int,
        field: str) -> None:
    client, creds = api
    r = client.post("/api/v1/jobs", json=body, headers=auth(creds["tenant_a"]))
    assert r.status_code == status, r.text
    assert r.json()["field"] == field or field in r.json()["error"], r.json()
    assert client.get("/api/v1/jobs", headers=auth(creds["tenant_a"])).json()["total"] == 0


def test_infeasible_job_lists_reasons_per_pool(api: tuple[TestClient, dict[str, str]]) -> None:
    client, creds = api
    body = {**GOOD_JOB, "resources": {"device": "npu", "units": 100000}}
    r = client.post("/api/v1/jobs", json=body, headers=auth(creds["tenant_a"]))
    detail = r.json()["detail"]
    assert len(detail) == 12 and all(d["reasons"] for d in detail)
    assert any("units per node" in reason for d in detail for reason in d["reasons"])


def test_non_json_and_oversized_bodies(api: tuple[TestClient, dict[str, str]]) -> None:
    client, creds = api
    h = {**auth(creds["tenant_a"]), "Content-Type": "application/json"}
    r = client.post("/api/v1/jobs", content=b"{not json", headers=h)
    assert r.status_code == 422 and "JSON" in r.json()["error"]
    r = client.post("/api/v1/jobs", content=b"x" * (2 << 20), headers=h)
    assert r.status_code == 413


def test_invalid_credit_code_is_refused(api: tuple[TestClient, dict[str, str]]) -> None:
    client, creds = api
    body = {"name": "Bad Co", "credit_code": "91370212MA3C5T8K2A"}
    r = client.post("/api/v1/tenants", json=body, headers=auth(creds["platform_admin"]))
    assert r.status_code == 422 and r.json()["field"] == "credit_code"
    assert "should be 'R'" in r.json()["error"]
    r = client.post("/api/v1/tenants", json={**body, "credit_code": "91370212MA3C5T8K2R"},
                    headers=auth(creds["tenant_a"]))
    assert r.status_code == 403


def test_isolation_other_tenants_job_is_404(api: tuple[TestClient, dict[str, str]]) -> None:
    client, creds = api
    r = client.post("/api/v1/jobs", json=GOOD_JOB, headers=auth(creds["tenant_a"]))
    assert r.status_code == 201
    jid = r.json()["id"]
    for path in ("", "/logs", "/placement"):
        assert client.get(f"/api/v1/jobs/{jid}{path}",
                          headers=auth(creds["tenant_b"])).status_code == 404
    assert client.post(f"/api/v1/jobs/{jid}/cancel",
                       headers=auth(creds["tenant_b"])).status_code == 404
    assert client.get("/api/v1/jobs", headers=auth(creds["tenant_b"])).json()["total"] == 0
    assert client.get(f"/api/v1/jobs/{jid}", headers=auth(creds["tenant_a"])).status_code == 200
    # The operator of qd-ai sees only its own center and no job that never ran there.
    centers = client.get("/api/v1/centers", headers=auth(creds["center_operator"])).json()["items"]
    assert [c["slug"] for c in centers] == ["qd-ai"]
    assert client.get(f"/api/v1/jobs/{jid}",
                      headers=auth(creds["center_operator"])).status_code == 404
    assert client.get("/api/v1/centers/2",
                      headers=auth(creds["center_operator"])).status_code == 404


def test_centers_capacity_and_secrets_are_redacted(
        api: tuple[TestClient, dict[str, str]]) -> None:
    client, creds = api
    admin = auth(creds["platform_admin"])
    body = {"slug": "hpc-x", "name_zh": "测试", "name_en": "Test", "kind": "supercomputing",
            "connector": "local", "connector_config": {"jwt_token": "s3cret", "root": "/tmp/x"},
            "pools": [{"name": "cpu", "device_kind": "cpu", "device_model": "Xeon",
                       "units_per_node": 64, "nodes": 10, "memory_gb_per_node": 256,
                       "price_fen_per_unit_hour": 5, "tflops_fp64": 0.1}]}
    r = client.post("/api/v1/centers", json=body, headers=admin)
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["connector_config"]["jwt_token"] == "***" and c["pools"][0]["total_units"] == 640
    assert c["peak_pflops"]["fp64"] == pytest.approx(0.064)
    assert client.post("/api/v1/centers", json=body, headers=admin).status_code == 409
    cap = client.get("/api/v1/capacity", headers=admin).json()
    assert cap["unit"] == "PFLOPS"
    assert cap["by_kind"]["ai"]["total_pflops"]["fp16"] > 500
    assert "崂山区" in cap["by_district"]
    assert cap["domestic"]["total_pflops"]["fp16"] > 250
    r = client.post("/api/v1/centers", json={**body, "slug": "x2"}, headers=auth(creds["tenant_a"]))
    assert r.status_code == 403


def test_metrics_exposes_platform_state(api: tuple[TestClient, dict[str, str]]) -> None:
    client, creds = api
    client.post("/api/v1/jobs", json=GOOD_JOB, headers=auth(creds["tenant_a"]))
    text = client.get("/metrics").text
    assert 'suanli_jobs{state="QUEUED"} 1.0' in text
    assert 'suanli_pool_units_total{center="qd-ai",pool="ascend-910b"} 320.0' in text
    assert "suanli_api_request_seconds_bucket" in text and 'route="/api/v1/jobs"' in text
    assert "suanli_center_utilization" in text and "suanli_queue_length" in text


def test_openapi_docs_are_served(api: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = api
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/v1/jobs", "/api/v1/jobs/{job_id}/placement", "/api/v1/capacity",
              "/api/v1/usage", "/api/v1/centers/{center_id}/pools", "/api/v1/tokens"):
        assert p in paths


def test_tenant_quotas_over_the_api(api: tuple[TestClient, dict[str, str]]) -> None:
    client, creds = api
    admin, alice, bob = auth(creds["platform_admin"]), auth(creds["tenant_a"]), auth(creds["tenant_b"])
    me = client.get("/api/v1/users/me", headers=alice).json()
    tid = me["tenant_id"]
    assert client.get(f"/api/v1/tenants/{tid}/quotas", headers=alice).json()["items"] == []
    r = client.put(f"/api/v1/tenants/{tid}/quotas/gpu", json={"max_units": 16}, headers=admin)
    assert r.status_code == 200, r.text
    assert [(q["device_kind"], q["max_units"], q["in_use"]) for q in r.json()["items"]] == [("gpu", 16, 0)]
    seen = client.get(f"/api/v1/tenants/{tid}/quotas", headers=alice).json()["items"]
    assert seen[0]["max_units"] == 16
    # only the platform admin sets quotas; another tenant does not even see them
    assert client.put(f"/api/v1/tenants/{tid}/quotas/gpu", json={"max_units": 99},
                      headers=alice).status_code == 403
    assert client.get(f"/api/v1/tenants/{tid}/quotas", headers=bob).status_code == 404
    bad = client.put(f"/api/v1/tenants/{tid}/quotas/tpu", json={"max_units": 1}, headers=admin)
    assert bad.status_code == 422
    neg = client.put(f"/api/v1/tenants/{tid}/quotas/cpu", json={"max_units": -1}, headers=admin)
    assert neg.status_code == 422 and "max_units" in neg.text
    assert client.put("/api/v1/tenants/9999/quotas/cpu", json={"max_units": 1},
                      headers=admin).status_code == 404
    assert client.delete(f"/api/v1/tenants/{tid}/quotas/gpu", headers=admin).json()["items"] == []


def test_ledger_over_the_api(api: tuple[TestClient, dict[str, str]]) -> None:
    client, creds = api
    admin, alice, bob = auth(creds["platform_admin"]), auth(creds["tenant_a"]), auth(creds["tenant_b"])
    tid = client.get("/api/v1/users/me", headers=alice).json()["tenant_id"]
    opening = client.get(f"/api/v1/ledger/tenants/{tid}", headers=alice).json()["deposited_fen"]
    assert opening > 0  # the demo city gives its tenants an opening deposit
    cash = client.get("/api/v1/ledger/trial-balance", headers=admin).json()["accounts"]
    cash_before = next(a["balance_fen"] for a in cash if a["account"] == "platform:cash")
    r = client.post("/api/v1/ledger/deposits", json={"tenant_id": tid, "amount_fen": 123456,
                                                     "reference": "wire-1"}, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["prepaid_fen"] == opening + 123456
    mine = client.get(f"/api/v1/ledger/tenants/{tid}", headers=alice).json()
    assert mine["deposited_fen"] == opening + 123456
    assert client.get(f"/api/v1/ledger/tenants/{tid}", headers=bob).status_code == 404
    assert client.post("/api/v1/ledger/deposits", json={"tenant_id": tid, "amount_fen": 5,
                                                        "reference": "x"}, headers=alice).status_code == 403
    assert client.post("/api/v1/ledger/deposits", json={"tenant_id": tid, "amount_fen": -5,
                                                        "reference": "y"}, headers=admin).status_code == 422
    tb = client.get("/api/v1/ledger/trial-balance", headers=admin).json()
    assert tb["total_fen"] == 0
    assert {"account": "platform:cash", "balance_fen": cash_before + 123456} in tb["accounts"]
    assert client.get("/api/v1/ledger/trial-balance", headers=alice).status_code == 403


def test_ids_beyond_the_database_integer_are_422_not_500(api: tuple[TestClient, dict[str, str]]) -> None:
    client, creds = api
    r = client.post("/api/v1/ledger/deposits", json={"tenant_id": 999999999999, "amount_fen": 1,
                                                     "reference": "0"}, headers=auth(creds["platform_admin"]))
    assert r.status_code == 422 and "tenant_id" in r.text


def test_vouchers_prices_and_admission_over_the_api(api: tuple[TestClient, dict[str, str]],
                                                    platform: Platform) -> None:
    client, creds = api
    admin, alice, bob = auth(creds["platform_admin"]), auth(creds["tenant_a"]), auth(creds["tenant_b"])
    reviewer, auditor = auth(creds["reviewer"]), auth(creds["auditor"])
    (prog,) = client.get("/api/v1/voucher-programmes", headers=alice).json()["items"]  # the demo one
    assert prog["budget_fen"] == 2_000_000_000 and prog["rules"]["ratio_bp"] == 2000
    assert prog["budget_fen"] == prog["available_fen"] + prog["committed_fen"] + prog["paid_fen"]
    # Bob's pending demo application: a tenant cannot review it; a partial approval needs a reason.
    pending = client.get("/api/v1/voucher-applications?state=pending", headers=reviewer).json()["items"]
    assert len(pending) == 1
    aid = pending[0]["id"]
    assert client.post(f"/api/v1/voucher-applications/{aid}/review", json={"decision": "approve"},
                       headers=bob).status_code == 403
    r = client.post(f"/api/v1/voucher-applications/{aid}/review",
                    json={"decision": "approve", "approved_fen": 1}, headers=reviewer)
    assert r.status_code == 422 and "reason" in r.json()["error"]
    review = f"/api/v1/voucher-applications/{aid}/review"
    assert client.post(review, json={"decision": "maybe"}, headers=reviewer).status_code == 422
    r = client.post(review, json={"decision": "approve"}, headers=reviewer)
    assert r.status_code == 200 and r.json()["state"] == "approved"
    assert client.post(f"/api/v1/voucher-applications/{aid}/review", json={"decision": "approve"},
                       headers=reviewer).status_code == 409
    # Grants: each tenant sees its own.
    mine = client.get("/api/v1/voucher-grants", headers=bob).json()["items"]
    assert {g["tenant_id"] for g in mine} == {pending[0]["tenant_id"]} and len(mine) == 2
    assert client.get("/api/v1/voucher-grants", headers=admin).status_code == 200
    # Applications are validated: too much for the planned spend.
    r = client.post("/api/v1/voucher-applications", json={
        "programme_id": prog["id"], "requested_fen": 10**9, "planned_spend_fen": 10**6,
        "planned_use": "x"}, headers=alice)
    assert r.status_code == 422 and "at most" in r.json()["error"]
    # Reports (JSON and CSV) for the platform's roles only.
    rep = client.get(f"/api/v1/voucher-reports?programme_id={prog['id']}&by=domestic", headers=reviewer)
    assert rep.status_code == 200 and len(rep.json()["burn_down"]) == 12
    csv_r = client.get(f"/api/v1/voucher-reports.csv?programme_id={prog['id']}", headers=auditor)
    assert csv_r.headers["content-type"].startswith("text/csv") and csv_r.text.startswith("key,runs")
    assert client.get(f"/api/v1/voucher-reports?programme_id={prog['id']}", headers=alice).status_code == 403
    assert client.get(f"/api/v1/voucher-reports?programme_id={prog['id']}&by=colour",
                      headers=auditor).status_code == 422
    # Freeze is the auditor's; the audit log verifies.
    tid = mine[0]["tenant_id"]
    freeze = f"/api/v1/tenants/{tid}/freeze"
    assert client.post(freeze, json={"reason": "x"}, headers=admin).status_code == 403
    assert client.post(f"/api/v1/tenants/{tid}/freeze", json={"reason": "check"},
                       headers=auditor).json()["frozen_at"]
    v = client.get("/api/v1/audit/verify", headers=auditor).json()
    assert v["ok"] and v["entries"] > 10
    assert client.get("/api/v1/audit/verify", headers=alice).status_code == 403
    # Prices: versions, never in the past.
    pool = client.get("/api/v1/pools", headers=admin).json()["items"][0]["id"]
    prices = f"/api/v1/pools/{pool}/prices"
    r = client.post(prices, json={"price_fen_per_unit_hour": 9, "valid_from": "2020-01-01T00:00:00Z"},
                    headers=admin)
    assert r.status_code == 422 and "past" in r.json()["error"]
    r = client.post(prices, json={"price_fen_per_unit_hour": 9, "valid_from": "2099-01-01T00:00:00Z"},
                    headers=admin)
    assert r.status_code == 201
    assert client.get(f"/api/v1/pools/{pool}/prices", headers=alice).json()["total"] == 2
    # Admission: with no credit and no money left, a job is refused with 402 and the numbers.
    me = client.get("/api/v1/users/me", headers=bob).json()["tenant_id"]
    acct = client.get(f"/api/v1/ledger/tenants/{me}", headers=bob).json()
    assert acct["spendable_fen"] == acct["prepaid_fen"] + acct["credit_limit_fen"] - acct["owed_fen"]
    assert client.put(f"/api/v1/tenants/{me}/credit-limit", json={"credit_limit_fen": 0},
                      headers=bob).status_code == 403
    assert client.put(f"/api/v1/tenants/{me}/credit-limit", json={"credit_limit_fen": 0},
                      headers=admin).json()["credit_limit_fen"] == 0
    big = {"name": "too big", "command": ["true"], "walltime_s": 7 * 24 * 3600,
           "resources": {"device": "gpu", "units": 64, "nodes": 8}}
    r = client.post("/api/v1/jobs", json=big, headers=bob)
    assert r.status_code == 402, r.text
    assert "may cost up to" in r.json()["error"] and r.json()["detail"]["need_fen"] > acct["prepaid_fen"]
    # Settlement: the month must be over; a preview of this month works for an admin only.
    this_month = platform.clock.now().strftime("%Y-%m")
    last_month = (platform.clock.now().replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    assert client.post("/api/v1/settlements", json={"month": "2026-13"}, headers=admin).status_code == 422
    assert client.post("/api/v1/settlements", json={"month": "2999-01"}, headers=admin).status_code == 409
    prev = client.post("/api/v1/settlements", json={"month": this_month, "preview": True}, headers=admin)
    assert prev.status_code == 200 and prev.json()["settled"] is False
    assert client.post("/api/v1/settlements", json={"month": this_month, "preview": True},
                       headers=alice).status_code == 403
    assert client.get(f"/api/v1/invoices?month={last_month}", headers=alice).json()["items"] == []
    # Bills: the caller's own months, the current one computed so far; the platform has none.
    mine = client.get("/api/v1/bills?months=2", headers=alice).json()
    assert mine["party"] == "tenant" and mine["items"][0]["settled"] is False
    assert client.get("/api/v1/bills?months=0", headers=alice).status_code == 422
    assert client.get("/api/v1/bills", headers=admin).status_code == 403
