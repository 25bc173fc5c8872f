"""Per-policy runtimes: a pool of long-lived workers, or a fresh process per call.

Both track readiness, crashes and quarantine for ``HealthCheck``. A runtime never raises a
policy's own exception: a worker reply with ``ok: false`` is returned to the caller, which applies
the policy's failure mode.
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
    WorkerTimeout,
    executable_exists,
)

log = logging.getLogger("gateway_executor.pool")


class PolicyUnavailable(Exception):
    """The policy cannot take calls (not ready, quarantined, shutting down)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class AcquireTimeout(Exception):
    """No worker became free before the call's deadline."""


class Cancelled(Exception):
    """The call was cancelled while it waited."""


class CallState:
    """Shared between a call and whoever may cancel it (the stream session)."""

    __slots__ = ("_lock", "before_block", "cancelled", "proc_kill", "seq", "waiting", "worker")

    def __init__(self, before_block: Callable[[], None] | None = None) -> None:
        self._lock = threading.Lock()
        #: Called once, just before the call first blocks (the stream uses it to hand the
        #: reader role to another thread only when this one stops running Python code).
        self.before_block = before_block
        self.cancelled = False
        self.worker: WorkerProcess | None = None
        self.seq = 0
        self.waiting: threading.Condition | None = None
        self.proc_kill = False

    def blocking(self) -> None:
        """The call is about to block: run the ``before_block`` hook (once)."""
        hook, self.before_block = self.before_block, None
        if hook is not None:
            hook()

    def attach(self, worker: WorkerProcess, seq: int, kill_on_cancel: bool = False) -> bool:
        """Record the worker now running the call; False if already cancelled."""
        with self._lock:
            self.worker, self.seq, self.proc_kill = worker, seq, kill_on_cancel
            return not self.cancelled

    def detach(self) -> None:
        """The worker finished the call."""
        with self._lock:
            self.worker = None

    def cancel(self) -> None:
        """Mark cancelled and tell the worker (or wake the waiter)."""
        with self._lock:
            self.cancelled = True
            worker, seq, kill, cond = self.worker, self.seq, self.proc_kill, self.waiting
        if worker is not None:
            if kill:
                worker.kill()
            else:
                worker.cancel(seq)
        elif cond is not None:
            with cond:
                cond.notify_all()


