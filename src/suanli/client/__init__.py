"""Python client for the suanli REST API (httpx), sync and async."""

from .client import ApiError, AsyncClient, Client

__all__ = ["ApiError", "AsyncClient", "Client"]
