"""Sample requests (``samples/*.json``) as executor-protocol messages, and their expected outcomes.

The sample format is described in docs/DESIGN.md ("Sample requests"). The smoke test acts as the
Go policy engine: it turns each sample into an ``InitPolicy`` + ``StreamRequest`` pair, and the
``StreamResponse`` it gets back into an :class:`Outcome` that is compared with the sample's
``expect`` block. Everything here is pure (no Docker, no sockets) so it is unit-tested directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import struct_pb2

from gateway_builder.errors import InputError
from gateway_executor.proto import python_executor_pb2 as pb


@dataclass(frozen=True)
class PhaseWire:
    """How one sample phase travels: the request payload, the wire phase, the response field."""

    payload: str
    phase: pb.Phase
    response_field: str
    side: str  # "request" or "response": which body a passthrough keeps


PHASES: dict[str, PhaseWire] = {
    "request_headers": PhaseWire(
        "request_headers", pb.PHASE_REQUEST_HEADERS, "request_header_action", "request"
    ),
    "request_body": PhaseWire("request_body", pb.PHASE_REQUEST_BODY, "request_action", "request"),
    "response_headers": PhaseWire(
        "response_headers", pb.PHASE_RESPONSE_HEADERS, "response_header_action", "response"
    ),
    "response_body": PhaseWire(
        "response_body", pb.PHASE_RESPONSE_BODY, "response_action", "response"
    ),
}
EXPECT_KINDS = ("modify", "immediate_response", "passthrough")
SAMPLE_KEYS = frozenset({"description", "params", "phase", "request", "response", "expect"})
EXPECT_KEYS = frozenset(
    {"kind", "status_code", "body_json", "body_contains", "body_not_contains", "headers_set"}
)
#: Metadata the smoke test passes to ``InitPolicy`` (an arbitrary but stable route).
SMOKE_METADATA = {
    "route_name": "smoke-test-route",
    "api_id": "smoke-test-api",
    "api_name": "smoke-test",
    "api_version": "v1.0",
}


@dataclass(frozen=True)
class Sample:
    """One sample file of one policy."""

    policy: str
    file: str  # for messages: the file name (or a path relative to the context)
    description: str
    params: dict[str, Any]
    phase: str
    request: dict[str, Any]
    response: dict[str, Any]
    expect: dict[str, Any]

    @property
    def label(self) -> str:
        """``policy/file-stem`` for tables and messages."""
        return f"{self.policy}/{Path(self.file).stem}"


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise InputError(f"{where}: {what}")


def parse_sample(policy: str, raw: Any, where: str) -> Sample:
    """Validate a decoded sample file; ``where`` (a path) prefixes every error message."""
    _need(isinstance(raw, dict), where, "expected a JSON object")
    unknown = sorted(set(raw) - SAMPLE_KEYS)
    _need(not unknown, where, f"unknown key {unknown[0]!r}" if unknown else "")
    for key in ("description", "phase", "request", "expect"):
        _need(key in raw, where, f"missing key {key!r}")
    _need(raw["phase"] in PHASES, f"{where}: phase", f"expected one of {', '.join(PHASES)}")
    for key in ("params", "request", "response", "expect"):
        value = raw.get(key)
        _need(value is None or isinstance(value, dict), f"{where}: {key}", "expected an object")
    expect = raw["expect"]
    unknown = sorted(set(expect) - EXPECT_KEYS)
    _need(not unknown, f"{where}: expect", f"unknown key {unknown[0]!r}" if unknown else "")
    _need(
        expect.get("kind") in EXPECT_KINDS,
        f"{where}: expect.kind",
        f"expected one of {', '.join(EXPECT_KINDS)}",
    )
    for key in ("body_contains", "body_not_contains"):
        value = expect.get(key, [])
        _need(
            isinstance(value, list) and all(isinstance(s, str) for s in value),
            f"{where}: expect.{key}",
            "expected a list of strings",
        )
    headers_set = expect.get("headers_set", {})
    _need(isinstance(headers_set, dict), f"{where}: expect.headers_set", "expected an object")
    status = expect.get("status_code")
    _need(
        status is None or (isinstance(status, int) and not isinstance(status, bool)),
        f"{where}: expect.status_code",
        "expected an integer",
    )
    return Sample(
        policy=policy,
        file=where,
        description=str(raw["description"]),
        params=dict(raw.get("params") or {}),
        phase=raw["phase"],
        request=dict(raw.get("request") or {}),
        response=dict(raw.get("response") or {}),
        expect=dict(expect),
    )


def load_samples(policy: str, samples_dir: Path, *, label_root: Path | None = None) -> list[Sample]:
    """Every ``*.json`` sample in ``samples_dir`` (sorted by file name), validated."""
    samples = []
    for path in sorted(samples_dir.glob("*.json")):
        where = str(path.relative_to(label_root)) if label_root else path.name
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{where}: cannot read sample: {exc}") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
        samples.append(parse_sample(policy, raw, where))
    return samples


# --------------------------------------------------------------------------------------------
# sample -> protocol messages
# --------------------------------------------------------------------------------------------


def encode_body(value: Any) -> bytes | None:
    """A sample body on the wire: a string as UTF-8, other JSON compactly, ``None`` as no body."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def to_struct(data: dict[str, Any]) -> struct_pb2.Struct:
    """A JSON object as a ``google.protobuf.Struct`` (numbers become doubles, as from Go)."""
    struct = struct_pb2.Struct()
    struct.update(data)
    return struct