class PolicyRuntime:
    """Common state of a policy's runtime (readiness, crash accounting)."""

    def __init__(self, entry: PolicyEntry, spawner: Spawner, workers: int, timeout_s: float,
                 start_timeout_s: float) -> None:
        self.entry = entry
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
        self._cond = threading.Condition()

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

    def _check_usable(self) -> None:
        if self.quarantined:
            raise PolicyUnavailable("quarantined", f"policy {self.entry.key} is {self.reason}")
        if self.stopping:
            raise PolicyUnavailable("unavailable", "executor is shutting down")
        if not self.ready:
            raise PolicyUnavailable("not_ready", f"policy {self.entry.key} is not ready: {self.reason}")

    def _preflight(self) -> str | None:
        if not executable_exists(self.entry.python):
            return f"interpreter {self.entry.python} does not exist or is not executable"
        return None

    # interface ------------------------------------------------------------------------------
    def start(self) -> bool:
        """Start the runtime and run the start-up check; sets ready/reason."""
        raise NotImplementedError

    def init_instance(self, iid: str, metadata: dict[str, Any], params: dict[str, Any],
                      deadline: float) -> dict[str, Any]:
        """Create policy instance ``iid``; returns the worker's reply (mode, capabilities)."""
        raise NotImplementedError

    def call(self, iid: str, init: dict[str, Any], msg: dict[str, Any], deadline: float,
             state: CallState) -> dict[str, Any]:
        """Run one hook call; returns the worker's reply dict."""
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
    """``isolation: worker``: ``size`` long-lived workers, one call at a time each."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._all: set[WorkerProcess] = set()
        self._idle: list[WorkerProcess] = []
        self._replacing = 0
        self._stop_event = threading.Event()
        self._starting: list[WorkerProcess] = []

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
            self.ready = True
            self.reason = ""
        return True

    # leasing ----------------------------------------------------------------------------------
    def _acquire(self, deadline: float, state: CallState | None) -> WorkerProcess:
        cond = self._cond
        with cond:
            while True:
                self._check_usable()
                if state is not None and state.cancelled:
                    raise Cancelled()
                while self._idle:
                    w = self._idle.pop()
                    if w.proc.poll() is None:
                        return w
                    self._lose_locked(w, crashed=True, why=f"died while idle ({w.exit_description()})")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AcquireTimeout()
                if state is not None:
                    state.waiting = cond
                    if state.before_block is not None:
                        cond.release()
                        try:
                            state.blocking()
                        finally:
                            cond.acquire()
                        continue
                cond.wait(left)

    def _release(self, w: WorkerProcess) -> None:
        with self._cond:
            if not w.dead and w in self._all:
                self._idle.append(w)
                self._cond.notify()

    def _lose(self, w: WorkerProcess, crashed: bool, why: str) -> None:
        with self._cond:
            self._lose_locked(w, crashed, why)

    def _lose_locked(self, w: WorkerProcess, crashed: bool, why: str) -> None:
        w.kill()
        if w not in self._all:
            return
        self._all.discard(w)
        if self.stopping:
            return
        if crashed:
            log.warning("policy %s: worker pid %d crashed: %s", self.entry.key, w.pid, why)
        else:
            log.warning("policy %s: worker pid %d replaced: %s", self.entry.key, w.pid, why)
        self._replacing += 1
        threading.Thread(target=self._replace, args=(crashed, why), daemon=True,
                         name=f"respawn-{self.entry.name}").start()

    def _replace(self, crashed: bool, why: str) -> None:
        try:
            while True:
                delay = self._record_crash(why) if crashed else 0.0
                if delay is None or self._stop_event.wait(delay) or self.stopping:
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
                with self._cond:
                    if self.stopping or self.quarantined:
                        w.kill()
                        return
                    self._all.add(w)
                    self._idle.append(w)
                    self._cond.notify()
                return
        finally:
            with self._cond:
                self._replacing -= 1
                self._cond.notify_all()

    # operations -------------------------------------------------------------------------------
    def _exchange(self, w: WorkerProcess, msg: dict[str, Any], deadline: float,
                  state: CallState | None = None) -> dict[str, Any]:
        try:
            w.send(msg)
            if state is not None:
                state.blocking()
            return w.receive(max(deadline - time.monotonic(), 0.001))
        except WorkerTimeout:
            self._lose(w, crashed=False, why="call timed out")
            raise
        except WorkerError as exc:
            self._lose(w, crashed=True, why=f"{exc} ({w.exit_description()})")
            raise

    def init_instance(self, iid: str, metadata: dict[str, Any], params: dict[str, Any],
                      deadline: float) -> dict[str, Any]:
        w = self._acquire(deadline, None)
        try:
            reply = self._exchange(w, {"op": "init", "iid": iid, "metadata": metadata,
                                       "params": params}, deadline)
            if reply.get("ok"):
                with self._cond:
                    w.known.add(iid)
            return reply
        finally:
            self._release(w)

    def call(self, iid: str, init: dict[str, Any], msg: dict[str, Any], deadline: float,
             state: CallState) -> dict[str, Any]:
        w = self._acquire(deadline, state)
        try:
            with self._cond:
                if iid not in w.known:
                    msg["init"] = init
                if w.pending_drop:
                    msg["drop"], w.pending_drop = w.pending_drop, []
            seq = w.next_seq()
            msg["seq"] = seq
            if not state.attach(w, seq):
                raise Cancelled()
            try:
                reply = self._exchange(w, msg, deadline, state)
            finally:
                state.detach()
            if "init" in msg and reply.get("ok"):
                with self._cond:
                    w.known.add(iid)
            return reply
        finally:
            self._release(w)

    def destroy(self, iid: str) -> None:
        with self._cond:
            targets = []
            for w in self._all:
                if iid in w.known:
                    w.known.discard(iid)
                    w.pending_drop.append(iid)
            # Close right away in idle workers; busy ones close it before their next call.
            for w in list(self._idle):
                if w.pending_drop:
                    self._idle.remove(w)
                    targets.append(w)
        for w in targets:
            drop, w.pending_drop = w.pending_drop, []
            try:
                self._exchange(w, {"op": "destroy", "iids": drop}, time.monotonic() + 5.0)
            except WorkerError:
                continue
            self._release(w)

    def stop(self, timeout: float) -> None:
        with self._cond:
            self.stopping = True
            self._stop_event.set()
            self._cond.notify_all()
            for w in self._starting:
                w.kill()
            end = time.monotonic() + timeout
            # Busy workers finish their call first (the service drains calls before this).
            while len(self._idle) < len(self._all) and time.monotonic() < end:
                self._cond.wait(0.05)
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
        for w in workers:
            w.stop(min(1.0, max(end - time.monotonic(), 0.1)))
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

    def _run(self, msgs: list[dict[str, Any]], deadline: float,
             state: CallState | None) -> dict[str, Any]:
        self._check_usable()
        if state is not None:
            state.blocking()
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
                log.warning("policy %s: per-call process pid %d crashed: %s",
                            self.entry.key, w.pid, why)
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

    def init_instance(self, iid: str, metadata: dict[str, Any], params: dict[str, Any],
                      deadline: float) -> dict[str, Any]:
        return self._run([{"op": "init", "iid": iid, "metadata": metadata, "params": params}],
                         deadline, None)

    def call(self, iid: str, init: dict[str, Any], msg: dict[str, Any], deadline: float,
             state: CallState) -> dict[str, Any]:
        msg["init"] = init
        msg["seq"] = 1
        return self._run([msg], deadline, state)

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
