"""Per-policy runtimes: a pool of long-lived workers, or a fresh process per call.

Work is a :class:`Job` (a hook call, an ``InitPolicy``, closing instances, ``exit``) that is
finished exactly once through its ``on_done(reply, error)`` callback. A runtime never raises a
policy's own exception: a worker reply with ``ok: false`` is handed over as the reply, and the
engine applies the policy's failure mode.

Worker pools are event driven, so a call costs no thread hand-off in the executor:

* :meth:`WorkerPool.submit` writes the job straight to an idle worker on the submitting thread
  (the gRPC stream reader), or queues it;
* each worker has one *driver* thread blocked on its socket. When a reply arrives the driver
  first gives the worker its next queued job, then finishes the answered one (which builds and
  sends the gRPC response on that same thread);
* one *watchdog* thread per pool enforces deadlines: a queued job expires, a worker still busy at
  its job's deadline is SIGKILLed and replaced. It sleeps until the earliest deadline and is only
  woken when a job brings an earlier one.

Both runtimes track readiness, crashes and quarantine for ``HealthCheck``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from gateway_executor import defaults
from gateway_executor.registry import PolicyEntry
from gateway_executor.worker import (
    Spawner,
    WorkerError,
    WorkerProcess,
    WorkerProtocolError,
    WorkerTimeout,
    encode,
    executable_exists,
)

log = logging.getLogger("gateway_executor.pool")

#: The watchdog sleeps at most this long when nothing is due (keeps the wait bounded).
_WATCH_MAX_SLEEP_S = 3600.0


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


def _ignore(reply: dict[str, Any] | None, error: BaseException | None) -> None:
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


class PolicyRuntime:
    """Common state of a policy's runtime (readiness, crash accounting)."""

    def __init__(
        self,
        entry: PolicyEntry,
        spawner: Spawner,
        workers: int,
        timeout_s: float,
        start_timeout_s: float,
        sync_wait_s: float = 0.0,
    ) -> None:
        self.entry = entry
        #: How long a submitting thread polls for its call's reply (0: never, the driver reads).
        self.sync_wait_s = sync_wait_s
        self.spawner = spawner
        self.size = workers
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.ready = False
        self.reason = "starting"
        self.quarantined = False
        self.python_version = ""
        self.distributions: dict[str, str] = {}
        self.mode: dict[str, str] = {}
        self.stopping = False
        self._crashes: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)

    # crash accounting -----------------------------------------------------------------------
    def _record_crash(self, why: str) -> float | None:
        """Count a crash; return the respawn delay, or None once quarantined. Holds no lock."""
        now = time.monotonic()
        with self._cond:
            self._crashes.append(now)
            while self._crashes and now - self._crashes[0] > defaults.QUARANTINE_WINDOW_S:
                self._crashes.popleft()
            n = len(self._crashes)
            if n >= defaults.QUARANTINE_CRASHES and not self.quarantined:
                self.quarantined = True
                self.ready = False
                self.reason = (
                    f"quarantined after {n} worker crashes in "
                    f"{defaults.QUARANTINE_WINDOW_S:.0f}s (last: {why})"
                )
                self._cond.notify_all()
                log.error("policy %s %s", self.entry.key, self.reason)
                return None
            if self.quarantined:
                return None
        return min(defaults.RESPAWN_BACKOFF_S * (2 ** (n - 1)), defaults.RESPAWN_BACKOFF_MAX_S)

    def _unusable(self) -> PolicyUnavailable | None:
        if self.quarantined:
            return PolicyUnavailable("quarantined", f"policy {self.entry.key} is {self.reason}")
        if self.stopping:
            return PolicyUnavailable("unavailable", "executor is shutting down")
        if not self.ready:
            return PolicyUnavailable(
                "not_ready", f"policy {self.entry.key} is not ready: {self.reason}"
            )
        return None

    def _check_usable(self) -> None:
        problem = self._unusable()
        if problem is not None:
            raise problem

    def _preflight(self) -> str | None:
        if not executable_exists(self.entry.python):
            return f"interpreter {self.entry.python} does not exist or is not executable"
        return None

    # interface ------------------------------------------------------------------------------
    def start(self) -> bool:
        """Start the runtime and run the start-up check; sets ready/reason."""
        raise NotImplementedError

    def init_instance(
        self, iid: str, metadata: dict[str, Any], params: dict[str, Any], deadline: float
    ) -> dict[str, Any]:
        """Create policy instance ``iid``; returns the worker's reply (mode, capabilities)."""
        raise NotImplementedError

    def submit(self, job: Job) -> None:
        """Run one hook call (``job.msg``, op ``call``); ``job.finish`` reports the outcome.

        Never blocks on the policy and never raises: problems (not ready, cancelled, timeout,
        crash) reach ``on_done`` as the error, possibly on the calling thread.
        """
        raise NotImplementedError

    def destroy(self, iid: str) -> None:
        """Forget instance ``iid`` (closing it in the workers)."""
        raise NotImplementedError

    def stop(self, timeout: float) -> None:
        """Stop every process of this policy."""
        raise NotImplementedError

    def live_pids(self) -> list[int]:
        """Pids of processes currently alive (for tests and shutdown checks)."""
        raise NotImplementedError


