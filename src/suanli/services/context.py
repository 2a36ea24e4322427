"""What every service needs: the database, the settings, the clock and the connectors."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..connectors import Connector, create
from ..domain.clock import Clock, SystemClock
from ..store import models as m
from ..store.db import Database


@dataclass
class Platform:
    db: Database
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    _connectors: dict[tuple[int, str], Connector] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def home(self) -> Path:
        return self.settings.home

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
