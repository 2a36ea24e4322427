"""The local executor's per-run supervisor (like conmon for containers).

Started detached (own session, own mount namespace) by the local connector, it outlives the suanli
server. It runs the job as the tenant's unprivileged user inside a bubblewrap sandbox:

- the work folder is a size-capped tmpfs (the disk limit) mounted in the supervisor's private
  mount namespace, owned by the tenant's user and bound at `/work`; the job sees it, the system's
  read-only files and a private `/tmp` — not `$SUANLI_HOME`, the database, other runs or their logs;
- its own PID, IPC, UTS, network and cgroup namespaces: it cannot see or signal the server, the
  engine or other jobs; when the sandbox's first process ends, the kernel kills every process of
  the job, however it detached (`setsid`, double fork, `nohup`);
- no capabilities, no new privileges (`setpriv --no-new-privs`: setuid programs do not elevate),
  limits on file size and process count.

Everything the supervisor records — `started.json`, `result.json` (start, end, exit code, CPU time
and peak memory), the logs — lives in the run directory, which belongs to root (0700) and is never
bound into the sandbox: a job cannot write a fact suanli later bills on.

A cancel arrives as SIGTERM (or a `cancel` marker file): every process of the job gets SIGTERM,
then after the grace period the sandbox is killed. The walltime ends the same way. The supervisor
writes `result.json` atomically when the job ends, so a server killed with `kill -9` re-attaches
to its running jobs when it starts again. If the supervisor itself is killed, the sandbox dies
with it (parent-death signal): no job ever runs unsupervised.

Usage: unshare --mount --propagation private python -I -S local_shim.py RUN_DIR
(standard library only: keep it so)
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_cancel_signalled = False
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
INFO_TIMEOUT_S = 30.0  # how long bubblewrap may take to build the sandbox
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


def _pause(seconds: float) -> None:
    """Sleep (select's timeout is relative: unlike time.sleep, this keeps working when the tests
    run the platform on another date under libfaketime)."""
    select.select([], [], [], seconds)


def _on_term(signum: int, frame: object) -> None:
    global _cancel_signalled
    _cancel_signalled = True


def write_json_atomic(path: Path, data: dict[str, Any], *, durable: bool = True) -> None:
    """Write a file that readers see whole or not at all; `durable` also survives power loss."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def bwrap_argv(sandbox: dict[str, Any], work: Path, info_fd: int,
               command: list[str]) -> list[str]:
    """The command line that runs `command` as the tenant's user in a fresh sandbox."""
    uid, gid = int(sandbox["uid"]), int(sandbox["gid"])
    tmp_size = str(int(sandbox["work_limit_bytes"]))
    argv = [
        sandbox["bwrap"],
        "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc",
        "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
        "--proc", "/proc", "--dev", "/dev",
        "--perms", "1777", "--size", tmp_size, "--tmpfs", "/tmp",
        "--perms", "1777", "--size", tmp_size, "--tmpfs", "/dev/shm",
    ]
    for path in sandbox.get("ro_paths") or []:
        argv += ["--ro-bind", str(path), str(path)]
    argv += ["--bind", str(work), "/work"]
    # Not --unshare-all: bubblewrap runs as root here, and a user namespace would map only root,
    # so the job could not become the tenant's user. The real uid is switched by setpriv inside.
    argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not sandbox.get("network"):
        argv.append("--unshare-net")
    argv += ["--die-with-parent", "--new-session", "--info-fd", str(info_fd),
             "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
             "setpriv", "--reuid", str(uid), "--regid", str(gid), "--clear-groups",
             "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all", "--",
             "env", "-C", "/work", "--", *command]
    return argv


