"""Shared CLI plumbing: the client from settings, output modes, and error handling."""

from __future__ import annotations

import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from ..client import ApiError, Client
from ..config import default_home

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOpt = typer.Option(Output.table, "--output", "-o",
                         help="table, or json: the API's own units (money in fen, times UTC ISO)")

# API field paths -> the flags a user typed: the one place a 422 is translated back to the CLI.
FLAG_OF = {
    "resources.device": "--device", "resources.model": "--model", "resources.units": "--units",
    "resources.nodes": "--nodes", "resources.memory_gb": "--memory-gb",
    "walltime_s": "--walltime", "precision": "--precision", "policy": "--policy",
    "priority": "--priority", "district": "--district", "deadline": "--deadline",
    "budget_fen": "--budget", "data_site": "--data-site", "data_gb": "--data-gb",
    "name": "--name", "command": "the command after --", "requeue": "--no-requeue",
    "env": "--env", "workdir": "--workdir", "array": "--array", "constraints": "--constraint",
    "environment": "--environment", "outputs": "--output-path",
    "state": "--state", "since": "--since", "until": "--until", "month": "--month",
    "amount_fen": "--yuan", "credit_limit_fen": "--yuan", "price_fen_per_unit_hour": "--yuan",
    "requested_fen": "--yuan", "planned_spend_fen": "--planned-spend-yuan",
    "approved_fen": "--yuan", "budget": "--budget", "valid_from": "--from",
    "credit_code": "--credit-code", "max_units": "--max-units", "expires_in_s": "--expires",
    "reference": "--reference", "period": "--period", "planned_use": "--use",
}
_STAGE = re.compile(r"^stages\.(\d+)\.(?:resources\.)?(\w+)")


def flag_for(field: str | None) -> str | None:
    """The CLI flag (or DAG-file key) behind an API field path, e.g. 'resources.device' ->
    '--device', 'stages.1.resources.units' -> 'stages[1].units'; None when there is none."""
    if not field:
        return None
    m = _STAGE.match(field)
    if m:
        key = {"walltime_s": "walltime"}.get(m.group(2), m.group(2))
        return f"stages[{m.group(1)}].{key}"
    return FLAG_OF.get(field)


def cli_message(exc: ApiError) -> str:
    """The API's error as the CLI user should read it: the field path replaced by the flag."""
    problems = exc.detail if isinstance(exc.detail, list) else []
    listed = [p for p in problems if isinstance(p, dict) and "field" in p and "message" in p]
    if len(listed) > 1:  # every problem, each under the flag the user typed
        return "; ".join(f"{flag_for(p['field']) or p['field']}: {p['message']}"
                         for p in listed) + f" (HTTP {exc.status})"
    msg = str(exc)
    fields = [exc.field] + [p.get("field") for p in problems if isinstance(p, dict)]
    for field in dict.fromkeys(f for f in fields if f):
        flag = flag_for(field)
        if flag is None:
            continue
        if msg.startswith(f"{field}:"):
            msg = flag + msg[len(field):]
        elif "." in field or "_" in field:  # an API path in the text; plain words stay words
            msg = re.sub(rf"(?<![\w.]){re.escape(field)}(?![\w])", flag, msg)
        if field == exc.field and flag not in msg:
            msg = f"{flag}: {msg}"
    return msg


def cli_config_path() -> Path:
    return default_home() / "cli.json"


def load_cli_config() -> dict[str, Any]:
    path = cli_config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def client() -> Client:
    cfg = load_cli_config()
    url = os.environ.get("SUANLI_URL") or cfg.get("url")
    token = os.environ.get("SUANLI_TOKEN") or cfg.get("token")
    return Client(url, token)


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def api_errors() -> Iterator[None]:
    """Turn API errors into one clear line (plus per-pool reasons for an infeasible job)."""
    try:
        yield
    except ApiError as exc:
        if isinstance(exc.detail, list) and exc.detail and isinstance(exc.detail[0], dict) \
                and "reasons" in exc.detail[0]:
            table = Table(title="why each pool cannot run it", title_justify="left")
            table.add_column("pool")
            table.add_column("reasons")
            for row in exc.detail:
                table.add_row(str(row.get("pool")), "; ".join(row.get("reasons") or ["ok"]))
            err_console.print(table)
        hint = ""
        if exc.status == 401:
            hint = (" — set SUANLI_TOKEN or run `suanli login` (on the demo, as the user who "
                    "started it: `suanli login --demo tenant_a`)")
        elif exc.unavailable:
            hint = f" — try again in {exc.retry_after_s or 5:g} s"
            if isinstance(exc.detail, dict) and exc.detail.get("reason") == "database_unavailable":
                hint = (" — the server is up but cannot reach its database (restarting?); try "
                        f"again in {exc.retry_after_s or 5:g} s (a change may have gone through "
                        "all the same: look before you repeat it)")
        fail(f"{cli_message(exc)}{hint}")


def patiently(call: Callable[[], T], *, give_up_s: float = 600.0) -> T:
    """A read that waits out 503 answers (the server's database restarting) for up to
    `give_up_s`, saying so once; other errors, and a 503 past that, are raised."""
    deadline = time.monotonic() + give_up_s
    said = False
    while True:
        try:
            return call()
        except ApiError as exc:
            if not exc.unavailable or time.monotonic() >= deadline:
                raise
            if not said:
                err_console.print(f"[yellow]waiting:[/] {exc.message} (HTTP 503)",
                                  highlight=False, soft_wrap=True)
                said = True
            time.sleep(min(max(exc.retry_after_s or 2.0, 0.5), 10.0))


def submitted(c: Client, body: dict[str, Any]) -> Any:
    """Submit a job, waiting out 503s (the server's database restarting): every try carries the
    same Idempotency-Key, so a try whose answer was lost and the next one make one job."""
    key = str(uuid.uuid4())
    return patiently(lambda: c.submit_job(body, idempotency_key=key), give_up_s=300.0)


def run(fn: Callable[[Client], T]) -> T:
    with api_errors(), client() as c:
        return fn(c)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def tenant_names(c: Client) -> dict[int, str]:
    """Tenant id -> name, for the tenants the caller may see (none when it may see none)."""
    try:
        return {int(x["id"]): str(x["name"]) for x in c.list_tenants()["items"]}
    except ApiError:
        return {}


def tenant_name(names: dict[int, str], tenant_id: int | None) -> str:
    if tenant_id is None:
        return ""
    return names.get(int(tenant_id), f"#{tenant_id}")


def center_slugs(c: Client) -> dict[int, str]:
    """Center id -> slug: people read centers by slug, the API answers with ids."""
    return {int(x["id"]): str(x["slug"]) for x in c.list_centers()["items"]}
