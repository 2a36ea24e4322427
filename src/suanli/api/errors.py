"""Domain errors as HTTP answers (each error class names its status). Every error body is
{error, field, detail}."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..domain import errors as e


def body(error: str, field: str | None = None, detail: Any = None) -> dict[str, Any]:
    return {"error": error, "field": field, "detail": detail}


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
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
