"""The `suanli` command."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path

import typer

from .. import __version__
from ..client import Client
from ..config import write_private
from . import admin
from .common import Output, OutputOpt, api_errors, cli_config_path, console, fail, load_cli_config
from .jobs import dag_app, job_app
from .money import bill_app
from .settle import audit_app, settle
from .simulate import simulate_app
from .tasks import submit_task_file
from .vouchers import voucher_app

app = typer.Typer(
    help="suanli 算力 — the city compute network: centers, jobs, placement, metering.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(admin.center_app, name="center")
app.add_typer(admin.tenant_app, name="tenant")
app.add_typer(admin.user_app, name="user")
app.add_typer(admin.token_app, name="token")
app.add_typer(job_app, name="job")
app.add_typer(dag_app, name="dag")
app.add_typer(simulate_app, name="simulate")
app.add_typer(bill_app, name="bill")
app.add_typer(voucher_app, name="voucher")
app.add_typer(audit_app, name="audit")
app.command("settle")(settle)
app.command("capacity")(admin.capacity)
app.command("usage")(admin.usage)


@app.command("run")
def run_task(
    file: Path = typer.Argument(..., help="the task file (YAML; see docs/tasks.md)"),
    env: list[str] = typer.Option([], "--env", help="NAME=value, over the file's env "
                                  "(repeatable)"),
    workdir: Path | None = typer.Option(None, "--workdir", help="the folder to upload as the "
                                        "work folder (default: the file's workdir, or its "
                                        "folder)"),
    array: str | None = typer.Option(None, "--array", help="one job per index, e.g. 0-99%10 "
                                     "(at most 10 at once); SUANLI_ARRAY_INDEX is set"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print what would be uploaded, where "
                                 "the job would go and what it would cost; submit nothing"),
    wait: bool = typer.Option(False, "--wait", help="print each state change until the job "
                              "ends, then exit with its exit code"),
    output: Output = OutputOpt,
) -> None:
    """Run a task file: upload its work folder (once, by content) and submit it."""
    submit_task_file(file, env=env, workdir=workdir, array=array, dry=dry_run, wait=wait,
                     output=output)


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


@app.command()
def serve(
    demo: bool = typer.Option(False, "--demo", help="seed the demo city (Qingdao) and accounts"),
    host: str | None = typer.Option(None, help="bind address (default 127.0.0.1)"),
    port: int | None = typer.Option(None, help="port (default 8000 or SUANLI_PORT)"),
) -> None:
    """Run the platform: REST API, scheduler loop and the local executor."""
    from ..api.server import serve as run_server
    from ..config import Settings

    try:
        settings = Settings.from_env()
    except ValueError as exc:
        fail(str(exc))
    if host or port:
        from dataclasses import replace

        settings = replace(settings, host=host or settings.host, port=port or settings.port)
    from sqlalchemy.exc import SQLAlchemyError

    try:
        run_server(settings, demo=demo)
    except SQLAlchemyError as exc:
        fail(f"database {settings.database_url.split('@')[-1]}: {str(exc).splitlines()[0]}")
    except OSError as exc:
        fail(f"cannot start: {exc}")


@app.command()
def login(
    url: str = typer.Option("http://127.0.0.1:8000", help="the suanli server"),
    token: str | None = typer.Option(None, help="API token (asked for when not given)"),
) -> None:
    """Save the server URL and your token for later commands ($SUANLI_HOME/cli.json)."""
    secret = token or getpass.getpass("API token: ")
    with api_errors(), Client(url, secret) as c:
        me = c.me()
    path = cli_config_path()
    data = load_cli_config()
    data.update({"url": url, "token": secret})
    write_private(path, json.dumps(data))
    console.print(f"logged in to {url} as {me['username']} ({me['role']}); saved to {path}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
