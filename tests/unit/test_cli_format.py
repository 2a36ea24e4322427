"""The CLI's one place for formatting: money, numbers, times, walltimes, and API fields as flags."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from suanli.cli import format as fmt
from suanli.cli.common import cli_message, flag_for
from suanli.client import ApiError


@pytest.fixture(autouse=True)
def default_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("SUANLI_TZ", raising=False)
    fmt.set_zone(None)
    yield
    fmt.set_zone(None)


def test_yuan_flags_are_exact_and_refuse_fractions_of_a_fen() -> None:
    assert fmt.fen_from_yuan("120", "--budget") == 12000
    assert fmt.fen_from_yuan("120.5", "--budget") == 12050
    assert fmt.fen_from_yuan("¥1,234.56", "--budget") == 123456
    assert fmt.fen_from_yuan("0.29", "--budget") == 29  # float(0.29) * 100 is 28.999...
    assert fmt.fen_from_yuan("0", "--price", zero=True) == 0
    for bad in ("0.001", "1e3", "-5", "nan", "inf", "12,34", "", "1.2.3", "0"):
        with pytest.raises(ValueError, match="--budget"):
            fmt.fen_from_yuan(bad, "--budget")


def test_numbers_are_fixed_point() -> None:
    assert fmt.number(7.78e-06) == "0.00000778"
    assert fmt.pfh(7.78e-06) == "0.00000778"
    assert fmt.pfh(12.3456) == "12.346"
    assert fmt.number(1234.5) == "1,234"  # 3 significant digits at least, no exponent
    assert fmt.number(0) == "0" and fmt.pfh(0) == "0.000"
    assert fmt.number(None) == "-"
    assert fmt.number(1e-15) == "<0.0000000001"
    assert fmt.pflops(102.4) == "102.40P" and fmt.pflops(0.0001) == "0.000100P"
    assert fmt.kwh(98) == "0.0980"


def test_times_carry_their_zone_cst_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fmt.when("2026-12-04T19:10:21.3Z") == "2026-12-05 03:10:21 CST"
    assert fmt.when("2026-12-04T19:10:21+00:00", seconds=False) == "2026-12-05 03:10 CST"
    assert fmt.day("2026-12-04T19:10:21Z") == "2026-12-05"
    assert fmt.when(None) == "-"
    fmt.set_zone("UTC")
    assert fmt.when("2026-12-04T19:10:21Z") == "2026-12-04 19:10:21 UTC"
    fmt.set_zone("+05:30")
    assert fmt.when("2026-12-04T19:10:21Z") == "2026-12-05 00:40:21 +05:30"
    fmt.set_zone("Europe/Berlin")
    assert fmt.when("2026-07-04T19:10:21Z") == "2026-07-04 21:10:21 CEST"
    fmt.set_zone(None)
    monkeypatch.setenv("SUANLI_TZ", "utc")
    assert fmt.when("2026-12-04T19:10:21Z").endswith(" UTC")
    for bad in ("Mars/Olympus", "+25:00", "soon"):
        with pytest.raises(ValueError, match="time zone"):
            fmt.zone_of(bad)


def test_typed_times_are_read_in_the_display_zone() -> None:
    t = fmt.parse_time("2026-12-01", "--since")
    assert t.astimezone(UTC) == datetime(2026, 11, 30, 16, tzinfo=UTC)
    assert fmt.parse_time("2026-12-01T08:00", "--since").utcoffset() == timedelta(hours=8)
    assert fmt.parse_time("2026-12-01T00:00Z", "--since") == datetime(2026, 12, 1, tzinfo=UTC)
    fmt.set_zone("UTC")
    assert fmt.parse_time("2026-12-01", "--until") == datetime(2026, 12, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="--until"):
        fmt.parse_time("next week", "--until")


def test_walltimes_as_people_and_slurm_write_them() -> None:
    w = fmt.parse_walltime_text
    assert w("3600") == 3600  # seconds, as in every suanli flag
    assert w("90s") == 90 and w("30m") == 1800 and w("2h") == 7200 and w("1h30m") == 5400
    assert w("01:00:00") == 3600 and w("1-12:00:00") == 129600 and w("1-12") == 129600
    assert w("05:30") == 330  # Slurm MM:SS
    for bad in ("soon", "0", "1:xx", "-1"):
        with pytest.raises(ValueError, match="--walltime"):
            w(bad)


def test_api_fields_become_the_flags_typed() -> None:
    assert flag_for("resources.device") == "--device"
    assert flag_for("budget_fen") == "--budget"
    assert flag_for("walltime_s") == "--walltime"
    assert flag_for("stages.1.resources.units") == "stages[1].units"
    assert flag_for("stages.0.walltime_s") == "stages[0].walltime"
    assert flag_for("something.else") is None
    exc = ApiError(422, "resources.device: Input should be 'cpu', 'gpu' or 'npu'",
                   "resources.device", [{"field": "resources.device", "message": "x"}])
    assert cli_message(exc) == "--device: Input should be 'cpu', 'gpu' or 'npu' (HTTP 422)"
    exc = ApiError(422, "the cheapest pool would cost about ¥1.20, over the budget", "budget_fen")
    assert cli_message(exc).startswith("--budget: the cheapest pool")
    exc = ApiError(422, "walltime_s: too long (and 1 more)", "walltime_s",
                   [{"field": "walltime_s", "message": "too long"},
                    {"field": "resources.units", "message": "must be 1 or more"}])
    assert cli_message(exc) == "--walltime: too long; --units: must be 1 or more (HTTP 422)"
    exc = ApiError(422, "a job name is 1 to 200 characters", "name")
    assert cli_message(exc) == "--name: a job name is 1 to 200 characters (HTTP 422)"
    exc = ApiError(422, "deadline is before now", "deadline")
    assert cli_message(exc) == "--deadline: deadline is before now (HTTP 422)"
    exc = ApiError(404, "no job 9")
    assert cli_message(exc) == "no job 9 (HTTP 404)"


def test_no_output_uses_an_exponent() -> None:
    for v in (1e-300, 5e-324, 1e-7, 3.3e-5, 0.1, 1.0, 1e6, 1e20, 1.7976931348623157e308, -2e-9):
        assert not re.search(r"\de[-+]?\d", fmt.number(v)), v
        assert not re.search(r"\de[-+]?\d", fmt.pflops(v)), v
