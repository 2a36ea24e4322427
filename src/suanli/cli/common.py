"""Shared CLI plumbing: the client from settings, output modes, and error handling."""

from __future__ import annotations

import json
import os
import sys
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


OutputOpt = typer.Option(Output.table, "--output", "-o", help="table or json")


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
            hint = " — set SUANLI_TOKEN or run `suanli login`"
        fail(f"{exc}{hint}")


def run(fn: Callable[[Client], T]) -> T:
    with api_errors(), client() as c:
        return fn(c)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
