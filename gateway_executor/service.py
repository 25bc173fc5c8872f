"""gRPC servicer: ``ExecuteStream`` multiplexing plus the unary lifecycle RPCs.

Threading (synchronous gRPC server, no event loop): each ``ExecuteStream`` has one "reader" at a
time, taken from a shared thread pool. A reader takes the next request off the stream, hands the
reader role to another pool thread, and then runs the call itself with blocking pipe I/O to the
worker, so a call costs no extra thread hand-off before it reaches the worker. Finished responses
go through a queue to the stream's response generator (the gRPC handler thread), in completion
order; the engine correlates nothing, the client matches on ``request_id``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from gateway_executor import translate
from gateway_executor.engine import Engine
from gateway_executor.pool import CallState
from gateway_executor.proto import python_executor_pb2 as pb
from gateway_executor.proto import python_executor_pb2_grpc as pb_grpc

log = logging.getLogger("gateway_executor.service")

_END = object()


class StreamSession:
    """State of one ``ExecuteStream`` call."""

    def __init__(self, service: ExecutorService, requests: Iterator[pb.StreamRequest],
                 context: grpc.ServicerContext) -> None:
        self._service = service
        self._engine = service.engine
        self._pool = service.pool
        self._requests = requests
        self._out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._inflight: dict[str, CallState] = {}
        self._reader_done = False
        self._closed = False
        context.add_callback(self.close)

    # reading ----------------------------------------------------------------------------------
    def _read(self) -> None:
        """Reader role: take requests until one needs running, then run it here."""
        while True:
            try:
                req = next(self._requests)
            except StopIteration:
                self._finish_reading()
                return
            except Exception as exc:  # the client went away (grpc.RpcError) or similar
                log.debug("stream reader stopped: %s", exc)
                self._finish_reading()
                return
            job = self._admit(req)
            if job is None:
                continue
            # Run the call on this thread; the reader role passes to another pool thread as
            # soon as this call blocks (on the worker, or waiting for one).
            self._run(*job)
            return

    def _finish_reading(self) -> None:
        with self._lock:
            self._reader_done = True
            done = not self._inflight
        if done:
            self._out.put(_END)

    def _admit(self, req: pb.StreamRequest) -> tuple[pb.StreamRequest, Any, CallState] | None:
        """Validate one request; returns the call to run, or None if it was answered/handled."""
        rid = req.request_id
        payload = req.WhichOneof("payload")
        if payload is None:
            self._out.put(translate.error_response(rid, "request carries no payload",
                                                   "protocol_error", req.policy_name,
                                                   req.policy_version))
            return None
        kind = translate.PAYLOADS[payload]
        if req.execution_metadata.phase != kind.phase:
            got = pb.Phase.Name(req.execution_metadata.phase) \
                if req.execution_metadata.phase in pb.Phase.values() \
                else str(req.execution_metadata.phase)
            self._out.put(translate.error_response(
                rid, f"execution_metadata.phase {got} does not match payload {payload}",
                "protocol_error", req.policy_name, req.policy_version))
            return None
        if payload == "cancel_execution":
            with self._lock:
                state = self._inflight.get(rid)
            if state is not None:
                log.debug("cancel %s: %s", rid, req.cancel_execution.reason)
                state.cancel()
            return None
        state = CallState(self._hand_over)
        with self._lock:
            duplicate = rid in self._inflight
            if not duplicate:
                self._inflight[rid] = state
        if duplicate:
            self._out.put(translate.error_response(
                rid, f"request_id {rid!r} is already in flight", "protocol_error",
                req.policy_name, req.policy_version))
            return None
        if not self._engine.begin():
            self._complete(rid, state, translate.error_response(
                rid, "executor is shutting down", "unavailable", req.policy_name,
                req.policy_version), counted=False)
            return None
        return req, kind, state

    def _hand_over(self) -> None:
        self._pool.submit(self._read)

    # running ----------------------------------------------------------------------------------
    def _run(self, req: pb.StreamRequest, kind: Any, state: CallState) -> None:
        try:
            slots = self._service.slots
            if not slots.acquire(blocking=False):
                state.blocking()
                slots.acquire()
            try:
                resp = self._engine.execute(req, kind, state)
            finally:
                self._service.slots.release()
        except Exception as exc:  # a bug here must not kill the stream
            log.exception("call %s failed unexpectedly", req.request_id)
            resp = translate.error_response(req.request_id, f"internal error: {exc}",
                                            "execution_error", req.policy_name,
                                            req.policy_version)
        state.blocking()  # never blocked (answered without a worker): hand over now
        self._complete(req.request_id, state, resp, counted=True)

    def _complete(self, rid: str, state: CallState, resp: pb.StreamResponse | None,
                  counted: bool) -> None:
        if counted:
            self._engine.end()
        with self._lock:
            if self._inflight.get(rid) is state:
                del self._inflight[rid]
            done = self._reader_done and not self._inflight
            send = resp is not None and not state.cancelled and not self._closed
        if send:
            self._out.put(resp)
        if done:
            self._out.put(_END)

    # lifecycle --------------------------------------------------------------------------------
    def close(self) -> None:
        """The RPC ended (client gone, or server stopping): cancel what is still running."""
        with self._lock:
            self._closed = True
            states = list(self._inflight.values())
        for state in states:
            state.cancel()
        self._out.put(_END)

    def responses(self) -> Iterator[pb.StreamResponse]:
        """The response stream (runs on the gRPC handler thread)."""
        self._service.register(self)
        try:
            self._pool.submit(self._read)
            get = self._out.get
            while True:
                item = get()
                if item is _END:
                    return
                yield item
        finally:
            self._service.unregister(self)


class ExecutorService(pb_grpc.PythonExecutorServiceServicer):
    """The ``PythonExecutorService`` implementation on top of an :class:`Engine`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        limit = engine.settings.max_concurrent
        self.slots = threading.BoundedSemaphore(limit)
        # Calls run on these threads; the extra ones are stream readers.
        self.pool = ThreadPoolExecutor(max_workers=limit + 32, thread_name_prefix="call")
        self._sessions: set[StreamSession] = set()
        self._lock = threading.Lock()

    def register(self, session: StreamSession) -> None:
        """Track a live stream (so shutdown can end it)."""
        with self._lock:
            self._sessions.add(session)

    def unregister(self, session: StreamSession) -> None:
        """Forget a finished stream."""
        with self._lock:
            self._sessions.discard(session)

    def close_streams(self) -> None:
        """End every open stream (shutdown, after in-flight calls drained)."""
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.close()

    def ExecuteStream(
        self, request_iterator: Iterator[pb.StreamRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.StreamResponse]:
        """Bidirectional call stream, multiplexed by ``request_id``."""
        return StreamSession(self, request_iterator, context).responses()

    def HealthCheck(
        self, request: pb.HealthCheckRequest, context: grpc.ServicerContext
    ) -> pb.HealthCheckResponse:
        """Readiness plus per-policy status (extension fields >= 100)."""
        return self.engine.health()

    def InitPolicy(
        self, request: pb.InitPolicyRequest, context: grpc.ServicerContext
    ) -> pb.InitPolicyResponse:
        """Create a policy instance for one route."""
        return self.engine.init_policy(request)

    def DestroyPolicy(
        self, request: pb.DestroyPolicyRequest, context: grpc.ServicerContext
    ) -> pb.DestroyPolicyResponse:
        """Close a policy instance."""
        return self.engine.destroy_policy(request)

    def shutdown(self) -> None:
        """Release the call threads."""
        self.pool.shutdown(wait=False, cancel_futures=True)