def to_headers(raw: dict[str, Any] | None) -> pb.Headers:
    """``{name: value | [values]}`` as protocol headers (names lower-cased, as Envoy sends)."""
    headers = pb.Headers()
    for name, value in (raw or {}).items():
        values = value if isinstance(value, list) else [value]
        headers.values[name.lower()].values.extend(str(v) for v in values)
    return headers


def to_body(value: Any) -> pb.Body:
    """A complete (end-of-stream) body; ``present`` is false when the sample has none."""
    content = encode_body(value)
    return pb.Body(content=content or b"", end_of_stream=True, present=content is not None)


def init_request(sample: Sample, policy_version: str) -> pb.InitPolicyRequest:
    """The ``InitPolicy`` call the engine makes when it attaches the policy to a route."""
    return pb.InitPolicyRequest(
        policy_name=sample.policy,
        policy_version=policy_version,
        policy_metadata=pb.PolicyMetadata(**SMOKE_METADATA),
        params=to_struct(sample.params),
    )


def stream_request(
    sample: Sample, *, request_id: str, instance_id: str, policy_version: str
) -> pb.StreamRequest:
    """The ``StreamRequest`` carrying ``sample`` in its phase."""
    wire = PHASES[sample.phase]
    req, resp = sample.request, sample.response
    method, path = str(req.get("method", "GET")), str(req.get("path", "/"))
    message = pb.StreamRequest(
        request_id=request_id,
        instance_id=instance_id,
        policy_name=sample.policy,
        policy_version=policy_version,
        params=to_struct(sample.params),
        shared_context=pb.SharedContext(
            request_id=request_id,
            api_id=SMOKE_METADATA["api_id"],
            api_name=SMOKE_METADATA["api_name"],
            api_version=SMOKE_METADATA["api_version"],
        ),
        execution_metadata=pb.ExecutionMetadata(
            phase=wire.phase, route_name=SMOKE_METADATA["route_name"]
        ),
    )
    req_headers = to_headers(req.get("headers"))
    if sample.phase == "request_headers":
        message.request_headers.context.CopyFrom(
            pb.RequestHeaderContext(
                headers=req_headers, path=path, method=method, authority="smoke.test", scheme="http"
            )
        )
    elif sample.phase == "request_body":
        message.request_body.context.CopyFrom(
            pb.RequestContext(
                headers=req_headers,
                body=to_body(req.get("body")),
                path=path,
                method=method,
                authority="smoke.test",
                scheme="http",
            )
        )
    else:
        common: dict[str, Any] = {
            "request_headers": req_headers,
            "request_body": to_body(req.get("body")),
            "request_path": path,
            "request_method": method,
            "response_headers": to_headers(resp.get("headers")),
        }
        status = int(resp.get("status", 200))
        if sample.phase == "response_headers":
            message.response_headers.context.CopyFrom(
                pb.ResponseHeaderContext(**common, response_status=status)
            )
        else:
            message.response_body.context.CopyFrom(
                pb.ResponseContext(
                    **common, response_body=to_body(resp.get("body")), response_status=status
                )
            )
    return message


