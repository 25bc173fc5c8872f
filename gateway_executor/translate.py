"""Translation between the gRPC messages and the plain JSON-able dicts sent to workers.

The worker shim turns these dicts into ``apip_sdk_core`` objects and its actions back into dicts;
this module does the protobuf half. Bytes travel as latin-1 strings (lossless, one char per
byte). Replies from a worker are untrusted: every conversion here raises ``ValueError`` /
``TypeError`` on bad shapes, which the caller turns into an execution error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2

from gateway_executor.phases import CAPABILITIES, PHASES
from gateway_executor.proto import python_executor_pb2 as pb


@dataclass(frozen=True)
class PayloadKind:
    """How one ``StreamRequest`` payload maps to a phase, a hook and a response field."""

    payload: str
    phase: int
    wire_phase: str
    response_field: str
    #: The body field the hook's context carries (``None``: no body in this phase).
    body: str | None = None


def _pb_phase(name: str) -> int:
    """The protocol's ``Phase`` enum value for a phase name (``PHASE_`` + its upper case)."""
    return pb.Phase.Value(f"PHASE_{name.upper()}")


def _oneof_field(action: str) -> str:
    """The response oneof field for an SDK action class (``ImmediateResponse`` ->
    ``immediate_response``)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower()


PAYLOADS: dict[str, PayloadKind] = {
    p.payload: PayloadKind(p.payload, _pb_phase(p.name), p.name, p.response_field, p.body)
    for p in PHASES.values()
}
PAYLOADS["cancel_execution"] = PayloadKind("cancel_execution", _pb_phase("cancel"), "cancel", "")

#: Which SDK action types each response payload accepts, and the oneof field for each.
ACTION_FIELDS: dict[str, dict[str, str]] = {
    p.response_field: {action: _oneof_field(action) for action in p.actions}
    for p in PHASES.values()
    if p.actions
}


# --------------------------------------------------------------------------------------------
# protobuf -> plain values
# --------------------------------------------------------------------------------------------
def value_to_py(value: struct_pb2.Value) -> Any:
    """Convert a ``google.protobuf.Value`` (numbers stay floats, as upstream)."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return value.number_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [value_to_py(v) for v in value.list_value.values]
    return None


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """Convert a ``google.protobuf.Struct`` to a dict."""
    return {key: value_to_py(val) for key, val in struct.fields.items()}


def dict_to_struct(data: dict[str, Any], out: struct_pb2.Struct | None = None) -> struct_pb2.Struct:
    """Fill (or create) a Struct from a JSON-like dict; raises on non-JSON values."""
    struct = struct_pb2.Struct() if out is None else out
    if not isinstance(data, dict):
        raise TypeError(f"expected an object, got {type(data).__name__}")
    struct.update(data)
    return struct


