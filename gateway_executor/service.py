"""gRPC servicer: ``ExecuteStream`` multiplexing plus the unary lifecycle RPCs.

Threading (synchronous gRPC server, no event loop, no hand-off on the hot path):

* ``ExecuteStream`` is registered as a *non-blocking* stream handler (grpcio's
  ``experimental_non_blocking``): grpc passes a ``send`` callback and the handler thread itself
  reads the request stream. For each request it validates it and hands the call to the engine,
  which writes it straight to an idle worker (or queues it) and returns at once;
* the thread that finishes a call (the worker's driver thread) builds the response and writes it
  to the stream itself with ``send``. ``send`` blocks until grpc took the message and grpc allows
  one send at a time, so a thread that finds another one sending only queues its response; the
  sending thread drains the queue before it leaves (responses go out in completion order);
* when the client half-closes and the last call finished, the status is sent the same way.

If a grpcio version ignores ``experimental_non_blocking`` (the handler then gets no ``send``),
the same session runs in generator mode: a helper thread reads the requests and the handler
thread yields the responses from a queue. The client matches responses on ``request_id``.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from gateway_executor import defaults, translate
from gateway_executor.engine import Engine
from gateway_executor.jobs import CallState
from gateway_executor.proto import python_executor_pb2 as pb
from gateway_executor.proto import python_executor_pb2_grpc as pb_grpc

log = logging.getLogger("gateway_executor.service")

_END = object()
_PAYLOADS = translate.PAYLOADS
_PHASE_NAMES = dict(pb.Phase.items())
_PHASE_BY_NUMBER = {number: name for name, number in _PHASE_NAMES.items()}


def _cancel_all(states: list[CallState]) -> None:
    for state in states:
        state.cancel()


class StreamSession:
    """State of one ``ExecuteStream`` call."""

    def __init__(
        self,
        service: ExecutorService,
        requests: Iterator[pb.StreamRequest],
        context: grpc.ServicerContext,
        send: Callable[[pb.StreamResponse | None], Any] | None,
    ) -> None:
        self._service = service
        self._engine = service.engine
        self._requests = requests
        self._send = send
        self._queue: queue.SimpleQueue[Any] | None = (
            None if send is not None else queue.SimpleQueue()
        )
        self._pending: collections.deque[Any] = collections.deque()
        self._sending = False
        self._lock = threading.Lock()
        self._inflight: dict[str, CallState] = {}
        self._reader_done = False
        self._closed = False  # no more responses: the RPC ended or the server is stopping
        self._ended = False  # the end of the stream was emitted
        context.add_callback(self._terminated)

    # reading ----------------------------------------------------------------------------------
    def read(self) -> None:
        """Take requests until the client half-closes or goes away."""
        admit = self._admit
        clock = time.perf_counter
        idle_gap = defaults.SYNC_IDLE_GAP_US / 1e6
        need = defaults.SYNC_IDLE_STREAK
        answered = -idle_gap
        streak = 0
        try:
            for req in self._requests:
                # A request read right after the previous one was handled was queued behind
                # it: the stream is busy, and its calls must not hold this reader. Only after a
                # few requests in a row found the stream idle may a call wait on this thread.
                streak = streak + 1 if clock() - answered >= idle_gap else 0
                admit(req, streak >= need)
                answered = clock()
                del req  # freed now, not when the next request arrives
        except Exception as exc:  # the client went away (grpc.RpcError) or similar
            log.debug("stream reader stopped: %s", exc)
        with self._lock:
            self._reader_done = True
            done = not self._inflight
        if done:
            self._emit(_END)

    def _admit(self, req: pb.StreamRequest, idle: bool = False) -> None:
        """Validate one request and start it (or answer it at once); ``idle``: the stream
        was waiting for it (see ``Engine.submit``)."""
        rid = req.request_id
        payload = req.WhichOneof("payload")
        if payload is None:
            self._emit(
                translate.error_response(
                    rid,
                    "request carries no payload",
                    "protocol_error",
                    req.policy_name,
                    req.policy_version,
                )
            )
            return
        kind = _PAYLOADS[payload]
        phase = req.execution_metadata.phase
        if phase != kind.phase:
            got = _PHASE_BY_NUMBER.get(phase, str(phase))
            self._emit(
                translate.error_response(
                    rid,
                    f"execution_metadata.phase {got} does not match payload {payload}",
                    "protocol_error",
                    req.policy_name,
                    req.policy_version,
                )
            )
            return
        if payload == "cancel_execution":
            with self._lock:
                target = self._inflight.get(rid)
            if target is not None:
                log.debug("cancel %s: %s", rid, req.cancel_execution.reason)
                target.cancel()
            return
        state = CallState()
        with self._lock:
            duplicate = rid in self._inflight
            if not duplicate:
                self._inflight[rid] = state
        if duplicate:
            self._emit(
                translate.error_response(
                    rid,
                    f"request_id {rid!r} is already in flight",
                    "protocol_error",
                    req.policy_name,
                    req.policy_version,
                )
            )
            return
        if not self._engine.submit(
            req, kind, state, lambda resp: self._complete(rid, state, resp), idle
        ):
            self._complete(
                rid,
                state,
                translate.error_response(
                    rid,
                    "executor is shutting down",
                    "unavailable",
                    req.policy_name,
                    req.policy_version,
                ),
            )

    # answering --------------------------------------------------------------------------------
    def _complete(self, rid: str, state: CallState, resp: pb.StreamResponse | None) -> None:
        with self._lock:
            if self._inflight.get(rid) is state:
                del self._inflight[rid]
            done = self._reader_done and not self._inflight
            send = resp is not None and not state.cancelled and not self._closed
        if send:
            self._emit(resp)
        if done:
            self._emit(_END)

    def _emit(self, item: Any) -> None:
        """Write a response (or the end of the stream) from this thread, or queue it for the
        thread that is writing right now."""
        if self._queue is not None:  # generator mode
            with self._lock:
                if self._ended:
                    return
                self._ended = item is _END
            self._queue.put(item)
            return
        with self._lock:
            if self._ended:
                return
            self._ended = item is _END
            if self._sending:
                self._pending.append(item)
                return
            self._sending = True
        send = self._send
        assert send is not None
        pending = self._pending
        while True:
            try:
                send(None if item is _END else item)
            except Exception as exc:  # the RPC is gone; nothing more can be sent
                log.debug("stream send failed: %s", exc)
            with self._lock:
                if not pending:
                    self._sending = False
                    break
                item = pending.popleft()
        if self._ended:
            self._service.unregister(self)

    # lifecycle --------------------------------------------------------------------------------
    def _terminated(self) -> None:
        """The RPC ended (grpc callback thread; must not block): cancel what still runs."""
        with self._lock:
            self._closed = True
            self._ended = True
            states = list(self._inflight.values())
        if states:
            # Not on this thread: a cancel may finish calls, and whatever that triggers must
            # never wait for grpc's own callback thread.
            threading.Thread(
                target=_cancel_all, args=(states,), name="stream-cancel", daemon=True
            ).start()
        if self._queue is not None:
            self._queue.put(_END)
        self._service.unregister(self)

    def awaited(self) -> int:
        """Calls in flight whose response someone still waits for (not cancelled, stream open)."""
        with self._lock:
            if self._closed:
                return 0
            return sum(1 for state in self._inflight.values() if not state.cancelled)

    def close(self) -> None:
        """Server shutdown (after the drain): cancel what still runs and end the stream."""
        with self._lock:
            self._closed = True
            states = list(self._inflight.values())
        for state in states:
            state.cancel()
        self._emit(_END)

    def responses(self) -> Iterator[pb.StreamResponse]:
        """Generator mode: read on a helper thread, yield on the gRPC handler thread."""
        assert self._queue is not None
        threading.Thread(target=self.read, name="stream-reader", daemon=True).start()
        get = self._queue.get
        try:
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

    def awaited_calls(self) -> int:
        """Calls in flight on open streams that were not cancelled (shutdown drains those)."""
        with self._lock:
            sessions = list(self._sessions)
        return sum(session.awaited() for session in sessions)

    def close_streams(self) -> None:
        """End every open stream (shutdown, after in-flight calls drained)."""
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.close()

    def ExecuteStream(
        self,
        request_iterator: Iterator[pb.StreamRequest],
        context: grpc.ServicerContext,
        send: Callable[[pb.StreamResponse | None], Any] | None = None,
    ) -> Iterator[pb.StreamResponse] | None:
        """Bidirectional call stream, multiplexed by ``request_id``.

        With ``send`` (non-blocking mode) this thread reads the stream and returns when the
        client half-closes; responses are written by the threads that finish the calls.
        Without it, returns the response iterator (generator mode).
        """
        session = StreamSession(self, request_iterator, context, send)
        self.register(session)
        if send is None:
            return session.responses()
        session.read()
        return None

    # grpcio: call ExecuteStream with a ``send`` callback instead of iterating its result.
    ExecuteStream.experimental_non_blocking = True  # type: ignore[attr-defined]

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
        """Nothing to release: calls run on worker driver threads owned by the pools."""
