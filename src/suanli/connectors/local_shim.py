"""The local executor's per-run supervisor (like conmon for containers).

Started detached (own session, own mount namespace) by the local connector, it outlives the suanli
server. It runs the job as the tenant's unprivileged user inside a bubblewrap sandbox:

- the run's scratch space is one size- and inode-capped tmpfs, mounted in the supervisor's private
  mount namespace; the job sees its `work` folder at `/work` (its home and current directory), its
  `tmp` at `/tmp` and `shm` at `/dev/shm` — all three within the one limit — plus the system's
  `/usr` and `/etc` read-only (with an `/etc/passwd` and `/etc/group` that name only root, nobody
  and the job's own user) and a `/dev` of null, zero, full, random and urandom. It does not see
  `$SUANLI_HOME`, the database, other runs or their logs;
- its own PID, IPC, UTS, network and cgroup namespaces: it cannot see or signal the server, the
  engine or other jobs; when the sandbox's first process ends, the kernel kills every process of
  the job, however it detached (`setsid`, double fork, `nohup`);
- no capabilities, no new privileges (`setpriv --no-new-privs`: setuid programs do not elevate),
  a seccomp filter that refuses new user namespaces (which would hand back every capability inside
  them) and the kernel keyrings (which outlive a job), limits on file size and process count;
- nothing the job controls reaches a root process: bubblewrap's arguments come through a pipe
  (`--args`, so `/proc` shows no host paths), its environment is cleared, and the job's variables
  are set by `env -i` after the switch to the tenant's user.

The job's stdout and stderr are pipes: the supervisor copies them into the run's logs, up to
`log_limit_bytes` each and only while the disk keeps `disk_reserve_bytes` free, then drops the
rest with a note — a job cannot fill the disk that holds the database.

Everything the supervisor records — `started.json`, `result.json` (start, end, exit code, CPU time
and peak memory of all the job's processes), the logs, a heartbeat — lives in the run directory,
which belongs to root (0700) and is never bound into the sandbox: a job cannot write a fact suanli
later bills on. The space for `result.json` is reserved when the run starts, so the result is
written even on a full disk.

A cancel arrives as SIGTERM (or a `cancel` marker file): every process of the job gets SIGTERM,
then after the grace period the sandbox is killed. The walltime ends the same way. The supervisor
writes `result.json` atomically when the job ends, so a server killed with `kill -9` re-attaches
to its running jobs when it starts again. If the supervisor itself dies, the sandbox dies with it
(parent-death signal, and a kill of the sandbox on any error): no job runs unsupervised.

Staging (bring your own work): before the job starts, the supervisor brings each of the spec's
`stage` items into the work folder (from the artifact store's file, or over HTTP with the run's
token), unpacked with `stagekit.safe_unpack` (nothing leaves the folder; within the scratch
space's size) and handed to the tenant's user without following a link; an archive that is not
safe fails the run with the reason and the job never starts. When the job has ended — any way —
and before the scratch space goes away, the declared `outputs` are packed into `outputs.tar` in
the run directory (root's, 0600), never following a link the job planted.

Usage: unshare --mount --propagation private python -I -S local_shim.py RUN_DIR
(standard library only: keep it so)
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def _stagekit() -> Any:
    """artifacts/stagekit.py, also when this file runs as a script (-I: no package)."""
    try:
        from ..artifacts import stagekit  # type: ignore[import-not-found,unused-ignore]

        return stagekit
    except ImportError:
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "suanli_stagekit", Path(__file__).parent.parent / "artifacts" / "stagekit.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


_cancel_signalled = False
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
INFO_TIMEOUT_S = 30.0  # how long bubblewrap may take to build the sandbox
HEARTBEAT_S = 5.0  # how often the supervisor says it is alive (the end of a lost run)
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
RESULT_RESERVE = 4096  # bytes kept for result.json from the start
DEVICES = ("null", "zero", "full", "random", "urandom")


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


class ReservedResult:
    """`result.json`, with its disk space taken when the run starts: written in place over the
    reserved blocks (never extending the file), so a disk a job filled cannot stop it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(self.fd, 0, RESULT_RESERVE)
        except OSError:
            pass  # a filesystem without fallocate: written the usual way, at the end

    def write(self, data: dict[str, Any]) -> None:
        raw = json.dumps(data).encode()
        if len(raw) > RESULT_RESERVE:
            data = {**data, "reason": str(data.get("reason", ""))[:200]}
            raw = json.dumps(data).encode()
        os.pwrite(self.fd, raw, 0)
        os.ftruncate(self.fd, len(raw))
        os.fsync(self.fd)
        os.close(self.fd)
        os.replace(self.tmp, self.path)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def bwrap_options(sandbox: dict[str, Any], scratch: Path, info_fd: int,
                  seccomp_fd: int, mounts: list[tuple[str, str]] | None = None) -> list[str]:
    """bubblewrap's options for a fresh sandbox (read from a pipe, `bwrap --args FD`, so that
    the job's /proc shows no host paths). `mounts`: (host folder, path below /work) pairs bound
    read-only over the work folder (the center's shared copies of uploaded datasets)."""
    args = [
        "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc",
        "--ro-bind", str(scratch / "passwd"), "/etc/passwd",
        "--ro-bind", str(scratch / "group"), "/etc/group",
        "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
        "--proc", "/proc", "--tmpfs", "/dev",
    ]
    for dev in DEVICES:
        args += ["--dev-bind", f"/dev/{dev}", f"/dev/{dev}"]
    args += ["--symlink", "/proc/self/fd", "/dev/fd", "--symlink", "/proc/self/fd/0", "/dev/stdin",
             "--symlink", "/proc/self/fd/1", "/dev/stdout",
             "--symlink", "/proc/self/fd/2", "/dev/stderr",
             "--bind", str(scratch / "tmp"), "/tmp", "--bind", str(scratch / "shm"), "/dev/shm"]
    for path in sandbox.get("ro_paths") or []:
        args += ["--ro-bind", str(path), str(path)]
    args += ["--bind", str(scratch / "work"), "/work"]
    for source, dest in mounts or []:
        args += ["--ro-bind", source, "/work/" + dest]
    # Not --unshare-all: bubblewrap runs as root here, and a user namespace would map only root,
    # so the job could not become the tenant's user. The real uid is switched by setpriv inside.
    args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not sandbox.get("network"):
        args.append("--unshare-net")
    args += ["--die-with-parent", "--new-session", "--info-fd", str(info_fd),
             "--seccomp", str(seccomp_fd), "--clearenv", "--setenv", "PATH", SANDBOX_PATH,
             "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return args


def sandboxed(sandbox: dict[str, Any], command: list[str], env: dict[str, str]) -> list[str]:
    """What bubblewrap runs: `command` as the tenant's user, with `env` as its whole
    environment — set only after the switch, so nothing of the job's reaches a root process."""
    return ["setpriv", "--reuid", str(int(sandbox["uid"])), "--regid", str(int(sandbox["gid"])),
            "--clear-groups", "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all", "--",
            "env", "-i", "-C", "/work", "--", *(f"{k}={v}" for k, v in env.items()), *command]


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


def _mount_scratch(scratch: Path, sandbox: dict[str, Any]) -> str | None:
    """The run's scratch space: one tmpfs of at most `work_limit_bytes` (and an inode cap) holding
    the job's work, tmp and shm folders and its passwd and group files. Returns why it could not
    be prepared, or None."""
    scratch.mkdir(mode=0o700, exist_ok=True)
    limit = int(sandbox["work_limit_bytes"])
    inodes = max(1024, limit // 4096)
    opts = f"size={limit},nr_inodes={inodes},mode=0711,nosuid,nodev"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "suanli-run", str(scratch)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return done.stderr.strip() or "mount failed"
    uid, gid, name = int(sandbox["uid"]), int(sandbox["gid"]), str(sandbox["user"])
    for folder in ("work", "tmp", "shm"):
        (scratch / folder).mkdir(mode=0o700)
        os.chown(scratch / folder, uid, gid)
    (scratch / "passwd").write_text(
        "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        f"{name}:x:{uid}:{gid}:suanli job:/work:/bin/sh\n", encoding="utf-8")
    (scratch / "group").write_text(f"root:x:0:\nnogroup:x:65534:\n{name}:x:{gid}:\n",
                                   encoding="utf-8")
    for f in ("passwd", "group"):
        os.chmod(scratch / f, 0o644)
    return None


def _stage_in(spec: dict[str, Any], scratch: Path, mounts: list[tuple[str, str]]
              ) -> str | None:
    """Bring the spec's stage items into the job's work folder (as root, inside the run's own
    tmpfs, nothing leaving it), then give what arrived to the tenant's user. An uploaded
    dataset with the center's cache configured is unpacked once into the cache instead, and
    its folder added to `mounts` (bound read-only at its place). Returns why it could not, or
    None."""
    items = spec.get("stage") or []
    if not items:
        return None
    kit = _stagekit()
    sandbox = spec["sandbox"]
    work = scratch / "work"
    budget = int(sandbox["work_limit_bytes"])
    cache = str(spec.get("dataset_cache") or "")
    try:
        for item in items:
            if cache and item.get("cache") and item.get("unpack", True) and \
                    kit._parts(str(item.get("dest") or "."), "the destination", "dest") != []:
                copy = _cached(kit, item, cache, str(spec.get("token", "")),
                               int(sandbox["disk_reserve_bytes"]))
                if copy is not None:
                    mounts.append((copy, _mount_point(kit, work, str(item["dest"]))))
                    continue
                # Too large for the cache (see `_cached`): unpacked into the run's own scratch
                # space like any item, within its budget.
            budget -= kit.fetch_item(item, str(work), str(spec.get("token", "")),
                                     max_bytes=budget)
        kit.chown_tree(str(work), int(sandbox["uid"]), int(sandbox["gid"]))
        os.chmod(work, 0o700)
    except (kit.StageError, kit.UnsafeArchive) as exc:
        return str(exc)
    except OSError as exc:
        if exc.errno == 28:  # ENOSPC: the tmpfs is full
            return f"the work folder's {budget} bytes are too few for the inputs"
        return f"{exc.strerror or exc}: {exc.filename or ''}".strip(": ")
    return None


def _mount_point(kit: Any, work: Path, dest: str) -> str:
    """An empty folder at `dest` below the work folder (never through a link an earlier item
    unpacked) for a read-only mount; returns `dest` as bubblewrap is given it."""
    parts = kit._parts(dest, "the destination", dest)
    here = str(work)
    for part in parts:
        here = os.path.join(here, part)
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            os.mkdir(here, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):  # a link or a file an earlier item put there
            raise kit.UnsafeArchive(f"destination {dest!r} is not a folder")
    return "/".join(parts)


def _readable(root: str) -> None:
    """Every folder and file of a copy readable by any job it is bound into (folders tar made
    on its own way took the supervisor's umask), never following a link."""
    os.chmod(root, 0o755)
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                os.chmod(path, 0o755)
            elif stat.S_ISREG(st.st_mode):
                os.chmod(path, 0o755 if st.st_mode & 0o111 else 0o644)


def _cached(kit: Any, item: dict[str, Any], cache: str, token: str, reserve: int
            ) -> str | None:
    """The center's copy of an uploaded dataset: `<cache>/<sha256>`, unpacked once (under a
    lock, into a fresh folder renamed into place whole: a reader never sees half of it) with
    the same rules as any item, root's and read-only to every job. Returns its folder, or None
    when the dataset does not fit the cache: it may not unpack to more bytes, nor more entries
    (one 512-byte header each), than the archive the tenant stores weighs (a compressed tar
    could otherwise put far more than the tenant's quota on the disk holding suanli's data,
    outside any run's scratch limit, for good), nor past the disk's free space less `reserve`.
    """
    sha = str(item["sha256"])
    if len(sha) != 64 or not all(c in "0123456789abcdef" for c in sha):
        raise kit.StageError(f"not a SHA-256: {sha[:80]!r}")
    size = int(item.get("size") or 0)
    if size <= 0:
        return None
    os.makedirs(os.path.dirname(cache), mode=0o700, exist_ok=True)
    os.makedirs(cache, mode=0o700, exist_ok=True)
    final = os.path.join(cache, sha)
    lock = os.open(os.path.join(cache, f".{sha}.lock"),
                   os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isdir(final) and not os.path.islink(final):
            return final
        for name in os.listdir(cache):  # what a supervisor that died while unpacking left
            if name.startswith(f".{sha}.tmp"):
                shutil.rmtree(os.path.join(cache, name), ignore_errors=True)
        st = os.statvfs(cache)
        room = min(size, st.f_bavail * st.f_frsize - reserve)
        if room <= 0:
            return None
        tmp = tempfile.mkdtemp(prefix=f".{sha}.tmp", dir=cache)
        try:
            kit.fetch_item({**item, "dest": ""}, tmp, token, max_bytes=room,
                           max_members=max(1, size // 512))
            _readable(tmp)
            os.rename(tmp, final)
        except kit.OverBudget:
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final
    finally:
        os.close(lock)


def _pack_outputs(spec: dict[str, Any], run_dir: Path) -> str:
    """The declared outputs of the ended job into `outputs.tar` (root's, 0600). Returns a note
    for the run's reason when they could not all be kept, else ""."""
    patterns = [str(p) for p in spec.get("outputs") or []]
    if not patterns:
        return ""
    kit = _stagekit()
    work = run_dir / "work" / "work"
    limit = int(spec.get("outputs_max_bytes") or spec["sandbox"]["work_limit_bytes"])
    try:
        summary = kit.pack_outputs(str(work), patterns, str(run_dir / "outputs.tar"),
                                   max_bytes=limit)
    except kit.TooLarge as exc:
        return f"outputs not kept: {exc}"
    except OSError as exc:
        return f"outputs not kept: {exc.strerror or exc}"
    except Exception as exc:  # whatever the job left behind, the run still gets its result
        (run_dir / "outputs.tar").unlink(missing_ok=True)
        return f"outputs not kept: {type(exc).__name__}"
    skipped = summary["skipped"]
    if not summary["files"]:  # nothing to download: no empty archive is kept
        (run_dir / "outputs.tar").unlink(missing_ok=True)
        return "outputs: no file matched " + ", ".join(patterns)[:200]
    if skipped:
        return f"outputs: left out {len(skipped)} ({', '.join(skipped[:3])})"
    return ""


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


class Logs:
    """The job's stdout and stderr: pipes the supervisor copies into the run's log files, each up
    to `limit` bytes and only while the disk keeps `reserve` bytes free; the rest is dropped."""

    def __init__(self, run_dir: Path, limit: int, reserve: int) -> None:
        self.limit, self.reserve = limit, reserve
        self.read: dict[int, int] = {}  # pipe → log file
        self.written: dict[int, int] = {}
        self.dropped: dict[int, int] = {}
        self.job_ends: list[int] = []  # the write ends, for the job
        self.run_dir = run_dir
        for name in ("stdout", "stderr"):
            r, w = os.pipe()
            log = os.open(run_dir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self.read[r] = log
            self.written[r] = os.fstat(log).st_size
            self.dropped[r] = 0
            self.job_ends.append(w)
        self._room_checked = 0.0
        self._room = True

    def close_job_ends(self) -> None:
        for w in self.job_ends:
            os.close(w)
        self.job_ends = []

    def _has_room(self) -> bool:
        now = time.monotonic()
        if now - self._room_checked > 1.0:
            st = os.statvfs(self.run_dir)
            self._room = st.f_bavail * st.f_frsize > self.reserve
            self._room_checked = now
        return self._room

    def pump(self, ready: list[int]) -> None:
        for r in ready:
            chunk = os.read(r, 65536)
            if not chunk:
                self._finish(r)
                continue
            room = self.limit - self.written[r] if self._has_room() else 0
            keep = chunk[:max(0, room)]
            if keep:
                try:
                    os.write(self.read[r], keep)
                    self.written[r] += len(keep)
                except OSError:  # the disk is full after all: drop, never stop the copy
                    keep = b""
            self.dropped[r] += len(chunk) - len(keep)

    def _finish(self, r: int) -> None:
        log = self.read.pop(r)
        if self.dropped[r]:
            note = (f"\n[suanli: {self.dropped[r]} bytes of output dropped: the log keeps "
                    f"{self.limit >> 20} MB and the disk a reserve]\n").encode()
            try:
                os.write(log, note)
            except OSError:
                pass
        os.close(log)
        os.close(r)

    @property
    def open(self) -> list[int]:
        return list(self.read)

    def drain(self, timeout_s: float = 5.0) -> None:
        """Copy what is left once the job is gone (its write ends are all closed)."""
        deadline = time.monotonic() + timeout_s
        while self.read and time.monotonic() < deadline:
            ready, _, _ = select.select(self.open, [], [], 0.1)
            self.pump(ready)
        for r in list(self.read):
            self._finish(r)


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
        self.cpu_s = 0.0
        self.max_rss_kb = 0
        self.child_fd = os.pidfd_open(child.pid)  # readable once the sandbox has ended

    def _account(self, usage: Any) -> None:
        self.cpu_s += usage.ru_utime + usage.ru_stime
        self.max_rss_kb = max(self.max_rss_kb, int(usage.ru_maxrss))

    def poll(self) -> bool:
        """True once the sandbox has ended (its exit status and resource use recorded)."""
        if self.rc is not None:
            return True
        pid, status, usage = os.wait4(self.child.pid, os.WNOHANG)
        if pid == 0:
            return False
        self.rc = os.waitstatus_to_exitcode(status)
        self.child.returncode = self.rc
        self._account(usage)
        return True

    def reap_orphans(self) -> None:
        """Reap the sandbox's processes handed to us (we are a child subreaper: the namespace's
        init may outlive bubblewrap's outer process), counting what they used."""
        while True:
            try:
                pid, _, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._account(usage)

    def wait_empty(self, timeout_s: float = 10.0) -> None:
        """Until every process of the job is killed and reaped: the run ends when nothing of it
        runs any more."""
        deadline = time.monotonic() + timeout_s
        while self.namespace is not None and time.monotonic() < deadline:
            self.reap_orphans()
            if not _members(self.namespace, 0):
                return
            self.kill()
            _pause(0.02)

    def signal_members(self, sig: int) -> None:
        """`sig` to every process of the job but the namespace's init, through pidfds: a PID
        read from /proc is checked again once held, so a reused PID is never signalled."""
        if self.namespace is None:
            return
        for pid in _members(self.namespace, self.init_pid or 0):
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue
            try:
                if _pid_namespace(pid) == self.namespace:
                    signal.pidfd_send_signal(fd, sig)
            except OSError:
                pass
            finally:
                os.close(fd)

    def terminate(self, grace_s: float, logs: Logs) -> None:
        """SIGTERM to every process of the job; after `grace_s`, SIGKILL to the sandbox. Its
        output is copied meanwhile (a job blocked on a full pipe could not end gracefully)."""
        self.signal_members(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if self.poll():
                return
            self.idle(0.05, logs)
        self.kill()
        while not self.poll():
            self.idle(0.05, logs)

    def idle(self, seconds: float, logs: Logs) -> None:
        """Copy the job's output for up to `seconds`, less if the sandbox ends meanwhile."""
        ready, _, _ = select.select([self.child_fd, *logs.open], [], [], seconds)
        logs.pump([fd for fd in ready if fd != self.child_fd])

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

    def close(self) -> None:
        for fd in (self.init_fd, self.child_fd):
            if fd is not None:
                os.close(fd)
        self.init_fd = None


def _start(run_dir: Path, spec: dict[str, Any], scratch: Path, logs: Logs,
           mounts: list[tuple[str, str]]) -> Sandbox:
    sandbox = spec["sandbox"]
    env = {k: str(v) for k, v in spec["env"].items()
           if k and "=" not in k and not k.startswith("-")}
    env.update({"HOME": "/work", "TMPDIR": "/tmp", "USER": str(sandbox["user"])})
    env.setdefault("PATH", SANDBOX_PATH)  # the job's own PATH, if it set one
    info_r, info_w = os.pipe()
    args_r, args_w = os.pipe()
    seccomp_fd = os.open(run_dir / "seccomp.bpf", os.O_RDONLY)
    options = bwrap_options(sandbox, scratch, info_w, seccomp_fd, mounts)
    payload = b"".join(a.encode() + b"\0" for a in options)
    try:
        child = subprocess.Popen(
            [sandbox["bwrap"], "--args", str(args_r), "--",
             *sandboxed(sandbox, list(spec["command"]), env)],
            cwd="/", env={"PATH": SANDBOX_PATH}, stdin=subprocess.DEVNULL,
            stdout=logs.job_ends[0], stderr=logs.job_ends[1], start_new_session=True,
            pass_fds=(info_w, args_r, seccomp_fd), preexec_fn=lambda: _limits(sandbox),
        )
        os.close(args_r)
        with os.fdopen(args_w, "wb") as fh:  # bubblewrap reads its arguments to the end first
            fh.write(payload)
    finally:
        os.close(info_w)
        os.close(seccomp_fd)
        logs.close_job_ends()
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


def _outcome(rc: int, how: str, walltime_s: object, built: bool) -> tuple[str, int, str]:
    """The run's state, exit code and reason. bubblewrap reports a job killed by signal N as
    128 + N, which a job could also exit with: only when suanli stopped it is that read as a
    signal."""
    if how == "cancelled":
        return "cancelled", -(rc - 128) if rc > 128 else rc, "cancelled on request"
    if how == "timeout":
        return "timeout", -(rc - 128) if rc > 128 else rc, f"walltime of {walltime_s}s reached"
    if not built:
        return "failed", rc, "the sandbox could not be built (see the job's stderr)"
    if rc == 0:
        return "completed", 0, "exit code 0"
    if 128 < rc < 160:
        return "failed", rc, f"exit code {rc} (killed by signal {rc - 128}, or exited so)"
    return "failed", rc, f"exit code {rc}"


def run(run_dir: Path) -> int:
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    os.umask(0o077)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    spec = json.loads((run_dir / "spec.json").read_text(encoding="utf-8"))
    result = ReservedResult(run_dir / "result.json")
    started = _now()
    if _cancel_signalled or (run_dir / "cancel").exists():
        result.write({"state": "cancelled", "exit_code": None, "started_at": None,
                      "ended_at": started, "reason": "cancelled before start"})
        return 0
    sandbox = spec["sandbox"]
    problem = _mount_scratch(run_dir / "work", sandbox)
    if problem is not None:
        result.write({"state": "failed", "exit_code": None, "started_at": None,
                      "ended_at": _now(),
                      "reason": f"cannot prepare the job's sandbox: {problem}"[:500]})
        return 0
    mounts: list[tuple[str, str]] = []
    problem = _stage_in(spec, run_dir / "work", mounts)
    if problem is not None:
        result.write({"state": "failed", "exit_code": None, "started_at": None,
                      "ended_at": _now(), "reason": f"staging failed: {problem}"[:500]})
        return 0
    if _cancel_signalled or (run_dir / "cancel").exists():  # cancelled while it was staged
        result.write({"state": "cancelled", "exit_code": None, "started_at": None,
                      "ended_at": _now(), "reason": "cancelled before start"})
        return 0
    logs = Logs(run_dir, int(sandbox["log_limit_bytes"]), int(sandbox["disk_reserve_bytes"]))
    try:
        box = _start(run_dir, spec, run_dir / "work", logs, mounts)
    except OSError as exc:
        result.write({"state": "failed", "exit_code": None, "started_at": None,
                      "ended_at": _now(),
                      "reason": f"cannot start the sandbox: {exc.strerror or exc}"})
        return 0
    try:
        return _supervise(run_dir, spec, box, logs, result, started)
    finally:
        box.kill()  # on any error too: no job runs unsupervised
        box.close()


def _supervise(run_dir: Path, spec: dict[str, Any], box: Sandbox, logs: Logs,
               result: ReservedResult, started: str) -> int:
    write_json_atomic(
        run_dir / "started.json",
        {"pid": box.child.pid, "pgid": box.child.pid, "init_pid": box.init_pid,
         "pid_namespace": box.namespace, "uid": int(spec["sandbox"]["uid"]),
         "started_at": started},
    )
    heartbeat = run_dir / "started.json"
    deadline = time.monotonic() + float(spec["walltime_s"])
    grace = float(spec.get("term_grace_s", 10))
    beat = time.monotonic()
    how = ""
    while not box.poll():
        if _cancel_signalled or (run_dir / "cancel").exists():
            how = "cancelled"
        elif time.monotonic() >= deadline:
            how = "timeout"
        if how:
            box.terminate(grace, logs)
            break
        box.idle(0.1, logs)
        if time.monotonic() - beat >= HEARTBEAT_S:
            beat = time.monotonic()
            os.utime(heartbeat)  # needs no new disk space: works on a full disk
    box.kill()  # whatever the job left behind dies with its namespace
    box.wait_empty()
    logs.drain()
    rc = box.rc if box.rc is not None else -signal.SIGKILL
    state, code, reason = _outcome(rc, how, spec["walltime_s"], box.init_pid is not None)
    ended = _now()  # the job's end: packing its outputs is not its time
    note = _pack_outputs(spec, run_dir)
    if note:
        reason = f"{reason}; {note}"
    result.write({"state": state, "exit_code": code, "started_at": started, "ended_at": ended,
                  "reason": reason, "cpu_s": round(box.cpu_s, 3), "max_rss_kb": box.max_rss_kb})
    return 0


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
