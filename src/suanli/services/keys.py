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


MIN_KEY = 32


def _from_env(env: str) -> bytes | None:
    value = os.environ.get(env)
    if not value:
        return None
    if len(value) < MIN_KEY:
        raise ValueError(f"{env} must be at least {MIN_KEY} characters (e.g. the output of "
                         "`python3 -c 'import secrets; print(secrets.token_hex(32))'`)")
    return value.encode()


def existing_key(home: Path, env: str, filename: str) -> bytes | None:
    """The key as `secret_key` finds it, or None where there is none (nothing is made): for a
    command that proves it runs where the key is (`suanli audit seal`)."""
    from_env = _from_env(env)
    if from_env is not None:
        return from_env
    try:
        key = (home / filename).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return key.encode() if len(key) >= MIN_KEY else None


def secret_key(home: Path, env: str, filename: str) -> bytes:
    """`$env` when set (at least 32 characters), else `home/filename` (made once, 0600, written
    whole before it appears; cached per process)."""
    from_env = _from_env(env)
    if from_env is not None:
        return from_env
    path = home / filename
    with _lock:
        cached = _keys.get(str(path))
        if cached is not None:
            return cached
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written to a private temporary name, then linked into place: another process never
            # reads a half-written (empty) key, and of two that race, one key wins for both.
            tmp = path.with_name(f".{filename}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(secrets.token_hex(32))
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process made it meanwhile: theirs is the key
            finally:
                tmp.unlink()
        key = path.read_text(encoding="utf-8").strip()
        if len(key) < MIN_KEY:  # an empty file (a crash while it was written): make a new one
            key = secrets.token_hex(32)
            write_private(path, key)
        _keys[str(path)] = key.encode()
        return _keys[str(path)]
