"""The peers' quotes the engine's passes use (federation, services/peer_quotes.py).

A pass must not wait for a peer: it uses the quotes it has (fresh for `TTL_S`), and a thread of
its own asks for the missing ones (a few at a time); when answers arrive it asks for a full
pass. Until a peer pool's quote for a job's shape is in, that pool is not a candidate for it
("awaiting the peer's quote"): nothing is committed to a peer without its answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..domain.errors import ConnectorError
from ..scheduling import PoolState, QueuedJob, Quote, QuoteKey
from ..services import peer_quotes
from ..services.context import Platform
from ..store.db import log_failure

log = logging.getLogger(__name__)

TTL_S = 30.0  # a quote is used this long, then asked again
FAILED_TTL_S = 10.0  # a peer that did not answer is asked again after this
PER_ROUND = 32  # the most quotes asked for in one round


class QuoteBook:
    def __init__(self, p: Platform, on_news: Callable[[], None]) -> None:
        self.p = p
        self.on_news = on_news
        self._quotes: dict[QuoteKey, tuple[float, Quote]] = {}
        self._lock = threading.Lock()
        self._asking = False

    def current(self, queue: list[QueuedJob], pools: list[PoolState]) -> dict[QuoteKey, Quote]:
        """The fresh quotes for the queue's shapes on the peers' pools; the missing or stale
        ones are asked for in the background."""
        pairs = peer_quotes.wanted((j.req for j in queue), pools)
        if not pairs:
            return {}
        now = time.monotonic()
        fresh: dict[QuoteKey, Quote] = {}
        missing = []
        with self._lock:
            for key in pairs:
                hit = self._quotes.get(key)
                if hit is not None and now < hit[0]:
                    fresh[key] = hit[1]
                else:
                    missing.append(key)
                    if hit is not None:
                        fresh[key] = hit[1]  # stale, still the best we know until renewed
            start = bool(missing) and not self._asking
            if start:
                self._asking = True
        if start:
            todo = [(k, *pairs[k]) for k in missing[:PER_ROUND]]
            threading.Thread(target=self._ask, args=(todo,), name="suanli-quotes",
                             daemon=True).start()
        return fresh

    def _ask(self, todo: list[tuple[QuoteKey, object, PoolState]]) -> None:
        got = 0
        try:
            for key, req, pool in todo:
                try:
                    q = peer_quotes.ask(self.p, req, pool)  # type: ignore[arg-type]
                    ttl = TTL_S
                except ConnectorError as exc:
                    q = Quote(None, reason=f"the peer did not answer: {exc.message}"[:300])
                    ttl = FAILED_TTL_S
                except Exception:  # never the engine's end: asked again next round
                    log_failure(log, "asking %s for a quote failed", pool.label)
                    continue
                with self._lock:
                    self._quotes[key] = (time.monotonic() + ttl, q)
                got += 1
            with self._lock:  # forget what nobody asked for in a while
                now = time.monotonic()
                for k in [k for k, (until, _) in self._quotes.items() if until < now - 600]:
                    del self._quotes[k]
        finally:
            with self._lock:
                self._asking = False
        if got:
            self.on_news()
