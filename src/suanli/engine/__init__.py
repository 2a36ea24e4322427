"""The control loop: reconcile runs with their centers, meter what ended, fail over from centers
that went away, place what waits. It runs in the server's process (`Engine`) or its own
(`suanli.engine.process`); the API and the portal reach it only through
`suanli.services.control`."""

from .loop import Engine

__all__ = ["Engine"]
