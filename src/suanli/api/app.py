"""The FastAPI application: wires the platform, the engine, routes, errors and metrics."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import __version__, web
from ..services.context import Platform
from ..services.control import EngineControl, NoEngine, wakes_everywhere
from ..services.replicas import Heartbeat
from . import (
    errors,
    routes_artifacts,
    routes_jobs,
    routes_money,
    routes_peers,
    routes_platform,
    routes_staging,
)
from .metrics import Metrics
from .middleware import RequestGuard
from .proxy import TrustedProxies

log = logging.getLogger("suanli.api")

DESCRIPTION = """The compute scheduling service platform of a city compute network (算力一张网).

Authenticate with `Authorization: Bearer sl_...`. Money is integer fen (分); times are UTC."""


def create_app(platform: Platform, engine: EngineControl | None = None, *,
               run_engine: bool | None = None) -> FastAPI:
    """The application around `engine` (started and stopped with it, unless `run_engine` is
    False). Without an engine (tests of the API and the portal) it runs none: the engine is wired
    in by the server (`suanli.server`), since the API never imports it."""
    if run_engine is None:
        run_engine = engine is not None
    engine = engine if engine is not None else NoEngine()

    # This process in the control plane's list (`suanli status`): "serve" runs an engine too.
    heartbeat = Heartbeat(platform, "serve" if run_engine else "api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if run_engine:
            engine.start()
        heartbeat.start()
        try:
            yield
        finally:
            heartbeat.stop()
            engine.stop()

    # /docs is the portal's (web/docs.py: Swagger UI from suanli's own files, no CDN); no ReDoc
    # Operation ids are the routes' own names (`list_jobs`, `submit_job`): what a generated
    # client calls its functions (FastAPI's default glues on the path and the method)
    app = FastAPI(title="suanli 算力", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, docs_url=None, redoc_url=None,
                  generate_unique_id_function=lambda route: route.name)
    app.state.platform = platform
    # The routes' wake-ups (a submission, a cancel) also reach an engine on another machine.
    app.state.engine = wakes_everywhere(platform, engine)
    app.state.replica = heartbeat
    app.state.run_engine = run_engine  # health is degraded while an engine meant to run does not
    metrics = Metrics(platform, engine)
    app.state.metrics = metrics
    errors.install(app)
    app.add_middleware(RequestGuard, metrics=metrics,
                       max_body=platform.settings.max_body_bytes)
    if platform.settings.trusted_proxies:
        app.add_middleware(TrustedProxies, proxies=platform.settings.trusted_proxies)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(errors.body(errors.INTERNAL), status_code=500)

    app.include_router(routes_platform.router)
    app.include_router(routes_jobs.router)
    app.include_router(routes_money.router)
    app.include_router(routes_staging.router)
    app.include_router(routes_artifacts.router)
    app.include_router(routes_peers.router)

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry),
                                 media_type=CONTENT_TYPE_LATEST)

    web.install(app, platform)  # the portal: /login, /jobs, ... (its own "/")
    return app
