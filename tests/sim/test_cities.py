"""Random cities for the generalisation benchmark (`sim/cities.py`, `bench/cities.py`)."""

from __future__ import annotations

import tomllib

from suanli.sim.cities import TRACES, make_city, to_toml
from suanli.sim.scenario import build


def test_a_city_is_a_function_of_its_seed_within_the_stated_ranges() -> None:
    assert make_city(7) == make_city(7)
    assert make_city(7) != make_city(8)
    sizes = set()
    for seed in range(1, 41):
        city = make_city(seed)
        pools = city["pools"]
        assert 3 <= len(pools) <= 12
        for p in pools:
            top = 16384 if p["device"] == "cpu" else 4096
            assert 32 <= p["units"] <= top and 0.5 <= p["speed"] <= 2.0 and 1.1 <= p["pue"] <= 1.6
            sizes.add(p["units"])
        assert city["window_days"] in (7, 14, 21, 30) and city["workloads"]
        homes = {w["home"] for w in city["workloads"]}
        assert homes <= {f"{p['center']}/{p['name']}" for p in pools}
    assert min(sizes) < 100 and max(sizes) > 5000  # very different sizes across cities


def test_a_city_builds_and_round_trips_through_its_scenario_file() -> None:
    for seed in (3, 100_026):
        city = make_city(seed)
        sc = build(city, base=TRACES, source=f"city {seed}")
        assert sc.jobs and len(sc.pools) == len(city["pools"])
        again = build(tomllib.loads(to_toml(city)), base=TRACES)  # `--dump SEED` writes this
        assert again.jobs == sc.jobs and again.pools == sc.pools
        kinds = {j.devices for j in sc.jobs}
        assert kinds <= {frozenset({"cpu"}), frozenset({"gpu", "npu"})}  # merged needs disjoint sets
