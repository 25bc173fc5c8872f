"""A small client for the executor protocol (tests, benchmark, image smoke test).

``ExecutorClient("/path/to.sock")`` or ``ExecutorClient("127.0.0.1:9004")``; then ``health()``,
``init_policy(...)``, ``execute(request)`` (one request on a shared, multiplexed stream, waits for
the response with the same ``request_id``) and ``destroy_policy(...)``. ``build_request`` (from
:mod:`gateway_executor.samples`, re-exported here) makes a ``StreamRequest`` for a phase from
plain Python values in the sample format.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from typing import Any

import grpc

from gateway_executor import defaults, translate
from gateway_executor.proto import python_executor_pb2 as pb
from gateway_executor.proto import python_executor_pb2_grpc as pb_grpc
from gateway_executor.samples import build_request


def target_for(address: str) -> str:
    """gRPC target for a socket path, ``unix:`` address or ``host:port``."""
    if address.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
        return address
    if address.startswith("/") or address.startswith("."):
        return f"unix:{address}"
    return address


def cancel_request(
    request_id: str, target_phase: int = pb.PHASE_UNSPECIFIED, reason: str = "cancelled"
) -> pb.StreamRequest:
    """The ``cancel_execution`` message for an in-flight ``request_id``."""
    req = pb.StreamRequest(request_id=request_id)
    req.execution_metadata.phase = pb.PHASE_CANCEL
    req.cancel_execution.target_phase = target_phase  # type: ignore[assignment]
    req.cancel_execution.reason = reason
    return req


class CallStream:
    """One ``ExecuteStream``, shared by many threads; responses matched by ``request_id``."""

    def __init__(self, stub: pb_grpc.PythonExecutorServiceStub) -> None:
        self._send: queue.SimpleQueue[pb.StreamRequest | None] = queue.SimpleQueue()
        self._pending: dict[str, Future[pb.StreamResponse]] = {}
        self._lock = threading.Lock()
        self._responses = stub.ExecuteStream(self._requests())
        self.unmatched: list[pb.StreamResponse] = []
        self.error: BaseException | None = None
        self._reader = threading.Thread(target=self._receive, name="call-stream", daemon=True)
        self._reader.start()

    def _requests(self) -> Iterator[pb.StreamRequest]:
        while True:
            item = self._send.get()
            if item is None:
                return
            yield item

    def _receive(self) -> None:
        try:
            for resp in self._responses:
                with self._lock:
                    fut = self._pending.pop(resp.request_id, None)
                if fut is None:
                    self.unmatched.append(resp)
                else:
                    fut.set_result(resp)
        except grpc.RpcError as exc:
            self.error = exc
        finally:
            with self._lock:
                pending, self._pending = self._pending, {}
            for fut in pending.values():
                fut.set_exception(ConnectionError(f"stream ended: {self.error}"))

    def submit(self, request: pb.StreamRequest) -> Future[pb.StreamResponse]:
        """Send ``request``; the future resolves with its response."""
        fut: Future[pb.StreamResponse] = Future()
        if request.WhichOneof("payload") != "cancel_execution":
            with self._lock:
                self._pending[request.request_id] = fut
        else:
            fut.set_result(pb.StreamResponse(request_id=request.request_id))
        self._send.put(request)
        return fut

    def call(self, request: pb.StreamRequest, timeout: float | None = 30.0) -> pb.StreamResponse:
        """Send ``request`` and wait for the matching response."""
        return self.submit(request).result(timeout)

    def forget(self, request_id: str) -> None:
        """Stop waiting for ``request_id`` (after a cancel)."""
        with self._lock:
            self._pending.pop(request_id, None)

    def close(self) -> None:
        """Half-close the stream and wait for the server to end it."""
        self._send.put(None)
        self._reader.join(10)


class ExecutorClient:
    """Blocking client over a Unix socket or TCP."""

    def __init__(self, address: str, timeout: float = 30.0) -> None:
        self.address = address
        self.timeout = timeout
        self.channel = grpc.insecure_channel(
            target_for(address),
            options=[
                ("grpc.max_send_message_length", defaults.MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", defaults.MAX_MESSAGE_BYTES),
            ],
        )
        self.stub = pb_grpc.PythonExecutorServiceStub(self.channel)
        self._stream: CallStream | None = None
        self._lock = threading.Lock()

    def wait_for_channel(self, timeout: float = 10.0) -> None:
        """Block until the channel connects."""
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def health(self) -> pb.HealthCheckResponse:
        """``HealthCheck``."""
        return self.stub.HealthCheck(pb.HealthCheckRequest(), timeout=self.timeout)

    def init_policy(
        self,
        name: str,
        version: str,
        params: Mapping[str, Any] | None = None,
        route_name: str = "route",
        api_name: str = "api",
        api_id: str = "api-1",
        api_version: str = "v1",
        attached_to: str = "api",
    ) -> pb.InitPolicyResponse:
        """``InitPolicy``."""
        req = pb.InitPolicyRequest(
            policy_name=name,
            policy_version=version,
            policy_metadata=pb.PolicyMetadata(
                route_name=route_name,
                api_id=api_id,
                api_name=api_name,
                api_version=api_version,
                attached_to=attached_to,
            ),
        )
        translate.dict_to_struct(dict(params or {}), req.params)
        return self.stub.InitPolicy(req, timeout=self.timeout)

    def destroy_policy(self, instance_id: str) -> pb.DestroyPolicyResponse:
        """``DestroyPolicy``."""
        return self.stub.DestroyPolicy(
            pb.DestroyPolicyRequest(instance_id=instance_id), timeout=self.timeout
        )

    def stream(self) -> CallStream:
        """The shared call stream (opened on first use)."""
        with self._lock:
            if self._stream is None:
                self._stream = CallStream(self.stub)
            return self._stream

    def execute(self, request: pb.StreamRequest, timeout: float | None = None) -> pb.StreamResponse:
        """Send one request on the shared stream and return the matching response."""
        return self.stream().call(request, self.timeout if timeout is None else timeout)

    def close(self) -> None:
        """Close the stream and the channel."""
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        self.channel.close()

    def __enter__(self) -> ExecutorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "CallStream",
    "ExecutorClient",
    "build_request",
    "cancel_request",
    "target_for",
]
