"""The engine in its own process, so scheduling work never competes with the API for the GIL.

`suanli serve` starts it, `suanli engine` runs it alone (`run_candidate`): an engine candidate
that acts only while it holds the lease (engine/lease.py), every unit of work fenced by it. On
SQLite one runs per data directory besides (an exclusive lock on `$SUANLI_HOME/engine.lock`). The
one `suanli serve` starts exits when that server is gone (even after `kill -9`), so a restarted
server never meets a second scheduler; when it dies, the server starts it again (with back-off).
The API wakes it through a pipe and reads its pass statistics from
`$SUANLI_HOME/engine-status.json`.

    python -m suanli.engine.process --wake-fd N
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import faulthandler
import fcntl
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .. import logs
from ..config import Settings
from ..domain.clock import Clock, SystemClock
from ..services.context import Platform
from ..services.control import EngineStatus, PassStats
from ..services.replicas import Heartbeat
from ..store.db import Database
from ..store.notify import WakeListener
from .lease import Lease
from .loop import Engine

log = logging.getLogger("suanli.engine")
STATUS_FILE = "engine-status.json"
LOCK_FILE = "engine.lock"
PR_SET_PDEATHSIG = 1
RESTART_MAX_S = 60.0  # the longest wait before a dead engine process is restarted
STABLE_S = 60.0  # an engine that ran this long died of something new: restart it soon again


class Backoff:
    """How long to wait before restarting a dead engine: `first`, doubling at each death up to
    RESTART_MAX_S, and `first` again after an engine that ran STABLE_S."""

    def __init__(self, first: float) -> None:
        self.first = min(first, RESTART_MAX_S)
        self.delay = 0.0

    def next(self, ran_s: float) -> float:
        """The wait after an engine that ran `ran_s` seconds died."""
        if self.delay == 0.0 or ran_s >= STABLE_S:
            self.delay = self.first
        else:
            self.delay = min(self.delay * 2, RESTART_MAX_S)
        return self.delay


class EngineProcess:
    """The API's handle on the engine process: start, wake, status, stop. A watcher thread
    restarts the process when it dies (a crash, the OOM killer, `kill -9`): after
    `engine_restart_s` (default 1 s), doubling on each death up to RESTART_MAX_S, and back to the
    first wait once an engine has run STABLE_S. While none runs, `status().running` is False
    (the health endpoint answers 503)."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()  # how long an engine ran; the status file's age
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._wake_w: int | None = None
        self._status_cache: tuple[float, EngineStatus] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._spawned_at = 0.0

    def start(self) -> None:
        self._stopping.clear()
        with self._lock:
            self._spawn()
        if self._watcher is None:
            # The watcher also spawns the restarted engines, and an engine dies with the thread
            # that spawned it (PR_SET_PDEATHSIG): it lives until `stop`.
            self._watcher = threading.Thread(target=self._watch, name="suanli-engine-watcher",
                                             daemon=True)
            self._watcher.start()

    def _spawn(self) -> None:
        """Start an engine process with a fresh wake pipe (the caller holds the lock)."""
        r, w = os.pipe()
        os.set_blocking(w, False)
        env = dict(os.environ, SUANLI_HOME=str(self.settings.home),
                   SUANLI_DATABASE_URL=self.settings.database_url,
                   SUANLI_SCHEDULER_INTERVAL=str(self.settings.scheduler_interval_s),
                   SUANLI_HEALTH_INTERVAL=str(self.settings.health_interval_s),
                   SUANLI_HEALTH_FAILURES=str(self.settings.health_failures),
                   SUANLI_FAILOVER_GRACE=str(self.settings.failover_grace_s),
                   SUANLI_LEASE_S=str(self.settings.lease_s),
                   SUANLI_LEASE_RENEW_S=str(self.settings.lease_renew_s),
                   SUANLI_LOG_FORMAT=self.settings.log_format,
                   SUANLI_LOG_LEVEL=self.settings.log_level,
                   # where centers call back (stage items, outputs): the server's own address,
                   # also when it came from `serve --host/--port`
                   SUANLI_HOST=self.settings.host, SUANLI_PORT=str(self.settings.port),
                   SUANLI_PUBLIC_URL=self.settings.public_url)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "suanli.engine.process", "--wake-fd", str(r)],
                pass_fds=(r,), env=env, stdin=subprocess.DEVNULL)
        finally:
            os.close(r)
        if self._wake_w is not None:
            os.close(self._wake_w)
        self._wake_w = w
        self._spawned_at = self.clock.monotonic()
        self._status_cache = None

    def _watch(self) -> None:
        backoff = Backoff(self.settings.engine_restart_s)
        while not self._stopping.is_set():
            proc = self.proc
            assert proc is not None
            try:
                code = proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
            if self._stopping.is_set():
                return
            ran = self.clock.monotonic() - self._spawned_at
            delay = backoff.next(ran)
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            log.error("the engine process (pid %d) died (%s) after %.0f s; restarting it in "
                      "%.0f s", proc.pid, how, ran, delay)
            if self._stopping.wait(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    self._spawn()
                except OSError as exc:
                    log.error("cannot start the engine process: %s; trying again", exc)
                    continue  # the dead one is seen again: the next try waits longer
                self.restarts += 1
                pid = self.proc.pid if self.proc else None
            log.warning("engine process restarted (pid %s; %d restarts)", pid, self.restarts)

    def wake(self) -> None:
        with self._lock:
            if self._wake_w is None:
                return
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                os.write(self._wake_w, b"w")

    def status(self) -> EngineStatus:
        now = self.clock.monotonic()
        if self._status_cache is not None and now - self._status_cache[0] < 0.5:
            return self._status_cache[1]
        try:
            data = json.loads((self.settings.home / STATUS_FILE).read_text(encoding="utf-8"))
            st = EngineStatus.from_dict(data)
        except (OSError, ValueError):
            st = EngineStatus(PassStats())
        proc = self.proc
        st.running = proc is not None and proc.poll() is None and not self._stopping.is_set()
        if not st.running or proc is None or st.pid != proc.pid:
            st.pid = None  # what the file says is of an engine gone, or none has written yet
        st.restarts = self.restarts
        self._status_cache = (now, st)
        return st

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        with self._lock:
            proc = self.proc
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if self._wake_w is not None:
                os.close(self._wake_w)
                self._wake_w = None
        if self._watcher is not None:
            self._watcher.join(timeout)
            self._watcher = None


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _write_status(home: Path, engine: Engine | None, lease: Lease | None = None) -> None:
    data: dict[str, Any] = (engine.status() if engine is not None
                            else EngineStatus(PassStats(), pid=os.getpid())).as_dict()
    data["running"] = True
    if lease is not None:
        data["role"] = "leader" if lease.leading else "standby"
        data["epoch"] = lease.epoch
    tmp = home / (STATUS_FILE + ".tmp")
    try:
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, home / STATUS_FILE)
    except OSError as exc:  # e.g. a full disk: the statistics wait, the scheduling goes on
        log.warning("cannot write %s: %s", home / STATUS_FILE, exc)


