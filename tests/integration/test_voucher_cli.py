"""The voucher year from the CLI against a real server: apply → review → run a job (real
process) → redeem at billing → preview the month's settlement → report → audit verify, which
then catches an entry edited directly in the database."""

from __future__ import annotations

import json
import sqlite3

import pytest

from .conftest import Server

pytestmark = pytest.mark.integration


def test_the_voucher_year_from_the_cli(server: Server) -> None:
    progs = json.loads(server.cli("voucher", "programme", "list", "-o", "json").stdout)
    prog = progs[0]["id"]
    r = server.cli("voucher", "apply", "--programme", str(prog), "--yuan", "5000",
                   "--planned-spend-yuan", "50000", "--use", "推理服务 inference", "-o", "json")
    assert r.returncode == 0, r.stderr
    app_id = json.loads(r.stdout)["id"]
    r = server.cli("voucher", "review", str(app_id), "--approve", "--yuan", "4000", token="reviewer")
    assert r.returncode == 1 and "needs a reason" in r.stderr and "Traceback" not in r.stderr
    r = server.cli("voucher", "review", str(app_id), "--approve", "--yuan", "4000", "--reason",
                   "only the GPU part", token="reviewer")
    assert r.returncode == 0 and "partly_approved" in r.stdout, r.stderr
    # A job on a domestic NPU: its bill is 30 % voucher.
    r = server.cli("job", "submit", "--name", "npu", "--device", "npu", "--units", "8", "--walltime",
                   "10m", "--wait", "-o", "json", "--", "sh", "-c", "sleep 3")
    assert r.returncode == 0, r.stderr
    month = json.loads(r.stdout)["finished_at"][:7]  # the run's month, by the platform's clock
    reds = json.loads(server.cli("voucher", "redemptions", "-o", "json").stdout)["items"]
    assert len(reds) == 1 and reds[0]["ratio_bp"] == 3000
    assert reds[0]["amount_fen"] == reds[0]["bill_fen"] * 3 // 10
    prev = json.loads(server.cli("settle", "--month", month, "--preview", "-o", "json",
                                 token="platform_admin").stdout)
    center = next(i for i in prev["items"] if i["party"] == "center")
    assert center["voucher_fen"] == reds[0]["amount_fen"] and prev["settled"] is False
    rep = server.cli("voucher", "report", str(prog), "--by", "domestic", token="reviewer")
    assert rep.returncode == 0 and "domestic" in rep.stdout and "burn-down" in rep.stdout
    r = server.cli("audit", "verify", token="auditor")
    assert r.returncode == 0 and "intact" in r.stdout, r.stderr
    with sqlite3.connect(server.home / "suanli.db") as db:
        db.execute("UPDATE audit_log SET actor = 'mallory' WHERE id = 3")
    r = server.cli("audit", "verify", token="auditor")
    assert r.returncode == 1 and "entry 3 " in r.stderr and "edited" in r.stderr
    assert server.cli("audit", "verify", token="tenant_a").returncode == 1  # not a tenant's to run
