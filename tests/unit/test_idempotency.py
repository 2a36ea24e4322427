"""Idempotent submissions (`Idempotency-Key` on POST /api/v1/jobs): a retry of the same request
answers the job the first one queued and queues (and holds money for) nothing more; the key with
another request is refused; a key is its tenant's, so another tenant's retry of a stolen key gets
a job of its own and never sees the first; a refused submission does not use the key up; many
requests racing with one key make one job. The real app over the demo city, through TestClient."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from suanli.services.context import Platform
from suanli.store import models as m

from ..demo_app import demo_app

JOB = {"name": "once", "command": ["true"], "resources": {"device": "cpu"}, "walltime_s": 600}


@pytest.fixture
def city() -> Iterator[tuple[TestClient, dict[str, str], Platform]]:
    with demo_app("suanli-idem.") as made:
        yield made


def _post(c: TestClient, token: str, body: dict[str, Any], key: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return c.post("/api/v1/jobs", json=body, headers=headers)


def _jobs(p: Platform, name: str) -> int:
    with p.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(m.Job).where(m.Job.name == name))
                   or 0)


def _held(c: TestClient, creds: dict[str, str], who: str) -> int:
    h = {"Authorization": f"Bearer {creds[who]}"}
    tid = c.get("/api/v1/users/me", headers=h).json()["tenant_id"]
    return int(c.get(f"/api/v1/ledger/tenants/{tid}", headers=h).json()["held_fen"])


def test_a_retry_gets_the_first_job_and_holds_nothing_more(city: Any) -> None:
    c, creds, p = city
    first = _post(c, creds["tenant_a"], JOB, "k-1")
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    held = _held(c, creds, "tenant_a")
    assert held > 0
    for _ in range(3):
        again = _post(c, creds["tenant_a"], JOB, "k-1")
        assert again.status_code == 201, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
    assert _jobs(p, "once") == 1 and _held(c, creds, "tenant_a") == held
    # without a key, a second request is a second job (as before)
    assert _post(c, creds["tenant_a"], JOB, None).json()["id"] != first.json()["id"]
    assert _jobs(p, "once") == 2


def test_the_key_with_another_request_is_refused(city: Any) -> None:
    c, creds, p = city
    assert _post(c, creds["tenant_a"], JOB, "k-2").status_code == 201
    other = _post(c, creds["tenant_a"], {**JOB, "walltime_s": 601}, "k-2")
    assert other.status_code == 409 and other.json()["field"] == "Idempotency-Key"
    assert _jobs(p, "once") == 1
    for bad in ("", "a b", "x" * 201):
        r = _post(c, creds["tenant_a"], JOB, bad)
        assert r.status_code == 422, (bad, r.text)
    assert _jobs(p, "once") == 1


def test_a_key_is_its_tenants_own(city: Any) -> None:
    """Tenant B replaying tenant A's key (seen in a log, guessed) gets a new job of its own: never
    A's job, its id, or a 409 that says A used the key."""
    c, creds, _p = city
    mine = _post(c, creds["tenant_a"], JOB, "shared-key").json()
    theirs = _post(c, creds["tenant_b"], JOB, "shared-key")
    assert theirs.status_code == 201 and "idempotent-replayed" not in theirs.headers
    assert theirs.json()["id"] != mine["id"] and theirs.json()["tenant_id"] != mine["tenant_id"]
    other = _post(c, creds["tenant_b"], {**JOB, "name": "probe"}, "shared-key")
    assert other.status_code == 409 and str(mine["id"]) not in other.text
    assert _post(c, creds["tenant_b"], {**JOB, "name": "probe"}, "never-used").status_code == 201


def test_a_refused_submission_does_not_use_the_key_up(city: Any) -> None:
    c, creds, _p = city
    big = {"name": "big", "command": ["train"], "walltime_s": 604800, "policy": "cheapest",
           "resources": {"device": "gpu", "units": 8}}
    answers = [_post(c, creds["tenant_b"], big, f"big-{i}").status_code for i in range(50)]
    refused = answers.index(402)  # tenant_b's money ran out at this one
    assert _post(c, creds["tenant_b"], big, f"big-{refused}").status_code == 402
    admin = {"Authorization": f"Bearer {creds['platform_admin']}"}
    tid = c.get("/api/v1/users/me", headers={"Authorization": f"Bearer {creds['tenant_b']}"}
                ).json()["tenant_id"]
    assert c.post("/api/v1/ledger/deposits", headers=admin, json={
        "tenant_id": tid, "amount_fen": 10**9, "reference": "idem-topup"}).status_code == 201
    assert _post(c, creds["tenant_b"], big, f"big-{refused}").status_code == 201


def test_an_array_is_replayed_whole(city: Any) -> None:
    c, creds, p = city
    body = {**JOB, "name": "arr", "array": "0-2"}
    first = _post(c, creds["tenant_a"], body, "arr-1").json()
    again = _post(c, creds["tenant_a"], body, "arr-1")
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first
    assert len(first["jobs"]) == 3 and _jobs(p, "arr[0]") == 1


def test_racing_requests_with_one_key_make_one_job(city: Any) -> None:
    c, creds, p = city
    start = threading.Barrier(8)
    ids: list[int] = []

    def submit() -> None:
        start.wait()
        r = _post(c, creds["tenant_a"], {**JOB, "name": "raced"}, "race-1")
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert _jobs(p, "raced") == 1