def _limits(sandbox: dict[str, Any]) -> None:
    """In the sandbox's first process, before bubblewrap runs: die with the supervisor, and the
    limits the job inherits."""
    import resource

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    size = int(sandbox["file_limit_bytes"])
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    nproc = int(sandbox["nproc_limit"])
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def _mount_work(work: Path, sandbox: dict[str, Any]) -> str | None:
    """The work folder: a tmpfs of at most `work_limit_bytes`, the tenant's user its owner.
    Returns why it could not be mounted, or None."""
    work.mkdir(mode=0o700, exist_ok=True)
    limit = int(sandbox["work_limit_bytes"])
    inodes = max(1024, limit // 4096)
    opts = (f"size={limit},nr_inodes={inodes},mode=0700,uid={int(sandbox['uid'])},"
            f"gid={int(sandbox['gid'])},nosuid,nodev")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "suanli-work", str(work)],
                          capture_output=True, text=True)
    return None if done.returncode == 0 else (done.stderr.strip() or "mount failed")


def _reap_orphans() -> None:
    """Reap the sandbox's processes that were handed to us (we are a child subreaper: the
    namespace's init outlives bubblewrap's outer process by a moment)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _members(namespace: str, skip: int) -> list[int]:
    """Processes in the job's PID namespace (host PIDs), but the namespace's init."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != skip and _pid_namespace(int(entry)) == namespace:
            found.append(int(entry))
    return found


