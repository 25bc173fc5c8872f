"""The executor's core: policy runtimes, policy instances, and one call from request to response.

Transport-free: the gRPC service (``service.py``) and the benchmark call into this.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway_executor import defaults, translate
from gateway_executor.containment import Launch
from gateway_executor.jobs import AcquireTimeout, CallState, Cancelled, Job, PolicyUnavailable
from gateway_executor.percall import PerCallRunner
from gateway_executor.pool import WorkerPool
from gateway_executor.protections import Protections
from gateway_executor.proto import python_executor_pb2 as pb
from gateway_executor.registry import PolicyEntry
from gateway_executor.runtime import PolicyRuntime, RuntimeStats
from gateway_executor.worker import Spawner, WorkerError, WorkerTimeout

log = logging.getLogger("gateway_executor.engine")


@dataclass(frozen=True)
class Settings:
    """Runtime knobs; ``None`` means "take the registry entry's own value"."""

    workers: int | None = None
    timeout_s: float | None = None
    max_concurrent: int = defaults.DEFAULT_MAX_CONCURRENT
    start_timeout_s: float = defaults.START_TIMEOUT_S
    shutdown_grace_s: float = defaults.SHUTDOWN_GRACE_S
    #: Fast path: with no other call in flight, the thread that received a call polls for the
    #: worker's reply this long before handing it to the worker's driver thread (0: never).
    sync_wait_s: float = defaults.SYNC_WAIT_US / 1e6
    #: A response larger than this (serialized) fails its call instead of the whole stream.
    max_message_bytes: int = defaults.MAX_MESSAGE_BYTES
    #: A quarantined policy is released on probation after this long (0: never).
    quarantine_cooldown_s: float = defaults.QUARANTINE_COOLDOWN_S


@dataclass
class Instance:
    """A policy instance created by ``InitPolicy`` (one per route attachment)."""

    iid: str
    runtime: PolicyRuntime
    init: dict[str, Any]
    mode: dict[str, str] = field(default_factory=dict)


#: A call waiting for a ``max_concurrent`` slot: (request, kind, state, done, instance).
_Pending = tuple[
    pb.StreamRequest,
    translate.PayloadKind,
    CallState,
    Callable[[pb.StreamResponse | None], None],
    Instance,
]


class Engine:
    """Owns every policy runtime and instance."""

    def __init__(
        self,
        entries: list[PolicyEntry],
        settings: Settings | None = None,
        on_spawn: Callable[[int], None] | None = None,
        launch: Launch | None = None,
    ) -> None:
        self.settings = settings or Settings()
        #: ``on_spawn(pid)``: runs for every policy process right after it started.
        #: ``launch``: how worker processes start (uid/gid, environment; ``containment``).
        self.spawner = Spawner(on_spawn, launch)
        #: Protections that could not be applied; ``HealthCheck`` lists them.
        self.protections = Protections()
        for name, detail in self.spawner.off:
            self.protections.off(name, detail)
        self.runtimes: dict[str, PolicyRuntime] = {}
        for entry in entries:
            workers = self.settings.workers or entry.workers
            timeout = self.settings.timeout_s or entry.timeout_ms / 1000.0
            init_ms = entry.init_timeout_ms or entry.timeout_ms
            # The start-up check must see the params as InitPolicy delivers them.
            entry = dataclasses.replace(entry, params=translate.as_init_params(entry.params))
            cls = PerCallRunner if entry.isolation == "per-call" else WorkerPool
            self.runtimes[entry.key] = cls(
                entry,
                self.spawner,
                workers,
                timeout,
                self.settings.start_timeout_s,
                sync_wait_s=self.settings.sync_wait_s,
                init_timeout_s=init_ms / 1000.0,
                quarantine_cooldown_s=self.settings.quarantine_cooldown_s,
            )
        self._instances: dict[str, Instance] = {}
        self._lock = threading.Lock()
        self.started = False
        self.draining = False
        self._inflight = 0
        self._idle = threading.Condition(self._lock)
        #: Calls running now, and the ones waiting for a ``max_concurrent`` slot.
        self._running = 0
        self._backlog: collections.deque[_Pending] = collections.deque()
        self._tls = threading.local()

    # ---- start / status ----------------------------------------------------------------------
    def start(self) -> bool:
        """Start every runtime in parallel; True when all passed their start-up check."""
        threads = [
            threading.Thread(target=rt.start, name=f"start-{rt.entry.name}", daemon=True)
            for rt in self.runtimes.values()
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for rt in self.runtimes.values():
            if rt.ready:
                log.info(
                    "policy %s ready (python %s, %s, %d %s)",
                    rt.entry.key,
                    rt.python_version,
                    rt.entry.isolation,
                    rt.size,
                    "workers" if rt.entry.isolation == "worker" else "concurrent calls",
                )
            else:
                log.error("policy %s failed: %s", rt.entry.key, rt.reason)
        self.started = True
        return self.ready

    @property
    def ready(self) -> bool:
        """All policies started, none quarantined, not shutting down."""
        return (
            self.started
            and not self.draining
            and all(rt.ready and not rt.quarantined for rt in self.runtimes.values())
        )

    def not_ready_reason(self) -> str:
        """Why :attr:`ready` is false (empty when ready)."""
        if self.draining:
            return "executor is shutting down"
        if not self.started:
            return "policies are starting"
        bad = [
            f"{rt.entry.key}: {rt.reason}"
            for rt in self.runtimes.values()
            if not rt.ready or rt.quarantined
        ]
        return "; ".join(bad)

    def stats(self) -> dict[str, RuntimeStats]:
        """Each policy's counters (by ``name:version``), with its live instances."""
        with self._lock:
            instances = collections.Counter(i.runtime.entry.key for i in self._instances.values())
        return {
            key: dataclasses.replace(rt.stats(), instances=instances[key])
            for key, rt in self.runtimes.items()
        }

    def health(self) -> pb.HealthCheckResponse:
        """The ``HealthCheck`` answer, with the per-policy extension fields.

        The protocol has no field for the counters of :meth:`stats`; at debug level each
        health check logs them.
        """
        if log.isEnabledFor(logging.DEBUG):
            for key, stats in sorted(self.stats().items()):
                log.debug("policy %s: %s", key, stats.summary())
        resp = pb.HealthCheckResponse(
            ready=self.ready,
            loaded_policies=sum(1 for rt in self.runtimes.values() if rt.ready),
            reason=self.not_ready_reason(),
        )
        for rt in sorted(self.runtimes.values(), key=lambda r: r.entry.key):
            status = resp.policies.add(
                name=rt.entry.name,
                version=rt.entry.version,
                ready=rt.ready and not rt.quarantined,
                python_version=rt.python_version,
                reason=rt.status_reason(),
                quarantined=rt.quarantined,
                isolation=rt.entry.isolation,
                workers=rt.size,
                probation=rt.probation,
                quarantines=rt.quarantines,
            )
            status.distributions.update(rt.distributions)
        for note in self.protections.list():
            resp.protections_off.add(name=note.name, detail=note.detail, policy=note.policy)
        return resp

    # ---- instances -----------------------------------------------------------------------------
    def find_runtime(self, name: str, version: str) -> PolicyRuntime | None:
        """Exact ``name:version``, else the same name with the same major version."""
        rt = self.runtimes.get(f"{name}:{version}")
        if rt is not None:
            return rt
        major = version.split(".", 1)[0]
        matches = [
            r for r in self.runtimes.values() if r.entry.name == name and r.entry.major == major
        ]
        return matches[0] if len(matches) == 1 else None

    def init_policy(self, req: pb.InitPolicyRequest) -> pb.InitPolicyResponse:
        """Create a policy instance (``InitPolicy``)."""
        rt = self.find_runtime(req.policy_name, req.policy_version)
        if rt is None:
            return pb.InitPolicyResponse(
                success=False,
                error_message=f"unknown policy {req.policy_name}:{req.policy_version}",
            )
        if self.draining or not rt.ready or rt.quarantined:
            return pb.InitPolicyResponse(
                success=False,
                error_message=f"policy {rt.entry.key} is not ready: {rt.reason or 'shutting down'}",
            )
        iid = str(uuid.uuid4())
        init = {
            "metadata": translate.metadata_to_wire(req.policy_metadata),
            "params": translate.struct_to_dict(req.params),
        }
        # ``get_policy`` (and the wait for a worker) gets the policy's init timeout; a worker
        # still in it then is killed and replaced, like a call over its timeout.
        deadline = time.monotonic() + rt.init_timeout_s
        try:
            reply = rt.init_instance(iid, init["metadata"], init["params"], deadline)
        except (WorkerTimeout, AcquireTimeout) as exc:
            what = "get_policy did not finish" if isinstance(exc, WorkerTimeout) else "no worker"
            log.warning("InitPolicy %s: %s within %gs", rt.entry.key, what, rt.init_timeout_s)
            return pb.InitPolicyResponse(
                success=False,
                error_message=f"timeout: {what} within init_timeout_ms ({rt.init_timeout_s:g}s)",
            )
        except (WorkerError, PolicyUnavailable) as exc:
            return pb.InitPolicyResponse(
                success=False, error_message=f"{type(exc).__name__}: {exc}"
            )
        if not reply.get("ok"):
            return pb.InitPolicyResponse(success=False, error_message=str(reply.get("error")))
        try:
            mode = translate.processing_mode(reply["mode"])
            caps = translate.capabilities(reply["capabilities"])
        except (KeyError, TypeError, AttributeError) as exc:
            return pb.InitPolicyResponse(success=False, error_message=f"bad init reply: {exc}")
        with self._lock:
            self._instances[iid] = Instance(iid, rt, init, dict(reply["mode"]))
        log.info(
            "InitPolicy %s route=%s instance=%s", rt.entry.key, req.policy_metadata.route_name, iid
        )
        return pb.InitPolicyResponse(
            success=True, instance_id=iid, processing_mode=mode, capabilities=caps
        )

    def destroy_policy(self, req: pb.DestroyPolicyRequest) -> pb.DestroyPolicyResponse:
        """Forget an instance and close it in the workers (``DestroyPolicy``)."""
        with self._lock:
            inst = self._instances.pop(req.instance_id, None)
        if inst is None:
            return pb.DestroyPolicyResponse(success=True)  # already gone: idempotent
        inst.runtime.destroy(inst.iid)
        return pb.DestroyPolicyResponse(success=True)

    # ---- calls ---------------------------------------------------------------------------------
    def _failure(
        self,
        req: pb.StreamRequest,
        kind: translate.PayloadKind,
        rt: PolicyRuntime,
        error_type: str,
        message: str,
    ) -> pb.StreamResponse:
        entry = rt.entry
        if entry.failure_mode == "skip":
            log.warning(
                "policy %s %s (%s); failure_mode=skip: passing through",
                entry.key,
                error_type,
                message,
            )
            return translate.passthrough_response(req.request_id, kind)
        log.warning("policy %s %s: %s", entry.key, error_type, message)
        return translate.error_response(
            req.request_id,
            message,
            error_type,
            req.policy_name or entry.name,
            req.policy_version or entry.version,
        )

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is in flight (used by shutdown)."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._inflight:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def submit(
        self,
        req: pb.StreamRequest,
        kind: translate.PayloadKind,
        state: CallState,
        done: Callable[[pb.StreamResponse | None], None],
        idle: bool = False,
    ) -> bool:
        """Start one hook call; ``done`` gets its response (``None``: cancelled, send nothing).

        False when the executor is draining: nothing was started and ``done`` is not called.
        Never blocks on a policy. ``done`` runs exactly once: on this thread when the call is
        answered at once, else on the thread that finished it (the worker's driver). At most
        ``max_concurrent`` calls run at once; the rest wait in order (their timeout starts when
        they run, as before). Calls count as in flight (for :meth:`wait_idle`) until ``done``
        returned.
        """
        inst = self._instances.get(req.instance_id)
        sync = False
        with self._lock:
            if self.draining:
                return False
            if inst is not None:
                self._inflight += 1
                item = (req, kind, state, done, inst)
                if self._running >= self.settings.max_concurrent:
                    self._backlog.append(item)
                    return True
                self._running += 1
                # Alone in flight, on a stream that was waiting for it (``idle``: no backlog
                # of unread requests): the submitting thread may wait for the reply itself.
                sync = idle and self._running == 1
        if inst is None:
            done(
                translate.error_response(
                    req.request_id,
                    f"no policy instance {req.instance_id!r} (InitPolicy first)",
                    "execution_error",
                    req.policy_name,
                    req.policy_version,
                )
            )
        elif not self._start(item, sync):
            self._release_slot()
        return True

    def _start(self, item: _Pending, sync: bool = False) -> bool:
        """Hand a call to its runtime; False when it was answered at once (slot still held).

        ``sync``: the runtime may answer on this thread (see :attr:`Settings.sync_wait_s`).
        """
        req, kind, state, done, inst = item
        rt = inst.runtime
        timeout = rt.timeout_s
        em = req.execution_metadata
        if em.HasField("deadline"):
            dl = em.deadline
            if dl.seconds or dl.nanos:
                timeout = min(timeout, dl.seconds + dl.nanos / 1e9 - time.time())
        if timeout <= 0:
            done(self._failure(req, kind, rt, "timeout", "deadline already passed"))
            return False
        deadline = time.monotonic() + timeout
        try:
            msg = translate.request_to_wire(req, kind)
        except Exception as exc:  # a bug here must not kill the stream
            log.exception("call %s: cannot translate the request", req.request_id)
            done(
                translate.error_response(
                    req.request_id,
                    f"internal error: {exc}",
                    "execution_error",
                    req.policy_name,
                    req.policy_version,
                )
            )
            return False
        msg["op"] = "call"
        msg["iid"] = inst.iid
        limit = self.settings.max_message_bytes

        def on_done(reply: dict[str, Any] | None, error: BaseException | None) -> None:
            try:
                resp = self._outcome(req, kind, rt, state, timeout, reply, error)
                # Over the gRPC limit the send would end the whole stream: fail this call.
                if resp is not None and resp.ByteSize() > limit:
                    resp = self._failure(
                        req,
                        kind,
                        rt,
                        "execution_error",
                        f"response too large: {resp.ByteSize()} bytes > {limit}",
                    )
            except Exception as exc:  # a bug here must not lose the call
                log.exception("call %s failed unexpectedly", req.request_id)
                resp = translate.error_response(
                    req.request_id,
                    f"internal error: {exc}",
                    "execution_error",
                    req.policy_name,
                    req.policy_version,
                )
            done(resp)
            self._release_slot()

        rt.submit(Job(msg, deadline, on_done, iid=inst.iid, init=inst.init, state=state, sync=sync))
        return True

    def _release_slot(self) -> None:
        """A call finished (``done`` returned): count it out, and hand its slot to the next
        waiting call or free it."""
        with self._lock:
            self._inflight -= 1
            if not self._inflight:
                self._idle.notify_all()
            if not self._backlog:
                self._running -= 1
                return
            item = self._backlog.popleft()
        tls = self._tls
        if getattr(tls, "draining", False):
            # Inside a call that finished at once while the loop below runs: no recursion,
            # the outer loop starts it.
            tls.pending.append(item)
            return
        tls.draining, tls.pending = True, [item]
        try:
            while tls.pending:
                if not self._start(tls.pending.pop()):
                    self._release_slot()  # answered at once: count it out, maybe queue more
        finally:
            tls.draining = False

    def _outcome(
        self,
        req: pb.StreamRequest,
        kind: translate.PayloadKind,
        rt: PolicyRuntime,
        state: CallState,
        timeout: float,
        reply: dict[str, Any] | None,
        error: BaseException | None,
    ) -> pb.StreamResponse | None:
        """Map a runtime's outcome to the response (failure mode applied)."""
        if error is not None:
            if isinstance(error, Cancelled):
                return None
            if isinstance(error, (AcquireTimeout, WorkerTimeout)):
                if state.cancelled:
                    return None
                return self._failure(
                    req, kind, rt, "timeout", f"policy did not answer within {timeout:.3f}s"
                )
            if isinstance(error, PolicyUnavailable):
                return self._failure(req, kind, rt, error.kind, str(error))
            if isinstance(error, WorkerError):
                if state.cancelled:
                    return None
                return self._failure(req, kind, rt, "worker_crashed", f"worker crashed: {error}")
            raise error
        if state.cancelled or reply is None:
            return None
        if not reply.get("ok"):
            return self._failure(req, kind, rt, "execution_error", str(reply.get("error")))
        try:
            return translate.response_from_worker(req.request_id, kind, reply)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            return self._failure(req, kind, rt, "execution_error", f"invalid policy result: {exc}")

    # ---- shutdown ------------------------------------------------------------------------------
    def stop(self, timeout: float) -> None:
        """Stop every runtime's processes."""
        with self._lock:
            self.draining = True
        for rt in self.runtimes.values():
            rt.cancel_release()
        threads = [
            threading.Thread(target=rt.stop, args=(timeout,), daemon=True)
            for rt in self.runtimes.values()
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 10)
        self.spawner.stop()

    def live_pids(self) -> list[int]:
        """Every policy process alive right now."""
        return [pid for rt in self.runtimes.values() for pid in rt.live_pids()]
