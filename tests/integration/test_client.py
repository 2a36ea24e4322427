"""The Python client, sync and async, against a real server."""

from __future__ import annotations

import asyncio

import pytest

from suanli.client import ApiError, AsyncClient, Client

from ..waiting import eventually
from .conftest import Server

pytestmark = pytest.mark.integration


def test_async_and_sync_clients(server: Server) -> None:
    token = server.creds()["tenant_a"]

    async def go() -> list[int]:
        async with AsyncClient(server.url, token) as c:
            jobs = await asyncio.gather(*(
                c.submit_job({"name": f"a{i}", "command": ["echo", str(i)],
                              "resources": {"device": "cpu"}, "walltime_s": 60})
                for i in range(5)))
            return [j["id"] for j in jobs]

    ids = asyncio.run(go())
    assert len(set(ids)) == 5
    with Client(server.url, token) as c:
        eventually(lambda: {c.get_job(i)["state"] for i in ids} == {"COMPLETED"})
        assert c.job_logs(ids[3])["data"] == "3\n"
        with pytest.raises(ApiError) as exc:
            c.get_job(10**6)
        assert exc.value.status == 404 and "no job" in exc.value.message
    with Client(server.url, "sl_bogus") as c, pytest.raises(ApiError) as exc:
        c.list_jobs()
    assert exc.value.status == 401
    with Client("http://127.0.0.1:1", token) as c, pytest.raises(ApiError) as exc:
        c.health()
    assert exc.value.status == 0 and "cannot reach" in exc.value.message
