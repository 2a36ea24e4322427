"""The platform's secret keys: each from its environment variable when set (replicas on one
PostgreSQL must share them), else from a file in the owner-only data directory, made once (0600).

Kept out of the database on purpose: a key the database does not hold is what lets suanli tell
its own signatures (run tokens, the audit log's seals) from rows written behind its back."""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

from ..config import write_private

_keys: dict[str, bytes] = {}
_lock = threading.Lock()


def secret_key(home: Path, env: str, filename: str) -> bytes:
    """`$env` when set, else `home/filename` (made once, 0600; cached per process)."""
    value = os.environ.get(env)
    if value:
        return value.encode()
    path = home / filename
    with _lock:
        cached = _keys.get(str(path))
        if cached is not None:
            return cached
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process made it meanwhile
            else:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(secrets.token_hex(32))
        key = path.read_text(encoding="utf-8").strip()
        if len(key) < 32:  # an empty file (a crash while it was written): make a new one
            key = secrets.token_hex(32)
            write_private(path, key)
        _keys[str(path)] = key.encode()
        return _keys[str(path)]
