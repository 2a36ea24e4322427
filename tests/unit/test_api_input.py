"""Bad input from a client's side: money that is not a JSON integer, free-form JSON nested too
deep or too big. Each is a 422 naming the field, never a coercion nor a 500. The money fields are
found by walking every route's request model, so a new one cannot be missed."""

from __future__ import annotations

import json
import shutil
import tempfile
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from suanli.api.app import create_app
from suanli.api.schemas import JSON_MAX_DEPTH, JSON_MAX_KEY, JSON_MAX_STRING, JSON_MAX_VALUES
from suanli.config import Settings
from suanli.services.context import Platform
from suanli.store.db import Database

from ..api_routes import api_routes, body_model
from ..demo_app import demo_app


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[TestClient, dict[str, str]]]:
    with demo_app("suanli-input.") as (client, creds, _):
        yield client, creds


def admin(api: tuple[TestClient, dict[str, str]]) -> dict[str, str]:
    return {"Authorization": f"Bearer {api[1]['platform_admin']}"}


# -- money: JSON integers only ----------------------------------------------------------------------

def is_money(name: str) -> bool:
    """Amounts, prices, limits, budgets, deposits: suanli names every one of them *_fen."""
    return name.endswith("_fen") or "price" in name


def _models_in(annotation: Any) -> Iterator[tuple[type[BaseModel], bool]]:
    """The models inside an annotation (Optional, list, Annotated), each with whether it is
    reached through a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, False
        return
    origin = typing.get_origin(annotation)
    for arg in typing.get_args(annotation):
        for model, _ in _models_in(arg):
            yield model, origin is list


def money_paths(model: type[BaseModel], prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Where a request model (and the models nested in it) takes money: paths into the body."""
    out = []
    for name, info in model.model_fields.items():
        if is_money(name):
            out.append((*prefix, name))
        for inner, listed in _models_in(info.annotation):
            out.extend(money_paths(inner, (*prefix, name, 0) if listed else (*prefix, name)))
    return out


POOL = {"name": "m-pool", "device_kind": "cpu", "device_model": "Xeon", "units_per_node": 4,
        "nodes": 1, "memory_gb_per_node": 8, "price_fen_per_unit_hour": 100, "tflops_fp64": 0.1}
JOB = {"name": "m", "command": ["true"], "resources": {"device": "cpu", "units": 1},
       "walltime_s": 60, "budget_fen": 100}
# A body each route taking money accepts as far as its schema goes (path ids are 1).
EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/centers"): {"slug": "m-center", "name_zh": "钱", "name_en": "Money",
                                  "kind": "edge", "pools": [POOL]},
    ("POST", "/api/v1/centers/{center_id}/pools"): POOL,
    ("POST", "/api/v1/tenants"): {"name": "Money Co", "credit_code": "91370212MA3C5T8K2R",
                                  "credit_limit_fen": 100},
    ("POST", "/api/v1/ledger/deposits"): {"tenant_id": 1, "amount_fen": 100, "reference": "m"},
    ("POST", "/api/v1/peers/invitations"): {"name": "m-peer", "credit_limit_fen": 100},
    ("POST", "/api/v1/peers/report"): {
        "network_id": "CN-M", "at": "2026-11-01T00:00:00Z", "units": 1, "units_in_use": 0,
        "utilisation": 0.0, "capacity": {"total_pflops": {}, "free_pflops": {}, "by_kind": {}},
        "usage": [{"month": "2026-11", "runs": 1, "unit_hours": 1.0, "pflops_hours": 1.0,
                   "gross_fen": 100}]},
    ("POST", "/api/v1/jobs"): JOB,
    ("POST", "/api/v1/jobs/estimate"): JOB,
    ("POST", "/api/v1/dags"): {"name": "m", "stages": [JOB]},
    ("POST", "/api/v1/pools/{pool_id}/prices"): {"price_fen_per_unit_hour": 100},
    ("PUT", "/api/v1/tenants/{tenant_id}/credit-limit"): {"credit_limit_fen": 100},
    ("POST", "/api/v1/voucher-programmes"): {"name": "m", "year": 2030, "budget_fen": 100},
    ("POST", "/api/v1/voucher-applications"): {"programme_id": 1, "requested_fen": 100,
                                               "planned_spend_fen": 100, "planned_use": "m"},
    ("POST", "/api/v1/voucher-applications/{application_id}/review"): {"decision": "approve",
                                                                      "approved_fen": 100},
}


