"""The hand-written Python client (`suanli.client`, what the CLI uses) over *every* operation of
the API, against a real server: each of its methods is called as its users call it, every request
it sends is recorded on the wire, and the test fails when an operation of the API is reached by
no method with a success — so a new route without a client method, or a method whose path,
verb, parameters or body the server no longer takes, cannot pass unnoticed. Every JSON answer is
read back into the operation's declared response model (what the OpenAPI description and the
generated client promise).

The platform under test runs in this process (the real app under uvicorn, its engine and the
local executor's real job processes) so that its clock can be moved past the month's end to
settle the month and read an invoice; the peer it borrows from is a `suanli serve` process."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.routing import APIRoute
from pydantic import TypeAdapter

from suanli.api.app import create_app
from suanli.client import Client
from suanli.config import Settings
from suanli.domain.clock import SystemClock
from suanli.engine import Engine
from suanli.server import prepare_demo
from suanli.services.audit import reseal_proof
from suanli.services.context import Platform
from suanli.store.db import Database

from ..api_routes import api_routes
from ..conftest import VALID_CODES, kill_runs
from ..contract.stage_server import tar_of
from ..waiting import eventually
from .conftest import free_port, running_server

pytestmark = pytest.mark.integration

# Not the client's: a run at a center calls these with the run's own key (its staging script),
# never a user. The job with inputs and outputs below makes its run call both.
RUN_OPERATIONS = {"stage_item", "put_outputs"}
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}


class MovableClock(SystemClock):
    """The wall clock, plus an offset a test may move forward (the month's end, now)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return super().now() + self.offset


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    content_type: str
    body: bytes


class Recorder(httpx.HTTPTransport):
    """Every request the client sends and what came back, read whole (test sizes)."""

    def __init__(self, log: list[Exchange]) -> None:
        super().__init__()
        self.log = log

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        body = response.read()
        self.log.append(Exchange(request.method, request.url.path, response.status_code,
                                 response.headers.get("content-type", ""), body))
        return response


@dataclass
class City:
    url: str
    platform: Platform
    clock: MovableClock
    routes: list[APIRoute]


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    home = tmp_path_factory.mktemp("client-ops")
    home.chmod(0o700)
    port = free_port()
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'suanli.db'}", port=port,
                        scheduler_interval_s=0.2, network_id="CN-SD-QD",
                        peer_discovery_s=3600.0)
    db = Database(settings.database_url)
    db.upgrade()
    clock = MovableClock()
    platform = Platform(db=db, settings=settings, clock=clock)
    prepare_demo(platform)
    app = create_app(platform, Engine(platform))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, proxy_headers=False))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        eventually(lambda: server.started, timeout=30, what="the server started")
        yield City(f"http://127.0.0.1:{port}", platform, clock,
                        [r for r in api_routes(app) if r.path.startswith("/api/")])
    finally:
        server.should_exit = True
        thread.join(20)
        kill_runs(home)
        db.dispose()


def _route(routes: list[APIRoute], method: str, path: str) -> APIRoute | None:
    found = [r for r in routes if method in r.methods and r.path_regex.match(path)]
    return min(found, key=lambda r: r.path.count("{"), default=None)  # literal paths first


def _wait(c: Client, job_id: int, states: set[str] = DONE) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        job: dict[str, Any] = c.get_job(job_id)
        return job if job["state"] in states else None

    result: dict[str, Any] = eventually(reached, timeout=90, interval=0.2,
                                        what=f"job {job_id} in {states}")
    return result


def _month(at: datetime) -> str:
    return f"{at.year:04d}-{at.month:02d}"


