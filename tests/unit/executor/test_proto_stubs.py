"""The committed gRPC stubs are current, and the contract keeps the upstream wire numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_executor.proto import generate
from gateway_executor.proto import python_executor_pb2 as pb

pytest.importorskip("grpc_tools")


def test_regenerating_gives_identical_files(tmp_path: Path) -> None:
    written = generate.generate(tmp_path)
    assert sorted(p.name for p in written) == sorted(generate.GENERATED)
    for name in generate.GENERATED:
        fresh = (tmp_path / name).read_bytes()
        committed = (generate.PROTO_DIR / name).read_bytes()
        assert fresh == committed, f"{name} is stale: run python -m gateway_executor.proto.generate"


def test_package_service_and_methods() -> None:
    svc = pb.DESCRIPTOR.services_by_name["PythonExecutorService"]
    assert svc.full_name == "wso2.gateway.python.v1alpha2.PythonExecutorService"
    methods = {m.name: m for m in svc.methods}
    assert set(methods) == {"ExecuteStream", "HealthCheck", "InitPolicy", "DestroyPolicy"}
    stream = methods["ExecuteStream"]
    assert stream.client_streaming and stream.server_streaming


@pytest.mark.parametrize(
    ("message", "fields"),
    [
        (
            "StreamRequest",
            {
                "request_id": 1,
                "instance_id": 2,
                "params": 5,
                "shared_context": 6,
                "execution_metadata": 7,
                "request_headers": 8,
                "request_chunk": 13,
                "cancel_execution": 16,
            },
        ),
        (
            "StreamResponse",
            {
                "request_id": 1,
                "updated_metadata": 2,
                "request_header_action": 3,
                "needs_more_decision": 7,
                "streaming_response_action": 9,
                "error": 10,
            },
        ),
        ("AuthContext", {"previous": 10, "token_id": 11, "typed_properties": 12}),
        ("RequestContext", {"headers": 1, "body": 2, "vhost": 7, "downstream": 8, "upstream": 9}),
        ("ImmediateResponse", {"status_code": 1, "body": 3, "analytics_header_filter": 6}),
        ("DownstreamResponseModifications", {"body": 1, "status_code": 2}),
        ("HealthCheckResponse", {"ready": 1, "loaded_policies": 2, "reason": 100, "policies": 101}),
    ],
)
def test_upstream_field_numbers(message: str, fields: dict[str, int]) -> None:
    desc = pb.DESCRIPTOR.message_types_by_name[message]
    for name, number in fields.items():
        assert desc.fields_by_name[name].number == number, f"{message}.{name}"


def test_extensions_use_numbers_of_100_and_up() -> None:
    """Every field this project added to an upstream message is >= 100 (ignored upstream)."""
    desc = pb.DESCRIPTOR.message_types_by_name["HealthCheckResponse"]
    added = [f for f in desc.fields if f.name not in ("ready", "loaded_policies")]
    assert added and all(f.number >= 100 for f in added)
    status = pb.DESCRIPTOR.message_types_by_name["PolicyStatus"]
    assert set(status.fields_by_name) == {
        "name",
        "version",
        "ready",
        "python_version",
        "reason",
        "quarantined",
        "isolation",
        "workers",
        "distributions",
        "probation",
        "quarantines",
    }
    assert all(status.fields_by_name[n].number >= 100 for n in ("probation", "quarantines"))
    note = pb.DESCRIPTOR.message_types_by_name["ProtectionOff"]
    assert set(note.fields_by_name) == {"name", "detail", "policy"}


def test_wrapper_types_tell_unset_from_empty() -> None:
    msg = pb.UpstreamRequestModifications()
    assert not msg.HasField("body")
    msg.body.SetInParent()
    assert msg.HasField("body") and msg.body.value == b""