def money_routes() -> list[tuple[str, str, type[BaseModel], tuple[str | int, ...]]]:
    """(method, path, body model, money path) for every route of the app that takes money."""
    home = Path(tempfile.mkdtemp(prefix="suanli-routes."))
    try:
        app = create_app(Platform(db=Database("sqlite://"),
                                  settings=Settings(home=home, database_url="sqlite://")),
                         run_engine=False)
        out = []
        for route in api_routes(app):
            model = body_model(route)
            for method in sorted(route.methods) if model is not None else ():
                out.extend((method, route.path, model, path) for path in money_paths(model))
        return out
    finally:
        shutil.rmtree(home, ignore_errors=True)


MONEY = money_routes()
NOT_INTEGERS = [100.0, "100", True, 100.5, "1e2", None, [100], {"fen": 100}]


def test_every_route_taking_money_has_an_example() -> None:
    assert len({(m, p) for m, p, _, _ in MONEY}) >= 12
    missing = sorted({(m, p) for m, p, _, _ in MONEY} - set(EXAMPLES))
    assert not missing, f"add an example body for {missing}"


def test_every_example_is_valid() -> None:
    """The examples, with integers for money, are valid bodies of their routes."""
    for method, path, model, _ in MONEY:
        model.model_validate_json(json.dumps(EXAMPLES[(method, path)]))


def _url(path: str) -> str:
    return path.replace("{center_id}", "1").replace("{pool_id}", "1").replace(
        "{tenant_id}", "1").replace("{application_id}", "1")


def _with(body: Any, path: tuple[str | int, ...], value: Any) -> Any:
    body = json.loads(json.dumps(body))
    at = body
    for key in path[:-1]:
        at = at[key]
    at[path[-1]] = value
    return body


@pytest.mark.parametrize("bad", NOT_INTEGERS, ids=repr)
@pytest.mark.parametrize("method, path, model, where", MONEY,
                         ids=[f"{m}-{p}-{'.'.join(map(str, w))}" for m, p, _, w in MONEY])
def test_money_is_a_json_integer_or_a_422_naming_the_field(
        api: tuple[TestClient, dict[str, str]], method: str, path: str, model: type[BaseModel],
        where: tuple[str | int, ...], bad: Any) -> None:
    client, _ = api
    name = ".".join(map(str, where))
    body = _with(EXAMPLES[(method, path)], where, bad)
    r = client.request(method, _url(path), json=body, headers=admin(api))
    if bad is None and model_allows_none(model, where):
        assert r.status_code != 422 or name not in r.json()["field"]  # optional: null = not given
        return
    assert r.status_code == 422, (name, bad, r.text)
    problems = r.json()["detail"]
    assert r.json()["field"] == name and {p["field"] for p in problems} == {name}, problems
    assert name in r.json()["error"]


def model_allows_none(model: type[BaseModel], where: tuple[str | int, ...]) -> bool:
    for key in where[:-1]:
        if isinstance(key, int):
            continue
        model = next(m for m, _ in _models_in(model.model_fields[key].annotation))
    return type(None) in typing.get_args(model.model_fields[str(where[-1])].annotation)


json_not_integers = st.one_of(
    st.integers(-10**6, 10**6).map(float),  # 100.0: an integral float is not an integer either
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(0, 10**12).map(str),
    st.booleans(),
    st.text(max_size=5),
)


@pytest.mark.parametrize("method, path, model, where", MONEY,
                         ids=[f"{m}-{p}-{'.'.join(map(str, w))}" for m, p, _, w in MONEY])
@settings(max_examples=40, deadline=None)
@given(value=json_not_integers)
def test_property_no_json_value_but_an_integer_is_money(
        method: str, path: str, model: type[BaseModel], where: tuple[str | int, ...],
        value: Any) -> None:
    body = _with(EXAMPLES[(method, path)], where, value)
    with pytest.raises(ValidationError) as exc:
        model.model_validate_json(json.dumps(body))
    assert {tuple(e["loc"]) for e in exc.value.errors()} == {where}


# -- free-form JSON: bounded ------------------------------------------------------------------------

def nested(depth: int) -> dict[str, Any]:
    """{"a": {"a": ... {}}}: `depth` objects."""
    out: dict[str, Any] = {}
    for _ in range(depth - 1):
        out = {"a": out}
    return out


def deep_text(depth: int) -> str:
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


CENTER = {"slug": "deep", "name_zh": "深", "name_en": "Deep", "kind": "edge"}
# Each free-form JSON input: (method, path, body with {config} where the object goes, field).
FREE_FORM = [
    ("POST", "/api/v1/centers", {**CENTER, "connector_config": "{config}"}, "connector_config"),
    ("POST", "/api/v1/centers/discover", {"connector": "slurm", "connector_config": "{config}"},
     "connector_config"),
    ("POST", "/api/v1/voucher-programmes", {"name": "deep", "year": 2031, "rules": "{config}"},
     "rules"),
    ("PUT", "/api/v1/voucher-programmes/1/rules", {"rules": "{config}"}, "rules"),
]


