"""A pool's watchdog: one thread that acts when deadlines pass.

It sleeps until the earliest deadline and is woken early only when a new one comes before that,
so a pool with no work due costs no wake-ups. What is due is decided by the pool (``sweep``),
with the pool's lock held; what to do about it runs without the lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: The watchdog sleeps at most this long when nothing is due (keeps the wait bounded).
MAX_SLEEP_S = 3600.0

#: ``sweep(now) -> (next deadline, action or None)``, called with the lock held; the action
#: (expiring jobs, killing workers) runs after the lock was released.
Sweep = Callable[[float], tuple[float, Callable[[], None] | None]]


class Watchdog:
    """Runs ``sweep`` at every deadline it was told of, on its own thread."""

    def __init__(self, lock: threading.Lock, sweep: Sweep, name: str) -> None:
        self._cond = threading.Condition(lock)
        self._sweep = sweep
        self._name = name
        self._at = float("inf")
        self._stopped = False

    def start(self) -> None:
        """Start the thread (it runs until :meth:`stop_locked`)."""
        threading.Thread(target=self._run, name=self._name, daemon=True).start()

    def note_locked(self, deadline: float) -> None:
        """A new deadline (lock held): wake the thread if it comes before its next one."""
        if deadline < self._at:
            self._at = deadline
            self._cond.notify()

    def stop_locked(self) -> None:
        """End the thread (lock held)."""
        self._stopped = True
        self._cond.notify_all()

    def _run(self) -> None:
        cond = self._cond
        with cond:
            while not self._stopped:
                now = time.monotonic()
                wake, due = self._sweep(now)
                self._at = wake = min(wake, now + MAX_SLEEP_S)
                if due is not None:
                    cond.release()
                    try:
                        due()
                    finally:
                        cond.acquire()
                    continue
                cond.wait(max(wake - now, 0.001))
