"""``isolation: per-call``: a fresh interpreter for every call.

Each call imports the policy, runs ``get_policy``, the hook and ``close`` in its own process, at
most ``size`` at once: nothing a policy does outlives its call, at the price of a process start
(tens of milliseconds) per call.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from gateway_executor.jobs import AcquireTimeout, CallState, Cancelled, Job
from gateway_executor.runtime import PolicyRuntime, log, start_failure
from gateway_executor.worker import WorkerError, WorkerProcess, WorkerTimeout


class PerCallRunner(PolicyRuntime):
    """``isolation: per-call``: a fresh interpreter for every call (at most ``size`` at once)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(self.size)
        self._live: set[WorkerProcess] = set()

    def _worker_count_locked(self) -> int:
        return len(self._live)

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
        except WorkerError as exc:
            self.reason = self._start_error(exc, w)
            return False
        finally:
            w.kill()
        if not reply.get("ok"):
            self.reason = start_failure(reply)
            return False
        self._note_checked(w, reply)
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
        with self._cond:
            self._calls += 1
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
