"""A request body read in the route's worker thread: routes stay plain `def` (they hash and write
files), and only the reading of each chunk hops to the event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio.from_thread
from fastapi import Request
from starlette.requests import ClientDisconnect

BATCH = 1 << 20  # bytes handed to the route per hop from the event loop to its thread
DRAIN_MAX = 8 << 20  # read (and drop) at most this much of a refused body, so the client sees why


class BodyChunks:
    """The request body as a blocking iterator of ~1 MiB chunks, for the route's worker thread:
    each chunk is read on the event loop as it arrives (never the whole body in memory)."""

    def __init__(self, request: Request) -> None:
        self.stream: AsyncIterator[bytes] = request.stream()
        self.done = False

    async def _next_batch(self) -> bytes:
        parts: list[bytes] = []
        size = 0
        while size < BATCH and not self.done:
            try:
                chunk = await self.stream.__anext__()
            except StopAsyncIteration:
                self.done = True
                break
            if chunk:
                parts.append(chunk)
                size += len(chunk)
        return b"".join(parts)

    def chunks(self) -> Iterator[bytes]:
        while batch := anyio.from_thread.run(self._next_batch):
            yield batch

    def drain(self) -> None:
        """Read what is left of a refused body, up to DRAIN_MAX, so that the client, still
        sending, reads the answer instead of a reset connection."""
        budget = DRAIN_MAX
        try:
            while not self.done and budget > 0:
                budget -= len(anyio.from_thread.run(self._next_batch))
        except ClientDisconnect:
            pass
