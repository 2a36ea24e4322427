"""Three real suanli instances joined as peers (issue 18): Yantai (CN-SD-YT) lends, Qingdao
(CN-SD-QD) borrows, both report to the national node (CN), through the CLI as their admins
type it. A job of Qingdao's tenant pinned to
Yantai runs there with its work folder, and its outputs come back home; a cancel reaches
Yantai; a pool Yantai stops offering is withdrawn at Qingdao; Yantai's other tenants and
Qingdao's tenant never meet."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..waiting import eventually
from .conftest import Server, running_server

NATIONAL: list[Server] = []  # the parent node both cities report to


@pytest.fixture(scope="module")
def cities() -> Iterator[tuple[Server, Server]]:
    with running_server("suanli-fed-cn.", {"SUANLI_NETWORK_ID": "CN"}) as national, \
            running_server("suanli-fed-yt.", {"SUANLI_NETWORK_ID": "CN-SD-YT",
                                              "SUANLI_PEER_DISCOVERY_S": "2"}) as yantai, \
            running_server("suanli-fed-qd.", {"SUANLI_HEALTH_INTERVAL": "1",
                                              "SUANLI_HEALTH_FAILURES": "1",
                                              "SUANLI_FAILOVER_GRACE": "3",
                                              "SUANLI_PEER_DISCOVERY_S": "2",
                                              "SUANLI_NETWORK_NAME": "青岛 Qingdao",
                                              "SUANLI_NETWORK_LOCATION": "120.38,36.07"}
                           ) as qingdao:
        invited = yantai.cli("peer", "invite", "qingdao", "--credit-limit", "1000", "-o", "json",
                             token="platform_admin")
        assert invited.returncode == 0, invited.stderr
        token = json.loads(invited.stdout)["token"]
        assert set(json.loads(invited.stdout)) == {"name", "token"}
        added = qingdao.cli("peer", "add", "yantai", "--url", yantai.url, "--token", token,
                            "--margin", "10", "--report", "-o", "json", token="platform_admin")
        assert added.returncode == 0, added.stderr
        for city, name in ((qingdao, "qingdao"), (yantai, "yantai")):
            invited = national.cli("peer", "invite", name, "-o", "json", token="platform_admin")
            assert invited.returncode == 0, invited.stderr
            joined = city.cli("peer", "add", "national", "--url", national.url, "--token",
                              json.loads(invited.stdout)["token"], "--report",
                              token="platform_admin")
            assert joined.returncode == 0, joined.stderr
        NATIONAL[:] = [national]
        yield yantai, qingdao


def _job(srv: Server, job_id: int, token: str = "tenant_a") -> dict:
    with srv.api(token) as c:
        r = c.get(f"/api/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())


def _until_state(srv: Server, job_id: int, states: set[str], timeout: float = 90) -> dict:
    def reached() -> dict | None:
        job = _job(srv, job_id)
        return job if job["state"] in states else None

    return eventually(reached, timeout=timeout, interval=0.3,
                      what=f"job {job_id} in {states}")


def test_the_peer_is_a_center_with_the_peers_identifiers(cities: tuple[Server, Server]) -> None:
    yantai, qingdao = cities
    with qingdao.api("platform_admin") as c:
        peers = c.get("/api/v1/peers").json()["items"]
        assert [(p["name"], p["direction"], p["network_id"]) for p in peers] == [
            ("national", "lends", "CN"), ("yantai", "lends", "CN-SD-YT")]
        assert peers[1]["pools"] > 1 and peers[1]["margin_bp"] == 1000
        center = next(x for x in c.get("/api/v1/centers").json()["items"] if x["slug"] == "yantai")
        assert c.get("/api/v1").json()["network_id"] == "CN-SD-QD"
        own = next(x for x in c.get("/api/v1/centers").json()["items"] if x["slug"] == "local")
    assert center["kind"] == "platform" and center["identifier"] == "CN-SD-YT"
    assert center["connector_config"]["token"] == "***"
    assert own["identifier"] == "CN-SD-QD/local"
    assert own["pools"][0]["identifier"] == "CN-SD-QD/local/cpu"
    with yantai.api("platform_admin") as c:
        offered = {p["identifier"]: p for p in c.get("/api/v1/pools").json()["items"]}
    ours = {p["identifier"]: p for p in center["pools"]}
    assert set(ours) <= set(offered) and "CN-SD-YT/local/cpu" in ours
    for ident, pool in ours.items():  # the peer's price plus our 10 %, rounded up to the fen
        price = offered[ident]["price_fen_per_unit_hour"]
        assert pool["price_fen_per_unit_hour"] == -(-price * 11 // 10), ident
    shown = qingdao.cli("center", "show", "yantai", token="platform_admin")
    assert shown.returncode == 0 and "CN-SD-YT/local/cpu" in shown.stdout, shown.stdout
    listed = qingdao.cli("peer", "list", token="platform_admin")
    assert listed.returncode == 0 and "CN-SD-YT" in listed.stdout, listed.stdout
    # Yantai lists its borrower, not as a lender
    with yantai.api("platform_admin") as c:
        assert [(p["name"], p["direction"], p["network_id"])
                for p in c.get("/api/v1/peers").json()["items"]] == [("national", "lends", "CN"),
                                                             ("qingdao", "borrows", "CN-SD-QD")]


def test_a_job_pinned_to_the_peer_runs_there_and_its_outputs_come_home(
        cities: tuple[Server, Server], tmp_path: Path) -> None:
    yantai, qingdao = cities
    work = tmp_path / "work"
    work.mkdir()
    (work / "in.txt").write_text("from qingdao\n")
    (tmp_path / "task.yaml").write_text(
        "name: fed\nrun: |\n  mkdir -p out; cat in.txt > out/result.txt; echo SUANLI=$SUANLI_UNITS\n"
        "outputs: [out/**]\ncenters: [yantai/local-cpu]\nworkdir: work\nwalltime: 5m\n")
    r = qingdao.cli("job", "submit", "-f", str(tmp_path / "task.yaml"), "-o", "json")
    assert r.returncode == 0, r.stderr
    job_id = int(json.loads(r.stdout)["id"])
    job = _until_state(qingdao, job_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, 120)
    assert job["state"] == "COMPLETED", job
    assert job["center"] == "yantai" and job["centers"] == ["yantai/local-cpu"]
    with qingdao.api() as c:
        out = c.get(f"/api/v1/jobs/{job_id}/outputs")
        assert out.status_code == 200, out.text
        logs = c.get(f"/api/v1/jobs/{job_id}/logs").json()["data"]
    with tarfile.open(fileobj=io.BytesIO(out.content)) as tar:
        member = tar.extractfile("out/result.txt")
        assert member is not None and member.read() == b"from qingdao\n"
    assert "SUANLI=1" in logs
    # Negotiated: the peer was asked first, and its answer is in the explanation.
    with qingdao.api() as c:
        placement = c.get(f"/api/v1/jobs/{job_id}/placement").json()
        estimate = c.post("/api/v1/jobs/estimate", json={
            "name": "q", "command": ["true"], "resources": {"device": "cpu", "units": 1},
            "walltime_s": 60, "centers": ["yantai", "local"]}).json()
    chosen = [c for pl in placement["placements"] for c in pl["candidates"] if c["chosen"]]
    assert chosen and chosen[0]["pool"] == "yantai/local-cpu"
    assert chosen[0]["quote"]["wait_s"] is not None and chosen[0]["quote"]["cost_fen"] is not None
    quoted = {c["pool"]: c.get("quote") for c in estimate["candidates"]}
    assert quoted["yantai/local-cpu"]["wait_s"] == 0.0  # Yantai's own answer, beside ours
    assert quoted["local/cpu"] is None
    # At Yantai it is a job of the platform account, seen by Yantai's admin, not by its tenants.
    with yantai.api("platform_admin") as c:
        theirs = c.get("/api/v1/jobs", params={"name": "suanli-*"}).json()["items"]
        tenants = {t["id"]: t for t in c.get("/api/v1/tenants").json()["items"]}
    assert len(theirs) == 1 and theirs[0]["state"] == "COMPLETED"
    assert tenants[theirs[0]["tenant_id"]]["kind"] == "platform"
    with yantai.api("tenant_a") as c:
        assert c.get("/api/v1/jobs").json()["total"] == 0
        assert c.get(f"/api/v1/jobs/{theirs[0]['id']}").status_code == 404


def test_the_money_between_the_platforms_reconciles_to_the_fen(
        cities: tuple[Server, Server]) -> None:
    """Yantai bills Qingdao's platform account at its price; Qingdao bills its tenant at that
    price plus its 10 % margin, copies what Yantai billed it, and pays Yantai that; both
    statements of the month list the same run and amount; `peer reconcile` agrees, and names the
    run once the two differ; every trial balance is 0."""
    yantai, qingdao = cities
    with yantai.api("platform_admin") as c:
        pool = next(p for p in c.get("/api/v1/pools").json()["items"]
                    if p["identifier"] == "CN-SD-YT/local/cpu")
        r = c.post(f"/api/v1/pools/{pool['id']}/prices",
                   json={"price_fen_per_unit_hour": 360_000, "note": "a peer's price"})
        assert r.status_code == 201, r.text
    assert qingdao.cli("peer", "discover", "yantai", token="platform_admin").returncode == 0
    r = qingdao.cli("job", "submit", "--center", "yantai/local-cpu", "--walltime", "2m", "-o",
                    "json", "--", "sleep", "3")
    assert r.returncode == 0, r.stderr
    job_id = int(json.loads(r.stdout)["id"])
    job = _until_state(qingdao, job_id, {"COMPLETED", "FAILED"}, 120)
    assert job["state"] == "COMPLETED", job
    month = job["finished_at"][:7]
    with qingdao.api("tenant_a") as c:
        billed = c.get("/api/v1/usage", params={"job_id": job_id}).json()["items"]
    assert len(billed) == 1 and billed[0]["price_fen_per_unit_hour"] == 396_000
    with qingdao.api("platform_admin") as c:  # tenant_a's grant pays for the city's compute only
        paid = c.get("/api/v1/voucher-redemptions",
                     params={"tenant_id": billed[0]["tenant_id"]}).json()["items"]
    assert billed[0]["run_id"] not in {r["run_id"] for r in paid}

    def charged() -> dict | None:
        with qingdao.api("platform_admin") as c:
            body = c.get("/api/v1/settlements", params={"month": month,
                                                        "party": "peer:yantai"}).json()
        return body if body["borrowed"]["runs"] else None

    ours = eventually(charged, timeout=60, what="Yantai's charge copied at Qingdao")["borrowed"]
    with yantai.api("platform_admin") as c:
        theirs = c.get("/api/v1/settlements", params={"month": month,
                                                      "party": "peer:qingdao"}).json()["lent"]
    assert theirs["runs"] == ours["runs"] == 1
    assert [(i["run_key"], i["amount_fen"], i["unit_seconds"]) for i in ours["items"]] == \
        [(i["run_key"], i["amount_fen"], i["unit_seconds"]) for i in theirs["items"]]
    assert ours["amount_fen"] > 0 and ours["billed_fen"] == billed[0]["amount_fen"]
    assert ours["margin_fen"] == billed[0]["amount_fen"] - ours["amount_fen"]
    ok = qingdao.cli("peer", "reconcile", "yantai", "--month", month, token="platform_admin")
    assert ok.returncode == 0 and "✓" in ok.stdout, ok.stdout + ok.stderr
    for srv in (yantai, qingdao):
        with srv.api("platform_admin") as c:
            assert c.get("/api/v1/ledger/trial-balance").json()["total_fen"] == 0
    with qingdao.api("platform_admin") as c:
        accounts = {a["account"]: a["balance_fen"]
                    for a in c.get("/api/v1/ledger/trial-balance").json()["accounts"]}
    assert accounts["platform:peer_margin"] == -ours["margin_fen"]
    # Our copy disagrees with Yantai's (a bookkeeping error, or a tampered row): named.
    with sqlite3.connect(qingdao.home / "suanli.db") as db:
        db.execute("UPDATE peer_charges SET amount_fen = amount_fen + 1 WHERE run_key = ?",
                   (ours["items"][0]["run_key"],))
    bad = qingdao.cli("peer", "reconcile", "yantai", "--month", month, "-o", "json",
                      token="platform_admin")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    report = json.loads(bad.stdout)
    assert not report["same"] and [d["run_key"] for d in report["differences"]] == \
        [ours["items"][0]["run_key"]]
    with sqlite3.connect(qingdao.home / "suanli.db") as db:
        db.execute("UPDATE peer_charges SET amount_fen = amount_fen - 1 WHERE run_key = ?",
                   (ours["items"][0]["run_key"],))


def test_the_national_node_sees_both_cities(cities: tuple[Server, Server]) -> None:
    """Both cities report to the national node: its network view lists them (and itself), the
    run Qingdao borrowed from Yantai counted on both sides."""
    national = NATIONAL[0]

    def both() -> dict | None:
        with national.api("platform_admin") as c:
            body = c.get("/api/v1/network").json()
        ids = {m["network_id"]: m for m in body["members"]}
        if set(ids) != {"CN-SD-QD", "CN-SD-YT"}:
            return None
        lent = [e for e in ids["CN-SD-YT"]["exchanged"] if e["peer"] == "qingdao"]
        return body if lent and lent[0]["lent_runs"] else None

    body = eventually(both, timeout=60, what="both cities' reports at the national node")
    assert body["self"]["network_id"] == "CN"
    with national.api("platform_admin") as c:
        assert c.get("/api/v1/ledger/trial-balance").json()["total_fen"] == 0


def test_a_member_reports_upward_aggregates_only(cities: tuple[Server, Server]) -> None:
    """Qingdao reports to Yantai (`--report`): Yantai's network view shows it with its own
    capacity (not what it borrows), its load, its monthly usage and the runs it borrowed from
    Yantai — and no tenant of Qingdao's by name or id."""
    yantai, qingdao = cities

    def reported() -> dict | None:
        with yantai.api("platform_admin") as c:
            body = c.get("/api/v1/network").json()
        members = [m for m in body["members"] if m["network_id"] == "CN-SD-QD"]
        return body if members and any(e.get("borrowed_runs") for e in
                                       members[0]["exchanged"]) else None

    body = eventually(reported, timeout=60, what="Qingdao's report at Yantai")
    member = next(m for m in body["members"] if m["network_id"] == "CN-SD-QD")
    assert member["name"] == "青岛 Qingdao" and member["location"] == [120.38, 36.07]
    assert member["capacity"]["total_pflops"]["fp16"] > 0
    with qingdao.api("platform_admin") as c:
        own = c.get("/api/v1/capacity").json()
    # its own compute: less than its capacity with Yantai's pools counted in
    assert member["capacity"]["total_pflops"]["fp16"] < own["total"]["total_pflops"]["fp16"]
    assert "platform" not in member["capacity"]["by_kind"]
    assert body["self"]["network_id"] == "CN-SD-YT" and body["map"] == "shandong"
    text = json.dumps(member, ensure_ascii=False)
    assert not any(s in text for s in ("青岛海蓝", "青岛蓝海", "Alice", "tenant"))
    # a tenant (or the peer's account) cannot read the network view; a tenant cannot report
    with yantai.api("tenant_a") as c:
        assert c.get("/api/v1/network").status_code == 403
        assert c.post("/api/v1/peers/report", json=member | {"peer": None}).status_code == 422
        r = c.post("/api/v1/peers/report", json={k: v for k, v in member.items()
                                                 if k not in ("peer", "received_at")})
        assert r.status_code == 403, r.text


