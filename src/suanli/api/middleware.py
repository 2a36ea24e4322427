"""One pure-ASGI middleware for every request: body size limit and latency metrics.

(Starlette's BaseHTTPMiddleware costs several times a request's own work on small endpoints.)
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import Metrics

BODY_METHODS = {"POST", "PUT", "PATCH"}
# Routes that stream their body to disk and bound it themselves (a run's packed outputs).
STREAMED = re.compile(r"^/api/v1/runs/[^/]+/outputs$")


async def _json(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error, "field": None, "detail": None}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        declared = None
        for k, v in scope["headers"]:
            if k == b"content-length":
                declared = v
                break
        if scope["method"] == "PUT" and STREAMED.match(scope["path"]):
            pass  # the route bounds what it reads itself
        elif declared is not None:
            if not declared.isdigit():
                await _json(send, 400, "invalid Content-Length")
                return
            if int(declared) > self.max_body:
                await _json(send, 413, f"request body over the limit of {self.max_body} bytes")
                return
        elif scope["method"] in BODY_METHODS:
            # No length declared (chunked): read up to the limit before the app sees anything.
            chunks: list[bytes] = []
            size = 0
            more = True
            while more:
                msg = await receive()
                if msg["type"] != "http.request":
                    break
                chunk = msg.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    await _json(send, 413, f"request body over the limit of {self.max_body} bytes")
                    return
                chunks.append(chunk)
                more = msg.get("more_body", False)
            replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks),
                                      "more_body": False}]

            async def replay_receive() -> Message:
                return replay.pop() if replay else await receive()

            receive = replay_receive

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route: Any = scope.get("route")
            self.metrics.observe(scope["method"], getattr(route, "path", "unmatched"), status,
                                 time.perf_counter() - start)
