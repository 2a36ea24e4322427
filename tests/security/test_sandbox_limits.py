"""The local executor's sandbox at its limits: a job that fills its disk, a machine without the
means to sandbox, configured users."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from suanli.connectors import RunRequest, create
from suanli.connectors.local import LocalConnector
from suanli.domain.enums import RunState
from suanli.domain.errors import ConnectorError

from ..unit.test_local_connector import wait_end


def connector(home: Path, **config: object) -> LocalConnector:
    c = create("local", {"center": "sec", "term_grace_s": 1, "pools": {"cpu": 4}, **config}, home)
    assert isinstance(c, LocalConnector)
    return c


def req(key: str, command: str, tenant_id: int | None = 1) -> RunRequest:
    return RunRequest(run_key=key, job_id=1, command=["sh", "-c", command], units=1, nodes=1,
                      walltime_s=60, pool="cpu", tenant_id=tenant_id)


def test_a_job_cannot_fill_the_disk_past_its_limit(home: Path) -> None:
    conn = connector(home, work_limit_mb=8, log_limit_mb=16)
    # 6 MB twice into the work folder, /tmp and /dev/shm (8 MB each: the second write runs out of
    # space), then 20 MB into its own log, which stops at 16 MB and ends the job
    fill = "; ".join(f"head -c 6M /dev/zero > {d}/a; head -c 6M /dev/zero > {d}/b; echo {d}=$?"
                     for d in ("/work", "/tmp", "/dev/shm"))
    conn.submit(req("fill", fill + "; du -sk /work /tmp /dev/shm; head -c 20M /dev/zero >&2; "
                                   "echo survived"))
    st = wait_end(conn, "fill")
    out = conn.logs("fill").decode()
    assert "/work=1" in out and "/tmp=1" in out and "/dev/shm=1" in out, out
    for line in out.splitlines()[3:6]:  # du: what each place holds
        assert int(line.split()[0]) <= 8 * 1024, line
    assert st.state is RunState.FAILED and st.exit_code == -25 and "size limit" in st.reason
    assert "survived" not in out
    assert (home / "runs" / "sec" / "fill" / "stderr.log").stat().st_size == 16 << 20
    assert b"No space left on device" in conn.logs("fill", "stderr")


def test_without_the_means_to_sandbox_nothing_starts(home: Path) -> None:
    conn = connector(home, bwrap="/nonexistent/bwrap")
    health = conn.health()
    assert not health.ok and "bwrap" in health.detail
    with pytest.raises(ConnectorError, match="cannot sandbox jobs"):
        conn.submit(req("nope", "echo ran"))
    assert not (home / "runs" / "sec" / "nope").exists()  # nothing launched, nothing to retry


def test_a_configured_user_is_used_and_a_privileged_one_refused(home: Path) -> None:
    conn = connector(home, users={"7": "nobody"})
    conn.submit(req("mapped", "id -un", tenant_id=7))
    st = wait_end(conn, "mapped")
    assert st.state is RunState.COMPLETED and conn.logs("mapped") == b"nobody\n"
    root = connector(home, users={"8": "root"})
    with pytest.raises(ConnectorError, match="privileged"):
        root.submit(req("as-root", "id", tenant_id=8))
    with pytest.raises(ConnectorError, match="does not exist"):
        connector(home, users={"9": "no-such-user-x"}).submit(req("ghost", "id", tenant_id=9))


def test_tenant_users_are_created_once_and_records_stay_root_only(home: Path) -> None:
    conn = connector(home, user_prefix="sl-sec-t")
    conn.submit(req("t41", "id -un", tenant_id=41))
    wait_end(conn, "t41")
    user = pwd.getpwnam("sl-sec-t41")
    assert 200_000 <= user.pw_uid < 300_000 and user.pw_shell == "/usr/sbin/nologin"
    assert conn.logs("t41") == b"sl-sec-t41\n"
    run_dir = home / "runs" / "sec" / "t41"
    assert run_dir.stat().st_uid == 0 and run_dir.stat().st_mode & 0o077 == 0
    for name in ("spec.json", "started.json", "result.json", "stdout.log", "stderr.log"):
        st = (run_dir / name).stat()
        assert st.st_uid == 0 and st.st_mode & 0o077 == 0, name
    result = json.loads((run_dir / "result.json").read_text())
    assert result["cpu_s"] >= 0 and result["max_rss_kb"] > 0  # resource use, recorded outside


def test_bad_sandbox_settings_are_named(home: Path) -> None:
    for bad, word in (({"users": {"1": "Not A User"}}, "users"),
                      ({"ro_paths": ["relative"]}, "ro_paths"),
                      ({"network": "yes"}, "network"),
                      ({"work_limit_mb": 0}, "work_limit_mb")):
        with pytest.raises(ConnectorError, match=word):
            connector(home, **bad)


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root; CI runs as root")
def test_network_is_off_unless_configured(home: Path) -> None:
    off = connector(home)
    off.submit(req("net-off", "cat /proc/net/dev | tail -n +3 | cut -d: -f1"))
    wait_end(off, "net-off")
    assert off.logs("net-off").split() == [b"lo"]  # a network namespace of its own
    on = connector(home, network=True)
    on.submit(req("net-on", "cat /proc/net/dev | tail -n +3 | cut -d: -f1"))
    wait_end(on, "net-on")
    assert len(on.logs("net-on").split()) > 1