# --------------------------------------------------------------------------------------------
# protocol response -> outcome -> comparison
# --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a response does, normalized for comparison with a sample's ``expect``.

    ``kind`` is one of :data:`EXPECT_KINDS` or ``"error"`` (an ``ExecutionError`` or a response
    of the wrong shape; ``error`` then says what came back).
    """

    kind: str
    status_code: int | None = None
    body: bytes | None = None
    headers_set: dict[str, str] = field(default_factory=dict)
    headers_removed: list[str] = field(default_factory=list)
    error: str = ""

    def summary(self) -> str:
        """One short line for tables and messages."""
        if self.kind == "error":
            return f"error: {self.error}"
        parts = [self.kind]
        if self.status_code is not None:
            parts.append(f"status {self.status_code}")
        if self.headers_set:
            parts.append("sets " + ", ".join(sorted(self.headers_set)))
        return ", ".join(parts)


#: Fields of a modifications message that change the request/response when set.
_WRAPPED_CHANGES = ("body", "status_code", "path", "host", "method", "upstream_name")
_LIST_CHANGES = (
    "headers_to_set",
    "headers_to_remove",
    "query_parameters_to_add",
    "query_parameters_to_remove",
)


def _original_body(sample: Sample) -> bytes | None:
    side = sample.request if PHASES[sample.phase].side == "request" else sample.response
    return encode_body(side.get("body"))


def outcome_of(response: pb.StreamResponse, sample: Sample) -> Outcome:
    """Normalize the executor's answer to ``sample``; an unchanged body is the original one."""
    original = _original_body(sample)
    payload = response.WhichOneof("payload")
    if payload == "error":
        err = response.error
        return Outcome(kind="error", error=f"{err.error_type or 'error'}: {err.message}")
    expected_field = PHASES[sample.phase].response_field
    if payload != expected_field:
        return Outcome(
            kind="error", error=f"answer {payload or 'without payload'}, expected {expected_field}"
        )
    action_payload = getattr(response, payload)
    action = action_payload.WhichOneof("action")
    if action is None:
        return Outcome(kind="passthrough", body=original)
    msg = getattr(action_payload, action)
    if action == "immediate_response":
        return Outcome(
            kind="immediate_response",
            status_code=msg.status_code,
            body=msg.body.value if msg.HasField("body") else b"",
            headers_set={k.lower(): v for k, v in msg.headers.items()},
        )
    present = {f.name for f, _ in msg.ListFields()}
    changed = any(f in present for f in _WRAPPED_CHANGES + _LIST_CHANGES)
    return Outcome(
        kind="modify" if changed else "passthrough",
        status_code=msg.status_code.value if "status_code" in present else None,
        body=msg.body.value if "body" in present else original,
        headers_set={k.lower(): v for k, v in msg.headers_to_set.items()},
        headers_removed=[h.lower() for h in msg.headers_to_remove],
    )


def check_expectation(outcome: Outcome, expect: dict[str, Any]) -> list[str]:
    """Every way ``outcome`` differs from ``expect`` (an empty list when it matches)."""
    if outcome.kind != expect["kind"]:
        return [f"expected {expect['kind']}, got {outcome.summary()}"]
    problems: list[str] = []
    if "status_code" in expect and outcome.status_code != expect["status_code"]:
        problems.append(f"status_code: expected {expect['status_code']}, got {outcome.status_code}")
    text = (outcome.body or b"").decode("utf-8", errors="replace")
    if "body_json" in expect:
        try:
            actual = json.loads(text)
        except ValueError:
            problems.append(f"body_json: body is not JSON: {_clip(text)!r}")
        else:
            if actual != expect["body_json"]:
                problems.append(
                    f"body_json: expected {_clip(_compact(expect['body_json']))}, "
                    f"got {_clip(_compact(actual))}"
                )
    problems += [
        f"body_contains: {s!r} missing" for s in expect.get("body_contains", []) if s not in text
    ]
    problems += [
        f"body_not_contains: {s!r} present"
        for s in expect.get("body_not_contains", [])
        if s in text
    ]
    for name, value in (expect.get("headers_set") or {}).items():
        got = outcome.headers_set.get(name.lower())
        if got != value:
            problems.append(f"headers_set[{name}]: expected {value!r}, got {got!r}")
    return problems


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