def as_init_params(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as ``InitPolicy`` delivers params (through a protobuf Struct: every number a
    float), so that a start-up check with registry params sees the same value shapes."""
    return struct_to_dict(dict_to_struct(data))


def _latin1(data: bytes) -> str:
    return data.decode("latin-1")


# Only fields that are set travel to the worker (``ListFields`` skips the rest); the shim fills
# in the protobuf default for every missing key, so an absent key and a default value mean the
# same thing on both sides.


def headers_to_wire(headers: pb.Headers) -> dict[str, list[str]]:
    """``Headers`` -> ``{name: [values]}``."""
    return {name: list(values.values) for name, values in headers.values.items()}


def body_to_wire(body: pb.Body) -> dict[str, Any]:
    """``Body`` -> wire dict (``content`` latin-1, ``eos``, ``present``; defaults omitted)."""
    out: dict[str, Any] = {}
    if body.content:
        out["content"] = _latin1(body.content)
    if body.end_of_stream:
        out["eos"] = True
    if body.present:
        out["present"] = True
    return out


def _downstream(ds: pb.DownstreamContext) -> dict[str, Any]:
    if not ds.HasField("request"):
        return {"request": None}
    out: dict[str, Any] = {}
    for fd, value in ds.request.ListFields():
        out[fd.name] = headers_to_wire(value) if fd.name == "headers" else value
    return {"request": out}


def _upstream(up: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fd, value in up.ListFields():
        name = fd.name
        if name == "response":
            resp: dict[str, Any] = {}
            for rfd, rvalue in value.ListFields():
                resp[rfd.name] = headers_to_wire(rvalue) if rfd.name == "headers" else rvalue
            out[name] = resp
        else:
            out[name] = value
    return out


_BODIES = frozenset(("body", "request_body", "response_body"))
_HEADERS = frozenset(("headers", "request_headers", "response_headers"))


def context_to_wire(ctx: Any, body: str | None) -> dict[str, Any]:
    """A phase context -> wire dict with the fields that are set.

    ``body`` names the one body field this phase carries to the policy (``None``: none), so
    a headers phase never copies a body it does not pass on.
    """
    out: dict[str, Any] = {}
    for fd, value in ctx.ListFields():
        name = fd.name
        if name in _HEADERS:
            out[name] = headers_to_wire(value)
        elif name in _BODIES:
            if name == body or name == "request_body":
                out[name] = body_to_wire(value)
        elif name == "downstream":
            out[name] = _downstream(value)
        elif name == "upstream":
            out[name] = _upstream(value)
        else:
            out[name] = value
    return out


def auth_to_wire(auth: pb.AuthContext) -> dict[str, Any]:
    """``AuthContext`` -> wire dict (set fields only, recursive through ``previous``)."""
    out: dict[str, Any] = {}
    for fd, value in auth.ListFields():
        name = fd.name
        if name == "previous":
            out[name] = auth_to_wire(value)
        elif name == "typed_properties":
            out[name] = struct_to_dict(value)
        elif name == "audience":
            out[name] = list(value)
        elif name in ("scopes", "properties"):
            out[name] = dict(value)
        else:
            out[name] = value
    return out


def shared_to_wire(shared: pb.SharedContext) -> dict[str, Any]:
    """``SharedContext`` -> wire dict (set fields only)."""
    out: dict[str, Any] = {}
    for fd, value in shared.ListFields():
        name = fd.name
        if name == "metadata":
            out[name] = struct_to_dict(value)
        elif name == "auth_context":
            out[name] = auth_to_wire(value)
        else:
            out[name] = value
    return out


def metadata_to_wire(meta: pb.PolicyMetadata) -> dict[str, str]:
    """``PolicyMetadata`` -> wire dict."""
    return {
        "route_name": meta.route_name,
        "api_id": meta.api_id,
        "api_name": meta.api_name,
        "api_version": meta.api_version,
        "attached_to": meta.attached_to,
    }


def request_to_wire(req: pb.StreamRequest, kind: PayloadKind) -> dict[str, Any]:
    """Build the ``call`` frame body (without op/seq/iid) for one hook call."""
    ex: dict[str, Any] = {"request_id": req.request_id}
    for fd, value in req.execution_metadata.ListFields():
        name = fd.name
        if name == "route_name":
            ex[name] = value
        elif name == "deadline":
            if value.seconds or value.nanos:
                ex[name] = [value.seconds, value.nanos]
        elif name == "trace":
            if value.trace_id:
                ex["trace_id"] = value.trace_id
            if value.span_id:
                ex["span_id"] = value.span_id
    if req.policy_name:
        ex["policy_name"] = req.policy_name
    if req.policy_version:
        ex["policy_version"] = req.policy_version
    msg: dict[str, Any] = {"phase": kind.wire_phase, "exec": ex}
    if req.params.fields:
        msg["params"] = struct_to_dict(req.params)
    if req.HasField("shared_context"):
        msg["shared"] = shared_to_wire(req.shared_context)
    name = kind.payload
    payload = getattr(req, name)
    if name in ("needs_more_request_data", "needs_more_response_data"):
        msg["accumulated"] = _latin1(payload.accumulated)
        return msg
    msg["ctx"] = context_to_wire(payload.context, kind.body)
    if name in ("request_chunk", "response_chunk"):
        msg["chunk"] = _chunk(payload.chunk)
    return msg


def _chunk(chunk: pb.StreamBody) -> dict[str, Any]:
    out: dict[str, Any] = {"chunk": _latin1(chunk.chunk)}
    if chunk.end_of_stream:
        out["eos"] = True
    if chunk.index:
        out["index"] = chunk.index
    return out


# --------------------------------------------------------------------------------------------
# plain values (from a worker) -> protobuf
# --------------------------------------------------------------------------------------------
def _bytes(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"expected bytes, got {type(value).__name__}")
    return value.encode("latin-1")


def _str_map(target: Any, value: Any, field: str) -> None:
    if not isinstance(value, dict):
        raise TypeError(f"{field}: expected a dict, got {type(value).__name__}")
    for k, v in value.items():
        if not isinstance(v, str):
            raise TypeError(f"{field}[{k!r}]: expected str, got {type(v).__name__}")
        target[k] = v


def _str_list(target: Any, value: Any, field: str) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{field}: expected a list of str")
    target.extend(value)


def _wrapper(target: Any, value: Any, kind: type, field: str) -> None:
    if value is None:
        return
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{field}: expected int, got {type(value).__name__}")
    if kind is str and not isinstance(value, str):
        raise TypeError(f"{field}: expected str, got {type(value).__name__}")
    sub = getattr(target, field)
    sub.SetInParent()
    sub.value = _bytes(value) if kind is bytes else value


def _drop_filter(target: Any, value: Any) -> None:
    if value is None:
        return
    headers = value.get("headers") or []
    if not headers:
        return
    action = str(value.get("action", "")).lower()
    enum = {"allow": pb.DROP_HEADER_ACTION_TYPE_ALLOW, "deny": pb.DROP_HEADER_ACTION_TYPE_DENY}
    if action not in enum:
        raise ValueError(f"analytics_header_filter.action must be allow or deny, got {action!r}")
    target.analytics_header_filter.action = enum[action]
    _str_list(target.analytics_header_filter.headers, headers, "analytics_header_filter.headers")


_FIELDS_BY_NAME: dict[type, Any] = {}


def _fill_action(msg: Any, action: dict[str, Any]) -> None:
    fields = _FIELDS_BY_NAME.get(type(msg))
    if fields is None:
        fields = _FIELDS_BY_NAME[type(msg)] = msg.DESCRIPTOR.fields_by_name
    for name, value in action.items():
        if name == "t" or name not in fields:
            continue  # SDK fields the wire contract cannot carry are dropped
        if name == "body":
            _wrapper(msg, value, bytes, name)
        elif name == "status_code":
            if fields[name].message_type is not None:
                _wrapper(msg, value, int, name)
            else:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"status_code: expected int, got {type(value).__name__}")
                msg.status_code = value
        elif name in ("upstream_name", "path", "host", "method"):
            _wrapper(msg, value, str, name)
        elif name in ("headers_to_set", "headers"):
            _str_map(getattr(msg, name), value, name)
        elif name in ("headers_to_remove", "query_parameters_to_remove"):
            _str_list(getattr(msg, name), value, name)
        elif name == "query_parameters_to_add":
            if not isinstance(value, dict):
                raise TypeError("query_parameters_to_add: expected a dict")
            for key, vals in value.items():
                _str_list(
                    msg.query_parameters_to_add[key].values,
                    vals,
                    f"query_parameters_to_add[{key!r}]",
                )
        elif name == "analytics_metadata":
            if value:
                dict_to_struct(value, msg.analytics_metadata)
        elif name == "dynamic_metadata":
            if not isinstance(value, dict):
                raise TypeError("dynamic_metadata: expected a dict")
            for key, data in value.items():
                dict_to_struct(data, msg.dynamic_metadata[key])
        elif name == "analytics_header_filter":
            _drop_filter(msg, value)


def response_from_worker(
    request_id: str, kind: PayloadKind, reply: dict[str, Any]
) -> pb.StreamResponse:
    """Build the ``StreamResponse`` for a successful worker reply."""
    resp = pb.StreamResponse(request_id=request_id)
    field = kind.response_field
    if field == "needs_more_decision":
        needs = reply.get("needs_more")
        if not isinstance(needs, bool):
            raise TypeError("needs_more: expected bool")
        resp.needs_more_decision.needs_more = needs
        return resp
    metadata = reply.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise TypeError(f"expected an object, got {type(metadata).__name__}")
        updated = resp.updated_metadata
        updated.SetInParent()
        if metadata:
            updated.update(metadata)
    payload = getattr(resp, field)
    payload.SetInParent()
    action = reply.get("action")
    if action is not None:
        if not isinstance(action, dict):
            raise TypeError("action: expected an object")
        oneof = ACTION_FIELDS[field].get(action.get("t", ""))
        if oneof is None:
            raise TypeError(f"{action.get('t')!r} is not a valid action for {kind.wire_phase}")
        target = getattr(payload, oneof)
        target.SetInParent()
        _fill_action(target, action)
    return resp


def passthrough_response(request_id: str, kind: PayloadKind) -> pb.StreamResponse:
    """The ``skip`` failure-mode answer: no action, so the request passes unchanged."""
    resp = pb.StreamResponse(request_id=request_id)
    if kind.response_field == "needs_more_decision":
        resp.needs_more_decision.needs_more = False
    else:
        getattr(resp, kind.response_field).SetInParent()
    return resp


def error_response(
    request_id: str, message: str, error_type: str, policy_name: str = "", policy_version: str = ""
) -> pb.StreamResponse:
    """A ``StreamResponse`` carrying an ``ExecutionError``."""
    return pb.StreamResponse(
        request_id=request_id,
        error=pb.ExecutionError(
            message=message,
            policy_name=policy_name,
            policy_version=policy_version,
            error_type=error_type,
        ),
    )


_HEADER_MODES = {
    "SKIP": pb.HEADER_PROCESSING_MODE_SKIP,
    "PROCESS": pb.HEADER_PROCESSING_MODE_PROCESS,
}
_BODY_MODES = {
    "SKIP": pb.BODY_PROCESSING_MODE_SKIP,
    "BUFFER": pb.BODY_PROCESSING_MODE_BUFFER,
    "STREAM": pb.BODY_PROCESSING_MODE_STREAM,
}


def processing_mode(mode: dict[str, str]) -> pb.ProcessingMode:
    """Wire mode dict (enum names) -> ``ProcessingMode``."""
    return pb.ProcessingMode(
        request_header_mode=_HEADER_MODES[mode["request_header_mode"]],
        request_body_mode=_BODY_MODES[mode["request_body_mode"]],
        response_header_mode=_HEADER_MODES[mode["response_header_mode"]],
        response_body_mode=_BODY_MODES[mode["response_body_mode"]],
    )


def capabilities(caps: dict[str, bool]) -> pb.PolicyCapabilities:
    """Wire capabilities dict -> ``PolicyCapabilities``."""
    return pb.PolicyCapabilities(**{k: bool(caps.get(k)) for k in CAPABILITIES})