def _start_failure(reply: dict[str, Any]) -> str:
    return str(reply.get("error") or "start-up check failed")


class WorkerPool(PolicyRuntime):
    """``isolation: worker``: ``size`` long-lived workers, one job at a time each."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._all: set[WorkerProcess] = set()
        self._idle: list[WorkerProcess] = []
        self._queue: collections.deque[Job] = collections.deque()
        self._replacing = 0
        self._stop_event = threading.Event()
        self._starting: list[WorkerProcess] = []
        self._watch = threading.Condition(self._lock)
        self._watch_at = float("inf")
        #: Calls answered on the fast path (reply read by the submitting thread).
        self.sync_calls = 0

    def start(self) -> bool:
        problem = self._preflight()
        if problem:
            self.reason = problem
            return False
        workers: list[WorkerProcess] = self._starting
        try:
            for _ in range(self.size):
                with self._cond:
                    if self.stopping:
                        raise _StartFailed()
                    workers.append(WorkerProcess.spawn(self.entry, self.spawner))
            deadline = time.monotonic() + self.start_timeout_s
            # Send every start frame first so the processes import in parallel.
            for i, w in enumerate(workers):
                w.send(w.start_message(check=i == 0, report=i == 0))
            for i, w in enumerate(workers):
                reply = w.receive(max(deadline - time.monotonic(), 0.001))
                w.note_start(reply)
                if not reply.get("ok"):
                    self.reason = _start_failure(reply)
                    raise _StartFailed()
                if i == 0:
                    self.python_version = w.python_version
                    self.distributions = w.distributions
                    self.mode = dict(reply.get("mode") or {})
        except _StartFailed:
            for w in workers:
                w.kill()
            if self.stopping:
                self.reason = "executor is shutting down"
            return False
        except WorkerTimeout:
            self.reason = f"import/start-up check did not finish within {self.start_timeout_s:.0f}s"
            for w in workers:
                w.kill()
            return False
        except WorkerError as exc:
            died = next((w for w in workers if w.proc.poll() is not None), None)
            how = f" ({died.exit_description()})" if died else ""
            self.reason = f"worker died during start-up{how}: {exc}"
            for w in workers:
                w.kill()
            return False
        with self._cond:
            self._starting = []
            if self.stopping:
                for w in workers:
                    w.kill()
                self.reason = "executor is shutting down"
                return False
            self._all.update(workers)
            self._idle.extend(workers)
            for w in workers:
                self._start_driver_locked(w)
            threading.Thread(
                target=self._watchdog, name=f"watchdog-{self.entry.name}", daemon=True
            ).start()
            self.ready = True
            self.reason = ""
        return True

    # dispatching (all *_locked methods run with self._lock held) ----------------------------
    def submit(self, job: Job) -> None:
        state = job.state
        sync = wake = False
        with self._lock:
            error: BaseException | None = self._unusable()
            if error is None:
                if self._idle:
                    w = self._idle.pop()
                    if self._assign_locked(w, job):
                        data = encode(job.msg)
                        if job.sync and w.reader == "parked":
                            w.reader = "sync"
                            sync = True
                        else:
                            wake = self._to_driver_locked(w)
                    else:
                        self._idle.append(w)
                        error = Cancelled()
                elif state is not None and not state.queued(lambda: self._unqueue(job)):
                    error = Cancelled()
                else:
                    self._queue.append(job)
                    self._watch_deadline_locked(job.deadline)
                    return
        if error is not None:
            job.finish(None, error)
            return
        # Outside the lock: a large body may take a while to write. A write error means the
        # worker died; whoever reads its socket sees that and fails the job.
        w.write(data)
        if sync:
            self._sync_reply(w)
        elif wake:
            w.wake_driver()

    def _sync_reply(self, w: WorkerProcess) -> None:
        """Fast path: this thread waits for the reply (polling, up to ``sync_wait_s``) and
        answers it, saving the hand-off to the driver thread; a slower call is handed to the
        driver, so the stream reader is never held longer than that."""
        if not w.wait_reply(self.sync_wait_s):
            with self._lock:
                wake = self._to_driver_locked(w)
            if wake:
                w.wake_driver()
            return
        self._take_reply(w, sync=True)

    def _take_reply(self, w: WorkerProcess, sync: bool) -> bool:
        """Read one reply of ``w`` (blocking) and handle it; False once ``w`` is finished."""
        error: BaseException | None = None
        reply: dict[str, Any] | None = None
        try:
            reply = w.read_frame()
        except WorkerError as exc:
            error = exc
        return self._on_reply(w, reply, error, sync)

    @staticmethod
    def _to_driver_locked(w: WorkerProcess) -> bool:
        """Make the driver thread the reader of ``w``; True if it must be woken for that."""
        was, w.reader = w.reader, "driver"
        return was != "driver"

    def _assign_locked(self, w: WorkerProcess, job: Job) -> bool:
        """Make ``job`` the worker's current one (filling in per-worker fields)."""
        msg = job.msg
        if msg["op"] == "call":
            seq = w.next_seq()
            if job.state is not None and not job.state.attach(w, seq):
                return False
            msg["seq"] = seq
            if job.iid not in w.known:
                msg["init"] = job.init
            if w.pending_drop:
                msg["drop"], w.pending_drop = w.pending_drop, []
        w.job = job
        self._watch_deadline_locked(job.deadline)
        return True

    def _next_locked(self, w: WorkerProcess, skipped: list[Job]) -> Job | None:
        """Give free worker ``w`` its next queued job, or make it idle."""
        if self.quarantined or self.stopping:
            self._cond.notify_all()  # stop() waits for busy workers
        else:
            queue = self._queue
            now = time.monotonic()
            while queue:
                job = queue.popleft()
                if job.deadline <= now or not self._assign_locked(w, job):
                    skipped.append(job)
                    continue
                return job
        self._idle.append(w)
        # Park only when the whole pool is idle: that is when a lone call may take the fast
        # path. While other workers are busy the driver keeps reading, so the next call needs
        # no wake-up.
        if w.parks and not any(other.job is not None for other in self._all):
            w.reader = "parked"
        return None

    def _unqueue(self, job: Job) -> None:
        """Cancel a job that still waits for a worker."""
        with self._lock:
            try:
                self._queue.remove(job)
            except ValueError:
                return  # already running (the worker learns of it) or expired
        job.finish(None, Cancelled())

    @staticmethod
    def _finish_skipped(skipped: list[Job]) -> None:
        now = time.monotonic()
        for job in skipped:
            if job.state is not None and job.state.cancelled:
                job.finish(None, Cancelled())
            elif job.deadline <= now:
                job.finish(None, AcquireTimeout())
            else:  # pragma: no cover - only cancelled or expired jobs are skipped
                job.finish(None, Cancelled())

    # driver: one thread per worker ----------------------------------------------------------
    def _start_driver_locked(self, w: WorkerProcess) -> None:
        w.doomed = ""
        w.sock.settimeout(None)  # blocking reads from here on, no per-call timeout syscalls
        parks = self.sync_wait_s > 0 and w.enable_parking()
        w.reader = "parked" if parks and w.job is None else "driver"
        threading.Thread(
            target=self._drive, args=(w,), daemon=True, name=f"worker-{self.entry.name}-{w.pid}"
        ).start()

    def _drive(self, w: WorkerProcess) -> None:
        """Read the worker's replies until it dies, leaves or is retired."""
        try:
            while True:
                if w.parks:
                    self._await_turn(w)
                if not self._take_reply(w, sync=False):
                    return
        finally:
            w.close_park_fds()

    def _await_turn(self, w: WorkerProcess) -> None:
        """Driver of a parking worker: sleep while the worker is idle or a submitting thread
        reads its reply; return when this thread must read (a job for it, or the process
        ended while idle, which the read then reports)."""
        while True:
            with self._lock:
                if w.reader == "driver":
                    return
                if w.reader == "parked" and w.exited:
                    w.reader = "driver"
                    return
            w.park()

    def _on_reply(
        self,
        w: WorkerProcess,
        reply: dict[str, Any] | None,
        error: BaseException | None,
        sync: bool,
    ) -> bool:
        """Handle one reply (or read failure) of ``w``; False once ``w`` is finished.

        Runs on the driver thread, or on the submitting thread for a fast-path call
        (``sync``), which hands ``w`` back to the driver when more is to be read.
        """
        skipped: list[Job] = []
        nxt: Job | None = None
        wake = False
        with self._lock:
            job, w.job = w.job, None
            if job is not None and job.state is not None:
                job.state.detach()
            if error is None and job is None:
                error = WorkerProtocolError("reply without a request")
            if error is not None or job is None:
                action = "lost"
            elif job.msg["op"] == "exit":
                action = "exit"
                self._all.discard(w)
                self._cond.notify_all()
            else:
                if reply is not None and reply.get("ok") and job.msg["op"] in ("call", "init"):
                    w.known.add(job.iid)
                if w.doomed:
                    action = "doomed"
                elif self.quarantined:
                    action = "retire"
                    self._all.discard(w)
                    self._cond.notify_all()
                else:
                    action = "next"
                    nxt = self._next_locked(w, skipped)
                    if sync:
                        self.sync_calls += 1
            # A fast-path thread leaves: the driver reads whatever comes next (a queued job's
            # reply, an idle worker's next reply while the pool is busy, or the end of a worker
            # that is being replaced). A driver that saw the process end meanwhile sleeps until
            # woken: wake it to reap the now idle worker.
            if sync and (action != "next" or w.reader == "sync"):
                wake = self._to_driver_locked(w)
            elif sync and w.exited:
                wake = True
        if action == "next":
            assert job is not None
            if nxt is not None:
                w.write(encode(nxt.msg))
            if wake:
                w.wake_driver()
            if skipped:
                self._finish_skipped(skipped)
            job.finish(reply, None)
            return True
        try:
            if action == "lost":
                self._lost(w, job, error)
                return False
            assert job is not None
            if action == "exit":
                w.finish_exit(1.0)
            elif action == "retire":
                w.kill()
            else:  # answered, but the watchdog already condemned it (timed out)
                self._lost(w, None, None)
            job.finish(reply, None)
            return False
        finally:
            if wake:
                w.wake_driver()

    def _lost(self, w: WorkerProcess, job: Job | None, error: BaseException | None) -> None:
        """The worker died, broke the protocol or was killed: replace it, fail its job."""
        timed_out = w.doomed == "call timed out"
        with self._lock:
            member = w in self._all
            self._all.discard(w)
            if w in self._idle:
                self._idle.remove(w)
            replace = member and not self.stopping and not self.quarantined
            if replace:
                self._replacing += 1
            self._cond.notify_all()
        w.kill()
        if member and not self.stopping:
            if w.doomed:
                log.warning(
                    "policy %s: worker pid %d replaced: %s", self.entry.key, w.pid, w.doomed
                )
            else:
                how = "died while idle" if job is None else str(error)
                log.warning(
                    "policy %s: worker pid %d crashed: %s (%s)",
                    self.entry.key,
                    w.pid,
                    how,
                    w.exit_description(),
                )
        if replace:
            why = w.doomed or f"{error} ({w.exit_description()})"
            threading.Thread(
                target=self._replace,
                args=(not w.doomed, why),
                daemon=True,
                name=f"respawn-{self.entry.name}",
            ).start()
        if job is not None:
            job.finish(None, WorkerTimeout("no reply in time") if timed_out else error)

    def _replace(self, crashed: bool, why: str) -> None:
        try:
            while True:
                delay = self._record_crash(why) if crashed else 0.0
                if delay is None:
                    self._quarantine()
                    return
                if self._stop_event.wait(delay) or self.stopping:
                    return
                try:
                    w = WorkerProcess.spawn(self.entry, self.spawner)
                    reply = w.start(check=False, report=False, timeout=self.start_timeout_s)
                    if not reply.get("ok"):
                        w.kill()
                        crashed, why = True, _start_failure(reply)
                        continue
                except WorkerError as exc:
                    crashed, why = True, f"replacement failed: {exc}"
                    continue
                skipped: list[Job] = []
                with self._cond:
                    if self.stopping or self.quarantined:
                        w.kill()
                        return
                    self._all.add(w)
                    self._start_driver_locked(w)
                    nxt = self._next_locked(w, skipped)
                    wake = nxt is not None and self._to_driver_locked(w)
                if nxt is not None:
                    w.write(encode(nxt.msg))
                if wake:
                    w.wake_driver()
                self._finish_skipped(skipped)
                return
        finally:
            with self._cond:
                self._replacing -= 1
                self._cond.notify_all()

    def _quarantine(self) -> None:
        """Quarantined: fail the waiting calls and stop the idle workers (busy ones follow)."""
        with self._lock:
            queued = list(self._queue)
            self._queue.clear()
            idle = list(self._idle)
            self._idle.clear()
            for w in idle:
                self._all.discard(w)
        for w in idle:
            w.kill()
        error = PolicyUnavailable("quarantined", f"policy {self.entry.key} is {self.reason}")
        for job in queued:
            job.finish(None, error)

    # watchdog: deadlines ---------------------------------------------------------------------
    def _watch_deadline_locked(self, deadline: float) -> None:
        if deadline < self._watch_at:
            self._watch_at = deadline
            self._watch.notify()

    def _watchdog(self) -> None:
        lock = self._lock
        with lock:
            while not self.stopping:
                now = time.monotonic()
                expired: list[Job] = []
                if self._queue and any(job.deadline <= now for job in self._queue):
                    expired = [job for job in self._queue if job.deadline <= now]
                    self._queue = collections.deque(j for j in self._queue if j.deadline > now)
                late: list[WorkerProcess] = []
                wake = now + min(self.timeout_s, _WATCH_MAX_SLEEP_S)
                for w in self._all:
                    job = w.job
                    if job is None or w.doomed:
                        continue
                    if job.deadline <= now:
                        w.doomed = "call timed out"
                        late.append(w)
                    elif job.deadline < wake:
                        wake = job.deadline
                for job in self._queue:
                    if job.deadline < wake:
                        wake = job.deadline
                self._watch_at = wake
                if expired or late:
                    lock.release()
                    try:
                        for job in expired:
                            job.finish(None, AcquireTimeout())
                        for w in late:
                            w.kill()  # its driver sees the socket close and replaces it
                    finally:
                        lock.acquire()
                    continue
                self._watch.wait(max(wake - now, 0.001))

    # operations -------------------------------------------------------------------------------
    def init_instance(
        self, iid: str, metadata: dict[str, Any], params: dict[str, Any], deadline: float
    ) -> dict[str, Any]:
        done = threading.Event()
        box: list[tuple[dict[str, Any] | None, BaseException | None]] = []

        def on_done(reply: dict[str, Any] | None, error: BaseException | None) -> None:
            box.append((reply, error))
            done.set()

        msg = {"op": "init", "iid": iid, "metadata": metadata, "params": params}
        self.submit(Job(msg, deadline, on_done, iid=iid))
        done.wait()
        reply, error = box[0]
        if error is not None:
            raise error
        assert reply is not None
        return reply

    def destroy(self, iid: str) -> None:
        targets: list[tuple[WorkerProcess, Job, bool]] = []
        with self._cond:
            for w in self._all:
                if iid in w.known:
                    w.known.discard(iid)
                    w.pending_drop.append(iid)
            # Close right away in idle workers; busy ones close it before their next call.
            for w in list(self._idle):
                if w.pending_drop:
                    self._idle.remove(w)
                    job = Job(
                        {"op": "destroy", "iids": w.pending_drop}, time.monotonic() + 5.0, _ignore
                    )
                    w.pending_drop = []
                    self._assign_locked(w, job)
                    targets.append((w, job, self._to_driver_locked(w)))
        for w, job, wake in targets:
            w.write(encode(job.msg))
            if wake:
                w.wake_driver()

    def stop(self, timeout: float) -> None:
        with self._cond:
            self.stopping = True
            self._stop_event.set()
            self._watch.notify_all()
            starting = list(self._starting)
            queued = list(self._queue)
            self._queue.clear()
        for w in starting:
            w.kill()
        error = PolicyUnavailable("unavailable", "executor is shutting down")
        for job in queued:
            job.finish(None, error)
        end = time.monotonic() + timeout
        with self._cond:
            # Busy workers finish their call first (the service drains calls before this).
            while any(w.job is not None for w in self._all) and time.monotonic() < end:
                self._cond.wait(0.05)
            leaving: list[tuple[WorkerProcess, bool]] = []
            busy: list[WorkerProcess] = []
            for w in self._all:
                if w.job is None:
                    w.job = Job({"op": "exit"}, end, _ignore)
                    leaving.append((w, self._to_driver_locked(w)))
                else:
                    busy.append(w)
            self._idle.clear()
        for w in busy:
            w.kill()
        # ``exit`` lets each shim close() its instances; its driver reaps it.
        for w, wake in leaving:
            w.write(encode({"op": "exit"}))
            if wake:
                w.wake_driver()
        grace = time.monotonic() + max(min(1.0, end - time.monotonic()), 0.1)
        with self._cond:
            while self._all and time.monotonic() < grace:
                self._cond.wait(0.05)
            left = list(self._all)
        for w in left:
            w.kill()
        with self._cond:
            while self._replacing and time.monotonic() < end + 2:
                self._cond.wait(0.05)

    def live_pids(self) -> list[int]:
        with self._cond:
            return [w.pid for w in self._all if w.proc.poll() is None]


