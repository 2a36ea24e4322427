"""The platform's control loop: reconcile runs with their centers, meter what ended, place what waits.

One engine per server. Each step is idempotent and commits per run, so a crash at any point is
recovered by the next pass: runs are found again by their key, a run is metered exactly once (the
usage table has one row per run, enforced by the database), and a job gets a new run only after
its previous run has ended.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from ..services import peer_money, peer_report, peers
from ..services.artifacts import reap_expired_outputs
from ..services.billing import stop_over_budget
from ..services.context import Platform
from ..services.control import EngineStatus, PassStats
from ..services.dags import advance as advance_dags
from ..services.prices import sync_current as sync_current_prices
from ..services.vouchers import expire_grants
from ..store.db import cause, log_failure, unavailable
from .health import check_centers
from .lease import Deposed
from .placement import Placer
from .reconcile import Reconciler

log = logging.getLogger("suanli.engine")

MIN_GAP_S = 0.2
SLOW_PASS_S = 0.5  # a pass this long is logged (the scheduler runs one a second)


class Engine(Reconciler, Placer):
    """One pass after another: health and housekeeping every `health_interval_s`, reconcile and
    failover, budgets, cancels, DAG stages, then the scheduling pass. Its parts: `closing`
    (ending runs), `submit` (handing runs to centers), `reconcile`, `placement`."""

    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        self.last = PassStats()
        self._last_health = -1e9
        self._last_discovery = -1e9
        self._discovering = threading.Lock()  # one discovery of the peers' pools at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Ask for a pass soon (after a submission, a cancel, a capacity change)."""
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="suanli-engine", daemon=True)
            self._thread.start()

    def status(self) -> EngineStatus:
        return EngineStatus(last=self.last, placements_total=self.placements_total,
                            running=self._thread is not None and self._thread.is_alive(),
                            pid=os.getpid())

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        def wait(timeout: float) -> None:
            self._wake.wait(timeout)
            self._wake.clear()

        self.run(wait)

    def run(self, wait: Callable[[float], None],
            after_pass: Callable[[Engine], None] | None = None,
            leading: Callable[[], bool] | None = None) -> None:
        """Run passes until stopped, or until `leading()` is false (the lease is lost: a pass
        that meets `Deposed` ends there). `wait(timeout)` returns early when someone wakes us."""
        interval = self.p.settings.scheduler_interval_s
        db_down = False  # the last pass met the database unreachable (said once, not each pass)
        while not self._stop.is_set() and (leading is None or leading()):
            t0 = self.p.clock.monotonic()
            try:
                self.tick()
            except Deposed as exc:  # nothing of the pass past this point was committed
                log.warning("pass ended: %s", exc)
                break
            except Exception as exc:  # the loop must survive anything one pass hits
                if leading is not None and not leading():
                    # e.g. the server ended its transaction, idle past the lease (paused)
                    log.warning("pass ended, the lease lost: %s", str(exc).splitlines()[0])
                    break
                if unavailable(exc):
                    # The database restarting or out of reach: what the pass did so far is
                    # committed or not, per unit, and the next pass picks up from the tables.
                    if not db_down:
                        log.warning("engine pass: the database is unavailable (%s); trying "
                                    "again every pass", cause(exc))
                    db_down = True
                else:
                    log.exception("engine pass failed")
            else:
                if db_down:
                    log.warning("engine pass: the database is back")
                db_down = False
            if leading is not None and not leading():
                break
            took = self.p.clock.monotonic() - t0
            if after_pass is not None:
                after_pass(self)
            wait(interval)
            # Wake-ups coalesce: at least MIN_GAP between passes, and never more than half the
            # time in passes, so a burst of submissions cannot starve the API of the GIL.
            pause = max(MIN_GAP_S, took) - (self.p.clock.monotonic() - t0 - took)
            if pause > 0:
                self._stop.wait(pause)

    def tick(self) -> PassStats:
        started = self.p.clock.monotonic()
        stats = PassStats(at=self.p.clock.now())
        now_m = self.p.clock.monotonic()
        if now_m - self._last_health >= self.p.settings.health_interval_s:
            self._last_health = now_m
            if check_centers(self.p):
                self.request_full_pass()  # a center went offline or came back
            self.housekeeping()
            discover = now_m - self._last_discovery >= self.p.settings.peer_discovery_s
            if discover:
                self._last_discovery = now_m
            self.sync_peers(discover=discover)
        ended = self.reconcile()
        lost = self.fail_over()
        if lost:
            self.request_full_pass()  # their units are free again
        stats.finished = ended + lost
        if stats.finished:
            self._full_due = True  # capacity came back
        with self.p.db.session(immediate=True) as s:
            if stop_over_budget(s, self.p.clock.now()):
                log.info("jobs stopped at their budget")
        self.push_cancels()
        advance_dags(self.p)  # stages whose parents completed join the queue
        t1 = self.p.clock.monotonic()
        self.schedule_pass(stats)
        t2 = self.p.clock.monotonic()
        stats.seconds = t2 - started
        stats.phases["reconcile"] = round(t1 - started, 4)
        stats.phases["schedule"] = round(t2 - t1, 4)
        if stats.seconds > SLOW_PASS_S:
            log.info("slow pass: %.3fs %s, %d queued, %d placed", stats.seconds, stats.phases,
                     stats.queued, stats.placed)
        self.last = stats
        return stats

    def housekeeping(self) -> None:
        """What moves with time: prices whose version became valid, grants that expired, jobs'
        outputs past their retention."""
        with self.p.db.session() as s:
            changed = sync_current_prices(s, self.p.clock.now())
        if changed:
            self.p.topology_changed()
        if expire_grants(self.p):
            log.info("voucher grants expired")
        try:
            reap_expired_outputs(self.p)
        except OSError:  # the artifact store unreachable: try again at the next housekeeping
            log.exception("removing expired job outputs failed")

    def sync_peers(self, *, discover: bool) -> None:
        """With the peer platforms that lend to us, in a thread of its own (a slow peer never
        holds up a pass): copy what they billed us for our ended runs there, and (`discover`)
        ask for their pools again; a change of pools asks for a full pass."""
        if not self._discovering.acquire(blocking=False):
            return  # the last round is still asking
        if not peers.any_lender(self.p):
            self._discovering.release()
            return

        def run() -> None:
            try:
                peer_money.collect_charges(self.p)
                if discover:
                    if peers.discover_all(self.p):
                        self.request_full_pass()
                    peer_report.send(self.p)
            except Exception:  # the next interval tries again
                log_failure(log, "syncing with the peer platforms failed")
            finally:
                self._discovering.release()

        threading.Thread(target=run, name="suanli-peer-discovery", daemon=True).start()

    def request_full_pass(self) -> None:
        """Capacity may have changed (a cancel, a center back online): re-examine every job."""
        self._full_due = True
        self.wake()
