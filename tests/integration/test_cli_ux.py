"""What a new user tripped over, tried against a real `suanli serve --demo` as a user types it:
the status screen, list filters, money in yuan, no exponents, times with their zone, errors that
name the flag, a too-big job, Slurm walltimes, `login --demo`."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ..waiting import eventually
from .conftest import BIN, Server, running_server

pytestmark = pytest.mark.integration
EXPONENT = re.compile(r"\d\.?\d*e[-+]\d", re.IGNORECASE)


@pytest.fixture(scope="module")
def srv() -> Iterator[Server]:
    with running_server("suanli-cliux.") as s:
        yield s


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout


def submit(srv: Server, *args: str, token: str = "tenant_a") -> int:
    return int(ok(srv.cli("job", "submit", *args, token=token)).strip())


def job(srv: Server, job_id: int, token: str = "tenant_a") -> dict:  # type: ignore[type-arg]
    with srv.api(token) as api:
        data: dict = api.get(f"/api/v1/jobs/{job_id}").json()  # type: ignore[type-arg]
        return data


def wait_state(srv: Server, job_id: int, *states: str) -> dict:  # type: ignore[type-arg]
    def reached() -> dict | None:  # type: ignore[type-arg]
        j = job(srv, job_id)
        return j if j["state"] in states else None

    return eventually(reached, what=f"job {job_id} in {states}")


def test_status_screen_for_each_role(srv: Server) -> None:
    long = submit(srv, "--name", "status-long", "--walltime", "5m", "--", "sleep", "120")
    done = submit(srv, "--name", "status-done", "--", "true")
    wait_state(srv, long, "RUNNING")
    wait_state(srv, done, "COMPLETED")
    out = ok(srv.cli("status"))
    assert "alice (tenant_admin)" in out and "青岛海蓝智能科技有限公司" in out
    assert re.search(r"my jobs 作业\s+\d+ running", out) and "completed" in out
    assert "status-long" in out and "status-done" not in out  # only running/queued listed
    assert re.search(r"spendable 可用 ¥[\d,]+\.\d\d", out)
    assert re.search(r"vouchers 算力券\s+¥[\d,]+\.\d\d left of ¥[\d,]+\.\d\d in 1 active grant", out)
    for slug in ("qd-ai", "qd-sc", "cmcc-ai", "local"):
        assert slug in out
    assert "online" in out and "times in CST" in out
    data = json.loads(ok(srv.cli("status", "-o", "json")))
    assert data["jobs"]["counts"]["RUNNING"] >= 1 and data["account"]["spendable_fen"] > 0
    # another tenant sees none of alice's jobs
    other = ok(srv.cli("status", token="tenant_b"))
    assert "status-long" not in other and "bob" in other
    admin = ok(srv.cli("status", token="platform_admin"))
    assert "network jobs" in admin and "status-long" in admin and "voucher programmes" in admin
    assert re.search(r"status-long\s+RUNNING\s+青岛海蓝智能科技有限公司", admin)  # whose job
    assert re.search(r"city 城市\s+units in use [\d,]+/[\d,]+", admin)
    reviewer = ok(srv.cli("status", token="reviewer"))
    assert "jobs 作业" not in reviewer and "applications to review" in reviewer
    operator = ok(srv.cli("status", token="center_operator"))
    assert "my center's jobs" in operator and "qd-ai" in operator and "qd-sc" not in operator
    ok(srv.cli("job", "cancel", str(long)))


def test_job_list_filters_by_state_and_name_on_the_server(srv: Server) -> None:
    ids = [submit(srv, "--name", n, "--", "true") for n in ("filt-train-a", "filt-train-b",
                                                            "filt-eval")]
    for i in ids:
        wait_state(srv, i, "COMPLETED")
    names = lambda *a, token="tenant_a": [  # noqa: E731
        j["name"] for j in json.loads(ok(srv.cli("job", "list", *a, "-o", "json",
                                                  token=token)))["items"]]
    assert names("--name", "filt-train-*") == ["filt-train-b", "filt-train-a"]
    assert names("--name", "FILT-TRAIN") == ["filt-train-b", "filt-train-a"]  # any case
    assert names("--name", "filt-?val") == ["filt-eval"]
    assert names("--name", "filt%") == [] and names("--name", "filt_train") == []  # literal
    assert set(names("--name", "filt", "--state", "completed")) == {
        "filt-train-a", "filt-train-b", "filt-eval"}
    assert names("--name", "filt", "--state", "running") == []
    assert names("--name", "filt", token="tenant_b") == []  # another tenant's jobs stay hidden
    table = ok(srv.cli("job", "list", "--name", "filt-train-*"))
    assert "filt-train-a" in table and "filt-eval" not in table and "2 of 2" in table
    r = srv.cli("job", "list", "--state", "bogus")
    assert r.returncode == 1 and "--state" in r.stderr and "running" in r.stderr
    with srv.api() as api:  # the API's own filter
        page = api.get("/api/v1/jobs", params={"name": "filt-train-*", "state": "COMPLETED"}).json()
        assert page["total"] == 2


def test_budget_is_in_yuan_exactly(srv: Server) -> None:
    j = submit(srv, "--name", "yuan-120", "--budget", "120", "--", "true")
    assert job(srv, j)["budget_fen"] == 12000
    j = submit(srv, "--name", "yuan-120.5", "--budget", "120.5", "--", "true")
    assert job(srv, j)["budget_fen"] == 12050
    j = submit(srv, "--name", "yuan-fen", "--budget-fen", "99", "--", "true")  # the old flag
    assert job(srv, j)["budget_fen"] == 99
    for bad in ("0.001", "1e3", "-5", "abc"):
        r = srv.cli("job", "submit", "--budget", bad, "--", "true")
        assert r.returncode == 1 and "--budget" in r.stderr and "Traceback" not in r.stderr, bad
    r = srv.cli("job", "submit", "--budget", "0.01", "--walltime", "2h", "--", "true")
    assert r.returncode == 1 and "--budget" in r.stderr and "over the budget of ¥0.01" in r.stderr
    assert " fen" not in r.stderr


def test_no_exponent_anywhere_in_a_tour(srv: Server) -> None:
    short = submit(srv, "--name", "tour", "--units", "1", "--", "sleep", "1")
    wait_state(srv, short, "COMPLETED")
    with srv.api() as api:
        use = api.get("/api/v1/usage", params={"job_id": short}).json()
    assert 0 < use["totals"]["pflops_hours"] < 1e-4  # the tiny figure that used to print 7.78e-06
    tour = [
        ("status",), ("job", "list"), ("job", "show", str(short)),
        ("job", "placement", str(short)), ("job", "watch", str(short)), ("usage",),
        ("usage", "--job", str(short)), ("bill", "balance"), ("bill", "history"),
        ("capacity",), ("center", "list"), ("center", "show", "local"),
        ("voucher", "grants"), ("voucher", "redemptions"), ("voucher", "programme", "show", "1"),
        ("dag", "list"),
    ]
    outputs = []
    for args in tour:
        r = srv.cli(*args)
        assert r.returncode == 0, (args, r.stderr)
        outputs.append((args, r.stdout + r.stderr))
    for args in (("voucher", "report", "1"), ("bill", "trial-balance"), ("audit", "log")):
        r = srv.cli(*args, token="platform_admin" if args[0] != "audit" else "auditor")
        assert r.returncode == 0, (args, r.stderr)
        outputs.append((args, r.stdout + r.stderr))
    for args, text in outputs:
        assert not EXPONENT.search(text), (args, EXPONENT.search(text))
    usage_text = dict(outputs)[("usage", "--job", str(short))]
    assert re.search(r"0\.0000\d+", usage_text)  # the tiny P·h in fixed point


def test_times_carry_their_zone(srv: Server) -> None:
    j = submit(srv, "--name", "zone", "--", "true")
    wait_state(srv, j, "COMPLETED")
    cst = ok(srv.cli("job", "show", str(j)))
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d CST", cst) and "UTC" not in cst
    env = srv.env()
    env["SUANLI_TZ"] = "UTC"
    utc = subprocess.run([str(BIN / "suanli"), "job", "show", str(j)], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert re.search(r"\d\d:\d\d:\d\d UTC", utc) and "CST" not in utc
    # the shown times differ by exactly 8 hours
    first = lambda text, zone: datetime.strptime(  # noqa: E731
        re.search(rf"(\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d) {zone}", text).group(1),  # type: ignore[union-attr]
        "%Y-%m-%d %H:%M:%S")
    assert first(cst, "CST") - first(utc, "UTC") == timedelta(hours=8)
    offset = ok(srv.cli("--tz", "+05:30", "job", "show", str(j)))
    assert "+05:30" in offset
    r = srv.cli("--tz", "Mars/Olympus", "job", "list")
    assert r.returncode == 1 and "--tz" in r.stderr
    raw = json.loads(ok(srv.cli("job", "show", str(j), "-o", "json")))  # JSON stays UTC
    assert raw["submitted_at"].endswith(("Z", "+00:00"))
    assert "json" in ok(srv.cli("job", "list", "--help")) and "fen" in ok(srv.cli("job", "list",
                                                                                  "--help"))


def test_errors_name_the_flag(srv: Server, tmp_path: Path) -> None:
    r = srv.cli("job", "submit", "--device", "gpux", "--", "true")
    assert r.returncode == 1 and "--device" in r.stderr and "resources.device" not in r.stderr
    r = srv.cli("job", "submit", "--units", "0", "--", "true")
    assert r.returncode == 1 and "--units" in r.stderr and "resources.units" not in r.stderr
    r = srv.cli("job", "submit", "--precision", "fp8", "--", "true")
    assert r.returncode == 1 and "--precision" in r.stderr
    r = srv.cli("job", "submit", "--deadline", "tomorrow", "--", "true")
    assert r.returncode == 1 and "--deadline" in r.stderr
    dag = tmp_path / "dag.yaml"
    dag.write_text("name: d\nstages:\n  - name: a\n    command: echo hi\n    device: tpu\n"
                   "  - name: b\n    command: echo hi\n    units: 0\n")
    r = srv.cli("job", "submit", "--dag", str(dag))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "stages[0].device: " in r.stderr and "stages[1].units: " in r.stderr  # both named


def test_a_job_too_big_for_every_pool_names_the_largest(srv: Server) -> None:
    r = srv.cli("job", "submit", "--device", "npu", "--units", "100000", "--", "true")
    assert r.returncode == 1
    assert "the largest npu pool is qd-ai/ascend-910b: 40 nodes × 8 units = 320 npu" in r.stderr
    assert "nodes=12500" not in r.stderr
    r = srv.cli("job", "submit", "--device", "npu", "--units", "1000", "--", "true")
    assert r.returncode == 1 and "nodes=125" not in r.stderr and "320 units at most" in r.stderr
    # a spread the pool does have is still suggested
    r = srv.cli("job", "submit", "--device", "npu", "--units", "16", "--", "true")
    assert r.returncode == 1 and "ask for nodes=2 to spread it" in r.stderr


def test_slurm_walltimes(srv: Server) -> None:
    for text, seconds in (("01:00:00", 3600), ("1-12:00:00", 129600), ("1h30m", 5400),
                          ("900", 900)):
        j = submit(srv, "--name", f"wt-{seconds}", "--walltime", text, "--", "true")
        assert job(srv, j)["walltime_s"] == seconds, text
    r = srv.cli("job", "submit", "--walltime", "1:xx", "--", "true")
    assert r.returncode == 1 and "--walltime" in r.stderr


def test_an_estimate_beyond_the_walltime_says_why(srv: Server) -> None:
    j = submit(srv, "--name", "slow", "--policy", "cheapest", "--walltime", "10m", "--", "true")
    wait_state(srv, j, "COMPLETED")
    out = ok(srv.cli("job", "placement", str(j)))
    with srv.api() as api:
        cands = api.get(f"/api/v1/jobs/{j}/placement").json()["current"]["candidates"]
    if any((c["runtime_s"] or 0) > 600 for c in cands):
        assert "*" in out and "beyond the walltime 10m00s" in out
    else:
        assert "beyond the walltime" not in out


def test_usage_since_until_and_bills(srv: Server) -> None:
    j = submit(srv, "--name", "usage-window", "--", "true")
    ended = wait_state(srv, j, "COMPLETED")["finished_at"]
    day = datetime.fromisoformat(ended).astimezone(timezone(timedelta(hours=8))).date()
    ids = lambda *a: [u["job_id"] for u in json.loads(ok(srv.cli(  # noqa: E731
        "usage", *a, "--limit", "1000", "-o", "json")))["items"]]
    assert j in ids("--since", day.isoformat())
    assert j in ids("--since", day.isoformat(), "--until", (day + timedelta(days=1)).isoformat())
    assert j not in ids("--since", (day + timedelta(days=1)).isoformat())
    assert j not in ids("--until", day.isoformat())
    r = srv.cli("usage", "--since", "2026-12-02", "--until", "2026-12-01")
    assert r.returncode == 1 and "--until" in r.stderr
    table = ok(srv.cli("usage", "--since", day.isoformat()))
    assert "CST" in table and re.search(r"\b(qd-\w+|local|cmcc-ai|ct-cloud)\b", table)
    # bill balance: the caller's own tenant by default; a platform admin must name one
    own = json.loads(ok(srv.cli("bill", "balance", "-o", "json")))
    assert own["tenant_id"] == 1
    r = srv.cli("bill", "balance", token="platform_admin")
    assert r.returncode == 1 and "belong to no tenant" in r.stderr
    # a month not settled yet: a tenant gets its month so far, never an admin-only command
    month = day.strftime("%Y-%m")
    r = srv.cli("bill", "statements", "--month", month)
    assert r.returncode == 0, r.stderr
    assert "so far" in r.stdout and "suanli settle" not in r.stdout + r.stderr
    r = srv.cli("bill", "statements", "--month", month, token="platform_admin")
    assert r.returncode == 1 and "--preview" in r.stderr


def test_login_demo(srv: Server, tmp_path: Path) -> None:
    env = srv.env(None)
    r = subprocess.run([str(BIN / "suanli"), "login", "--demo", "tenant_b"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "bob" in r.stdout
    saved = json.loads((srv.home / "cli.json").read_text())
    assert saved["token"] == srv.creds()["tenant_b"] and saved["url"] == srv.url
    out = subprocess.run([str(BIN / "suanli"), "status"], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert "bob (tenant_admin)" in out
    r = subprocess.run([str(BIN / "suanli"), "login", "--demo", "nobody"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 1 and "tenant_a" in r.stderr and "Traceback" not in r.stderr
    elsewhere = dict(env, SUANLI_HOME=str(tmp_path))  # no demo started with this home
    r = subprocess.run([str(BIN / "suanli"), "login", "--demo", "tenant_a"], env=elsewhere,
                       capture_output=True, text=True)
    assert r.returncode == 1 and "demo-credentials.json" in r.stderr and "make run" in r.stderr
    (srv.home / "cli.json").unlink()


def test_serve_demo_prints_cli_commands_that_work(srv: Server) -> None:
    log = srv.log.read_text()
    assert "source " in log and "/bin/activate" in log
    lines = [line.strip() for line in log.splitlines()]
    home = next(line for line in lines if line.startswith("export SUANLI_HOME="))
    login = next(line for line in lines if line.startswith("suanli login --demo tenant_a"))
    assert f"--url {srv.url}" in login
    env = {k: v for k, v in srv.env(None).items() if k not in ("SUANLI_URL", "SUANLI_HOME")}
    env["SUANLI_HOME"] = home.split("=", 1)[1]
    r = subprocess.run([str(BIN / "suanli"), *login.split()[1:]], env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0 and "alice" in r.stdout, r.stderr
    r = subprocess.run([str(BIN / "suanli"), "status"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "alice (tenant_admin)" in r.stdout, r.stderr
    (srv.home / "cli.json").unlink()
