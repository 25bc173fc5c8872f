"""Samples as executor-protocol messages, and matching responses against ``expect``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format, wrappers_pb2

from gateway_builder.errors import InputError
from gateway_builder.smoke.samples import (
    PHASES,
    Sample,
    check_expectation,
    encode_body,
    init_request,
    load_samples,
    outcome_of,
    parse_sample,
    stream_request,
)
from gateway_executor.proto import python_executor_pb2 as pb

REPO = Path(__file__).resolve().parents[2]
POLICY_SOURCES = REPO / "policy_sources"


def _sample(phase: str = "request_body", **overrides: Any) -> Sample:
    raw: dict[str, Any] = {
        "description": "d",
        "params": {"action": "mask", "limit": 3},
        "phase": phase,
        "request": {
            "method": "POST",
            "path": "/v1/chat",
            "headers": {"Content-Type": "application/json", "X-Multi": ["a", "b"]},
            "body": {"messages": [{"role": "user", "content": "hi"}]},
        },
        "response": {"status": 201, "headers": {"server": "up"}, "body": "plain text"},
        "expect": {"kind": "modify"},
    }
    raw.update(overrides)
    return parse_sample("pol", raw, "samples/x.json")


# ---- loading -------------------------------------------------------------------------------


def test_every_shipped_sample_parses() -> None:
    folders = sorted(p.parent for p in POLICY_SOURCES.glob("*/samples"))
    assert folders, "the repository ships sample policies"
    total = 0
    for folder in folders:
        loaded = load_samples(folder.name, folder / "samples", label_root=POLICY_SOURCES)
        total += len(loaded)
        for s in loaded:
            assert s.policy == folder.name
            assert s.file.startswith(f"{folder.name}/samples/")
            assert s.phase in PHASES
    assert total >= 3


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.update(extra=1), "samples/x.json: unknown key 'extra'"),
        (lambda r: r.pop("expect"), "samples/x.json: missing key 'expect'"),
        (lambda r: r.update(phase="request_trailers"), "samples/x.json: phase: expected one of"),
        (lambda r: r.update(expect={"kind": "allow"}), "samples/x.json: expect.kind: expected one"),
        (
            lambda r: r.update(expect={"kind": "modify", "body_contains": "x"}),
            "samples/x.json: expect.body_contains: expected a list of strings",
        ),
        (
            lambda r: r.update(expect={"kind": "modify", "colour": 1}),
            "samples/x.json: expect: unknown key 'colour'",
        ),
        (
            lambda r: r.update(expect={"kind": "immediate_response", "status_code": "403"}),
            "samples/x.json: expect.status_code: expected an integer",
        ),
        (lambda r: r.update(request=[1]), "samples/x.json: request: expected an object"),
    ],
)
def test_bad_samples_name_file_and_field(mutate: Any, message: str) -> None:
    raw: dict[str, Any] = {
        "description": "d",
        "phase": "request_body",
        "request": {},
        "expect": {"kind": "modify"},
    }
    mutate(raw)
    with pytest.raises(InputError) as err:
        parse_sample("pol", raw, "samples/x.json")
    assert str(err.value).startswith(message)


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "bad.json").write_text('{\n  "phase": ,\n}\n')
    with pytest.raises(InputError, match=r"^bad.json:2:12: invalid JSON"):
        load_samples("pol", tmp_path / "samples")


# ---- sample -> messages --------------------------------------------------------------------


def test_encode_body() -> None:
    assert encode_body(None) is None
    assert encode_body("é {") == "é {".encode()
    assert encode_body({"a": [1, 2], "b": None}) == b'{"a":[1,2],"b":null}'


@pytest.mark.parametrize("phase", list(PHASES))
def test_stream_request_carries_the_phase(phase: str) -> None:
    sample = _sample(phase)
    req = stream_request(sample, request_id="r-1", instance_id="i-1", policy_version="v1.0.0")
    assert req.WhichOneof("payload") == PHASES[phase].payload
    assert req.execution_metadata.phase == PHASES[phase].phase
    assert (req.request_id, req.instance_id, req.policy_name) == ("r-1", "i-1", "pol")
    assert req.shared_context.request_id == "r-1"
    assert json_format.MessageToDict(req.params) == {"action": "mask", "limit": 3.0}
    ctx = getattr(req, PHASES[phase].payload).context
    headers = ctx.headers if phase.startswith("request") else ctx.request_headers
    assert list(headers.values["content-type"].values) == ["application/json"]
    assert list(headers.values["x-multi"].values) == ["a", "b"]


def test_request_body_is_compact_json_and_response_body_is_text() -> None:
    req = stream_request(
        _sample("request_body"), request_id="r", instance_id="i", policy_version="v1"
    )
    body = req.request_body.context.body
    assert body.present and body.end_of_stream
    assert body.content == b'{"messages":[{"role":"user","content":"hi"}]}'
    assert (req.request_body.context.method, req.request_body.context.path) == ("POST", "/v1/chat")

    resp = stream_request(
        _sample("response_body"), request_id="r", instance_id="i", policy_version="v1"
    ).response_body.context
    assert resp.response_body.content == b"plain text"
    assert resp.response_status == 201
    assert list(resp.response_headers.values["server"].values) == ["up"]
    assert resp.request_body.content.startswith(b'{"messages"')


def test_absent_body_is_not_present() -> None:
    sample = _sample("request_body", request={"method": "GET", "path": "/"})
    body = stream_request(
        sample, request_id="r", instance_id="i", policy_version="v1"
    ).request_body.context.body
    assert not body.present and body.content == b""


def test_init_request() -> None:
    req = init_request(_sample(), "v1.2.0")
    assert (req.policy_name, req.policy_version) == ("pol", "v1.2.0")
    assert req.policy_metadata.route_name
    assert json_format.MessageToDict(req.params)["action"] == "mask"


# ---- responses -> outcome -> expect --------------------------------------------------------


def _resp(**kwargs: Any) -> pb.StreamResponse:
    return pb.StreamResponse(request_id="r", **kwargs)


def test_immediate_response_outcome() -> None:
    resp = _resp(
        request_action=pb.RequestActionPayload(
            immediate_response=pb.ImmediateResponse(
                status_code=403,
                headers={"Content-Type": "application/json"},
                body=wrappers_pb2.BytesValue(value=b'{"error":"blocked"}'),
            )
        )
    )
    out = outcome_of(resp, _sample())
    assert (out.kind, out.status_code) == ("immediate_response", 403)
    assert out.headers_set == {"content-type": "application/json"}
    expect = {
        "kind": "immediate_response",
        "status_code": 403,
        "body_json": {"error": "blocked"},
        "body_contains": ["blocked"],
        "headers_set": {"Content-Type": "application/json"},
    }
    assert check_expectation(out, expect) == []
    assert check_expectation(out, {**expect, "status_code": 400}) == [
        "status_code: expected 400, got 403"
    ]


def test_modification_with_body_is_modify() -> None:
    resp = _resp(
        request_action=pb.RequestActionPayload(
            upstream_request_modifications=pb.UpstreamRequestModifications(
                body=wrappers_pb2.BytesValue(value=b'{"messages":[]}'),
                headers_to_set={"X-Guard": "masked"},
            )
        )
    )
    out = outcome_of(resp, _sample())
    assert out.kind == "modify" and out.body == b'{"messages":[]}'
    ok = {"kind": "modify", "body_json": {"messages": []}, "headers_set": {"x-guard": "masked"}}
    assert check_expectation(out, ok) == []
    problems = check_expectation(
        out,
        {
            "kind": "modify",
            "body_json": {"messages": [1]},
            "body_contains": ["[EMAIL]"],
            "body_not_contains": ["messages"],
            "headers_set": {"x-guard": "blocked"},
        },
    )
    assert problems == [
        'body_json: expected {"messages":[1]}, got {"messages":[]}',
        "body_contains: '[EMAIL]' missing",
        "body_not_contains: 'messages' present",
        "headers_set[x-guard]: expected 'blocked', got 'masked'",
    ]


def test_header_only_change_keeps_the_original_body() -> None:
    resp = _resp(
        request_header_action=pb.RequestHeaderActionPayload(
            upstream_request_header_modifications=pb.UpstreamRequestHeaderModifications(
                headers_to_remove=["Authorization"]
            )
        )
    )
    out = outcome_of(resp, _sample("request_headers"))
    assert out.kind == "modify" and out.headers_removed == ["authorization"]
    assert out.body == encode_body(_sample().request["body"])


@pytest.mark.parametrize(
    "payload",
    [
        {"request_action": pb.RequestActionPayload()},
        {
            "request_action": pb.RequestActionPayload(
                upstream_request_modifications=pb.UpstreamRequestModifications()
            )
        },
    ],
    ids=["no-action", "empty-modifications"],
)
def test_no_change_is_passthrough_with_the_original_body(payload: dict[str, Any]) -> None:
    sample = _sample(request={"method": "POST", "path": "/", "body": "this is not JSON {"})
    out = outcome_of(_resp(**payload), sample)
    assert out.kind == "passthrough"
    assert check_expectation(out, {"kind": "passthrough", "body_contains": ["not JSON {"]}) == []
    assert check_expectation(out, {"kind": "modify"}) == ["expected modify, got passthrough"]


def test_response_status_change_is_modify() -> None:
    resp = _resp(
        response_action=pb.ResponseActionPayload(
            downstream_response_modifications=pb.DownstreamResponseModifications(
                status_code=wrappers_pb2.Int32Value(value=502)
            )
        )
    )
    out = outcome_of(resp, _sample("response_body"))
    assert (out.kind, out.status_code, out.body) == ("modify", 502, b"plain text")


def test_errors_and_wrong_payloads_are_errors() -> None:
    err = _resp(
        error=pb.ExecutionError(message="boom", policy_name="pol", error_type="execution_error")
    )
    out = outcome_of(err, _sample())
    assert out.kind == "error" and out.error == "execution_error: boom"
    assert check_expectation(out, {"kind": "modify"}) == [
        "expected modify, got error: execution_error: boom"
    ]
    wrong = _resp(response_action=pb.ResponseActionPayload())
    out = outcome_of(wrong, _sample("request_body"))
    assert out.kind == "error" and "expected request_action" in out.error
    assert outcome_of(_resp(), _sample()).kind == "error"


def test_body_json_on_a_non_json_body() -> None:
    out = outcome_of(
        _resp(request_action=pb.RequestActionPayload()), _sample(request={"body": "x{"})
    )
    assert check_expectation(out, {"kind": "passthrough", "body_json": {}}) == [
        "body_json: body is not JSON: 'x{'"
    ]


def test_long_bodies_are_clipped_in_messages() -> None:
    big = {"messages": ["x" * 500]}
    sample = _sample(request={"body": big})
    out = outcome_of(_resp(request_action=pb.RequestActionPayload()), sample)
    (problem,) = check_expectation(out, {"kind": "passthrough", "body_json": {"messages": []}})
    assert problem.endswith("...") and len(problem) < 400
    assert json.loads(encode_body(big) or b"") == big
