"""What the local executor needs to sandbox a job: the host's means, and the tenant's Unix user.

A job never runs as root or as the server's user: each tenant has its own unprivileged user,
created here the first time one of its jobs runs (`suanli-t<tenant id>`, in a uid range of its
own), or named by the center's configuration (`users: {"<tenant id>": "<username>"}`). The host
must let the supervisor build the sandbox: root (to switch users and mount the work folder),
bubblewrap, setpriv and unshare. Where it cannot, no job starts: the connector reports itself
unhealthy and refuses submissions with the reason — never a fallback to running jobs unsandboxed.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..domain.errors import ConnectorError
from .base import positive_int

UID_RANGE = (200_000, 299_999)  # tenant users: away from people's and system accounts
_USERNAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_create_lock = threading.Lock()


@dataclass(frozen=True)
class SandboxConfig:
    bwrap: str = "bwrap"
    user_prefix: str = "suanli-t"
    users: Mapping[str, str] = field(default_factory=dict)  # tenant id → an existing user
    work_limit_mb: int = 1024  # a run's scratch: its work folder, /tmp and /dev/shm together
    log_limit_mb: int = 100  # what is kept of each of a run's stdout and stderr
    disk_reserve_mb: int = 512  # logs stop growing when the disk holding them has less free
    nproc_limit: int = 4096  # processes of one tenant's user at once
    network: bool = False
    ro_paths: tuple[str, ...] = ()

    @staticmethod
    def from_config(config: Mapping[str, Any]) -> SandboxConfig:
        users = config.get("users") or {}
        if not isinstance(users, Mapping) or not all(
                isinstance(v, str) and _USERNAME.match(v) for v in users.values()):
            raise ConnectorError("connector setting 'users' maps tenant ids to user names")
        prefix = str(config.get("user_prefix", "suanli-t"))
        if not _USERNAME.match(prefix + "0") or len(prefix) > 20:
            raise ConnectorError(f"connector setting 'user_prefix' is not a user name: {prefix!r}")
        ro_paths = config.get("ro_paths") or []
        if not isinstance(ro_paths, list) or not all(
                isinstance(p, str) and p.startswith("/") for p in ro_paths):
            raise ConnectorError("connector setting 'ro_paths' is a list of absolute paths")
        network = config.get("network", False)
        if not isinstance(network, bool):
            raise ConnectorError("connector setting 'network' is true or false")
        return SandboxConfig(
            bwrap=str(config.get("bwrap", "bwrap")), user_prefix=prefix,
            users={str(k): v for k, v in users.items()},
            work_limit_mb=positive_int(config, "work_limit_mb", 1024),
            log_limit_mb=positive_int(config, "log_limit_mb", 100),
            disk_reserve_mb=positive_int(config, "disk_reserve_mb", 512),
            nproc_limit=positive_int(config, "nproc_limit", 4096),
            network=network, ro_paths=tuple(ro_paths),
        )

    def host_problem(self) -> str | None:
        """Why jobs cannot be sandboxed on this machine, or None."""
        if os.geteuid() != 0:
            return ("the local executor runs jobs as per-tenant users in a bubblewrap sandbox and "
                    "needs root for that; start suanli as root (jobs never run as root)")
        missing = [tool for tool in (self.bwrap, "setpriv", "unshare", "mount", "useradd")
                   if shutil.which(tool) is None]
        if missing:
            return (f"cannot sandbox jobs: {', '.join(missing)} not found "
                    "(apt-get install bubblewrap util-linux mount passwd)")
        if os.uname().machine not in SYSCALLS:
            return (f"cannot sandbox jobs on {os.uname().machine}: suanli's seccomp filter knows "
                    f"{', '.join(sorted(SYSCALLS))}")
        return None

    def spec(self, user: str, uid: int, gid: int) -> dict[str, Any]:
        """The sandbox part of a run's spec (read by the supervisor)."""
        return {
            "bwrap": shutil.which(self.bwrap) or self.bwrap, "user": user, "uid": uid, "gid": gid,
            "work_limit_bytes": self.work_limit_mb << 20,
            "file_limit_bytes": self.work_limit_mb << 20,
            "log_limit_bytes": self.log_limit_mb << 20,
            "disk_reserve_bytes": self.disk_reserve_mb << 20,
            "nproc_limit": self.nproc_limit, "network": self.network,
            "ro_paths": list(self.ro_paths),
        }

    def username(self, tenant_id: int | None) -> str:
        key = str(tenant_id if tenant_id is not None else 0)
        return self.users.get(key) or f"{self.user_prefix}{key}"

    def tenant_user(self, tenant_id: int | None) -> tuple[int, int]:
        """The uid and gid the tenant's jobs run as; its user is created when missing."""
        name = self.username(tenant_id)
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            if str(tenant_id if tenant_id is not None else 0) in self.users:
                raise ConnectorError(f"user {name!r} (configured for tenant {tenant_id}) does "
                                     "not exist") from None
            entry = _create_user(name)
        if entry.pw_uid == 0 or entry.pw_uid == os.getuid() or entry.pw_gid == 0:
            raise ConnectorError(f"user {name!r} is privileged (uid {entry.pw_uid}); a job "
                                 "never runs as root or as suanli's own user")
        return entry.pw_uid, entry.pw_gid


