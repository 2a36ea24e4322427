"""`suanli simulate sweep`: every combination of some scenario parameters, in parallel (issue 19)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from suanli.sim.sweep import SweepError, apply, parse_param, prepare, run_point

ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT / "data" / "traces"
SUANLI = str(Path(sys.executable).with_name("suanli"))

SCENARIO = f"""
name = "sweep city"
seed = 1
window_days = 3

[[pools]]
center = "a"
name = "cpu"
units = 100

[[pools]]
center = "b"
name = "cpu"
units = 100
price_fen_per_unit_hour = 3

[[workloads]]
trace = "{TRACES / 'KTH-SP2-1996-2.1-cln.swf.gz'}"
home = "a/cpu"
start_day = 120

[[workloads]]
home = "b/cpu"
synthetic = {{ jobs = 300, rate_per_h = 5, max_units = 40, max_runtime_s = 20000 }}
"""


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "city.toml"
    path.write_text(SCENARIO)
    return path


def _suanli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SUANLI, *args], capture_output=True, text=True, timeout=300,
                          env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"})


def test_parameters_parse_into_every_value() -> None:
    assert parse_param("seed=1..4").values == (1, 2, 3, 4)
    assert parse_param("pools.qd-ai/ascend-910b.units=160,320,640").values == (160, 320, 640)
    assert parse_param("scheduler=easy,fcfs").values == ("easy", "fcfs")
    assert parse_param("pools.a/cpu.speed=0.5,1.5").values == (0.5, 1.5)
    for bad, why in (("seed", "PATH=VALUES"), ("seed=5..1", "empty"), ("seed=1,1", "twice"),
                     ("seed=1,,2", "empty value"), ("seed=1..100000", "over")):
        with pytest.raises(SweepError, match=why):
            parse_param(bad)


def test_sweep_runs_every_combination_in_parallel_and_writes_table_and_plot(scenario: Path,
                                                                            tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = _suanli("simulate", "sweep", str(scenario), "--param", "pools.b/cpu.units=50,100",
                "--param", "seed=1..2", "--policies", "suanli,isolated", "--out", str(out),
                "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert "mean_bsld against pools.b/cpu.units" in r.stdout and "over seed" in r.stdout
    assert "4 points × 2 policies" in r.stdout and "2 local processes" in r.stdout
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["params"] == {"pools.b/cpu.units": [50, 100], "seed": [1, 2]}
    assert len(doc["points"]) == 8  # 2 × 2 combinations × 2 policies
    assert [row["x"] for row in doc["by_x"]] == [50, 100] and all(row["points"] == 2 for row in doc["by_x"])
    with (out / "sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {"pools.b/cpu.units", "seed", "policy", "mean_bsld", "cost_fen"} <= set(rows[0])
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # each point is the scenario with its values: the parallel run equals a direct run of it
    sweep = prepare(scenario, ["pools.b/cpu.units=50,100", "seed=1..2"], ["suanli", "isolated"])
    direct = run_point(apply(sweep.scenario, {"pools.b/cpu.units": 50, "seed": 2}), ["suanli", "isolated"])
    got = next(p for p in doc["points"] if p["pools.b/cpu.units"] == 50 and p["seed"] == 2
               and p["policy"] == "suanli")
    assert got["mean_bsld"] == direct["suanli"]["mean_bsld"] and got["jobs"] == direct["suanli"]["jobs"]
    # the seed reaches the synthetic workload: the two seeds are different cities
    by_seed = {p["seed"]: p["mean_wait_s"] for p in doc["points"]
               if p["policy"] == "isolated" and p["pools.b/cpu.units"] == 100}
    assert by_seed[1] != by_seed[2]
    # the smaller pool b is more loaded: isolated waits grow
    iso = {row["x"]: row["isolated"]["mean"] for row in doc["by_x"]}
    assert iso[50] > iso[100]


@pytest.mark.parametrize(("param", "message"), [
    ("pools.z/cpu.units=5", "no such pool"),
    ("pools.a/cpu.colour=red", "a pool has no field 'colour'"),
    ("workloads.9.scale=2", "n from 1 to 2"),
    ("workloads.2.synthetic.rate=2", "no synthetic field 'rate'"),
    ("budget=5", "not a parameter of the scenario"),
    ("pools.a/cpu.units=-4", "'units' must be positive"),
    ("scheduler=sjf", "'scheduler' must be one of"),
])
def test_a_bad_parameter_is_one_clear_line(scenario: Path, tmp_path: Path, param: str, message: str) -> None:
    r = _suanli("simulate", "sweep", str(scenario), "--param", param, "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "o").exists()
