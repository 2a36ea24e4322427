"""domain/task.py: the parsing a task file, the API and the engine share."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanli.domain.errors import InvalidInput
from suanli.domain.task import (
    MAX_ARRAY_SIZE,
    Constraints,
    Script,
    check_constraints,
    check_env,
    check_relative_path,
    parse_array,
    parse_walltime,
)

ranges = st.tuples(st.integers(0, 5000), st.integers(0, 300), st.integers(1, 7))


@given(st.lists(ranges, min_size=1, max_size=5), st.one_of(st.none(), st.integers(1, 500)))
def test_parse_array_is_the_union_of_its_parts(parts: list[tuple[int, int, int]],
                                                limit: int | None) -> None:
    text = ",".join(f"{lo}-{lo + span}:{step}" if step > 1 else
                    (f"{lo}-{lo + span}" if span else str(lo)) for lo, span, step in parts)
    if limit is not None:
        text += f"%{limit}"
    spec = parse_array(text)
    expect = set()
    for lo, span, step in parts:
        expect.update(range(lo, lo + span + 1, step))
    assert spec.indices == tuple(sorted(expect)) and spec.max_running == limit
    assert spec.text == text


@given(st.integers(1, 10**6))
def test_parse_walltime_of_plain_seconds_and_minutes(n: int) -> None:
    assert parse_walltime(n) == n
    assert parse_walltime(f"{n}s") == n and parse_walltime(f"{n}m") == 60 * n
    assert parse_walltime(str(n)) == 60 * n  # Slurm: a bare number is minutes


@given(st.integers(0, 30), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
def test_parse_walltime_slurm_forms(d: int, h: int, mi: int, s: int) -> None:
    total = d * 86400 + h * 3600 + mi * 60 + s
    if total >= 1:
        assert parse_walltime(f"{d}-{h:02d}:{mi:02d}:{s:02d}") == total
    if h * 3600 + mi * 60 + s >= 1:
        assert parse_walltime(f"{h:02d}:{mi:02d}:{s:02d}") == h * 3600 + mi * 60 + s
    if d * 86400 + h * 3600 >= 1:
        assert parse_walltime(f"{d}-{h}") == d * 86400 + h * 3600


@pytest.mark.parametrize("text, words", [
    ("", "not an index"), ("a-b", "not an index"), ("3-1", "empty"), ("0-9:0", "empty"),
    ("0-9%0", "positive"), ("0-9%x", "positive"), ("-1", "not an index"),
    (f"0-{MAX_ARRAY_SIZE}", f"at most {MAX_ARRAY_SIZE}"), ("1000000", "999999"),
    ("0-5,0-9999", f"at most {MAX_ARRAY_SIZE}"),
])
def test_bad_arrays_say_why(text: str, words: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_array(text, field_name="--array")
    assert words in exc.value.message and exc.value.field == "--array"


@pytest.mark.parametrize("value", ["soon", "0", "0s", "1:2:3:4", "-5", True, "1h30", "", "1.5.2h"])
def test_bad_walltimes_are_refused(value: object) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_walltime(value, field_name="walltime")
    assert exc.value.field == "walltime"


def test_env_refuses_what_suanli_sets_and_keeps_text() -> None:
    assert check_env({"A": 1, "B_2": "x y", "C": 0.5}) == {"A": "1", "B_2": "x y", "C": "0.5"}
    for bad in ({"PATH": "/x"}, {"LD_PRELOAD": "x"}, {"HOME": "/"}, {"a-b": "1"}, {"A": None},
                {"A": True}, {"A": "x\x00y"}, {"": "1"}):
        with pytest.raises(InvalidInput):
            check_env(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["../x", "/etc", "a/../../b", "a/b/..", "x\x00"])
def test_paths_stay_in_the_work_folder(path: str) -> None:
    with pytest.raises(InvalidInput):
        check_relative_path(path, field_name="outputs[0]", glob=True)


def test_paths_and_globs() -> None:
    assert check_relative_path("out/**", field_name="o", glob=True) == "out/**"
    assert check_relative_path("./data/", field_name="o") == "data"
    assert check_relative_path(".", field_name="o") == ""
    with pytest.raises(InvalidInput):
        check_relative_path("out/a**b", field_name="o", glob=True)


def test_constraints_name_what_a_pool_lacks() -> None:
    c = check_constraints({"arch": "x86_64", "features": ["cuda-12.4", "mpi", "mpi"]})
    assert c == Constraints("x86_64", ("cuda-12.4", "mpi"))
    assert c.missing("sw_64", {"mpi"}) == ["arch sw_64, not x86_64", "lacks feature cuda-12.4"]
    assert c.missing("x86_64", {"mpi", "cuda-12.4"}) == []
    for bad in ({"arch": "z80"}, {"cpu": 1}, {"features": [1]}, "x86_64"):
        with pytest.raises(InvalidInput):
            check_constraints(bad)


def test_script_runs_activation_then_setup_then_the_command() -> None:
    assert Script(["echo", "hi"]).argv() == ["echo", "hi"]
    argv = Script(["/bin/bash", "-c", "python3 t.py 'a b'"], "pip install x", "module load y").argv()
    assert argv[:2] == ["/bin/bash", "-c"]
    lines = argv[2].splitlines()
    assert lines[0] == "set -e" and lines[1] == "module load y" and lines[2] == "pip install x"
    assert lines[-1] == "exec /bin/bash -c 'python3 t.py '\"'\"'a b'\"'\"''"