def test_a_cancel_reaches_the_peer(cities: tuple[Server, Server]) -> None:
    yantai, qingdao = cities
    r = qingdao.cli("job", "submit", "--center", "yantai", "--walltime", "10m", "-o", "json",
                    "--", "sleep", "300")
    assert r.returncode == 0, r.stderr
    job_id = int(json.loads(r.stdout)["id"])
    _until_state(qingdao, job_id, {"RUNNING"})
    with yantai.api("platform_admin") as c:
        remote = next(j for j in c.get("/api/v1/jobs", params={"state": "RUNNING"}).json()["items"]
                      if j["name"].startswith("suanli-"))
    assert qingdao.cli("job", "cancel", str(job_id)).returncode == 0
    assert _until_state(qingdao, job_id, {"CANCELLED", "COMPLETED", "FAILED"})["state"] == \
        "CANCELLED"

    def cancelled_there() -> bool:
        with yantai.api("platform_admin") as c:
            return bool(c.get(f"/api/v1/jobs/{remote['id']}").json()["state"] == "CANCELLED")

    eventually(cancelled_there, timeout=30, what="the job cancelled at the peer")


def test_a_job_goes_to_the_peer_by_policy_when_home_is_full(cities: tuple[Server, Server]) -> None:
    """Not pinned: a job that may run at home or at Yantai, home full for a minute: placement,
    with Yantai's quote (no wait there), sends it to Yantai; the explanation says why."""
    _, qingdao = cities
    with qingdao.api("platform_admin") as c:
        home = next(p for p in c.get("/api/v1/pools").json()["items"]
                    if p["identifier"] == "CN-SD-QD/local/cpu")
    r = qingdao.cli("job", "submit", "--center", "local/cpu", "--units",
                    str(home["total_units"]), "--walltime", "2m", "-o", "json", "--", "sleep", "60")
    assert r.returncode == 0, r.stderr
    filler = int(json.loads(r.stdout)["id"])
    try:
        _until_state(qingdao, filler, {"RUNNING"})
        r = qingdao.cli("job", "submit", "--center", "local", "--center", "yantai/local-cpu",
                        "--policy", "fastest", "--walltime", "2m", "-o", "json", "--",
                        "echo", "flocked")
        assert r.returncode == 0, r.stderr
        job = _until_state(qingdao, int(json.loads(r.stdout)["id"]), {"COMPLETED", "FAILED"})
        assert job["state"] == "COMPLETED" and job["center"] == "yantai", job
        with qingdao.api() as c:
            placement = c.get(f"/api/v1/jobs/{job['id']}/placement").json()
        cands = {c["pool"]: c for pl in placement["placements"] for c in pl["candidates"]}
        assert cands["yantai/local-cpu"]["chosen"] and cands["yantai/local-cpu"]["quote"]
        assert cands["local/cpu"]["wait_s"] > 0  # home was full
    finally:
        qingdao.cli("job", "cancel", str(filler))


