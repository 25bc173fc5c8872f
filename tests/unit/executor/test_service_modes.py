"""``ExecuteStream`` in both of its modes, through a real in-process gRPC server.

grpcio calls the handler with a ``send`` callback (``experimental_non_blocking``); a grpcio that
ignores the flag calls it without one and iterates the result (generator mode). Both must answer
the same way. The calls here are answered by the executor itself (no worker processes).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway_executor.client import ExecutorClient, build_request
from gateway_executor.engine import Engine
from gateway_executor.proto import python_executor_pb2 as pb
from gateway_executor.proto import python_executor_pb2_grpc as pb_grpc
from gateway_executor.service import ExecutorService


class Recorded(ExecutorService):
    """Remembers whether grpc passed a ``send`` callback."""

    modes: list[str]

    def ExecuteStream(  # type: ignore[override]
        self,
        request_iterator: Iterator[pb.StreamRequest],
        context: grpc.ServicerContext,
        send: Any = None,
    ) -> Any:
        self.modes.append("non-blocking" if send is not None else "generator")
        return super().ExecuteStream(request_iterator, context, send)

    ExecuteStream.experimental_non_blocking = True  # type: ignore[attr-defined]


class GeneratorOnly(Recorded):
    """What a grpcio without ``experimental_non_blocking`` does: no ``send`` callback."""

    def ExecuteStream(  # type: ignore[override]
        self, request_iterator: Iterator[pb.StreamRequest], context: grpc.ServicerContext
    ) -> Any:
        return super().ExecuteStream(request_iterator, context)


@pytest.mark.parametrize(
    ("cls", "mode"), [(Recorded, "non-blocking"), (GeneratorOnly, "generator")]
)
def test_stream_answers_in_both_modes(tmp_path: Path, cls: type[Recorded], mode: str) -> None:
    engine = Engine([])
    engine.started = True
    service = cls(engine)
    service.modes = []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_PythonExecutorServiceServicer_to_server(service, server)
    sock = tmp_path / "s.sock"
    server.add_insecure_port(f"unix:{sock}")
    server.start()
    client = ExecutorClient(str(sock), timeout=10)
    try:
        stream = client.stream()
        unknown = build_request("request_headers", instance_id="nope", request={"path": "/"})
        mismatch = build_request("request_headers", instance_id="nope")
        mismatch.execution_metadata.phase = pb.PHASE_RESPONSE_BODY
        empty = pb.StreamRequest(request_id="empty")
        answers = [stream.call(r, 10) for r in (unknown, mismatch, empty)]
        assert [a.request_id for a in answers] == [unknown.request_id, mismatch.request_id, "empty"]
        assert answers[0].error.error_type == "execution_error"
        assert "InitPolicy first" in answers[0].error.message
        assert answers[1].error.error_type == "protocol_error"
        assert answers[2].error.error_type == "protocol_error"
        # Many calls on one stream, answered and matched.
        futs = [
            stream.submit(build_request("request_headers", instance_id=f"i{i}")) for i in range(200)
        ]
        assert all(f.result(10).error.error_type == "execution_error" for f in futs)
        client.close()  # half-close: the server ends the stream with OK
        assert stream.error is None and not stream.unmatched
        assert service.modes == [mode]
    finally:
        server.stop(None)
