"""What a policy runtime is handed and how it answers: jobs, call state, call outcomes.

Work is a :class:`Job` (a hook call, an ``InitPolicy``, closing instances, ``exit``) that is
finished exactly once through its ``on_done(reply, error)`` callback. A runtime never raises a
policy's own exception: a worker reply with ``ok: false`` is handed over as the reply, and the
engine applies the policy's failure mode. The exceptions below are the runtime's own reasons.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from gateway_executor.worker import WorkerProcess


class PolicyUnavailable(Exception):
    """The policy cannot take calls (not ready, quarantined, shutting down)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class AcquireTimeout(Exception):
    """No worker became free before the call's deadline."""


class Cancelled(Exception):
    """The call was cancelled before it finished."""


#: ``on_done(reply, error)``: exactly one of the two is not None.
DoneCallback = Callable[[dict[str, Any] | None, BaseException | None], None]


def ignore_outcome(reply: dict[str, Any] | None, error: BaseException | None) -> None:
    """``on_done`` of housekeeping jobs nobody waits for (``destroy``, ``exit``)."""
    return None


class CallState:
    """Shared between a call and whoever may cancel it (the stream session)."""

    __slots__ = ("_lock", "cancelled", "on_cancel", "proc_kill", "seq", "worker")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cancelled = False
        self.worker: WorkerProcess | None = None
        self.seq = 0
        self.proc_kill = False
        #: Set while the call waits in a pool's queue: takes it out of the queue.
        self.on_cancel: Callable[[], None] | None = None

    def attach(self, worker: WorkerProcess, seq: int, kill_on_cancel: bool = False) -> bool:
        """Record the worker now running the call; False if already cancelled."""
        with self._lock:
            self.worker, self.seq, self.proc_kill = worker, seq, kill_on_cancel
            self.on_cancel = None
            return not self.cancelled

    def detach(self) -> None:
        """The worker finished the call."""
        with self._lock:
            self.worker = None

    def queued(self, on_cancel: Callable[[], None]) -> bool:
        """The call waits in a queue; False if already cancelled."""
        with self._lock:
            self.on_cancel = on_cancel
            return not self.cancelled

    def cancel(self) -> None:
        """Mark cancelled and tell the worker (or take the call out of its queue)."""
        with self._lock:
            if self.cancelled:
                return
            self.cancelled = True
            worker, seq, kill, hook = self.worker, self.seq, self.proc_kill, self.on_cancel
            self.on_cancel = None
        if worker is not None:
            if kill:
                worker.kill()
            else:
                worker.cancel(seq)
        elif hook is not None:
            hook()


class Job:
    """One frame for a worker and what to do with its answer."""

    __slots__ = ("_done", "deadline", "iid", "init", "msg", "on_done", "state", "sync")

    def __init__(
        self,
        msg: dict[str, Any],
        deadline: float,
        on_done: DoneCallback,
        iid: str = "",
        init: dict[str, Any] | None = None,
        state: CallState | None = None,
        sync: bool = False,
    ) -> None:
        self.msg = msg
        self.deadline = deadline
        self.on_done = on_done
        self.iid = iid
        #: ``get_policy`` arguments, sent along the first time a worker sees ``iid``.
        self.init = init
        self.state = state
        #: The submitting thread may wait for the reply itself (nothing else is in flight).
        self.sync = sync
        self._done = False

    def finish(self, reply: dict[str, Any] | None, error: BaseException | None) -> None:
        """Hand the outcome over (only the first call counts)."""
        if self._done:
            return
        self._done = True
        self.on_done(reply, error)


def finish_skipped(skipped: Iterable[Job]) -> None:
    """Fail jobs taken out of a queue without running: cancelled, or past their deadline."""
    now = time.monotonic()
    for job in skipped:
        if job.state is not None and job.state.cancelled:
            job.finish(None, Cancelled())
        elif job.deadline <= now:
            job.finish(None, AcquireTimeout())
        else:  # pragma: no cover - only cancelled or expired jobs are skipped
            job.finish(None, Cancelled())