def test_a_pool_the_peer_stops_offering_is_withdrawn(cities: tuple[Server, Server]) -> None:
    yantai, qingdao = cities
    with yantai.api("platform_admin") as c:
        hpc = next(x for x in c.get("/api/v1/centers").json()["items"] if x["slug"] == "qd-sc")
        assert c.post(f"/api/v1/centers/{hpc['id']}/status",
                      json={"status": "offline", "reason": "maintenance"}).status_code == 200
    try:
        r = qingdao.cli("peer", "discover", "yantai", "-o", "json", token="platform_admin")
        assert r.returncode == 0, r.stderr
        # (the engine discovers every 2 s here too: it may have been first)
        assert json.loads(r.stdout)["changed"] in (0, len(hpc["pools"]))

        def withdrawn() -> set[str]:
            with qingdao.api("platform_admin") as c:
                center = next(x for x in c.get("/api/v1/centers").json()["items"]
                              if x["slug"] == "yantai")
            return {p["name"] for p in center["pools"] if p["withdrawn_at"]}

        gone = withdrawn()
        assert gone == {f"qd-sc-{p['name']}" for p in hpc["pools"]}
        first = hpc["pools"][0]
        place = f"yantai/qd-sc-{first['name']}"

        def refused() -> str | None:
            # (the API process sees a withdrawal the engine's discovery made within the 5 s of
            # its pool cache, CACHE_TTL_S)
            r = qingdao.cli("job", "submit", "--center", place, "--device",
                            first["device_kind"], "--", "true")
            assert r.returncode != 0, r.stdout
            out = r.stdout + r.stderr
            return out if "withdrawn" in out else None

        eventually(refused, timeout=15, interval=1, what=f"{place} refused as withdrawn")
    finally:
        with yantai.api("platform_admin") as c:
            c.post(f"/api/v1/centers/{hpc['id']}/status", json={"status": "online"})
    r = qingdao.cli("peer", "discover", "yantai", "-o", "json", token="platform_admin")
    assert r.returncode == 0 and not withdrawn()  # offered again: back


