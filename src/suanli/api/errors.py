"""Domain errors as HTTP answers (each error class names its status). Every error body is
{error, field, detail}.

The database unreachable (stopped, restarting, the network to it down) is a 503 with
`Retry-After`, on every route, never a 500: `{"error": DATABASE_DOWN, "field": null, "detail":
{"reason": "database_unavailable", "retry_after_s": 5}}` (the portal shows a page saying so).
The body names no host, user, SQL or driver message: those go to the server's log."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..domain import errors as e
from ..store.db import cause, unavailable
from ..web import unavailable_page

log = logging.getLogger("suanli.api")

RETRY_AFTER_S = 5  # what a 503 for the database asks clients to wait before they retry
DATABASE_DOWN = "the database is unavailable just now; retry in a few seconds"
INTERNAL = "internal error; see the server log"


def body(error: str, field: str | None = None, detail: Any = None) -> dict[str, Any]:
    return {"error": error, "field": field, "detail": detail}


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def database_down() -> JSONResponse:
    """The API's answer while the database cannot be reached."""
    return JSONResponse(body(DATABASE_DOWN, None, {"reason": "database_unavailable",
                                                   "retry_after_s": RETRY_AFTER_S}),
                        status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


class _Throttle:
    """At most one log line per `every_s` seconds (an outage under load fails every request)."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._last = -1e9
        self._quiet = 0
        self._lock = threading.Lock()

    def due(self) -> int | None:
        """None to stay quiet; else how many were left unsaid since the last line."""
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.every_s:
                self._quiet += 1
                return None
            self._last, quiet, self._quiet = now, self._quiet, 0
            return quiet


_down_log = _Throttle(10.0)


def _api_path(path: str) -> bool:
    """Whether a request is the API's (a JSON answer), not the portal's (a page)."""
    return path.startswith("/api/") or path in ("/api", "/metrics", "/openapi.json")


def install(app: FastAPI) -> None:
    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> Response:
        if not unavailable(exc):
            raise exc  # a statement that failed: a bug as any other (the app's 500 handler)
        quiet = _down_log.due()
        if quiet is not None:
            log.warning("the database is unavailable (%s); answering 503%s", cause(exc),
                        f" ({quiet} more since the last line)" if quiet else "")
        if _api_path(request.url.path):
            return database_down()
        return unavailable_page(request, RETRY_AFTER_S)

    @app.exception_handler(e.SuanliError)
    async def _domain(request: Request, exc: e.SuanliError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, e.Unauthenticated) else None
        if isinstance(exc, e.TooManyAttempts):
            headers = {"Retry-After": str(exc.retry_after_s)}
        return JSONResponse(body(exc.message, exc.field, exc.detail), status_code=exc.status,
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": _field_of(tuple(err.get("loc", ()))), "message": err.get("msg", "")}
            for err in exc.errors()
        ]
        first = problems[0] if problems else {"field": "body", "message": "invalid request"}
        msg = f"{first['field']}: {first['message']}"
        if len(problems) > 1:
            msg += f" (and {len(problems) - 1} more)"
        return JSONResponse(body(msg, first["field"], problems), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, RecursionError):
            # FastAPI's "error parsing the body": JSON nested too deeply for the parser.
            return JSONResponse(body("body: JSON nested too deeply", "body"), status_code=422)
        return JSONResponse(body(str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))
