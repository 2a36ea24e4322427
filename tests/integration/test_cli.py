"""The CLI against a real server, as a user types it."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ..waiting import eventually
from .conftest import Server

pytestmark = pytest.mark.integration


def test_demo_credentials_file(server: Server) -> None:
    path = server.home / "demo-credentials.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert set(server.creds()) == {"platform_admin", "tenant_a", "tenant_b", "center_operator",
                                   "reviewer", "auditor"}
    me = json.loads(server.cli("token", "list", "-o", "json", token="reviewer").stdout)
    assert me and me[0]["prefix"].startswith("sl_")


def test_submit_wait_logs_show_usage(server: Server) -> None:
    r = server.cli("job", "submit", "--name", "hello", "--units", "2", "--walltime", "1m",
                   "--wait", "--", "sh", "-c", "echo hello from $SUANLI_UNITS units; exit 3")
    assert r.returncode == 3, r.stderr
    assert "hello from 2 units" in r.stdout
    jobs = json.loads(server.cli("job", "list", "-o", "json").stdout)
    (job,) = jobs["items"]
    assert job["state"] == "FAILED" and job["exit_code"] == 3 and job["name"] == "hello"
    logs = server.cli("job", "logs", str(job["id"]))
    assert logs.stdout == "hello from 2 units\n"
    chunk = json.loads(server.cli("job", "logs", str(job["id"]), "--offset", "6", "-o",
                                  "json").stdout)
    assert chunk["data"] == "from 2 units\n" and chunk["next_offset"] == 19
    show = server.cli("job", "show", str(job["id"]))
    assert "QUEUED" in show.stdout and "FAILED" in show.stdout and "history" in show.stdout
    placement = server.cli("job", "placement", str(job["id"]))
    assert "→" in placement.stdout and "candidates" in placement.stdout
    usage = json.loads(server.cli("usage", "--job", str(job["id"]), "-o", "json").stdout)
    assert usage["totals"]["runs"] == 1 and usage["items"][0]["units"] == 2
    ok = server.cli("job", "submit", "--wait", "--", "true")
    assert ok.returncode == 0


def test_emulated_centers_are_marked(server: Server) -> None:
    centers = json.loads(server.cli("center", "list", "-o", "json").stdout)
    by = {c["slug"]: c for c in centers}
    assert by["local"]["emulated"] is False
    assert all(c["emulated"] for s, c in by.items() if s != "local")
    assert "emulated" in server.cli("center", "list").stdout
    cap = json.loads(server.cli("capacity", "-o", "json").stdout)
    assert cap["total"]["total_pflops"]["fp16"] == pytest.approx(693.504)


def test_cli_errors_are_one_line_without_traceback(server: Server) -> None:
    r = server.cli("job", "list", token=None)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "missing bearer token" in r.stderr and "suanli login" in r.stderr
    r = server.cli("job", "submit", "--device", "npu", "--units", "100000", "--", "true")
    assert r.returncode == 1 and "no pool in the network" in r.stderr
    assert "units per node" in r.stderr and "Traceback" not in r.stderr
    r = server.cli("job", "submit", "--walltime", "soon", "--", "true")
    assert r.returncode == 1 and "not a duration" in r.stderr
    r = server.cli("tenant", "add", "--name", "X", "--credit-code", "123", token="platform_admin")
    assert r.returncode == 1 and "18 characters" in r.stderr
    r = server.cli("job", "show", "999999")
    assert r.returncode == 1 and "no job 999999" in r.stderr


def test_cancel_from_cli(server: Server) -> None:
    jid = server.cli("job", "submit", "--", "sleep", "60").stdout.strip()
    with server.api() as api:
        eventually(lambda: api.get(f"/api/v1/jobs/{jid}").json()["state"] == "RUNNING")
    r = server.cli("job", "cancel", jid)
    assert r.returncode == 0
    r = server.cli("job", "watch", jid, "--interval", "0.2")
    assert r.returncode == 130 and "CANCELLED" in r.stdout


def test_login_saves_credentials(server: Server) -> None:
    token = server.creds()["tenant_b"]
    r = server.cli("login", "--url", server.url, "--token", token, token=None)
    assert r.returncode == 0 and "bob" in r.stdout
    cfg = server.home / "cli.json"
    assert stat.S_IMODE(os.stat(cfg).st_mode) == 0o600
    env = server.env(None)
    env.pop("SUANLI_URL")
    import subprocess

    from .conftest import BIN

    out = subprocess.run([str(BIN / "suanli"), "tenant", "list", "-o", "json"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert [t["name"] for t in json.loads(out)] == ["青岛蓝海生物医药研究院有限公司"]


def test_serve_with_a_bad_database_url_is_one_line(tmp_path: object) -> None:
    import subprocess

    from .conftest import BIN

    env = dict(os.environ, SUANLI_HOME=str(tmp_path), SUANLI_DATABASE_URL="nonsense://")
    r = subprocess.run([str(BIN / "suanli"), "serve"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "nonsense" in r.stderr


def test_operator_drains_its_own_center_only(server: Server) -> None:
    r = server.cli("center", "drain", "qd-ai", "--reason", "maintenance", token="center_operator")
    assert r.returncode == 0 and "draining" in r.stdout
    show = json.loads(server.cli("center", "show", "qd-ai", "-o", "json").stdout)
    assert show["status"] == "draining" and show["status_reason"] == "maintenance"
    r = server.cli("center", "drain", "2", token="center_operator")
    assert r.returncode == 1 and "no center 2" in r.stderr
    r = server.cli("center", "drain", "qd-sc")
    assert r.returncode == 1 and "HTTP 403" in r.stderr
    r = server.cli("center", "status", "qd-ai", "online", token="center_operator")
    assert r.returncode == 0 and "online" in r.stdout


def test_dag_from_a_yaml_file(server: Server, tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "pipeline.yaml"
    path.write_text(
        "name: pipeline\n"
        "stages:\n"
        "  - name: preprocess\n"
        "    command: echo prep\n"
        "    device: cpu\n"
        "    units: 2\n"
        "    walltime: 1m\n"
        "  - name: train\n"
        "    depends_on: [preprocess]\n"
        "    command: [sh, -c, 'echo train on $SUANLI_UNITS NPUs']\n"
        "    device: npu\n"
        "    units: 8\n"
        "    walltime: 2m\n"
        "  - name: evaluate\n"
        "    depends_on: [train]\n"
        "    command: echo eval\n"
        "    walltime: 1m\n")
    r = server.cli("job", "submit", "--dag", str(path), "--wait", "-o", "json")
    assert r.returncode == 0, r.stderr
    dag = json.loads(r.stdout)
    assert dag["state"] == "COMPLETED" and [s["name"] for s in dag["stages"]] == [
        "preprocess", "train", "evaluate"]
    train = next(s for s in dag["stages"] if s["name"] == "train")
    assert train["device"] == "npu" and train["center"] not in (None, "local")  # an NPU center
    assert server.cli("job", "logs", str(train["job_id"])).stdout == "train on 8 NPUs\n"
    shown = server.cli("dag", "show", str(dag["id"]))
    assert "preprocess" in shown.stdout and "COMPLETED" in shown.stdout
    listed = json.loads(server.cli("dag", "list", "-o", "json").stdout)
    assert listed["total"] >= 1
    cycle = Path(str(tmp_path)) / "cycle.yaml"
    cycle.write_text("name: c\nstages:\n  - {name: a, command: 'true', depends_on: [b]}\n"
                     "  - {name: b, command: 'true', depends_on: [a]}\n")
    bad = server.cli("job", "submit", "--dag", str(cycle))
    assert bad.returncode != 0 and "cycle" in bad.stderr and "Traceback" not in bad.stderr
    both = server.cli("job", "submit", "--dag", str(path), "--", "true")
    assert both.returncode != 0 and "not both" in both.stderr


def test_engine_process_runs_at_a_lower_cpu_priority(server: Server) -> None:
    """Scheduling passes must not take the CPU from API requests: the engine process is niced."""
    with server.api() as c:
        pid = eventually(lambda: c.get("/api/v1/health").json()["scheduler"].get("pid"))
    assert server.proc is not None and pid and pid != server.proc.pid
    assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, server.proc.pid) + 5
