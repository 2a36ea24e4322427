"""What every service needs: the database, the settings, the clock and the connectors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ..artifacts import BlobStore
from ..config import Settings
from ..connectors import Connector, create
from ..domain.clock import Clock, SystemClock
from ..store import models as m
from ..store.db import Database
from .keys import secret_key

T = TypeVar("T")
CACHE_TTL_S = 5.0
AUDIT_KEY_ENV = "SUANLI_AUDIT_KEY"


@dataclass
class Platform:
    db: Database
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    _connectors: dict[tuple[int, str], Connector] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # In-process caches. `topology_version` grows whenever centers or pools change; caches
    # keyed on it are rebuilt then (and after CACHE_TTL_S, for changes made by another process).
    topology_version: int = 0
    _cache: dict[str, tuple[float, object]] = field(default_factory=dict)
    _blobs: BlobStore | None = None

    def __post_init__(self) -> None:
        if self.db.audit_key is None:  # the audit log's seal: a key the database does not hold
            self.db.set_audit_key(secret_key(self.settings.home, AUDIT_KEY_ENV, "audit.key"))

    def topology_changed(self) -> None:
        with self._lock:
            self.topology_version += 1
            self._cache.pop("pool_facts", None)
            self._cache.pop("center_connectors", None)

    def cached(self, key: str, build: Callable[[], T], ttl: float = CACHE_TTL_S) -> T:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]  # type: ignore[return-value]
        value = build()
        self._cache[key] = (now, value)
        return value

    def forget(self, key: str) -> None:
        self._cache.pop(key, None)

    def forget_where(self, prefix: str, stale: Callable[[object], bool]) -> None:
        """Drop the cached entries under `prefix` whose value is `stale`."""
        for key, (_at, value) in list(self._cache.items()):
            if key.startswith(prefix) and stale(value):
                self._cache.pop(key, None)

    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def blobs(self) -> BlobStore:
        """The artifact store (settings.artifacts_location), opened once."""
        with self._lock:
            if self._blobs is None:
                self._blobs = BlobStore(self.settings.artifacts_location)
            return self._blobs

    def connector_for(self, center: m.Center) -> Connector:
        """The connector of a center, built once per center and configuration."""
        cfg = dict(center.connector_config or {})
        cfg.setdefault("center", center.slug)
        key = (center.id, repr(sorted(cfg.items())) + center.connector)
        with self._lock:
            conn = self._connectors.get(key)
            if conn is None:
                conn = create(center.connector, cfg, self.home)
                self._connectors[key] = conn
            return conn