class _StartFailed(Exception):
    pass


class PerCallRunner(PolicyRuntime):
    """``isolation: per-call``: a fresh interpreter for every call (at most ``size`` at once)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(self.size)
        self._live: set[WorkerProcess] = set()

    def start(self) -> bool:
        problem = self._preflight()
        if problem:
            self.reason = problem
            return False
        try:
            w = WorkerProcess.spawn(self.entry, self.spawner, control=False)
        except WorkerError as exc:
            self.reason = str(exc)
            return False
        try:
            reply = w.start(check=True, report=True, timeout=self.start_timeout_s)
        except WorkerTimeout:
            self.reason = f"import/start-up check did not finish within {self.start_timeout_s:.0f}s"
            return False
        except WorkerError as exc:
            self.reason = f"worker died during start-up ({w.exit_description()}): {exc}"
            return False
        finally:
            w.kill()
        if not reply.get("ok"):
            self.reason = _start_failure(reply)
            return False
        self.python_version = w.python_version
        self.distributions = w.distributions
        self.mode = dict(reply.get("mode") or {})
        self.ready, self.reason = True, ""
        return True

    def _run(
        self, msgs: list[dict[str, Any]], deadline: float, state: CallState | None
    ) -> dict[str, Any]:
        self._check_usable()
        if not self._slots.acquire(timeout=max(deadline - time.monotonic(), 0)):
            raise AcquireTimeout()
        w = None
        try:
            if state is not None and state.cancelled:
                raise Cancelled()
            w = WorkerProcess.spawn(self.entry, self.spawner, control=False)
            with self._cond:
                self._live.add(w)
            if state is not None and not state.attach(w, 0, kill_on_cancel=True):
                raise Cancelled()
            try:
                left = max(deadline - time.monotonic(), 0.001)
                reply = w.start(check=False, report=False, timeout=left)
                if not reply.get("ok"):
                    return reply
                for msg in msgs:
                    reply = w.request(msg, max(deadline - time.monotonic(), 0.001))
                return reply
            except WorkerTimeout:
                w.kill()
                raise
            except WorkerError as exc:
                w.kill()
                if state is not None and state.cancelled:
                    raise Cancelled() from exc
                why = f"{exc} ({w.exit_description()})"
                log.warning(
                    "policy %s: per-call process pid %d crashed: %s", self.entry.key, w.pid, why
                )
                self._record_crash(why)
                raise
            finally:
                if state is not None:
                    state.detach()
        finally:
            if w is not None:
                w.stop(1.0)  # lets the shim close() its instance; SIGKILL if it hangs
                with self._cond:
                    self._live.discard(w)
            self._slots.release()

    def init_instance(
        self, iid: str, metadata: dict[str, Any], params: dict[str, Any], deadline: float
    ) -> dict[str, Any]:
        return self._run(
            [{"op": "init", "iid": iid, "metadata": metadata, "params": params}], deadline, None
        )

    def submit(self, job: Job) -> None:
        # A process start costs tens of milliseconds; a thread per call is noise next to it.
        threading.Thread(
            target=self._call, args=(job,), daemon=True, name=f"per-call-{self.entry.name}"
        ).start()

    def _call(self, job: Job) -> None:
        msg = job.msg
        msg["init"] = job.init
        msg["seq"] = 1
        try:
            reply = self._run([msg], job.deadline, job.state)
        except Exception as exc:  # every outcome goes to the engine, which maps it
            job.finish(None, exc)
            return
        job.finish(reply, None)

    def destroy(self, iid: str) -> None:
        return None  # nothing outlives a call

    def stop(self, timeout: float) -> None:
        self.stopping = True
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._cond:
                if not self._live:
                    return
            time.sleep(0.02)
        with self._cond:
            live = list(self._live)
        for w in live:
            w.kill()

    def live_pids(self) -> list[int]:
        with self._cond:
            return [w.pid for w in self._live if w.proc.poll() is None]
