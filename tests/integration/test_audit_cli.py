"""`suanli audit seal` as an administrator types it: where the server's key is, it seals (the
request carries the key's proof); on a machine without the key it says so and makes none."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import BIN, Server

pytestmark = pytest.mark.integration


def test_audit_seal_needs_the_key_at_hand(server: Server, tmp_path: Path) -> None:
    verified = server.cli("audit", "verify", "-o", "json", token="auditor")
    assert verified.returncode == 0, verified.stderr
    sealed = server.cli("audit", "seal", token="platform_admin")
    assert sealed.returncode == 0, sealed.stderr
    assert "audit log sealed" in sealed.stdout
    log = server.cli("audit", "log", "-o", "json", token="platform_admin")
    assert json.loads(log.stdout)["items"][0]["action"] == "audit.seal"
    # another machine: the admin's token, not the key
    elsewhere = server.env("platform_admin") | {"SUANLI_HOME": str(tmp_path)}
    away = subprocess.run([str(BIN / "suanli"), "audit", "seal"], env=elsewhere,
                          capture_output=True, text=True, timeout=60)
    assert away.returncode == 1 and "no audit key here" in away.stderr, away.stderr
    assert "Traceback" not in away.stderr and not (tmp_path / "audit.key").exists()