def test_bad_joins_are_refused_clearly(cities: tuple[Server, Server]) -> None:
    yantai, qingdao = cities
    wrong = qingdao.cli("peer", "add", "weihai", "--url", yantai.url, "--token", "sl_nope",
                        token="platform_admin")
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert "token" in (wrong.stdout + wrong.stderr).lower()
    plain = qingdao.cli("peer", "add", "weihai", "--url", "http://example.com", "--token", "x",
                        token="platform_admin")
    assert plain.returncode != 0 and "https" in plain.stdout + plain.stderr
    again = qingdao.cli("peer", "add", "yantai", "--url", yantai.url, "--token", "x",
                        token="platform_admin")
    assert again.returncode != 0 and "Traceback" not in again.stderr
    tenant = qingdao.cli("peer", "list")  # tenant_a
    assert tenant.returncode != 0 and "platform_admin" in tenant.stdout + tenant.stderr


def test_a_peer_killed_fails_over_home_and_nobody_is_billed_twice(
        cities: tuple[Server, Server]) -> None:
    """(Last: it kills Yantai.) A job that may run at Yantai or at home runs at Yantai; Yantai is
    killed with kill -9: after the grace period the job runs again at home and completes.
    Yantai comes back: the stale attempt there is cancelled; Yantai bills the platform account
    once for it, Qingdao copies that once, and every trial balance is still 0."""
    yantai, qingdao = cities
    with qingdao.api("platform_admin") as c:
        home = next(x for x in c.get("/api/v1/centers").json()["items"] if x["slug"] == "local")
        c.post(f"/api/v1/centers/{home['id']}/status", json={"status": "draining"})
        r = qingdao.cli("job", "submit", "--center", "yantai/local-cpu", "--center", "local",
                        "--walltime", "5m", "-o", "json", "--", "sh", "-c",
                        "sleep 8; echo done-$SUANLI_UNITS")
        assert r.returncode == 0, r.stderr
        job_id = int(json.loads(r.stdout)["id"])
        first = _until_state(qingdao, job_id, {"RUNNING"})
        assert first["center"] == "yantai"
        c.post(f"/api/v1/centers/{home['id']}/status", json={"status": "online"})
    yantai.kill9()
    done = _until_state(qingdao, job_id, {"COMPLETED", "FAILED", "CANCELLED"}, 120)
    assert done["state"] == "COMPLETED" and done["center"] == "local", done
    runs = _job(qingdao, job_id)["runs"]
    assert [r["state"] for r in runs] == ["lost", "completed"], runs
    yantai.start()  # the same data directory and port: the lost attempt is found again there

    def stale_ended() -> dict | None:
        with yantai.api("platform_admin") as c:
            theirs = [j for j in c.get("/api/v1/jobs", params={"name": "suanli-*",
                                                              "limit": 100}).json()["items"]
                      if j["name"] == f"suanli-{runs[0]['run_key']}"]
        assert len(theirs) == 1, theirs  # never submitted twice
        return theirs[0] if theirs[0]["state"] in ("CANCELLED", "COMPLETED", "FAILED") else None

    stale = eventually(stale_ended, timeout=90, interval=0.5, what="the stale attempt ended")
    with yantai.api("platform_admin") as c:
        usage = c.get("/api/v1/usage", params={"job_id": stale["id"]}).json()["items"]
    assert len(usage) <= 1  # Yantai billed the attempt at most once

    def copied() -> bool:
        with sqlite3.connect(qingdao.home / "suanli.db") as db:
            rows = db.execute("SELECT amount_fen FROM peer_charges WHERE run_id = ?",
                              (runs[0]["id"],)).fetchall()
        assert len(rows) <= 1
        return len(rows) == 1 and rows[0][0] == sum(u["amount_fen"] for u in usage)

    eventually(copied, timeout=60, what="Yantai's charge for the stale attempt copied once")
    with qingdao.api("tenant_a") as c:
        billed = c.get("/api/v1/usage", params={"job_id": job_id}).json()["items"]
    assert len({u["run_id"] for u in billed}) == len(billed) <= 2
    for srv in (yantai, qingdao, *NATIONAL):
        with srv.api("platform_admin") as c:
            assert c.get("/api/v1/ledger/trial-balance").json()["total_fen"] == 0
