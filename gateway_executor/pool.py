"""``isolation: worker``: a pool of long-lived worker processes per policy.

Event driven, so a call costs no thread hand-off in the executor:

* :meth:`WorkerPool.submit` writes the job straight to an idle worker on the submitting thread
  (the gRPC stream reader), or queues it;
* each worker has one *driver* thread blocked on its socket. When a reply arrives the driver
  first gives the worker its next queued job, then finishes the answered one (which builds and
  sends the gRPC response on that same thread);
* fast path: with nothing else in flight the submitting thread polls for the reply itself for
  a moment, and the idle worker's driver *parks* meanwhile;
* one watchdog (``deadlines.py``) per pool enforces deadlines: a queued job expires, a worker
  still busy at its job's deadline is SIGKILLed and replaced.

A worker that dies is replaced with backoff; too many crashes quarantine the policy
(``runtime.py``).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

from gateway_executor.deadlines import Watchdog
from gateway_executor.framing import encode
from gateway_executor.jobs import (
    AcquireTimeout,
    Cancelled,
    Job,
    PolicyUnavailable,
    finish_skipped,
    ignore_outcome,
)
from gateway_executor.runtime import PolicyRuntime, log, start_failure
from gateway_executor.worker import (
    WorkerError,
    WorkerProcess,
    WorkerProtocolError,
    WorkerTimeout,
    check_seq,
)


class _StartFailed(Exception):
    """Start-up ends here (the reason is set already)."""


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
        self._watchdog = Watchdog(self._lock, self._sweep_locked, f"watchdog-{self.entry.name}")

    def start(self) -> bool:
        problem = self._preflight()
        if problem:
            self.reason = problem
            return False
        workers: list[WorkerProcess] = self._starting
        try:
            self._start_workers(workers)
        except (_StartFailed, WorkerError) as exc:
            if isinstance(exc, WorkerError):
                died = next((w for w in workers if w.proc.poll() is not None), None)
                self.reason = self._start_error(exc, died)
            elif self.stopping:
                self.reason = "executor is shutting down"
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
            self._watchdog.start()
            self.ready = True
            self.reason = ""
        return True

    def _start_workers(self, workers: list[WorkerProcess]) -> None:
        """Spawn ``size`` workers into ``workers`` and start them; the first one runs the
        start-up check. Raises :class:`_StartFailed` or a ``WorkerError``."""
        for _ in range(self.size):
            with self._cond:
                if self.stopping:
                    raise _StartFailed()
                workers.append(
                    WorkerProcess.spawn(
                        self.entry,
                        self.spawner,
                        start_timeout_s=self.start_timeout_s,
                        fork=self.size > 1,
                    )
                )
        deadline = time.monotonic() + self.start_timeout_s
        # Send every start frame first so the processes import in parallel.
        seqs = []
        for i, w in enumerate(workers):
            msg = w.start_message(check=i == 0, report=i == 0)
            msg["seq"] = w.next_seq()
            seqs.append(msg["seq"])
            w.send(msg)
        for i, w in enumerate(workers):
            reply = w.receive(max(deadline - time.monotonic(), 0.001))
            check_seq(reply, seqs[i])
            w.note_start(reply)
            if not reply.get("ok"):
                self.reason = start_failure(reply)
                raise _StartFailed()
            if i == 0:
                self._note_checked(w, reply)

    def _worker_count_locked(self) -> int:
        return len(self._all)

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
                    self._watchdog.note_locked(job.deadline)
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
        """Make ``job`` the worker's current one (filling in per-worker fields). Every frame
        gets a fresh sequence number, which its reply must carry."""
        msg = job.msg
        seq = w.next_seq()
        if msg["op"] == "call":
            if job.state is not None and not job.state.attach(w, seq):
                return False
            msg["seq"] = seq
            if job.iid not in w.known:
                msg["init"] = job.init
            if w.pending_drop:
                msg["drop"], w.pending_drop = w.pending_drop, []
        else:
            msg["seq"] = seq
            if msg["op"] == "exit":
                w.leaving = True
        w.job = job
        self._watchdog.note_locked(job.deadline)
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
        with self._lock:
            if error is None and reply is not None and w.job is not None:
                # A reply to another request (a frame the policy wrote itself, or the real
                # reply after such a frame) is never delivered: the worker is killed.
                try:
                    check_seq(reply, w.job.msg.get("seq"))
                except WorkerProtocolError as exc:
                    error, reply = exc, None
            job, action, nxt, wake = self._settle_locked(w, reply, error, sync, skipped)
            if error is None and job is None:
                error = WorkerProtocolError("reply without a request")
        if action == "next":
            assert job is not None
            if nxt is not None:
                w.write(encode(nxt.msg))
            if wake:
                w.wake_driver()
            if skipped:
                finish_skipped(skipped)
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

    def _settle_locked(
        self,
        w: WorkerProcess,
        reply: dict[str, Any] | None,
        error: BaseException | None,
        sync: bool,
        skipped: list[Job],
    ) -> tuple[Job | None, str, Job | None, bool]:
        """Decide what a reply of ``w`` means: (its job, what happens to ``w``, the next job
        it was given, whether its driver must be woken). The action is ``next`` (``w`` goes
        on), ``lost``, ``exit``, ``retire`` (quarantined) or ``doomed`` (timed out)."""
        nxt: Job | None = None
        job, w.job = w.job, None
        if job is not None and job.state is not None:
            job.state.detach()
        if error is not None or job is None:
            action = "lost"
        elif job.msg["op"] == "exit":
            action = "exit"
            self._all.discard(w)
            self._cond.notify_all()
        else:
            op = job.msg["op"]
            if op == "call":
                self._calls += 1
            if reply is not None and reply.get("ok") and op in ("call", "init"):
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
                    self._fast_path_calls += 1
        # A fast-path thread leaves: the driver reads whatever comes next (a queued job's
        # reply, an idle worker's next reply while the pool is busy, or the end of a worker
        # that is being replaced). A driver that saw the process end meanwhile sleeps until
        # woken: wake it to reap the now idle worker.
        wake = False
        if sync and (action != "next" or w.reader == "sync"):
            wake = self._to_driver_locked(w)
        elif sync and w.exited:
            wake = True
        return job, action, nxt, wake

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
                ended = w.exit_description()
                if ended not in how:
                    how = f"{how} ({ended})"
                log.warning("policy %s: worker pid %d crashed: %s", self.entry.key, w.pid, how)
        if replace:
            why = w.doomed or str(error)
            if not w.doomed and w.exit_description() not in why:
                why = f"{why} ({w.exit_description()})"
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
                    w = WorkerProcess.spawn(
                        self.entry,
                        self.spawner,
                        start_timeout_s=self.start_timeout_s,
                        fork=self.size > 1,
                    )
                    reply = w.start(check=False, report=False, timeout=self.start_timeout_s)
                    if not reply.get("ok"):
                        w.kill()
                        crashed, why = True, start_failure(reply)
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
                finish_skipped(skipped)
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
        self.spawner.drop_server(self.entry.key)  # started again on probation
        error = PolicyUnavailable("quarantined", f"policy {self.entry.key} is {self.reason}")
        for job in queued:
            job.finish(None, error)

    def _restart_after_quarantine(self) -> None:
        """Released from quarantine: bring the pool back to ``size`` workers."""
        with self._cond:
            missing = 0 if self.stopping else self.size - len(self._all) - self._replacing
            self._replacing += max(missing, 0)
        for _ in range(missing):
            threading.Thread(
                target=self._replace,
                args=(False, "released from quarantine"),
                daemon=True,
                name=f"respawn-{self.entry.name}",
            ).start()

    # deadlines ----------------------------------------------------------------------------
    def _sweep_locked(self, now: float) -> tuple[float, Callable[[], None] | None]:
        """The watchdog's look at the pool (lock held): expire queued jobs past their deadline
        and condemn workers whose job is; returns the next deadline and what to do outside the
        lock about what was due."""
        expired: list[Job] = []
        if self._queue and any(job.deadline <= now for job in self._queue):
            expired = [job for job in self._queue if job.deadline <= now]
            self._queue = collections.deque(j for j in self._queue if j.deadline > now)
        late: list[WorkerProcess] = []
        wake = now + self.timeout_s
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
        if not (expired or late):
            return wake, None

        def act() -> None:
            for job in expired:
                job.finish(None, AcquireTimeout())
            for w in late:
                w.kill()  # its driver sees the socket close and replaces it

        return wake, act

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
                        {"op": "destroy", "iids": w.pending_drop},
                        time.monotonic() + 5.0,
                        ignore_outcome,
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
            self._watchdog.stop_locked()
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
            leaving: list[tuple[WorkerProcess, Job, bool]] = []
            busy: list[WorkerProcess] = []
            for w in self._all:
                if w.job is None:
                    job = Job({"op": "exit"}, end, ignore_outcome)
                    self._assign_locked(w, job)
                    leaving.append((w, job, self._to_driver_locked(w)))
                else:
                    busy.append(w)
            self._idle.clear()
        for w in busy:
            w.kill()
        # ``exit`` lets each shim close() its instances; its driver reaps it.
        for w, job, wake in leaving:
            w.write(encode(job.msg))
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
