"""Sign-in and tokens on a real PostgreSQL (production's database): the migration, the token
chain's recursive queries, and parallel guesses held to the limit."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from suanli.config import Settings
from suanli.services.context import Platform
from suanli.store.db import Database

from ..conftest import fresh_postgres_url
from ..unit.auth_town import (
    PASSWORD,
    Town,
    bearer,
    build_town,
    parallel_guesses,
    portal_sign_in,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_town(postgres: dict[str, str]) -> Iterator[Town]:
    home = Path(tempfile.mkdtemp(prefix="suanli-auth-pg."))
    url = fresh_postgres_url(postgres, "auth")
    db = Database(url)
    db.upgrade()
    yield build_town(Platform(db=db, settings=Settings(home=home, database_url=url)))
    db.dispose()
    shutil.rmtree(home, ignore_errors=True)


def test_tokens_and_the_throttle_on_postgresql(pg_town: Town) -> None:
    town = pg_town
    with town.client() as c:
        child = c.post("/api/v1/tokens", json={"expires_in_s": 600},
                       headers=bearer(town.tokens["carol"])).json()
        grandchild = c.post("/api/v1/tokens", json={}, headers=bearer(child["token"])).json()
        assert grandchild["expires_at"] == child["expires_at"]
        assert c.get("/api/v1/users/me", headers=bearer(grandchild["token"])).status_code == 200
        assert c.delete(f"/api/v1/tokens/{child['id']}",
                        headers=bearer(town.tokens["carol"])).status_code == 200
        r = c.get("/api/v1/users/me", headers=bearer(grandchild["token"]))
        assert r.status_code == 401 and "revoked" in r.json()["error"]
        for _ in range(5):
            assert portal_sign_in(c, username="carol", password="guess-123").status_code == 401
        assert portal_sign_in(c, username="carol", password=PASSWORD).status_code == 429

    outcomes = parallel_guesses(town.p, "dave", 10, "203.0.113.9")
    assert len(outcomes) == 10 and outcomes.count("checked") <= 5
