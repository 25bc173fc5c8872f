"""Sample requests (``samples/*.json``): reading them, the requests they make, their outcomes.

The sample format is described in docs/DESIGN.md ("Sample requests"). A sample names a buffered
phase, the request (and response) the policy sees and what the policy must do (``expect``).
The image smoke test, the executor client and the builder's test harness (``test-policy``,
``gateway_builder.testing``) all go through this module, so a sample means the same request
everywhere (:func:`context_fields`):

* header names are lower-cased, as Envoy delivers them to the policy engine;
* a body is complete (end of stream); a string travels as UTF-8, other JSON compactly; a phase
  whose context holds a body (the request body in response phases included) always carries
  it, with ``present`` false when the sample has none;
* the method is ``GET`` and the path ``/`` unless the sample gives them; the ``:authority`` is
  :data:`DEFAULT_AUTHORITY` unless it gives ``authority``, the scheme ``http`` unless it gives
  ``scheme``; a response's status is 200 unless it gives ``status``.

Only :func:`build_request`, :func:`sample_request` and :func:`outcome_of` deal in protobuf
messages (imported when called): reading and checking samples needs the standard library only.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway_executor.phases import BY_PAYLOAD, PHASES, SAMPLE_PHASES

if TYPE_CHECKING:
    from gateway_executor.proto import python_executor_pb2 as pb

EXPECT_KINDS = ("modify", "immediate_response", "passthrough")
SAMPLE_KEYS = frozenset({"description", "params", "phase", "request", "response", "expect"})
EXPECT_KEYS = frozenset(
    {"kind", "status_code", "body_json", "body_contains", "body_not_contains", "headers_set"}
)
#: The request's ``:authority`` when a sample does not name one.
DEFAULT_AUTHORITY = "gateway.local"

_ids = itertools.count(1)


class SampleError(ValueError):
    """A sample file that cannot be read or breaks the format; the message starts with the
    file (and field) and says what was expected."""


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


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise SampleError(f"{where}: {what}")


def _check_expect(expect: dict[str, Any], where: str) -> None:
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


def parse_sample(policy: str, raw: Any, where: str) -> Sample:
    """Validate a decoded sample file; ``where`` (a path) prefixes every error message."""
    _need(isinstance(raw, dict), where, "expected a JSON object")
    unknown = sorted(set(raw) - SAMPLE_KEYS)
    _need(not unknown, where, f"unknown key {unknown[0]!r}" if unknown else "")
    for key in ("description", "phase", "request", "expect"):
        _need(key in raw, where, f"missing key {key!r}")
    _need(
        raw["phase"] in SAMPLE_PHASES,
        f"{where}: phase",
        f"expected one of {', '.join(SAMPLE_PHASES)}",
    )
    for key in ("params", "request", "response", "expect"):
        value = raw.get(key)
        _need(value is None or isinstance(value, dict), f"{where}: {key}", "expected an object")
    expect = raw["expect"]
    _check_expect(expect, where)
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


def read_sample(policy: str, path: Path, where: str | None = None) -> Sample:
    """Read and validate one sample file; messages name it as ``where`` (default: its name)."""
    where = path.name if where is None else where
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SampleError(f"{where}: cannot read sample: {exc}") from None
    except json.JSONDecodeError as exc:
        raise SampleError(f"{where}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    return parse_sample(policy, raw, where)


def load_samples(policy: str, samples_dir: Path, *, label_root: Path | None = None) -> list[Sample]:
    """Every ``*.json`` sample in ``samples_dir`` (sorted by file name), validated; messages
    name each file relative to ``label_root`` (default: by its name)."""
    return [
        read_sample(policy, path, str(path.relative_to(label_root)) if label_root else path.name)
        for path in sorted(samples_dir.glob("*.json"))
    ]


# --------------------------------------------------------------------------------------------
# sample -> StreamRequest
# --------------------------------------------------------------------------------------------
def encode_body(value: Any) -> bytes | None:
    """A sample body on the wire: bytes as they are, a string as UTF-8, other JSON compactly,
    ``None`` as no body."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _headers(raw: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """``{name: value | [values]}`` as ``{lower-cased name: [values]}`` (same names merge)."""
    out: dict[str, list[str]] = {}
    for name, value in (raw or {}).items():
        values = value if isinstance(value, list | tuple) else [value]
        out.setdefault(name.lower(), []).extend(str(v) for v in values)
    return out


def _body(value: Any) -> dict[str, Any]:
    """A complete body as ``Body`` fields; ``present`` is false when there is none."""
    content = encode_body(value)
    return {"content": content or b"", "present": content is not None, "end_of_stream": True}


def context_fields(
    payload: str, request: Mapping[str, Any], response: Mapping[str, Any]
) -> dict[str, Any]:
    """What the context of ``payload``'s phase holds for ``request`` (and ``response``) in the
    sample format, by the field names of the protocol's context messages (which the SDK's
    contexts share). Headers are ``{name: [values]}``, a body is ``Body`` fields."""
    spec = BY_PAYLOAD[payload]
    method, path = str(request.get("method", "GET")), str(request.get("path", "/"))
    fields: dict[str, Any]
    if spec.side == "request":
        fields = {
            "headers": _headers(request.get("headers")),
            "path": path,
            "method": method,
            "authority": str(request.get("authority", DEFAULT_AUTHORITY)),
            "scheme": str(request.get("scheme", "http")),
        }
        if spec.body:
            fields[spec.body] = _body(request.get("body"))
        return fields
    fields = {
        "request_headers": _headers(request.get("headers")),
        "request_body": _body(request.get("body")),
        "request_path": path,
        "request_method": method,
        "response_headers": _headers(response.get("headers")),
        "response_status": int(response.get("status", 200)),
    }
    if spec.body:
        fields[spec.body] = _body(response.get("body"))
    return fields


def _fill_context(ctx: Any, fields: dict[str, Any]) -> None:
    """Set :func:`context_fields` on a protobuf context message."""
    for name, value in fields.items():
        if name.endswith("headers"):
            for header, values in value.items():
                getattr(ctx, name).values[header].values.extend(values)
        elif isinstance(value, dict):  # a body
            body = getattr(ctx, name)
            body.SetInParent()
            body.content, body.present = value["content"], value["present"]
            body.end_of_stream = value["end_of_stream"]
        else:
            setattr(ctx, name, value)


def build_request(
    phase: str,
    *,
    instance_id: str,
    policy_name: str = "",
    policy_version: str = "",
    request: Mapping[str, Any] | None = None,
    response: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    request_id: str | None = None,
    chunk: bytes = b"",
    chunk_index: int = 0,
    end_of_stream: bool = True,
    accumulated: bytes = b"",
    route_name: str = "route",
    api_name: str = "api",
    api_id: str = "",
    api_version: str = "",
) -> pb.StreamRequest:
    """A ``StreamRequest`` for the payload ``phase`` (``request_headers`` ... ``response_chunk``).

    ``request``/``response`` follow the sample format (``method``, ``path``, ``headers``,
    ``body``; ``status`` for responses), read as :func:`context_fields` says.
    """
    from gateway_executor import translate
    from gateway_executor.proto import python_executor_pb2 as pb

    spec = BY_PAYLOAD.get(phase)
    if spec is None:
        raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(BY_PAYLOAD)}")
    req = pb.StreamRequest(
        request_id=request_id or f"req-{next(_ids)}",
        instance_id=instance_id,
        policy_name=policy_name,
        policy_version=policy_version,
    )
    req.execution_metadata.phase = translate.PAYLOADS[phase].phase  # type: ignore[assignment]
    req.execution_metadata.route_name = route_name
    translate.dict_to_struct(dict(params or {}), req.params)
    shared = req.shared_context
    shared.request_id = req.request_id
    shared.api_id, shared.api_name, shared.api_version = api_id, api_name, api_version
    translate.dict_to_struct(dict(metadata or {}), shared.metadata)
    carried = getattr(req, phase)
    if spec.context is None:
        carried.accumulated = accumulated
        return req
    _fill_context(carried.context, context_fields(phase, request or {}, response or {}))
    if spec.chunked:
        carried.chunk.chunk, carried.chunk.index = chunk, chunk_index
        carried.chunk.end_of_stream = end_of_stream
    return req


def sample_request(
    sample: Sample,
    *,
    request_id: str,
    instance_id: str,
    policy_version: str,
    route_name: str = "route",
    api_id: str = "",
    api_name: str = "api",
    api_version: str = "",
) -> pb.StreamRequest:
    """The ``StreamRequest`` carrying ``sample`` in its phase (route and API as given)."""
    return build_request(
        PHASES[sample.phase].payload,
        instance_id=instance_id,
        policy_name=sample.policy,
        policy_version=policy_version,
        request=sample.request,
        response=sample.response,
        params=sample.params,
        request_id=request_id,
        route_name=route_name,
        api_id=api_id,
        api_name=api_name,
        api_version=api_version,
    )


# --------------------------------------------------------------------------------------------
# StreamResponse -> outcome -> comparison with ``expect``
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


#: Fields of a modifications action that change the request/response when set.
CHANGE_FIELDS = (
    "body",
    "status_code",
    "path",
    "host",
    "method",
    "upstream_name",
    "headers_to_set",
    "headers_to_remove",
    "query_parameters_to_add",
    "query_parameters_to_remove",
)
#: Protobuf wrapper messages whose ``value`` is what a policy set (an unset wrapper: unchanged).
WRAPPER_TYPES = frozenset(
    {"google.protobuf.BytesValue", "google.protobuf.Int32Value", "google.protobuf.StringValue"}
)


def original_body(sample: Sample) -> bytes | None:
    """The body of the message the sample's phase sees (what an unchanged body is)."""
    side = sample.request if PHASES[sample.phase].side == "request" else sample.response
    return encode_body(side.get("body"))


