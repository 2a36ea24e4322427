"""Start the platform: settings -> database (migrated) -> optional demo city -> API + engine.

The composition root: the one module that wires the API and the engine together (in this process,
or the engine in its own); the API and the portal never import the engine."""

from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path

from . import logs
from .config import Settings, secure_home
from .engine import Engine
from .engine.process import EngineProcess, run_candidate
from .services.context import Platform
from .services.control import EngineControl
from .services.demo import ensure_credentials, seed_demo
from .store.db import Database

log = logging.getLogger("suanli.server")


def build_platform(settings: Settings) -> Platform:
    loose = secure_home(settings.home)
    if loose:
        log.warning("%d files under %s were readable by others: now owner-only (0700/0600), "
                    "e.g. %s", len(loose), settings.home, loose[0])
    db = Database(settings.database_url)
    db.upgrade()
    return Platform(db=db, settings=settings)


def prepare_demo(platform: Platform) -> Path:
    created = seed_demo(platform)
    path = platform.home / "demo-credentials.json"
    ensure_credentials(platform, path)
    log.info("demo city %s; credentials in %s", "created" if created else "present", path)
    return path


def cli_hints(settings: Settings, base: str) -> list[str]:
    """How to use the CLI from a second terminal, as commands that work as printed: the venv's
    `suanli` by its path (or `source .../activate`), and the SUANLI_HOME and URL when not the
    defaults. `login --demo` reads the tokens file, so it works for this same user."""
    exe = Path(sys.argv[0]).absolute() if sys.argv and sys.argv[0] else None
    if exe is None or exe.name != "suanli" or not exe.exists():
        exe = Path(sys.executable).parent / "suanli"
    try:
        shown = f"./{exe.relative_to(Path.cwd())}" if exe.is_relative_to(Path.cwd()) else str(exe)
    except (OSError, ValueError):
        shown = str(exe)
    activate = Path(shown).parent / "activate"
    home = [f"            export SUANLI_HOME={settings.home}"] if os.environ.get("SUANLI_HOME") else []
    url = "" if base == "http://127.0.0.1:8000" else f" --url {base}"
    return [
        f"  CLI:      in a second terminal, as this user: source {activate}  (or call {shown})",
        *home,
        f"            suanli login --demo tenant_a{url}",
        "            suanli status",
        "            suanli job submit --units 1 --wait -- echo hello",
    ]


def serve(settings: Settings, *, demo: bool = False, announce: bool = True,
          engine: bool = True) -> None:
    """The API and the portal, and unless `engine` is False an engine candidate in its own
    process (which takes the lease like any `suanli engine`)."""
    import uvicorn

    from .api.app import create_app

    logs.configure(settings.log_format, settings.log_level)
    platform = build_platform(settings)
    creds = prepare_demo(platform) if demo else None
    handle: EngineControl | None = None
    if not engine:
        handle = None  # API and portal only: the engine runs elsewhere (`suanli engine`)
    elif os.environ.get("SUANLI_ENGINE", "process") == "thread":
        handle = Engine(platform)  # tests: one engine in this process, no lease
    else:
        handle = EngineProcess(settings, platform.clock)
    app = create_app(platform, handle)
    # A long-running server holds a large, slowly changing heap (the queue): move what exists
    # now out of the collector's way and collect the young generation less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)
    if announce:
        base = f"http://{settings.host}:{settings.port}"
        lines = [
            "suanli 算力 — city compute network",
            f"  portal:   {base}/  (门户: sign in with a token from the file below)",
            f"  API:      {base}/api/v1",
            f"  docs:     {base}/docs",
            f"  metrics:  {base}/metrics",
            f"  data:     {settings.home}  (database {platform.db.engine.url.render_as_string()})",
        ]
        if not engine:
            lines.append("  engine:   none here (--no-engine): `suanli engine` candidates place jobs")
        if creds is not None:
            lines += [f"  tokens:   {creds}  (readable by this user only)", *cli_hints(settings, base)]
        print("\n".join(lines), flush=True)
    # proxy_headers=False: uvicorn would believe X-Forwarded-* from 127.0.0.1 (a local job could
    # send them); the app believes only SUANLI_TRUSTED_PROXIES (api/proxy.py).
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None,
                access_log=False, timeout_graceful_shutdown=5, proxy_headers=False)


def engine_candidate(settings: Settings) -> int:
    """`suanli engine`: an engine candidate without HTTP. The schema is brought up to date
    first; then it takes the lease when it is free, acts only while it leads, and gives the
    lease up on SIGTERM (engine/process.py, engine/lease.py)."""
    logs.configure(settings.log_format, settings.log_level)
    secure_home(settings.home)
    db = Database(settings.database_url)
    try:
        db.upgrade()
    finally:
        db.dispose()
    return run_candidate(settings, status=False)
