"""What every policy runtime shares: readiness, crash accounting and quarantine, statistics.

A runtime runs one policy's calls in processes of the policy's own venv: a pool of long-lived
workers (``pool.py``) or a fresh process per call (``percall.py``). Both track readiness,
crashes and quarantine for ``HealthCheck``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from gateway_executor import defaults
from gateway_executor.jobs import Job, PolicyUnavailable
from gateway_executor.registry import PolicyEntry
from gateway_executor.worker import (
    Spawner,
    WorkerError,
    WorkerProcess,
    WorkerTimeout,
    executable_exists,
)

#: The runtimes (this module, ``pool.py``, ``percall.py``) log under one name, as one component.
log = logging.getLogger("gateway_executor.pool")


@dataclass(frozen=True)
class RuntimeStats:
    """A snapshot of one policy's counters since the executor started."""

    #: Hook calls a worker answered.
    calls: int = 0
    #: ... of which the thread that submitted the call read the reply itself (fast path).
    fast_path_calls: int = 0
    #: Worker processes that died, broke the protocol or failed to start (timeouts excluded).
    crashes: int = 0
    #: Policy processes alive now.
    workers: int = 0
    #: Policy instances (``InitPolicy`` minus ``DestroyPolicy``); counted by the engine.
    instances: int = 0

    def summary(self) -> str:
        """One line for the log."""
        return (
            f"{self.calls} calls ({self.fast_path_calls} fast path), {self.crashes} crashes, "
            f"{self.workers} workers, {self.instances} instances"
        )


def start_failure(reply: dict[str, Any]) -> str:
    """Why a worker's ``start`` reply says it failed."""
    return str(reply.get("error") or "start-up check failed")