def _post(api: tuple[TestClient, dict[str, str]], method: str, path: str, body: dict[str, Any],
          config: Any = None, raw: str | None = None) -> Any:
    text = json.dumps(body)
    text = text.replace('"{config}"', raw if raw is not None else json.dumps(config))
    return api[0].request(method, path, content=text.encode(),
                          headers={**admin(api), "Content-Type": "application/json"})


@pytest.mark.parametrize("depth", [JSON_MAX_DEPTH + 1, 60, 500, 5_000])
@pytest.mark.parametrize("method, path, body, field", FREE_FORM, ids=[p for _, p, _, _ in FREE_FORM])
def test_deeply_nested_free_form_json_is_a_422(api: tuple[TestClient, dict[str, str]], method: str,
                                               path: str, body: dict[str, Any], field: str,
                                               depth: int) -> None:
    r = _post(api, method, path, body, raw=deep_text(depth))
    assert r.status_code == 422, r.text
    if depth < 900:  # the object reaches the model, which names it
        assert r.json()["field"] == field
        assert f"nested at most {JSON_MAX_DEPTH} levels deep" in r.json()["error"]
    else:  # too deep for the JSON parser itself
        assert r.json() == {"error": "body: JSON nested too deeply", "field": "body", "detail": None}


def test_a_whole_body_nested_past_the_parser_is_a_422(api: tuple[TestClient, dict[str, str]]) -> None:
    for path in ("/api/v1/jobs", "/api/v1/dags", "/api/v1/centers"):
        r = api[0].post(path, content=("[" * 200_000 + "]" * 200_000).encode(),
                        headers={**admin(api), "Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["field"] == "body", r.text


@pytest.mark.parametrize("config, words", [
    ({f"k{i}": i for i in range(JSON_MAX_VALUES)}, f"at most {JSON_MAX_VALUES} values"),
    ({"partitions": [[i] for i in range(JSON_MAX_VALUES // 2 + 1)]}, f"at most {JSON_MAX_VALUES} values"),
    ({"k" * (JSON_MAX_KEY + 1): 1}, f"keys of at most {JSON_MAX_KEY} characters"),
    ({"jwt": "x" * (JSON_MAX_STRING + 1)}, f"strings of at most {JSON_MAX_STRING} characters"),
    ({"a": [nested(JSON_MAX_DEPTH - 1)]}, f"nested at most {JSON_MAX_DEPTH} levels deep"),
], ids=["many-keys", "many-items", "long-key", "long-string", "list-depth"])
def test_free_form_json_is_bounded_in_size(api: tuple[TestClient, dict[str, str]],
                                           config: dict[str, Any], words: str) -> None:
    for method, path, body, field in FREE_FORM:
        r = _post(api, method, path, body, config)
        assert r.status_code == 422 and r.json()["field"] == field, (path, r.text)
        assert words in r.json()["error"]


def test_free_form_json_within_the_bounds_is_taken(api: tuple[TestClient, dict[str, str]]) -> None:
    config = {"center": "deep-ok", "note": nested(JSON_MAX_DEPTH - 1), "jwt": "x" * JSON_MAX_STRING,
              "k" * JSON_MAX_KEY: [1, 2, 3]}
    r = _post(api, "POST", "/api/v1/centers", {**CENTER, "slug": "deep-ok",
                                                 "connector_config": "{config}"}, config)
    assert r.status_code == 201, r.text
    assert r.json()["connector_config"]["note"] == nested(JSON_MAX_DEPTH - 1)


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/api/v1/jobs", {**JOB, "command": "{config}"}),
    ("POST", "/api/v1/dags", {"name": "d", "stages": [{**JOB, "depends_on": "{config}"}]}),
    ("POST", "/api/v1/jobs", {**JOB, "surprise": "{config}"}),
], ids=["job-command", "dag-depends-on", "unknown-field"])
def test_other_json_inputs_nested_deep_are_a_422(api: tuple[TestClient, dict[str, str]], method: str,
                                                 path: str, body: dict[str, Any]) -> None:
    """Typed inputs (a job's command, a DAG's stages) refuse a nested value at its first level."""
    for depth in (10, 500, 5_000):
        r = _post(api, method, path, body, raw="[" * depth + "]" * depth)
        assert r.status_code == 422, (depth, r.text)
