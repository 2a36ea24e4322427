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
    conn = connector(home, work_limit_mb=8, log_limit_mb=4)
    # 6 MB twice into the work folder, then /tmp, then /dev/shm: the three share the run's 8 MB,
    # so the second write runs out of space and the rest finds none; then 20 MB on stderr, of
    # which the log keeps 4 MB (and says so), and fallocate on its output, which is a pipe
    fill = "; ".join(f"head -c 6M /dev/zero > {d}/a; head -c 6M /dev/zero > {d}/b; echo {d}=$?"
                     for d in ("/work", "/tmp", "/dev/shm"))
    conn.submit(req("fill", fill + "; du -sck /work /tmp /dev/shm | tail -1; "
                                   "head -c 20M /dev/zero >&2; python3 -c 'import os; "
                                   "os.posix_fallocate(1, 0, 1 << 30)' 2>&1 | tail -1; "
                                   "echo survived"))
    st = wait_end(conn, "fill")
    out = conn.logs("fill").decode()
    assert "/work=1" in out and "/tmp=1" in out and "/dev/shm=1" in out, out
    total = next(line for line in out.splitlines() if line.endswith("total"))
    assert int(total.split()[0]) <= 8 * 1024  # all three together within the one limit
    assert "Illegal seek" in out or "ESPIPE" in out  # no fallocate on a pipe
    assert st.state is RunState.COMPLETED and "survived" in out
    stderr = (home / "runs" / "sec" / "fill" / "stderr.log").read_bytes()
    assert stderr.startswith(b"head: error writing 'standard output': No space left on device")
    assert len(stderr) < (4 << 20) + 1000 and b"bytes of output dropped" in stderr
    assert (home / "runs" / "sec" / "fill" / "stdout.log").stat().st_size < 4096


def test_logs_stop_growing_when_the_disk_keeps_too_little_free(home: Path) -> None:
    # A reserve larger than any disk: nothing may be written, however small
    conn = connector(home, disk_reserve_mb=1 << 30)
    conn.submit(req("reserve", "echo one line; head -c 1M /dev/zero"))
    st = wait_end(conn, "reserve")
    assert st.state is RunState.COMPLETED
    log = conn.logs("reserve")
    assert b"one line" not in log and b"1048585 bytes of output dropped" in log


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
                      ({"disk_reserve_mb": -1}, "disk_reserve_mb"),
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


def test_a_job_cannot_make_a_user_namespace_or_use_keyrings(home: Path) -> None:
    """Inside a user namespace of its own a job would hold every capability (tmpfs of any size,
    netfilter...): the seccomp filter refuses to make one. Keys would outlive the job."""
    conn = connector(home)
    conn.submit(req("userns", "unshare -Urm sh -c 'mount -t tmpfs -o size=100g x /tmp; echo "
                              "mounted'; "
                              "python3 -c \"import ctypes; l = ctypes.CDLL(None, use_errno=True);"
                              " print('add_key', l.syscall(248, b'user', b'k', b'v', 1, -3), "
                              "ctypes.get_errno()); print('unshare', l.unshare(0x10000000), "
                              "ctypes.get_errno())\"; sh -c 'echo forks still work'"))
    st = wait_end(conn, "userns")
    out, err = conn.logs("userns").decode(), conn.logs("userns", "stderr").decode()
    assert "mounted" not in out and "unshare failed: Operation not permitted" in err
    assert "add_key -1 1" in out and "unshare -1 1" in out  # EPERM, both
    assert "forks still work" in out and st.state is RunState.COMPLETED


def test_the_job_sees_no_host_paths_or_other_tenants(home: Path) -> None:
    conn = connector(home, user_prefix="sl-sec-t")
    conn.submit(req("other", "true", tenant_id=42))  # another tenant's user exists on the host
    wait_end(conn, "other")
    conn.submit(req("look", "cat /etc/passwd /proc/1/cmdline; ls -l /proc/self/fd/; ls /dev",
                    tenant_id=43))
    wait_end(conn, "look")
    out = conn.logs("look").decode()
    assert str(home) not in out and "runs/sec" not in out
    assert "sl-sec-t43" in out and "sl-sec-t42" not in out
    assert "ptmx" not in out and "pts" not in out  # no terminals to exhaust
    assert "pipe:[" in out  # its output is a pipe, not a file on the host


def test_an_exit_code_is_not_read_as_a_signal_it_never_got(home: Path) -> None:
    conn = connector(home)
    conn.submit(req("x153", "exit 153"))
    st = wait_end(conn, "x153")
    assert st.state is RunState.FAILED and st.exit_code == 153
    assert "or exited so" in st.reason


def test_cpu_time_and_memory_of_all_the_jobs_processes_are_recorded(home: Path) -> None:
    conn = connector(home)
    conn.submit(req("burn", "python3 -c 'b = bytearray(200 << 20); x = 0\nfor i in range(3_000_000): "
                            "x += i' & wait"))
    wait_end(conn, "burn", timeout=60)
    result = json.loads((home / "runs" / "sec" / "burn" / "result.json").read_text())
    assert result["cpu_s"] >= 0.1 and result["max_rss_kb"] >= 200 * 1024


def test_a_lost_run_ends_when_its_supervisor_was_last_seen(home: Path) -> None:
    import signal
    import time as _time

    conn = connector(home)
    conn.submit(req("lost", "sleep 60"))
    run_dir = home / "runs" / "sec" / "lost"
    from ..waiting import eventually

    eventually(lambda: (run_dir / "started.json").exists())
    shim = json.loads((run_dir / "shim.json").read_text())
    beat = run_dir / "started.json"
    last = _time.time() - 120  # as if the supervisor had last said it was alive 2 minutes ago
    os.kill(shim["pid"], signal.SIGKILL)
    eventually(lambda: conn.status("lost").state is RunState.LOST)
    os.utime(beat, (last, last))
    st = conn.status("lost")
    assert st.ended_at is not None and abs(st.ended_at.timestamp() - last) < 1
