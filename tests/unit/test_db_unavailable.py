"""The database out of reach: every API route answers 503 with `Retry-After` and the API's error
body, the portal a page saying so, health `database: down`; none of them a 500, none naming the
database's address, user, password or SQL. Here the database is a PostgreSQL URL on a port where
nothing listens: the real driver, really refused (tests/ha/test_db_restart.py stops and starts a
real server under load)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from suanli.api.app import create_app
from suanli.client import ApiError
from suanli.config import Settings
from suanli.services.context import Platform
from suanli.store.db import Database, log_failure, unavailable

from ..integration.conftest import free_port

PASSWORD = "Hunter2-s3cr3t"
USER = "suanli_owner"


@pytest.fixture
def down(home: Path) -> Iterator[tuple[TestClient, int]]:
    port = free_port()  # nothing listens there: every connection is refused
    url = f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{port}/citydb"
    db = Database(url)
    platform = Platform(db=db, settings=Settings(home=home, database_url=url))
    with TestClient(create_app(platform, run_engine=False), raise_server_exceptions=False) as c:
        yield c, port
    db.dispose()


def leaks(text_: str, port: int) -> list[str]:
    """What of the database's address, credentials, driver or SQL a body shows."""
    words = [PASSWORD, USER, "citydb", str(port), "127.0.0.1", "psycopg", "sqlalchemy",
             "SELECT", "Traceback", "connection refused", "postgresql"]
    return [w for w in words if w.lower() in text_.lower()]


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v1/jobs"), ("POST", "/api/v1/jobs"), ("GET", "/api/v1/centers"),
    ("GET", "/api/v1/users/me"), ("POST", "/api/v1/jobs/1/cancel"), ("GET", "/api/v1/capacity"),
])
def test_every_api_route_answers_503_with_a_clear_body_and_no_internals(
        down: tuple[TestClient, int], method: str, path: str) -> None:
    client, port = down
    job = {"name": "x", "command": ["true"], "walltime_s": 60,
           "resources": {"device": "cpu", "units": 1}}
    r = client.request(method, path, headers={"Authorization": "Bearer sl_" + "a" * 40},
                       json=job if method == "POST" else None)
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "5"
    body = r.json()
    assert set(body) == {"error", "field", "detail"}
    assert "database is unavailable" in body["error"] and "retry" in body["error"]
    assert body["detail"] == {"reason": "database_unavailable", "retry_after_s": 5}
    assert not leaks(r.text, port), leaks(r.text, port)


def test_health_says_the_database_is_down(down: tuple[TestClient, int]) -> None:
    client, port = down
    r = client.get("/api/v1/health")
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    body = r.json()
    assert body["status"] == "unavailable" and body["database"] == "down"
    assert body["leader"] is None
    assert not leaks(r.text, port)


def test_metrics_still_answer_and_say_the_database_is_down(down: tuple[TestClient, int]) -> None:
    client, port = down
    r = client.get("/metrics")
    assert r.status_code == 200
    assert "suanli_database_up 0.0" in r.text
    assert "suanli_engine_running 0.0" in r.text
    assert not [w for w in leaks(r.text, port) if w != "postgresql"]


def test_the_portal_shows_a_page_not_a_traceback(down: tuple[TestClient, int]) -> None:
    client, port = down
    for lang, words in (("en", "database cannot be reached"), ("zh", "数据库暂时无法访问")):
        client.cookies.set("lang", lang)
        client.cookies.set("suanli_session", "sl_" + "b" * 40)  # a session: the pages look it up
        r = client.get("/jobs", follow_redirects=False)
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["retry-after"] == "5"
        assert words in r.text
        assert "Content-Security-Policy" in r.headers
        assert not leaks(r.text, port), leaks(r.text, port)


def test_what_counts_as_unavailable(home: Path) -> None:
    refused = Database(f"postgresql+psycopg://u:p@127.0.0.1:{free_port()}/d")
    with pytest.raises(DBAPIError) as caught, refused.engine.connect():
        pass
    assert unavailable(caught.value)
    refused.dispose()
    # A statement that fails is a bug or a conflict, not an outage: it stays what it was.
    db = Database(f"sqlite:///{home / 'x.db'}")
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(IntegrityError) as dup, db.engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    assert not unavailable(dup.value)
    assert not unavailable(sqlite3.OperationalError("database is locked"))
    assert not unavailable(ValueError("no"))
    db.dispose()


def test_an_outage_is_one_line_in_the_log_and_a_bug_its_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    """The engine's side tasks (submits, outputs, dataset copies, quotes, peers) log what failed:
    while the database restarts, one warning line each (a traceback for every run a restart
    touches buried the real ones: tests/ha/test_db_restart.py found it); anything else with its
    traceback."""
    log = logging.getLogger("suanli.test")
    refused = Database(f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:{free_port()}/d")
    try:
        with refused.engine.connect():
            pass
    except DBAPIError:
        log_failure(log, "run %s: collecting its outputs failed", 7)
    finally:
        refused.dispose()
    try:
        raise ValueError("a bug")
    except ValueError:
        log_failure(log, "run %s: collecting its outputs failed", 8)
    outage, bug = caplog.records
    assert outage.levelno == logging.WARNING and outage.exc_info is None
    assert outage.getMessage().startswith("run 7: collecting its outputs failed (the database "
                                          "is unavailable: OperationalError")
    assert PASSWORD not in outage.getMessage()
    assert bug.levelno == logging.ERROR and bug.exc_info is not None
    assert bug.getMessage() == "run 8: collecting its outputs failed"


def test_the_client_reads_a_503_and_its_retry_after() -> None:
    from suanli.client.client import _raise_for

    ours = httpx.Response(503, headers={"Retry-After": "5"},
                          json={"error": "the database is unavailable just now; retry in a few "
                                         "seconds", "field": None,
                                "detail": {"reason": "database_unavailable", "retry_after_s": 5}})
    with pytest.raises(ApiError) as caught:
        _raise_for(ours)
    assert caught.value.unavailable and caught.value.retry_after_s == 5
    assert str(caught.value) == ("the database is unavailable just now; retry in a few seconds "
                                 "(HTTP 503)")
    # A proxy's page in front of a server that is gone: its status, not its markup.
    proxy = httpx.Response(503, headers={"Content-Type": "text/html", "Retry-After": "soon"},
                           text="<html><body><h1>503 Service Temporarily Unavailable</h1>"
                                "<hr>nginx</body></html>")
    with pytest.raises(ApiError) as caught:
        _raise_for(proxy)
    assert caught.value.unavailable and caught.value.retry_after_s is None
    assert "<" not in str(caught.value) and "Service Unavailable" in str(caught.value)
