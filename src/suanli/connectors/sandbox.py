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
    work_limit_mb: int = 1024  # the work folder (and /tmp) of one run
    log_limit_mb: int = 1024  # the largest file a job may write (its logs included)
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
            log_limit_mb=positive_int(config, "log_limit_mb", 1024),
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
        return None

    def spec(self, uid: int, gid: int) -> dict[str, Any]:
        """The sandbox part of a run's spec (read by the supervisor)."""
        return {
            "bwrap": shutil.which(self.bwrap) or self.bwrap, "uid": uid, "gid": gid,
            "work_limit_bytes": self.work_limit_mb << 20,
            "file_limit_bytes": max(self.work_limit_mb, self.log_limit_mb) << 20,
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
