"""The real app over the demo city (`seed_demo`) in a fresh data directory, through TestClient."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from suanli.api.app import create_app
from suanli.config import Settings
from suanli.services.context import Platform
from suanli.services.demo import ensure_credentials, seed_demo
from suanli.store.db import Database

from .conftest import kill_runs


@contextmanager
def demo_app(prefix: str = "suanli-demo.") -> Iterator[tuple[TestClient, dict[str, str], Platform]]:
    """(a client of the app, the demo tokens by role, the platform); the engine does not run.
    Removed afterwards, with any job process a test started."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'suanli.db'}")
    db = Database(settings.database_url)
    db.upgrade()
    p = Platform(db=db, settings=settings)
    seed_demo(p)
    creds = ensure_credentials(p, home / "demo-credentials.json")
    try:
        with TestClient(create_app(p, run_engine=False)) as client:
            yield client, creds, p
    finally:
        db.dispose()
        kill_runs(home)
        shutil.rmtree(home, ignore_errors=True)


def signed_in(app: Any, token: str) -> TestClient:
    """A browser-like client of the portal signed in with `token` (its own cookie jar)."""
    c = TestClient(app, follow_redirects=False)
    c.get("/login")
    r = c.post("/login", data={"csrf": c.cookies["suanli_login_csrf"], "token": token,
                               "next": "/"})
    assert r.status_code == 303, r.text
    return c
