"""The engine candidate's stop handler (engine/process.py `Stopper`): a SIGTERM that arrives while
the handler already runs on the main thread — inside `stop.set()`, holding the Event's lock —
must not deadlock the engine. (Seen as an engine that never stopped after its server was killed
with kill -9: `wait` had seen the parent gone and called the handler, the parent-death SIGTERM
re-entered it, and the next server's engine waited for engine.lock for ever.)"""

from __future__ import annotations

import threading

from suanli.engine.process import Stopper


class ReenteringEvent(threading.Event):
    """An Event whose `set` is interrupted, lock held, by the handler again (the signal)."""

    def __init__(self) -> None:
        super().__init__()
        self.handler: Stopper | None = None

    def set(self) -> None:
        with self._cond:  # as Event.set: the lock is held while it sets
            if self.handler is not None:
                handler, self.handler = self.handler, None
                handler()  # the signal arrives here, on the same thread
            self._flag = True
            self._cond.notify_all()


def test_a_signal_inside_the_stop_handler_does_not_deadlock() -> None:
    stop = ReenteringEvent()
    stopper = Stopper(stop, [], None)
    stop.handler = stopper
    t = threading.Thread(target=stopper, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "the stop handler deadlocked on the Event's lock"
    assert stop.is_set() and stopper.called
    stopper()  # later signals: nothing more to do
    assert stop.is_set()
