"""The executor's answer to one call, decoded into plain Python values for a policy's tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway_executor import translate
from gateway_executor.proto import python_executor_pb2 as pb
from gateway_executor.samples import CHANGE_FIELDS, WRAPPER_TYPES

_STRUCT = "google.protobuf.Struct"


@dataclass(frozen=True)
class Action:
    """What the policy answered, as the Go engine would receive it.

    ``kind``:

    * ``modify``: a modifications action that changes something (``type`` names the SDK class);
    * ``immediate_response``: an ``ImmediateResponse``;
    * ``passthrough``: no action, or one that changes nothing;
    * ``forward`` / ``terminate``: a streamed chunk forwarded (``body`` None: unchanged) or the
      stream ended (``TerminateResponseChunk``);
    * ``needs_more``: the answer to a needs-more question (:attr:`needs_more`);
    * ``error``: the call failed (:attr:`error` says how: ``execution_error: ...``).
    """

    kind: str
    #: The SDK action class (``UpstreamRequestHeaderModifications`` ...), None without one.
    type: str | None = None
    #: The fields the action set: bytes for bodies, ints, dicts and lists as the SDK has them.
    fields: dict[str, Any] = field(default_factory=dict)
    #: ``shared.metadata`` as the policy left it.
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    needs_more: bool | None = None

    @property
    def body(self) -> bytes | None:
        """The body the action sets (None: unchanged)."""
        value = self.fields.get("body")
        return value if isinstance(value, bytes) else None

    @property
    def status_code(self) -> int | None:
        """The status it sets (an immediate response's, or a response modification's)."""
        value = self.fields.get("status_code")
        return value if isinstance(value, int) else None

    @property
    def headers_set(self) -> dict[str, str]:
        """Headers it sets, names lower-cased (an immediate response's headers included)."""
        raw = self.fields.get("headers_to_set") or self.fields.get("headers") or {}
        return {str(k).lower(): str(v) for k, v in raw.items()}

    @property
    def headers_removed(self) -> list[str]:
        """Headers it removes, lower-cased."""
        return [str(h).lower() for h in self.fields.get("headers_to_remove") or ()]

    def summary(self) -> str:
        """One short line for tables and assertion messages."""
        if self.kind == "error":
            return f"error: {self.error}"
        if self.kind == "needs_more":
            return f"needs_more: {self.needs_more}"
        parts = [self.kind]
        if self.status_code is not None:
            parts.append(f"status {self.status_code}")
        if self.headers_set:
            parts.append("sets " + ", ".join(sorted(self.headers_set)))
        if self.body is not None:
            parts.append(f"body {len(self.body)} bytes")
        return ", ".join(parts)


def _is_map(fd: Any) -> bool:
    return fd.message_type is not None and fd.message_type.GetOptions().map_entry


def _single(fd: Any, value: Any) -> Any:
    if fd.message_type is None:
        return value
    name = fd.message_type.full_name
    if name in WRAPPER_TYPES:
        return value.value
    if name == _STRUCT:
        return translate.struct_to_dict(value)
    if name.endswith(".StringList"):
        return list(value.values)
    return message_fields(value)


def _value(fd: Any, value: Any) -> Any:
    if _is_map(fd):
        inner = fd.message_type.fields_by_name["value"]
        return {k: _single(inner, v) for k, v in value.items()}
    if fd.is_repeated:
        return [_single(fd, v) for v in value]
    return _single(fd, value)


def message_fields(message: Any) -> dict[str, Any]:
    """The set fields of a protobuf message as plain values (wrappers unwrapped, structs as
    dicts, string lists as lists)."""
    return {fd.name: _value(fd, value) for fd, value in message.ListFields()}


def _class_name(oneof_field: str) -> str:
    return "".join(part.capitalize() for part in oneof_field.split("_"))


def decode_response(response: pb.StreamResponse) -> Action:
    """Decode one ``StreamResponse``."""
    metadata = translate.struct_to_dict(response.updated_metadata)
    payload = response.WhichOneof("payload")
    if payload is None:
        return Action(kind="error", error="an answer without payload", metadata=metadata)
    if payload == "error":
        err = response.error
        return Action(
            kind="error", error=f"{err.error_type or 'error'}: {err.message}", metadata=metadata
        )
    message = getattr(response, payload)
    if payload == "needs_more_decision":
        return Action(kind="needs_more", needs_more=message.needs_more, metadata=metadata)
    set_fields = message.ListFields()
    if not set_fields:
        return Action(kind="passthrough", metadata=metadata)
    fd, action = set_fields[0]
    fields = message_fields(action)
    if fd.name == "immediate_response":
        kind = "immediate_response"
    elif fd.name == "terminate_response_chunk":
        kind = "terminate"
    elif fd.name.startswith("forward_"):
        kind = "forward"
    else:
        kind = "modify" if any(f in fields for f in CHANGE_FIELDS) else "passthrough"
    return Action(kind=kind, type=_class_name(fd.name), fields=fields, metadata=metadata)
