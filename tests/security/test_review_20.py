"""An outside reviewer's attacks on issue 20's pieces, each held now (it failed before the fix):
a value handed to the Python client can no longer change the endpoint it calls (URL
normalisation drops a `..` segment with the one before it), and a key given in the environment
must be as long as a made one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from suanli.client import ApiError, Client
from suanli.services.keys import existing_key, secret_key


@pytest.mark.parametrize(("call", "forbidden"), [
    (lambda c: c.delete_artifact("../tokens/7"), "/api/v1/tokens/7"),
    (lambda c: c.get_invoice("..", 5), "/api/v1/5"),
    (lambda c: c.get_tenant("1/../../users"), "/api/v1/users"),
    (lambda c: c.list_related_parties("3/../../4"), "/api/v1/4/related-parties"),
    (lambda c: c.delete_dataset(".."), "/api/v1"),
    (lambda c: c.get_peer("."), "/api/v1/peers"),
    (lambda c: c.get_job(True), "/api/v1/jobs/True"),
])
def test_a_value_never_changes_the_endpoint(call: Callable[[Client], Any], forbidden: str) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode().split("?")[0])  # as sent, %2F kept
        return httpx.Response(404, json={"error": "no"})

    with Client("http://suanli.test", "sl_t", transport=httpx.MockTransport(answer)) as c:
        try:
            call(c)
        except ApiError:
            pass
    # nothing sent, or one path whose every segment is the caller's value whole (a "/" in it
    # quoted): never another endpoint
    assert forbidden not in seen and all("/../" not in p and not p.endswith(("/..", "/."))
                                         for p in seen), seen


def test_a_short_key_in_the_environment_is_refused(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUANLI_TEST_KEY", "x")
    with pytest.raises(ValueError, match="at least 32 characters"):
        secret_key(tmp_path, "SUANLI_TEST_KEY", "test.key")
    monkeypatch.setenv("SUANLI_TEST_KEY", "k" * 32)
    assert secret_key(tmp_path, "SUANLI_TEST_KEY", "test.key") == b"k" * 32
    assert not (tmp_path / "test.key").exists()


def test_looking_for_a_key_makes_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`suanli audit seal` on a machine without the key says so instead of making a new one."""
    monkeypatch.delenv("SUANLI_TEST_KEY", raising=False)
    assert existing_key(tmp_path, "SUANLI_TEST_KEY", "test.key") is None
    assert not (tmp_path / "test.key").exists()
    made = secret_key(tmp_path, "SUANLI_TEST_KEY", "test.key")
    assert existing_key(tmp_path, "SUANLI_TEST_KEY", "test.key") == made
    assert (tmp_path / "test.key").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["test.key"]  # no temporary file left