def action_outcome(
    sample: Sample, action: Mapping[str, Any] | None, immediate: bool = False
) -> Outcome:
    """Normalize a policy's action: ``action`` holds the fields it set (bodies as bytes,
    status codes as ints; ``None``: no action), ``immediate`` says it is an
    ``ImmediateResponse``. An unchanged body is the original one."""
    original = original_body(sample)
    if action is None:
        return Outcome(kind="passthrough", body=original)
    if immediate:
        return Outcome(
            kind="immediate_response",
            status_code=action.get("status_code", 0),
            body=action.get("body", b""),
            headers_set={k.lower(): v for k, v in (action.get("headers") or {}).items()},
        )
    return Outcome(
        kind="modify" if any(f in action for f in CHANGE_FIELDS) else "passthrough",
        status_code=action.get("status_code"),
        body=action.get("body", original),
        headers_set={k.lower(): v for k, v in (action.get("headers_to_set") or {}).items()},
        headers_removed=[h.lower() for h in action.get("headers_to_remove") or ()],
    )


def outcome_of(response: pb.StreamResponse, sample: Sample) -> Outcome:
    """Normalize the executor's answer to ``sample``; an unchanged body is the original one."""
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
        return action_outcome(sample, None)
    fields = {
        fd.name: value.value
        if fd.message_type and fd.message_type.full_name in WRAPPER_TYPES
        else value
        for fd, value in getattr(action_payload, action).ListFields()
    }
    return action_outcome(sample, fields, immediate=action == "immediate_response")


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
