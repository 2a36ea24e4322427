"""The `suanli` command's entry point.

`suanli simulate …` runs the twin's commands alone: building the whole CLI (every command group,
the HTTP client) costs about 0.15 s of start-up that a simulation, often run in loops and
scripts, has no use for. Everything else is the whole CLI (`cli.main`)."""

from __future__ import annotations

import os
import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "simulate":
        import typer

        from .common import fail
        from .format import set_zone
        from .simulate import simulate_app

        try:
            set_zone(os.environ.get("SUANLI_TZ"))  # what the whole CLI's --tz default reads
        except ValueError as exc:
            fail(f"SUANLI_TZ: {exc}")
        try:
            typer.main.get_command(simulate_app)(sys.argv[2:], prog_name="suanli simulate")
        except KeyboardInterrupt:
            sys.exit(130)
        return
    from .main import main as whole

    whole()
