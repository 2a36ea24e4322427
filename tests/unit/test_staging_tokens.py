"""Run tokens: one run, unexpired, signed with the platform's key; the key file made once."""

from __future__ import annotations

import os
import stat
from datetime import timedelta

import pytest

from suanli.domain.errors import Unauthenticated
from suanli.services import staging
from suanli.services.context import Platform


def test_a_token_names_one_run_and_expires(platform: Platform) -> None:
    token = staging.run_token(platform, "job1-run1", 60)
    staging.verify_run_token(platform, "job1-run1", token)
    with pytest.raises(Unauthenticated, match="invalid"):
        staging.verify_run_token(platform, "job1-run2", token)
    expiry = int(token.split("_")[1])
    assert expiry - platform.clock.now().timestamp() == pytest.approx(60 + staging.TOKEN_GRACE_S,
                                                                      abs=2)
    sig = token.rsplit("_", 1)[1]
    with pytest.raises(Unauthenticated):  # a later expiry is not the signed one
        staging.verify_run_token(platform, "job1-run1", f"slr_{expiry + 1}_{sig}")
    for bad in ("", "sl_abc", "slr_x_y", token.upper()):
        with pytest.raises(Unauthenticated):
            staging.verify_run_token(platform, "job1-run1", bad)


def test_an_expired_token_is_refused(platform: Platform) -> None:
    past = int((platform.clock.now() - timedelta(seconds=1)).timestamp())
    key = staging.staging_key(platform.home)
    token = f"slr_{past}_{staging._sign(key, 'job1-run1', past)}"
    with pytest.raises(Unauthenticated, match="expired"):
        staging.verify_run_token(platform, "job1-run1", token)


def test_the_key_is_made_once_owner_only_and_the_environment_overrides_it(
        platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    first = staging.staging_key(platform.home)
    path = platform.home / "staging.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(first) == 64
    assert staging.staging_key(platform.home) == first
    token = staging.run_token(platform, "job1-run1", 60)
    monkeypatch.setenv(staging.KEY_ENV, "shared-by-every-replica-" + "x" * 20)
    assert staging.staging_key(platform.home) != first
    with pytest.raises(Unauthenticated):  # signed with the other key
        staging.verify_run_token(platform, "job1-run1", token)
