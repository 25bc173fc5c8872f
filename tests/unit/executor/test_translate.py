"""Protobuf <-> worker wire <-> apip_sdk_core, end to end in one process (no sockets).

The real shim code builds the SDK objects and serializes actions; frames go through the same JSON
encoding the socket uses. Fixture policies live in ``tests/fixtures/executor_policies``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_executor import translate, worker_shim
from gateway_executor.client import build_request
from gateway_executor.framing import encode
from gateway_executor.proto import python_executor_pb2 as pb

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "executor_policies"


def frame_roundtrip(obj: Any) -> Any:
    data = encode(obj)
    return json.loads(data[4:])


class InProcess:
    """The shim, driven like the executor drives a worker, minus the socket."""

    def __init__(self, policy: str, module: str, params: dict[str, Any] | None = None) -> None:
        self.shim = worker_shim.Shim(None)
        path = str(FIXTURES / policy)
        reply = self.shim.start(
            {"module": module, "sys_path": [path], "params": params or {}, "check": True}
        )
        assert reply["ok"], reply
        self.mode = reply["mode"]
        self.caps = reply["capabilities"]
        self.seq = 0

    def run(
        self, req: pb.StreamRequest, init_params: dict[str, Any] | None = None, route: str = "r1"
    ) -> pb.StreamResponse:
        kind = translate.PAYLOADS[req.WhichOneof("payload")]
        msg = translate.request_to_wire(req, kind)
        self.seq += 1
        msg.update(op="call", iid=req.instance_id, seq=self.seq)
        if req.instance_id not in self.shim.instances:
            msg["init"] = {"metadata": {"route_name": route}, "params": init_params or {}}
        msg = frame_roundtrip(msg)
        try:
            reply = self.shim.call(msg)
            reply["ok"] = True
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        reply = frame_roundtrip(reply)
        if not reply["ok"]:
            return translate.error_response(req.request_id, reply["error"], "execution_error")
        return translate.response_from_worker(req.request_id, kind, reply)


@pytest.fixture(autouse=True)
def _restore_sys_path() -> Any:
    saved = list(sys.path)
    yield
    sys.path[:] = saved


def test_header_request_phase_is_faithful() -> None:
    ip = InProcess("header-policy", "header_policy.policy")
    assert ip.mode == {
        "request_header_mode": "PROCESS",
        "request_body_mode": "SKIP",
        "response_header_mode": "PROCESS",
        "response_body_mode": "SKIP",
    }
    assert ip.caps["request_headers"] and ip.caps["response_headers"]
    assert not ip.caps["request_body"]
    req = build_request(
        "request_headers",
        instance_id="i1",
        route_name="route-a",
        request={"path": "/reroute", "headers": {"X-Trace": ["a", "b"]}},
        params={"header": "x-tenant", "value": "acme"},
        metadata={"count": 1, "nested": {"k": [1, "two", None, True]}},
    )
    auth = req.shared_context.auth_context
    auth.subject, auth.previous.subject = "alice", "gateway"
    ctx = req.request_headers.context
    ctx.downstream.request.path = "/original"
    ctx.upstream.url = "http://backend:8080"
    resp = ip.run(req)
    mods = resp.request_header_action.upstream_request_header_modifications
    assert dict(mods.headers_to_set) == {
        "x-tenant": "acme",
        "x-dep-version": mods.headers_to_set["x-dep-version"],
        "x-trace": "a,b",
        "x-api": "api",
    }
    assert list(mods.headers_to_remove) == ["x-remove-me"]
    assert mods.upstream_name.value == "backend-2" and mods.path.value == "/rewritten"
    assert mods.method.value == "POST" and not mods.HasField("host")
    assert list(mods.query_parameters_to_add["q"].values) == ["1", "2"]
    assert list(mods.query_parameters_to_remove) == ["drop"]
    assert translate.struct_to_dict(mods.analytics_metadata) == {"policy": "header"}
    assert translate.struct_to_dict(mods.dynamic_metadata["ns"]) == {"path": "/reroute"}
    assert mods.analytics_header_filter.action == pb.DROP_HEADER_ACTION_TYPE_DENY
    assert list(mods.analytics_header_filter.headers) == ["authorization"]
    meta = translate.struct_to_dict(resp.updated_metadata)
    assert meta["count"] == 2.0 and meta["nested"] == {"k": [1.0, "two", None, True]}
    assert meta["route"] == "route-a" and meta["phase"] == "request_headers"
    assert meta["init_route"] == "r1" and meta["seen_path"] == "/reroute"
    assert meta["subject"] == "alice" and meta["previous_subject"] == "gateway"
    assert meta["downstream_path"] == "/original" and meta["upstream_url"] == "http://backend:8080"


def test_immediate_response_keeps_bytes_and_filters() -> None:
    ip = InProcess("header-policy", "header_policy.policy")
    req = build_request("request_headers", instance_id="i1", request={"headers": {"x-block": "1"}})
    imm = ip.run(req).request_header_action.immediate_response
    assert imm.status_code == 403 and imm.body.value == b"blocked \xff"
    assert dict(imm.headers) == {"content-type": "text/plain"}
    assert translate.struct_to_dict(imm.analytics_metadata) == {"blocked": True}
    assert imm.analytics_header_filter.action == pb.DROP_HEADER_ACTION_TYPE_ALLOW


def test_response_headers_phase() -> None:
    ip = InProcess("header-policy", "header_policy.policy")
    req = build_request(
        "response_headers",
        instance_id="i1",
        request={"path": "/p"},
        response={"status": 201, "headers": {"server": "x"}},
    )
    req.response_headers.context.upstream.response.status_code = 201
    mods = ip.run(req).response_header_action.downstream_response_header_modifications
    assert mods.headers_to_set["x-request-path"] == "/p"
    assert mods.headers_to_set["x-upstream-status"] == "201"
    assert list(mods.headers_to_remove) == ["server"]
    failed = build_request("response_headers", instance_id="i1", response={"status": 503})
    assert ip.run(failed).response_header_action.immediate_response.status_code == 502


def test_buffered_body_phases() -> None:
    ip = InProcess("body-policy", "body_policy.policy")
    req = build_request(
        "request_body",
        instance_id="b",
        request={"method": "POST", "body": {"messages": [{"content": "mail a.b@c.com now"}]}},
    )
    resp = ip.run(req)
    mods = resp.request_action.upstream_request_modifications
    assert mods.body.value == b'{"messages":[{"content":"mail [EMAIL] now"}]}'
    assert translate.struct_to_dict(resp.updated_metadata)["eos"] is True
    blocked = ip.run(
        build_request("request_body", instance_id="b", request={"body": "this is forbidden"})
    )
    assert blocked.request_action.immediate_response.status_code == 400
    out = ip.run(
        build_request(
            "response_body",
            instance_id="b",
            request={"body": "abc"},
            response={"status": 200, "body": "to x@y.org"},
        )
    )
    dmods = out.response_action.downstream_response_modifications
    assert dmods.body.value == b"to [EMAIL]" and dmods.status_code.value == 201
    assert dmods.headers_to_set["x-request-body-len"] == "3"
    empty = ip.run(build_request("response_body", instance_id="b", response={"body": None}))
    emods = empty.response_action.downstream_response_modifications
    # An empty body is "set to empty", not "unset": the wrapper is present.
    assert emods.HasField("body") and emods.body.value == b""
    assert emods.status_code.value == 204


def test_streaming_phases() -> None:
    ip = InProcess("stream-policy", "stream_policy.policy")
    assert ip.mode["request_body_mode"] == "STREAM" and ip.caps["streaming_response"]
    more = ip.run(build_request("needs_more_request_data", instance_id="s", accumulated=b"ab"))
    assert more.needs_more_decision.needs_more is True
    enough = ip.run(build_request("needs_more_request_data", instance_id="s", accumulated=b"abc"))
    assert enough.needs_more_decision.needs_more is False
    chunk = ip.run(
        build_request(
            "request_chunk",
            instance_id="s",
            chunk=b"hello\x00\xfe",
            chunk_index=4,
            end_of_stream=False,
        )
    )
    fwd = chunk.streaming_request_action.forward_request_chunk
    assert fwd.body.value == b"HELLO\x00\xfe"
    assert translate.struct_to_dict(fwd.analytics_metadata) == {"i": 4.0}
    assert translate.struct_to_dict(chunk.updated_metadata) == {"last_index": 4.0, "eos": False}
    rchunk = ip.run(build_request("response_chunk", instance_id="s", chunk=b"abc"))
    rf = rchunk.streaming_response_action.forward_response_chunk
    assert rf.body.value == b"cba" and translate.struct_to_dict(rf.dynamic_metadata["s"]) == {
        "n": 1.0
    }
    stop = ip.run(build_request("response_chunk", instance_id="s", chunk=b"xxSTOPxx"))
    assert stop.streaming_response_action.terminate_response_chunk.body.value == b"[terminated]"
    none = ip.run(build_request("response_chunk", instance_id="s", chunk=b"z", chunk_index=99))
    assert none.HasField("streaming_response_action")
    assert none.streaming_response_action.WhichOneof("action") is None
    nm = ip.run(build_request("needs_more_response_data", instance_id="s", accumulated=b"x\n"))
    assert nm.needs_more_decision.needs_more is False


def test_wrong_action_type_is_an_execution_error() -> None:
    ip = InProcess("chaos-policy", "chaos_policy.policy")
    resp = ip.run(
        build_request("request_headers", instance_id="c", request={"path": "/bad-action"})
    )
    assert resp.error.error_type == "execution_error"
    assert "on_request_headers returned dict" in resp.error.message


def test_hook_not_implemented_is_an_error() -> None:
    ip = InProcess("header-policy", "header_policy.policy")
    resp = ip.run(build_request("request_body", instance_id="h", request={"body": "x"}))
    assert "does not implement on_request_body" in resp.error.message


def test_mode_mismatch_is_rejected_at_start() -> None:
    shim = worker_shim.Shim(None)
    reply = shim.start(
        {
            "module": "mode_mismatch.policy",
            "sys_path": [str(FIXTURES / "mode-mismatch")],
            "check": True,
        }
    )
    assert not reply["ok"] and reply["stage"] == "mode check"
    assert (
        "request_body_mode=STREAM but the policy is not a StreamingRequestPolicy" in reply["error"]
    )


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ({"t": "ForwardRequestChunk"}, "not a valid action for request_headers"),
        ({"t": "ImmediateResponse", "status_code": "500"}, "status_code: expected int"),
        ({"t": "ImmediateResponse", "headers": {"a": 1}}, "headers['a']: expected str"),
        ({"t": "UpstreamRequestHeaderModifications", "path": 3}, "path: expected str"),
        (
            {
                "t": "UpstreamRequestHeaderModifications",
                "analytics_header_filter": {"action": "maybe", "headers": ["x"]},
            },
            "allow or deny",
        ),
        (
            {"t": "UpstreamRequestHeaderModifications", "dynamic_metadata": {"n": 3}},
            "expected an object",
        ),
    ],
)
def test_untrusted_worker_replies_are_validated(action: dict[str, Any], message: str) -> None:
    kind = translate.PAYLOADS["request_headers"]
    with pytest.raises((TypeError, ValueError), match=message.replace("[", r"\[")):
        translate.response_from_worker("r", kind, {"ok": True, "action": action, "metadata": {}})


def test_passthrough_and_error_responses() -> None:
    for name, kind in translate.PAYLOADS.items():
        if name == "cancel_execution":
            continue
        resp = translate.passthrough_response("r", kind)
        assert resp.WhichOneof("payload") == kind.response_field
    err = translate.error_response("r", "boom", "timeout", "p", "v1")
    assert (err.error.message, err.error.error_type, err.error.policy_name) == (
        "boom",
        "timeout",
        "p",
    )


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=300),
    headers=st.dictionaries(
        st.text(min_size=1, max_size=8), st.lists(st.text(max_size=10), max_size=3), max_size=4
    ),
)
def test_bytes_and_headers_survive_the_wire(body: bytes, headers: dict[str, list[str]]) -> None:
    req = build_request("request_body", instance_id="x", request={"body": body, "headers": headers})
    kind = translate.PAYLOADS["request_body"]
    wire = frame_roundtrip(translate.request_to_wire(req, kind))
    # Defaults (empty content, no headers) are left out of the wire.
    assert worker_shim._s2b(wire["ctx"]["body"].get("content", "")) == body
    # Header names arrive lower-cased, as Envoy delivers them (names equal but for case merge).
    expected: dict[str, list[str]] = {}
    for name, values in headers.items():
        expected.setdefault(name.lower(), []).extend(values)
    assert wire["ctx"].get("headers", {}) == expected
    shim = worker_shim.Shim(None)
    import apip_sdk_core

    shim.sdk = apip_sdk_core
    ctx = shim._context("request_body", wire["ctx"], shim._shared(wire["shared"]))
    assert ctx.body.content == body
    for name, values in expected.items():
        assert ctx.headers.get(name) == values


def test_absent_wire_keys_mean_protobuf_defaults() -> None:
    """Only set fields travel; the shim restores the protobuf default (not the SDK's)."""
    import apip_sdk_core

    req = pb.StreamRequest(request_id="r")
    req.execution_metadata.phase = pb.PHASE_RESPONSE_BODY
    ctx = req.response_body.context
    ctx.response_body.present = True  # present but empty
    ctx.downstream.request.path = "/d"
    ctx.upstream.response.SetInParent()
    kind = translate.PAYLOADS["response_body"]
    wire = frame_roundtrip(translate.request_to_wire(req, kind))
    assert wire == {
        "phase": "response_body",
        "exec": {"request_id": "r"},
        "ctx": {
            "response_body": {"present": True},
            "downstream": {"request": {"path": "/d"}},
            "upstream": {"response": {}},
        },
    }
    shim = worker_shim.Shim(None)
    shim._bind_sdk(apip_sdk_core)
    got = shim._context("response_body", wire["ctx"], shim._shared(wire.get("shared") or {}))
    assert got.response_status == 0  # the SDK's own default would be 200
    assert got.response_body.content == b"" and got.response_body.present
    assert got.request_body is None and len(got.request_headers) == 0
    assert got.downstream.request.headers is None and got.downstream.request.method == ""
    assert got.upstream.response.status_code == 0 and got.upstream.response.headers is None
    assert got.upstream.name == "" and got.shared.metadata == {} and got.shared.auth_context is None
    ectx = shim._execution_context("response_body", wire["exec"])
    assert (ectx.request_id, ectx.route_name, ectx.deadline, ectx.trace_id) == ("r", "", None, None)


def test_headers_phase_does_not_copy_bodies_it_does_not_pass_on() -> None:
    req = build_request(
        "response_headers", instance_id="i", request={"body": "req"}, response={"status": 200}
    )
    req.response_headers.context.request_body.content = b"x" * 1000
    wire = translate.request_to_wire(req, translate.PAYLOADS["response_headers"])
    assert wire["ctx"]["request_body"]["content"] == "x" * 1000  # the SDK context carries it
    chunk = build_request("request_chunk", instance_id="i", chunk=b"abc")
    wire = translate.request_to_wire(chunk, translate.PAYLOADS["request_chunk"])
    assert "body" not in wire["ctx"] and wire["chunk"] == {"chunk": "abc", "eos": True}


@pytest.mark.parametrize("phase", ["request_headers", "response_body", "response_body_chunk"])
def test_compact_actions_build_the_same_protobuf(phase: str) -> None:
    """Leaving out None and empty containers changes nothing on the protobuf side."""
    import apip_sdk_core as sdk

    actions = {
        "request_headers": [
            sdk.UpstreamRequestHeaderModifications(headers_to_set={"a": "1"}),
            sdk.UpstreamRequestHeaderModifications(
                path="", upstream_name="b", headers_to_remove=["x"]
            ),
            sdk.ImmediateResponse(status_code=204, body=b""),
        ],
        "response_body": [
            sdk.DownstreamResponseModifications(body=b"\xff", status_code=None),
            sdk.DownstreamResponseModifications(
                analytics_header_filter=sdk.DropHeaderAction(action="allow", headers=["h"])
            ),
        ],
        "response_body_chunk": [
            sdk.ForwardResponseChunk(body=b""),
            sdk.TerminateResponseChunk(body=b"end"),
        ],
    }[phase]
    shim = worker_shim.Shim(None)
    shim._bind_sdk(sdk)
    kind = next(k for k in translate.PAYLOADS.values() if k.wire_phase == phase)
    for action in actions:
        compact = shim.action_to_wire(phase, action)
        assert compact is not None
        full: dict[str, Any] = {"t": type(action).__name__}
        for name in type(action).__dataclass_fields__:
            value = getattr(action, name)
            if name == "body":
                value = worker_shim._b2s(value)
            elif name == "analytics_header_filter":
                value = shim._drop_filter(value)
            full[name] = value
        full = frame_roundtrip(full)
        assert len(frame_roundtrip(compact)) <= len(full)
        one = translate.response_from_worker(
            "r", kind, {"ok": True, "action": full, "metadata": {}}
        )
        two = translate.response_from_worker(
            "r", kind, {"ok": True, "action": compact, "metadata": {}}
        )
        assert one.SerializeToString(deterministic=True) == two.SerializeToString(
            deterministic=True
        )