# The seccomp filter every job runs under (classic BPF, as bubblewrap's --seccomp takes it):
# no new user namespaces (inside one a job holds every capability: mounts of any size, netfilter,
# the kernel surface local exploits use), and no kernel keyrings (a key outlives the job).
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
SYSCALLS = {
    "x86_64": {"clone": 56, "unshare": 272, "clone3": 435, "add_key": 248, "request_key": 249,
               "keyctl": 250},
    "aarch64": {"clone": 220, "unshare": 97, "clone3": 435, "add_key": 217, "request_key": 218,
                "keyctl": 219},
}
CLONE_NEWUSER = 0x10000000
X32_SYSCALL_BIT = 0x40000000
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _ERRNO = 0x7FFF0000, 0x00050000
_EPERM, _ENOSYS = 1, 38


def seccomp_filter(machine: str | None = None) -> bytes:
    """The filter for this machine's architecture. clone3 answers ENOSYS (its flags sit in memory
    a filter cannot read; C libraries then fall back to clone, whose flags it checks); another
    architecture's calls (i386, x32) are refused outright, so none slips past by number."""
    arch = machine or os.uname().machine
    nr = SYSCALLS[arch]

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("=HBBI", code, jt, jf, k)

    deny = _ERRNO | _EPERM
    prog = [op(_LD_W_ABS, 4), op(_JEQ_K, AUDIT_ARCH[arch], jt=1), op(_RET_K, deny),
            op(_LD_W_ABS, 0), op(_JGE_K, X32_SYSCALL_BIT, jf=1), op(_RET_K, deny)]
    for name, errno in (("clone3", _ENOSYS), ("add_key", _EPERM), ("request_key", _EPERM),
                        ("keyctl", _EPERM)):
        prog += [op(_JEQ_K, nr[name], jf=1), op(_RET_K, _ERRNO | errno)]
    for name in ("unshare", "clone"):  # flags in the first argument's low 32 bits
        prog += [op(_JEQ_K, nr[name], jf=4), op(_LD_W_ABS, 16), op(_JSET_K, CLONE_NEWUSER, jf=1),
                 op(_RET_K, deny), op(_RET_K, _ALLOW)]
    prog.append(op(_RET_K, _ALLOW))
    return b"".join(prog)


def _create_user(name: str) -> pwd.struct_passwd:
    lo, hi = UID_RANGE
    cmd = ["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
           "/usr/sbin/nologin", "--user-group", "-K", f"UID_MIN={lo}", "-K", f"UID_MAX={hi}",
           "-K", f"GID_MIN={lo}", "-K", f"GID_MAX={hi}", name]
    with _create_lock:
        for attempt in range(20):  # another process may hold the passwd lock for a moment
            try:
                return pwd.getpwnam(name)
            except KeyError:
                pass
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode == 0:
                break
            if done.returncode != 10 and done.returncode != 9:  # 10: cannot lock; 9: exists
                raise ConnectorError(f"cannot create the job user {name!r}: "
                                     f"{done.stderr.strip() or done.returncode}")
            time.sleep(0.05 * (attempt + 1))
    try:
        entry = pwd.getpwnam(name)
        grp.getgrgid(entry.pw_gid)
        return entry
    except KeyError as exc:
        raise ConnectorError(f"cannot create the job user {name!r}") from exc