class Sandbox:
    """The running job: the sandbox's outer process (our child) and its PID namespace."""

    def __init__(self, child: subprocess.Popen[bytes], init_pid: int | None) -> None:
        self.child = child
        self.init_pid = init_pid
        self.namespace = _pid_namespace(init_pid) if init_pid else None
        # A handle on the namespace's init that cannot name another process after it ends.
        self.init_fd: int | None = None
        if init_pid:
            try:
                self.init_fd = os.pidfd_open(init_pid)
            except OSError:
                self.init_fd = None
        self.rc: int | None = None
        self.rusage: Any = None
        self.child_fd = os.pidfd_open(child.pid)  # readable once the sandbox has ended

    def idle(self, seconds: float) -> None:
        """Wait up to `seconds`, less if the sandbox ends meanwhile."""
        select.select([self.child_fd], [], [], seconds)

    def poll(self) -> bool:
        """True once the sandbox has ended (its exit status and resource use recorded)."""
        if self.rc is not None:
            return True
        pid, status, usage = os.wait4(self.child.pid, os.WNOHANG)
        if pid == 0:
            return False
        self.rc = os.waitstatus_to_exitcode(status)
        self.child.returncode = self.rc
        self.rusage = usage
        return True

    def wait(self) -> None:
        while not self.poll():
            _pause(0.05)

    def wait_empty(self, timeout_s: float = 10.0) -> None:
        """Until the kernel has killed and reaped every process of the job: the run ends when
        nothing of it runs any more."""
        deadline = time.monotonic() + timeout_s
        while self.namespace is not None and time.monotonic() < deadline:
            _reap_orphans()
            if not _members(self.namespace, 0):
                return
            _pause(0.02)

    def terminate(self, grace_s: float) -> None:
        """SIGTERM to every process of the job; after `grace_s`, SIGKILL to the sandbox."""
        if self.namespace is not None:
            for pid in _members(self.namespace, self.init_pid or 0):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if self.poll():
                return
            _pause(0.05)
        self.kill()
        self.wait()

    def kill(self) -> None:
        """SIGKILL the sandbox (before it is reaped: its PIDs cannot be reused yet). With the
        namespace's init gone, the kernel kills every process in it."""
        if self.init_fd is not None:
            try:
                signal.pidfd_send_signal(self.init_fd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.rc is None:
            try:
                os.kill(self.child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _start(run_dir: Path, spec: dict[str, Any], work: Path) -> Sandbox:
    sandbox = spec["sandbox"]
    info_r, info_w = os.pipe()
    out_fd = os.open(run_dir / "stdout.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    err_fd = os.open(run_dir / "stderr.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    env = dict(spec["env"])
    env.update({"HOME": "/work", "TMPDIR": "/tmp"})
    env.setdefault("PATH", SANDBOX_PATH)  # the job's own PATH, if it set one
    try:
        child = subprocess.Popen(
            bwrap_argv(sandbox, work, info_w, list(spec["command"])),
            cwd="/", env=env, stdin=subprocess.DEVNULL, stdout=out_fd, stderr=err_fd,
            start_new_session=True, pass_fds=(info_w,), preexec_fn=lambda: _limits(sandbox),
        )
    finally:
        os.close(info_w)
        os.close(out_fd)
        os.close(err_fd)
    info = b""
    deadline = time.monotonic() + INFO_TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([info_r], [], [], 0.1)
        if ready:
            chunk = os.read(info_r, 65536)
            if not chunk:
                break
            info += chunk
            if info.rstrip().endswith(b"}"):
                break
        elif child.poll() is not None:
            break
    os.close(info_r)
    try:
        init_pid: int | None = int(json.loads(info.decode())["child-pid"])
    except (ValueError, KeyError, UnicodeDecodeError):
        init_pid = None
    return Sandbox(child, init_pid)


def _usage(box: Sandbox) -> dict[str, Any]:
    if box.rusage is None:
        return {}
    return {"cpu_s": round(box.rusage.ru_utime + box.rusage.ru_stime, 3),
            "max_rss_kb": int(box.rusage.ru_maxrss)}


def run(run_dir: Path) -> int:
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    os.umask(0o077)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    spec = json.loads((run_dir / "spec.json").read_text(encoding="utf-8"))
    result_path = run_dir / "result.json"
    started = _now()
    if _cancel_signalled or (run_dir / "cancel").exists():
        write_json_atomic(
            result_path,
            {"state": "cancelled", "exit_code": None, "started_at": None, "ended_at": started,
             "reason": "cancelled before start"},
        )
        return 0
    work = run_dir / "work"
    problem = _mount_work(work, spec["sandbox"])
    if problem is not None:
        write_json_atomic(
            result_path,
            {"state": "failed", "exit_code": None, "started_at": None, "ended_at": _now(),
             "reason": f"cannot prepare the job's sandbox: {problem}"[:500]},
        )
        return 0
    try:
        box = _start(run_dir, spec, work)
    except OSError as exc:
        write_json_atomic(
            result_path,
            {"state": "failed", "exit_code": None, "started_at": None, "ended_at": _now(),
             "reason": f"cannot start the sandbox: {exc.strerror or exc}"},
        )
        return 0
    write_json_atomic(
        run_dir / "started.json",
        {"pid": box.child.pid, "pgid": box.child.pid, "init_pid": box.init_pid,
         "pid_namespace": box.namespace, "uid": int(spec["sandbox"]["uid"]),
         "started_at": started},
    )
    deadline = time.monotonic() + float(spec["walltime_s"])
    grace = float(spec.get("term_grace_s", 10))
    outcome = ""
    while not box.poll():
        if _cancel_signalled or (run_dir / "cancel").exists():
            outcome = "cancelled"
        elif time.monotonic() >= deadline:
            outcome = "timeout"
        if outcome:
            box.terminate(grace)
            break
        box.idle(0.1)
    box.kill()  # whatever the job left behind dies with its namespace
    box.wait_empty()
    for fd in (box.init_fd, box.child_fd):
        if fd is not None:
            os.close(fd)
    rc = box.rc if box.rc is not None else -signal.SIGKILL
    if rc > 128 and box.init_pid is not None:
        rc = -(rc - 128)  # bubblewrap reports a job killed by signal N as 128 + N
    if outcome == "cancelled":
        state, reason = "cancelled", "cancelled on request"
    elif outcome == "timeout":
        state, reason = "timeout", f"walltime of {spec['walltime_s']}s reached"
    elif box.init_pid is None:
        state, reason = "failed", "the sandbox could not be built (see the job's stderr)"
    elif rc == 0:
        state, reason = "completed", "exit code 0"
    else:
        state = "failed"
        if rc == -signal.SIGXFSZ:
            reason = "killed: a file reached the size limit (SIGXFSZ)"
        else:
            reason = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
    write_json_atomic(
        result_path,
        {"state": state, "exit_code": rc, "started_at": started, "ended_at": _now(),
         "reason": reason, **_usage(box)},
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
