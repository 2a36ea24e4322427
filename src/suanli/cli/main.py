"""The `suanli` command."""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from .. import __version__
from ..client import Client
from ..client.client import DEFAULT_URL
from ..config import default_home, write_private
from . import admin, artifacts
from .common import Output, OutputOpt, api_errors, cli_config_path, console, fail, load_cli_config
from .format import set_zone
from .jobs import dag_app, job_app
from .money import bill_app
from .peers import peer_app
from .settle import audit_app, settle
from .simulate import simulate_app
from .status import status_screen
from .tasks import submit_task_file
from .vouchers import voucher_app

app = typer.Typer(
    help="suanli 算力 — the city compute network: centers, jobs, placement, metering. Money is "
         "in yuan (flags and tables), times in Beijing time (CST) unless --tz or SUANLI_TZ; "
         "`-o json` keeps the API's units (fen, UTC). Start with `suanli status`.",
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
app.add_typer(peer_app, name="peer")
app.add_typer(artifacts.artifact_app, name="artifact")
app.add_typer(artifacts.data_app, name="data")
job_app.command("download")(artifacts.job_download)
admin.tenant_app.command("storage-quota")(artifacts.storage_quota)
app.add_typer(audit_app, name="audit")
app.command("settle")(settle)
app.command("capacity")(admin.capacity)
app.command("usage")(admin.usage)
app.command("status")(status_screen)


@app.callback()
def options(tz: str | None = typer.Option(
        None, "--tz", envvar="SUANLI_TZ", show_envvar=True,
        help="time zone for times shown and typed: CST (Beijing time, the default), UTC, "
             "+05:30, or a name like Europe/Berlin. JSON output is always UTC.")) -> None:
    try:
        set_zone(tz)
    except ValueError as exc:
        fail(f"--tz: {exc}")


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
    no_engine: bool = typer.Option(False, "--no-engine",
                                   help="the API and the portal only: no engine here (run "
                                   "`suanli engine` candidates against the same database)"),
    peer_demo: bool = typer.Option(False, "--peer-demo",
                                   help="with --demo: also start the national node and Yantai on "
                                   "the next two ports, joined as peers (docs/federation.md)"),
) -> None:
    """Run the platform: REST API, scheduler loop and the local executor."""
    from dataclasses import replace

    from ..config import Settings
    from ..server import serve as run_server

    if peer_demo:  # (the environment: the engine process reads it too)
        os.environ.setdefault("SUANLI_NETWORK_NAME", "青岛 Qingdao")
        os.environ.setdefault("SUANLI_NETWORK_LOCATION", "120.38,36.07")
        os.environ.setdefault("SUANLI_PEER_DISCOVERY_S", "10")
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        fail(str(exc))
    if host or port:
        settings = replace(settings, host=host or settings.host, port=port or settings.port)
    children: list[Any] = []
    if peer_demo:
        if not demo or no_engine:
            fail("--peer-demo goes with --demo (and an engine)")
        from . import peer_demo as three

        children = three.run_in_background(settings.home, settings.port)
    from sqlalchemy.exc import SQLAlchemyError

    try:
        run_server(settings, demo=demo, engine=not no_engine)
    except SQLAlchemyError as exc:
        fail(f"database {settings.database_url.split('@')[-1]}: {str(exc).splitlines()[0]}")
    except OSError as exc:
        fail(f"cannot start: {exc}")
    finally:
        if children:
            three.stop(children)


@app.command()
def engine() -> None:
    """Run an engine candidate (no HTTP): it leads when it holds the lease in the database,
    placing and reconciling jobs, and stands by while another candidate does (docs/ha.md).
    SIGTERM gives the lease up."""
    from ..config import Settings
    from ..server import engine_candidate

    try:
        settings = Settings.from_env()
    except ValueError as exc:
        fail(str(exc))
    from sqlalchemy.exc import SQLAlchemyError

    try:
        code = engine_candidate(settings)
    except SQLAlchemyError as exc:
        fail(f"database {settings.database_url.split('@')[-1]}: {str(exc).splitlines()[0]}")
    except OSError as exc:
        fail(f"cannot start: {exc}")
    raise typer.Exit(code)


DEMO_ROLES = ("platform_admin", "tenant_a", "tenant_b", "center_operator", "reviewer", "auditor")


def _demo_token(role: str) -> str:
    """The demo user's token from $SUANLI_HOME/demo-credentials.json (written by `serve --demo`,
    mode 0600: readable only by whoever runs the server)."""
    path = default_home() / "demo-credentials.json"
    try:
        creds = json.loads(path.read_text(encoding="utf-8"))
    except PermissionError:
        fail(f"cannot read {path}: only the user who runs `suanli serve --demo` (make run) may; "
             "ask them for a token and run `suanli login --token ...`")
    except OSError:
        fail(f"no {path}: start the demo first (`make run`, or `suanli serve --demo`), with the "
             "same SUANLI_HOME")
    except ValueError:
        fail(f"{path} is not JSON")
    if not isinstance(creds, dict) or not isinstance(creds.get(role), str):
        fail(f"--demo: no demo user {role!r}; choose from {', '.join(DEMO_ROLES)}")
    return str(creds[role])


@app.command()
def login(
    url: str | None = typer.Option(None, envvar="SUANLI_URL", help="the suanli server "
                                   "(default: the saved one, else http://127.0.0.1:8000)"),
    token: str | None = typer.Option(None, help="API token (asked for when not given)"),
    demo: str | None = typer.Option(None, "--demo", metavar="USER",
                                    help="the demo city's user: " + ", ".join(DEMO_ROLES)
                                    + " (its token from $SUANLI_HOME/demo-credentials.json: only "
                                    "the operator of `make run` can read it)"),
) -> None:
    """Save the server URL and your token for later commands ($SUANLI_HOME/cli.json).
    SUANLI_URL and SUANLI_TOKEN, when set, still win over the saved ones."""
    if demo and token:
        fail("give --demo USER or --token, not both")
    data = load_cli_config()
    url = (url or data.get("url") or DEFAULT_URL).rstrip("/")
    secret = _demo_token(demo) if demo else token or getpass.getpass("API token: ")
    with api_errors(), Client(url, secret) as c:
        me = c.me()
    path = cli_config_path()
    data.update({"url": url, "token": secret})
    write_private(path, json.dumps(data))
    console.print(f"logged in to {url} as {me['username']} ({me['role']}); saved to {path}",
                  highlight=False)
    if os.environ.get("SUANLI_TOKEN"):
        console.print("note: SUANLI_TOKEN is set in this shell and wins over the saved token "
                      "(unset SUANLI_TOKEN to use it)", style="yellow", highlight=False)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
