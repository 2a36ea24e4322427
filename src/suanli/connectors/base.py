"""The Connector interface: submit, status, cancel, logs, capacity, health. Nothing more."""

from __future__ import annotations

import errno
import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..domain.enums import RunState
from ..domain.errors import ConnectorError, InvalidInput
from ..domain.task import ARCHES, check_name


class Capability(StrEnum):
    GANG = "gang"  # several nodes started together
    CANCEL = "cancel"
    LOGS = "logs"
    ACCELERATORS = "accelerators"  # device indices / GRES are honoured
    REATTACH = "reattach"  # runs survive a restart of suanli and are found again
    DISCOVER = "discover"  # can describe its partitions/resources as pools (`discover()`)
    BATCH_STATUS = "batch_status"  # answers for many runs in one call (`statuses(ids)`)
    # jobs run unprivileged in a sandbox of their own: no view of the platform, other jobs or
    # the host's processes; everything a job starts dies with it
    SANDBOX = "sandbox"
    # brings a job's work folder and inputs (`RunRequest.stage`) into its work directory before
    # it starts, and packs its declared `outputs` back when it ends
    STAGING = "staging"


@dataclass(frozen=True, slots=True)
class StageItem:
    """Bytes to put in a run's work folder before it starts: an artifact (a tar archive unpacked
    at `dest`, or one file written to `dest`). A connector takes them from `local_path` when the
    artifact store is a folder it can read, else downloads `url` (suanli's API, authorised by the
    run's own short-lived token, `RunRequest.token`)."""

    sha256: str
    size: int
    dest: str = ""  # relative to the work folder; "" is the folder itself
    unpack: bool = True  # a tar archive to unpack (work folders, datasets), or a single file
    local_path: str | None = None
    url: str = ""
    # An uploaded dataset (a tar unpacked at a `dest` below the work folder): a connector that
    # keeps one copy per center (`holds_dataset`) may unpack it there once and give each run it
    # read-only; the others unpack it into the run's folder like any item.
    cache: bool = False


def stage_dict(item: StageItem) -> dict[str, Any]:
    """A stage item as JSON for the code that fetches it at the center (artifacts/stagekit.py)."""
    return {"sha256": item.sha256, "size": item.size, "dest": item.dest, "unpack": item.unpack,
            "local_path": item.local_path, "url": item.url, "cache": item.cache}


@dataclass(frozen=True, slots=True)
class RunRequest:
    """One attempt of a job on one pool. `run_key` is unique and makes submit idempotent."""

    run_key: str
    job_id: int
    command: list[str]
    units: int
    nodes: int
    walltime_s: int
    devices: tuple[int, ...] = ()
    memory_gb: int | None = None
    pool: str = ""
    device_kind: str = "cpu"
    # True when an earlier submit of this key may have reached the backend (a retry after a
    # crash): the connector must look for it before submitting again.
    resubmit: bool = False
    env: dict[str, str] = field(default_factory=dict)
    tenant_id: int | None = None  # whose job: the local executor runs it as that tenant's user
    # Bring-your-own-work (STAGING): what to stage in, what to keep (globs relative to the work
    # folder), where a remote backend uploads the packed outputs (suanli's API), and the run's
    # own token for those two URLs (scoped to this run, expiring after its walltime).
    stage: tuple[StageItem, ...] = ()
    outputs: tuple[str, ...] = ()
    outputs_url: str = ""
    token: str = ""


@dataclass(frozen=True, slots=True)
class RunStatus:
    state: RunState
    exit_code: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PoolCapacity:
    pool: str
    total_units: int
    free_units: int


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str = ""


@runtime_checkable
class Connector(Protocol):
    """What suanli needs from a center's workload manager."""

    name: str
    capabilities: frozenset[Capability]

    def submit(self, req: RunRequest) -> str:
        """Start (or queue) the run; returns the backend's id. With `req.resubmit`, a key that
        was submitted before returns the same id and starts nothing new."""
        ...

    def status(self, external_id: str) -> RunStatus: ...

    def cancel(self, external_id: str) -> None: ...

    def logs(self, external_id: str, stream: str = "stdout", offset: int = 0) -> bytes: ...

    def capacity(self) -> list[PoolCapacity]: ...

    def health(self) -> Health: ...

    # Optional, by capability: `discover()` (DISCOVER), `statuses(ids)` (BATCH_STATUS),
    # `collect_outputs(external_id) -> Path | None` (STAGING connectors that pack outputs where
    # suanli can read them, like the local executor; the others upload to `outputs_url`); the
    # attribute `submit_concurrency` (default 1): how many submits the engine may have in flight
    # to this connector at once (it must then be safe to call from several threads); and
    # `kill_grace_s(walltime_s)`: how long a run can go on past its walltime before the backend
    # has killed it (default DEFAULT_KILL_GRACE_S; see `overrun_s`). A connector that keeps one
    # copy of an uploaded dataset per center has `holds_dataset(tenant_id, sha256) -> bool`
    # (a copy suanli made is there now: the dataset is then counted present at the center) and
    # `drop_dataset(tenant_id, sha256, shared) -> None` (remove it; `shared`: another tenant
    # still stores those bytes).


DEFAULT_KILL_GRACE_S = 60


def overrun_s(conn: object, walltime_s: int) -> int:
    """The most whole seconds a run of `walltime_s` can go on, and be billed, past its walltime
    on this connector's backend before it is killed (its grace after SIGTERM, a walltime rounded
    up to the backend's unit): what a job's hold covers beyond its walltime. A connector that
    does not say is given DEFAULT_KILL_GRACE_S."""
    grace = getattr(conn, "kill_grace_s", None)
    if grace is None:
        return DEFAULT_KILL_GRACE_S
    return max(0, math.ceil(float(grace(walltime_s))))


def positive_int(config: Mapping[str, Any], key: str, default: int) -> int:
    """A positive whole number from a connector's configuration, or a clear error."""
    value = config.get(key, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or isinstance(value, bool) or (isinstance(value, float) and value != number):
        raise ConnectorError(f"connector setting {key!r} must be a positive whole number, "
                             f"not {value!r}")
    return number


LOG_CHUNK = 1 << 20  # the most bytes one logs() call returns


def read_chunk(path: Path, offset: int) -> bytes:
    """Up to LOG_CHUNK bytes of a log file from `offset`; nothing yet when there is no file."""
    try:  # a job that swaps its log for a link gets nothing: never follow one (root reads it)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return b""
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return b""
        raise
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return b""  # a fifo or a device in its place: nothing
        fh.seek(max(0, offset))
        return fh.read(LOG_CHUNK)


def pool_software(arches: list[str], features: list[set[str]]) -> dict[str, Any]:
    """A discovered pool's `arch` (when all its nodes report the same known one) and `features`
    (those every node has, that can be suanli feature names), from each node's arch and
    features."""
    out: dict[str, Any] = {}
    if len(set(arches)) == 1 and arches[0] in ARCHES:
        out["arch"] = arches[0]
    common = set.intersection(*features) if features else set()
    out["features"] = sorted(f for f in common if _is_feature_name(f))
    return out


def _is_feature_name(text: str) -> bool:
    try:
        check_name(text, field_name="features")
    except InvalidInput:
        return False
    return True
