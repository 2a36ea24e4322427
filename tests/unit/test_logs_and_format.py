import json
import logging

import pytest

from suanli.cli.format import duration, parse_duration, yuan
from suanli.logs import JsonFormatter


def test_json_log_lines_carry_message_level_and_extras() -> None:
    record = logging.makeLogRecord({"name": "suanli.engine", "levelname": "INFO",
                                    "levelno": 20, "msg": "placed %s", "args": ("job 7",),
                                    "job_id": 7})
    data = json.loads(JsonFormatter().format(record))
    assert data["msg"] == "placed job 7" and data["level"] == "info"
    assert data["logger"] == "suanli.engine" and data["job_id"] == 7
    assert data["ts"].endswith("+00:00")


def test_yuan_is_exact() -> None:
    assert yuan(123456) == "¥1,234.56"
    assert yuan(5) == "¥0.05"
    assert yuan(-250) == "-¥2.50"
    assert yuan(10**15 + 1) == "¥10,000,000,000,000.01"


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("30m", 1800),
                                           ("2h", 7200), ("1h30m", 5400), ("1d", 86400)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "1x", "h", "-5"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_duration_rendering() -> None:
    assert [duration(x) for x in (5, 65, 3700, 90000, None)] == [
        "5s", "1m05s", "1h01m", "1d01h", "-"]