class PolicyRuntime:
    """Common state of a policy's runtime (readiness, crash accounting, counters)."""

    def __init__(
        self,
        entry: PolicyEntry,
        spawner: Spawner,
        workers: int,
        timeout_s: float,
        start_timeout_s: float,
        sync_wait_s: float = 0.0,
        init_timeout_s: float | None = None,
        quarantine_cooldown_s: float = defaults.QUARANTINE_COOLDOWN_S,
    ) -> None:
        self.entry = entry
        #: ``InitPolicy`` (``get_policy`` in a worker, waiting for one included) gets this long.
        self.init_timeout_s = init_timeout_s if init_timeout_s is not None else timeout_s
        #: A quarantine ends after this long (0: never); see :meth:`_release`.
        self.quarantine_cooldown_s = quarantine_cooldown_s
        #: How long a submitting thread polls for its call's reply (0: never, the driver reads).
        self.sync_wait_s = sync_wait_s
        self.spawner = spawner
        self.size = workers
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.ready = False
        self.reason = "starting"
        self.quarantined = False
        #: Times quarantined; until ``_probation_until`` one crash quarantines again.
        self.quarantines = 0
        self._probation_until = 0.0
        self._release_timer: threading.Timer | None = None
        self.python_version = ""
        self.distributions: dict[str, str] = {}
        self.mode: dict[str, str] = {}
        self.stopping = False
        self._crashes: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        # Counters for :meth:`stats`, guarded by ``_lock``.
        self._calls = 0
        self._fast_path_calls = 0
        self._crash_count = 0

    # crash accounting -----------------------------------------------------------------------
    def _record_crash(self, why: str) -> float | None:
        """Count a crash; return the respawn delay, or None once quarantined. Holds no lock."""
        now = time.monotonic()
        with self._cond:
            self._crash_count += 1
            self._crashes.append(now)
            while self._crashes and now - self._crashes[0] > defaults.QUARANTINE_WINDOW_S:
                self._crashes.popleft()
            n = len(self._crashes)
            if self.quarantined:
                return None
            if now < self._probation_until:
                self._quarantine_locked(f"quarantined again: crashed on probation ({why})")
                return None
            if n >= defaults.QUARANTINE_CRASHES:
                self._quarantine_locked(
                    f"quarantined after {n} worker crashes in "
                    f"{defaults.QUARANTINE_WINDOW_S:.0f}s (last: {why})"
                )
                return None
        return min(defaults.RESPAWN_BACKOFF_S * (2 ** (n - 1)), defaults.RESPAWN_BACKOFF_MAX_S)

    def _quarantine_locked(self, reason: str) -> None:
        """Quarantine the policy (``_lock`` held) and schedule its release on probation."""
        self.quarantined = True
        self.ready = False
        self.quarantines += 1
        self._probation_until = 0.0
        cooldown = self.quarantine_cooldown_s
        self.reason = reason + (
            f"; released on probation after {cooldown:g}s" if cooldown > 0 else ""
        )
        self._cond.notify_all()
        log.error("policy %s %s", self.entry.key, self.reason)
        if cooldown > 0 and not self.stopping:
            timer = threading.Timer(cooldown, self._release)
            timer.name = f"release-{self.entry.name}"
            timer.daemon = True
            self._release_timer = timer
            timer.start()

    def _release(self) -> None:
        """The cool-down is over: serve again, on probation for one quarantine window."""
        with self._cond:
            if not self.quarantined or self.stopping:
                return
            self.quarantined = False
            self.ready = True
            self._crashes.clear()
            self._probation_until = time.monotonic() + defaults.QUARANTINE_WINDOW_S
            self.reason = ""
            self._release_timer = None
            self._cond.notify_all()
        log.warning(
            "policy %s released from quarantine after %gs: on probation for %gs (the next "
            "crash quarantines it again)",
            self.entry.key,
            self.quarantine_cooldown_s,
            defaults.QUARANTINE_WINDOW_S,
        )
        self._restart_after_quarantine()

    def _restart_after_quarantine(self) -> None:
        """Start what the runtime keeps running (a pool's workers); per-call keeps nothing."""

    @property
    def probation(self) -> bool:
        """Released from quarantine recently: one crash quarantines it again."""
        return not self.quarantined and time.monotonic() < self._probation_until

    def status_reason(self) -> str:
        """The reason for ``HealthCheck``: why not ready, or that it is on probation."""
        if self.probation:
            left = self._probation_until - time.monotonic()
            return (
                f"on probation for {left:.0f}s more: released from quarantine "
                f"(quarantined {self.quarantines}x); the next crash quarantines it again"
            )
        return self.reason

    def cancel_release(self) -> None:
        """Stopping: no release any more."""
        with self._cond:
            timer, self._release_timer = self._release_timer, None
        if timer is not None:
            timer.cancel()

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

    # start-up -------------------------------------------------------------------------------
    def _preflight(self) -> str | None:
        if not executable_exists(self.entry.python):
            return f"interpreter {self.entry.python} does not exist or is not executable"
        return None

    def _start_error(self, exc: WorkerError, died: WorkerProcess | None) -> str:
        """Why start-up failed with ``exc`` (``died``: the process that ended, if known)."""
        if isinstance(exc, WorkerTimeout):
            return f"import/start-up check did not finish within {self.start_timeout_s:.0f}s"
        how = f" ({died.exit_description()})" if died is not None else ""
        return f"worker died during start-up{how}: {exc}"

    def _note_checked(self, w: WorkerProcess, reply: dict[str, Any]) -> None:
        """Keep what the worker that ran the start-up check reported (for ``HealthCheck``)."""
        self.python_version = w.python_version
        self.distributions = w.distributions
        self.mode = dict(reply.get("mode") or {})

    # statistics -----------------------------------------------------------------------------
    def stats(self) -> RuntimeStats:
        """The counters now (``instances`` is the engine's to fill in)."""
        with self._lock:
            return RuntimeStats(
                calls=self._calls,
                fast_path_calls=self._fast_path_calls,
                crashes=self._crash_count,
                workers=self._worker_count_locked(),
            )

    def _worker_count_locked(self) -> int:
        """Policy processes alive now (``_lock`` held)."""
        raise NotImplementedError

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
        """Pids of processes currently alive (shutdown checks)."""
        raise NotImplementedError