def test_the_client_reaches_every_operation(city: City) -> None:
    log: list[Exchange] = []
    tokens = json.loads((city.platform.home / "demo-credentials.json").read_text())

    def client(who: str | None, url: str = city.url, token: str | None = None) -> Client:
        return Client(url, token if token is not None else (tokens[who] if who else ""),
                      transport=Recorder(log), timeout=60)

    admin, alice, auditor = client("platform_admin"), client("tenant_a"), client("auditor")
    reviewer, operator = client("reviewer"), client("center_operator")

    # -- the platform
    index = client(None).index()
    assert index["network_id"] == "CN-SD-QD"
    assert admin.health()["status"] == "ok"
    assert alice.me()["role"] == "tenant_admin"
    alice_tenant = int(alice.me()["tenant_id"])
    assert admin.capacity()
    assert admin.control_plane()
    # -- centers and pools
    centers = {c["slug"]: c for c in admin.list_centers()["items"]}
    local = centers["local"]
    assert admin.get_center(local["id"])["slug"] == "local"
    edge = admin.create_center({"slug": "edge-two", "name_zh": "边缘二", "name_en": "Edge two",
                                "kind": "edge", "connector": "local",
                                "connector_config": {"center": "edge-two"}})
    pool = {"name": "cpu", "device_kind": "cpu", "device_model": "walk", "units_per_node": 1,
            "nodes": 1, "memory_gb_per_node": 1, "price_fen_per_unit_hour": 10,
            "tflops_fp64": 0.1}
    assert admin.add_pool(edge["id"], pool)["name"] == "cpu"
    assert [p["name"] for p in admin.center_pools(edge["id"])["items"]] == ["cpu"]
    assert admin.set_center_status(edge["id"], "draining", "the walk")["status"] == "draining"
    assert any(p["center_id"] == local["id"] for p in admin.list_pools()["items"])
    # -- tenants, quotas, users, tokens
    assert operator.me()["role"] == "center_operator"
    assert admin.list_tenants()["total"] >= 2
    tenant = admin.create_tenant({"name": "走查科技 Walk Ltd", "credit_code": VALID_CODES[0]})
    assert admin.get_tenant(tenant["id"])["name"] == "走查科技 Walk Ltd"
    assert admin.set_peer_rule(tenant["id"], 60)["peer_earlier_by_s"] == 60
    assert admin.set_quota(tenant["id"], "gpu", 8)["items"][0]["max_units"] == 8
    assert admin.tenant_quotas(tenant["id"])["total"] == 1
    admin.set_quota(tenant["id"], "gpu", None)
    assert admin.tenant_quotas(tenant["id"])["items"] == []
    user = admin.create_user({"username": "walker", "role": "tenant_user",
                              "tenant_id": tenant["id"]})
    assert "walker" in {u["username"] for u in admin.list_users()["items"]}
    assert admin.set_user_disabled(user["id"], True, "the walk")["disabled"]
    assert not admin.set_user_disabled(user["id"], False)["disabled"]
    token = admin.create_token("walk", user_id=user["id"], expires_in_s=3600)
    assert token["token"].startswith("sl_")
    assert any(t["id"] == token["id"] for t in admin.list_tokens()["items"])
    admin.revoke_token(token["id"])
    # -- money in, prices
    admin.deposit(tenant["id"], 10_000, "walk-opening")
    assert admin.tenant_account(tenant["id"])["deposited_fen"] == 10_000
    assert admin.set_credit_limit(tenant["id"], 5_000)["credit_limit_fen"] == 5_000
    assert admin.trial_balance()["total_fen"] == 0
    cpu = local["pools"][0]
    # dear enough that a second's run bills fen (and is subsidised by the demo's voucher)
    admin.set_price(cpu["id"], {"price_fen_per_unit_hour": 36_000_000, "note": "the walk"})
    assert [v["price_fen_per_unit_hour"] for v in admin.list_prices(cpu["id"])["items"]][-1] \
        == 36_000_000
    admin.set_storage_quota(alice_tenant, quota_bytes=1 << 30, quota_count=1000)
    assert admin.storage_quota(alice_tenant)["quota_bytes"] == 1 << 30

    # -- artifacts and datasets
    work = tar_of({"in.txt": b"walked\n"})
    sha = hashlib.sha256(work).hexdigest()
    assert not alice.artifact_exists(sha)
    assert alice.upload_artifact(io.BytesIO(work), sha256=sha, size=len(work), name="work.tar",
                                 kind="workdir")["created"]
    assert alice.artifact_exists(sha)
    assert any(a["sha256"] == sha for a in alice.list_artifacts()["items"])
    copy = io.BytesIO()
    assert alice.download_artifact(sha, copy) == len(work) and copy.getvalue() == work
    data = tar_of({"d.txt": b"data\n"})
    data_sha = hashlib.sha256(data).hexdigest()
    alice.upload_artifact(io.BytesIO(data), sha256=data_sha, size=len(data), name="d.tar",
                          kind="dataset")
    assert alice.add_dataset({"name": "walk-data", "artifact": data_sha})["uploaded"]
    assert [d["name"] for d in alice.list_datasets()["items"]] == ["walk-data"]
    alice.delete_dataset("walk-data")
    assert not alice.artifact_exists(data_sha)  # an uploaded dataset's bytes go with it

    # -- jobs: estimate, submit with a work folder and outputs, follow, logs, placement, outputs
    job_body = {"name": "walk", "command": ["sh", "-c", "mkdir -p out; cat in.txt | tee out/r.txt; sleep 2"],
                "resources": {"device": "cpu", "units": 1}, "walltime_s": 120,
                "workdir": sha, "outputs": ["out/**"], "centers": ["local"]}
    assert alice.estimate_job(job_body)["candidates"]
    job = alice.submit_job(job_body, idempotency_key="walk-job-1")
    assert alice.submit_job(job_body, idempotency_key="walk-job-1")["id"] == job["id"]  # a retry
    assert _wait(alice, job["id"])["state"] == "COMPLETED"
    assert alice.job_logs(job["id"])["data"] == "walked\n"
    assert alice.job_placement(job["id"])["placements"]
    outputs = io.BytesIO()
    assert alice.job_outputs(job["id"], outputs) > 0
    with tarfile.open(fileobj=io.BytesIO(outputs.getvalue())) as tar:
        member = tar.extractfile("out/r.txt")
        assert member is not None and member.read() == b"walked\n"
    assert any(j["id"] == job["id"] for j in alice.list_jobs()["items"])
    alice.delete_artifact(sha)
    assert not alice.artifact_exists(sha)
    long = alice.submit_job({"name": "long", "command": ["sleep", "300"], "walltime_s": 600,
                             "resources": {"device": "cpu"}, "centers": ["local"]})
    alice.cancel_job(long["id"])
    assert _wait(alice, long["id"])["state"] == "CANCELLED"
    again = alice.resubmit_job(long["id"])
    alice.cancel_job(again["id"])
    array = alice.submit_job({"name": "arr", "command": ["true"], "array": "0-1",
                              "resources": {"device": "cpu"}, "walltime_s": 60,
                              "centers": ["local"]})
    assert len(alice.get_array(array["array_id"])["jobs"]) == 2
    stage = {"command": ["sleep", "300"], "resources": {"device": "cpu"}, "walltime_s": 600}
    dag = alice.submit_dag({"name": "walk-dag", "stages": [
        {"name": "a", **stage}, {"name": "b", "depends_on": ["a"], **stage}]})
    assert any(d["id"] == dag["id"] for d in alice.list_dags()["items"])
    assert [s["name"] for s in alice.get_dag(dag["id"])["stages"]] == ["a", "b"]
    alice.cancel_dag(dag["id"])
    for j in [again["id"], *array["jobs"]]:
        _wait(alice, j)
    usage = alice.usage()
    # the month the billed run ended in (not the one the test began in: a walk may straddle)
    month = max(u["ended_at"][:7] for u in usage["items"] if u["amount_fen"] > 0)
    assert usage["totals"]["amount_fen"] > 0 and usage["total"] >= 1
    assert alice.bills()["items"]

    # -- vouchers
    programmes = alice.list_programmes()["items"]
    demo = programmes[0]
    assert admin.get_programme(demo["id"])["name"] == demo["name"]
    year = city.clock.now().year
    posthoc = admin.create_programme({"name": "走查 post-hoc walk", "year": year,
                                      "mode": "post_hoc", "rules": {"ratio_bp": 1000}})
    assert admin.update_rules(posthoc["id"], {"ratio_bp": 1500})["rules"]["ratio_bp"] == 1500
    app = alice.apply_voucher({"programme_id": posthoc["id"], "requested_fen": 100_000,
                               "planned_spend_fen": 1_000_000, "planned_use": "走查 the walk"})
    assert any(a["id"] == app["id"] for a in reviewer.list_applications(state="pending")["items"])
    assert reviewer.review_application(app["id"], {"decision": "approve"})["state"] == "approved"
    grant = next(g for g in alice.list_grants()["items"] if g["programme_id"] == posthoc["id"])
    before = (city.clock.now().replace(day=1) - timedelta(days=1))
    claimed = alice.claim(grant["id"], _month(before))
    assert claimed["amount_fen"] == 0  # nothing was run last month
    assert admin.voucher_report(demo["id"])["rows"]
    assert admin.voucher_report(demo["id"], fmt="csv").startswith("key,runs,bill_fen,voucher_fen")
    redemptions = auditor.list_redemptions()["items"]
    assert redemptions, "the walk's billed run on the local center was subsidised"
    assert auditor.clawback(redemptions[0]["id"], "the walk")["clawed_back_at"]
    assert auditor.freeze(tenant["id"], "the walk")["frozen_at"]
    assert auditor.unfreeze(tenant["id"])["frozen_at"] is None
    auditor.declare_related(tenant["id"], edge["id"], "走查 same owner")
    assert auditor.list_related_parties(tenant["id"])["items"][0]["center_id"] == edge["id"]

    # -- a peer platform: invited there, borrowed from here, its report and network view
    with running_server("suanli-client-ops.", {"SUANLI_NETWORK_ID": "CN-SD-YT"}) as lender:
        lender_admin = client(None, lender.url, lender.creds()["platform_admin"])
        invited = lender_admin.invite_peer("qingdao")
        added = admin.add_peer("yantai", lender.url, invited["token"], report=True)
        assert added["network_id"] == "CN-SD-YT"
        assert [p["name"] for p in admin.list_peers()["items"]] == ["yantai"]
        assert admin.get_peer("yantai")["ways"][0]["pools"] >= 1
        assert admin.discover_peer("yantai")["name"] == "yantai"
        as_peer = client(None, lender.url, invited["token"])
        found = admin.discover_pools("suanli", {"url": lender.url, "token": invited["token"]})
        assert found["pools"], found
        assert as_peer.peer_hello("CN-SD-QD")["network_id"] == "CN-SD-YT"
        assert as_peer.peer_report({
            "network_id": "CN-SD-QD", "name": "青岛 walk", "at": city.clock.now().isoformat(),
            "capacity": {"total_pflops": {"fp64": 1.0}, "free_pflops": {"fp64": 0.5},
                         "by_kind": {"cpu": {"fp64": 1.0}}},
            "units": 2, "units_in_use": 1, "utilisation": 0.5, "usage": []})["received_at"]
        assert any(n["network_id"] == "CN-SD-QD" for n in lender_admin.network()["members"])
        assert admin.network()["map"]
        assert admin.reconcile_peer("yantai", month)["same"]
        admin.remove_peer("yantai")

    # -- the month: previewed, then settled once it is over; statements, invoices, CSV
    assert admin.settle(month, preview=True)["items"]
    year_, mon = map(int, month.split("-"))
    next_month = datetime(year_ + mon // 12, mon % 12 + 1, 1, 1, tzinfo=UTC)
    city.clock.offset = next_month - datetime.now(UTC)
    settled = admin.settle(month)
    assert settled["settled"] and any(s["party"] == "tenant" for s in settled["items"])
    assert admin.statements(month, party="tenant")["items"]
    assert "net_fen" in admin.statements(month, fmt="csv").splitlines()[0]
    assert any(i["party_id"] == alice_tenant for i in admin.invoices(month)["items"])
    assert admin.invoices(month, fmt="csv").count("\n") >= 2
    assert alice.get_invoice(month, alice_tenant)["net_fen"] > 0
    # -- the audit trail, sealed and verified
    assert auditor.audit_log()["items"]
    head = auditor.audit_verify()
    assert head["ok"]
    key = city.platform.db.audit_key  # where the key is, as `suanli audit seal` reads it
    assert key is not None
    assert admin.audit_seal(reseal_proof(key, head["head_hash"]))["ok"]

    # Every operation of the API reached by the client with a success, and every answer what
    # its operation declares.
    reached: dict[str, list[Exchange]] = {}
    for ex in log:
        route = _route(city.routes, ex.method, ex.path)
        assert route is not None, f"the client called {ex.method} {ex.path}: no such operation"
        if ex.status < 300:
            reached.setdefault(route.name, []).append(ex)
    every = {r.name for r in city.routes if r.include_in_schema}
    assert every >= RUN_OPERATIONS
    missing = sorted(every - RUN_OPERATIONS - set(reached))
    assert not missing, f"operations no client method reached: {missing}"
    read = 0
    for name, exchanges in reached.items():
        route = next(r for r in city.routes if r.name == name)
        for ex in exchanges:
            assert ex.status == (route.status_code or 200), (name, ex.status)
            if route.response_model is None or not ex.content_type.startswith("application/json"):
                continue
            TypeAdapter(route.response_model).validate_json(ex.body)
            read += 1
    assert read >= 80, read