class Stopper:
    """What SIGTERM/SIGINT (and a parent seen gone) do: stop the candidate, once. Once only: a
    SIGTERM (the parent's death signal) may arrive while this runs on the main thread (`wait`
    saw the parent gone first) and is inside `stop.set()`, holding the Event's lock; a second
    `stop.set()` in the handler would wait for that lock forever, and the engine would never
    stop, nor let the next one take engine.lock."""

    def __init__(self, stop: threading.Event, current: list[Engine],
                 listener: WakeListener | None) -> None:
        self.stop, self.current, self.listener = stop, current, listener
        self.called = False

    def __call__(self, *_: object) -> None:
        if self.called:
            return
        self.called = True
        self.stop.set()
        for e in self.current:
            e.request_stop()
        if self.listener is not None:
            self.listener.wake()


def run_candidate(settings: Settings, *, wake_fd: int = -1, parent: int | None = None,
                  upgrade: bool = False, status: bool = True) -> int:
    """An engine candidate until SIGTERM/SIGINT (or, with `parent`, until that process is
    gone): it takes and renews the lease (engine/lease.py) and runs passes only while it leads,
    each unit of work fenced by the lease; deposed, it stands by and tries again. On SQLite one
    candidate per data directory runs at all (`engine.lock`). `wake_fd`: a pipe whose bytes ask
    for a pass now. `status`: write the pass statistics and role to `engine-status.json` (for the
    server that started it; candidates of their own share a data directory, and log instead)."""
    os.umask(0o077)  # what the engine writes in $SUANLI_HOME is owner-only, like the rest
    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    stop = threading.Event()
    current: list[Engine] = []
    # On PostgreSQL the API replicas NOTIFY suanli_wake after a submission: a wake-up reaches
    # this candidate on whichever machine it runs (the pipe only reaches a child of `serve`).
    listener = None if settings.database_url.startswith("sqlite") \
        else WakeListener(settings.database_url)

    on_signal = Stopper(stop, current, listener)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if settings.database_url.startswith("sqlite"):
        lock = open(settings.home / LOCK_FILE, "a+")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another engine holds %s; waiting for it to end",
                        settings.home / LOCK_FILE)
            fcntl.flock(lock, fcntl.LOCK_EX)
    if settings.engine_nice:
        # Passes are background work; an API request waiting on the CPU is a user waiting.
        os.nice(settings.engine_nice)
    platform = Platform(db=Database(settings.database_url), settings=settings)
    if upgrade:
        platform.db.upgrade()
    lease = Lease(platform)
    lease.install()

    def engine_report() -> dict[str, Any]:
        last = current[0].status().last if current else None
        return {"leading": lease.leading, "epoch": lease.epoch,
                "last_pass_at": last.at if last else None,
                "last_pass_ms": round(last.seconds * 1000) if last and last.at else None}

    # The replica id is the lease's holder name: `suanli status` matches the two.
    heartbeat = Heartbeat(platform, "engine", replica_id=lease.holder, report=engine_report)
    heartbeat.start()
    keeper = threading.Thread(target=lease.keep, args=(stop,), name="suanli-lease", daemon=True)
    keeper.start()

    def wait(timeout: float) -> None:
        if parent is not None and os.getppid() != parent:
            log.warning("the server that started this engine is gone; stopping")
            on_signal()
            return
        if listener is not None:
            if wake_fd >= 0:  # the pipe's wake-ups come as NOTIFYs too: only drain it
                with contextlib.suppress(OSError):
                    while select.select([wake_fd], [], [], 0)[0] and os.read(wake_fd, 4096):
                        pass
            listener(timeout)
            return
        if wake_fd < 0:
            stop.wait(timeout)
            return
        ready, _, _ = select.select([wake_fd], [], [], timeout)
        if ready:
            try:
                if not os.read(wake_fd, 4096):
                    time.sleep(timeout)  # the writer closed: fall back to the interval
            except OSError:
                time.sleep(timeout)

    if listener is not None:
        with contextlib.suppress(Exception):  # unreachable now: the first wait retries
            listener.listen()  # before the first pass: no wake-up sent after this is missed
    log.info("engine candidate %s started", lease.holder)
    def report(engine: Engine | None) -> None:
        if status:
            _write_status(settings.home, engine, lease)

    while not stop.is_set():
        report(None)
        if not lease.wait_leading(settings.lease_renew_s):
            wait(0)  # standby: only notice a parent gone (and drain wake-ups)
            continue
        engine = Engine(platform)  # a new term starts from the database, not from memory
        current[:] = [engine]
        if stop.is_set():
            break
        engine.run(wait, after_pass=report,
                   leading=lambda: lease.leading)
        current.clear()
        if not stop.is_set():
            log.warning("standing by (not the leader any more)")
    stop.set()
    keeper.join(settings.lease_renew_s + 5)
    lease.release()
    heartbeat.stop()
    if listener is not None:
        listener.close()
    platform.db.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="suanli-engine")
    ap.add_argument("--wake-fd", type=int, default=-1)
    args = ap.parse_args(argv)
    parent = os.getppid()
    _die_with_parent()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: every stack, to the log
    settings = Settings.from_env()
    logs.configure(settings.log_format, settings.log_level)
    return run_candidate(settings, wake_fd=args.wake_fd, parent=parent)


if __name__ == "__main__":
    sys.exit(main())
