"""Every route of the real app, for tests that must not miss a new one (what takes a tenant id,
what takes money, what runs on the event loop)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel


def api_routes(app: FastAPI) -> list[APIRoute]:
    """The app's FastAPI routes, those of included routers too (FastAPI >= 0.16x keeps an included
    router as one entry, `original_router`, instead of copying its routes into the app)."""

    def walk(routes: Iterable[Any]) -> Iterator[APIRoute]:
        for r in routes:
            if isinstance(r, APIRoute):
                yield r
            inner = getattr(getattr(r, "original_router", None), "routes", None)
            if inner is not None:
                yield from walk(inner)

    found = list(walk(app.routes))
    assert len(found) > 50, f"only {len(found)} routes found: has FastAPI changed how it keeps them?"
    return found


def body_model(route: APIRoute) -> type[BaseModel] | None:
    """The pydantic model of a route's JSON body, if it takes one."""
    for param in route.dependant.body_params:
        model = param.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model
    return None
