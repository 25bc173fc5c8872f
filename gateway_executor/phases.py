"""The hook phases of the executor protocol, named once for every layer that deals in them.

A phase's :attr:`Phase.name` is what the worker frames, the SDK's ``ExecutionPhase`` values and
the sample files call it; the rest says which ``StreamRequest`` payload carries it, which
``StreamResponse`` field answers it and what the ``apip_sdk_core`` policy implements for it.
Protobuf enum values are derived from these names in ``translate.py``.

Standard library only, Python 3.10 and later: the worker shim loads this file by path inside a
policy's venv, where ``gateway_executor`` is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    """One hook phase."""

    #: The phase's own name (wire frames, ``ExecutionPhase`` value, samples' ``phase``).
    name: str
    #: The ``StreamRequest`` oneof field carrying it.
    payload: str
    #: The ``StreamResponse`` oneof field answering it.
    response_field: str
    #: The method the policy implements for it.
    hook: str
    #: The SDK policy class that declares :attr:`hook`.
    interface: str
    #: Whose message the phase sees: ``"request"`` or ``"response"``.
    side: str
    #: The SDK context class the hook receives; ``None`` for a needs-more question, whose
    #: hook takes the accumulated bytes only.
    context: str | None = None
    #: The SDK action classes the hook may return (besides ``None``).
    actions: tuple[str, ...] = ()
    #: The context field holding the body this phase passes to the policy (``None``: none).
    body: str | None = None
    #: The hook also receives one chunk of a streamed body.
    chunked: bool = False

    @property
    def streaming(self) -> bool:
        """Part of a streamed body (a chunk, or the question whether more data is needed)."""
        return self.chunked or self.context is None


_IMMEDIATE = "ImmediateResponse"

#: Every hook phase by name, in the order of the protocol's ``Phase`` enum.
PHASES: dict[str, Phase] = {
    p.name: p
    for p in (
        Phase(
            "request_headers",
            "request_headers",
            "request_header_action",
            "on_request_headers",
            "RequestHeaderPolicy",
            "request",
            "RequestHeaderContext",
            ("UpstreamRequestHeaderModifications", _IMMEDIATE),
        ),
        Phase(
            "request_body",
            "request_body",
            "request_action",
            "on_request_body",
            "RequestPolicy",
            "request",
            "RequestContext",
            ("UpstreamRequestModifications", _IMMEDIATE),
            body="body",
        ),
        Phase(
            "response_headers",
            "response_headers",
            "response_header_action",
            "on_response_headers",
            "ResponseHeaderPolicy",
            "response",
            "ResponseHeaderContext",
            ("DownstreamResponseHeaderModifications", _IMMEDIATE),
        ),
        Phase(
            "response_body",
            "response_body",
            "response_action",
            "on_response_body",
            "ResponsePolicy",
            "response",
            "ResponseContext",
            ("DownstreamResponseModifications", _IMMEDIATE),
            body="response_body",
        ),
        Phase(
            "needs_more_request_data",
            "needs_more_request_data",
            "needs_more_decision",
            "needs_more_request_data",
            "StreamingRequestPolicy",
            "request",
        ),
        Phase(
            "request_body_chunk",
            "request_chunk",
            "streaming_request_action",
            "on_request_body_chunk",
            "StreamingRequestPolicy",
            "request",
            "RequestStreamContext",
            ("ForwardRequestChunk",),
            chunked=True,
        ),
        Phase(
            "needs_more_response_data",
            "needs_more_response_data",
            "needs_more_decision",
            "needs_more_response_data",
            "StreamingResponsePolicy",
            "response",
        ),
        Phase(
            "response_body_chunk",
            "response_chunk",
            "streaming_response_action",
            "on_response_body_chunk",
            "StreamingResponsePolicy",
            "response",
            "ResponseStreamContext",
            ("ForwardResponseChunk", "TerminateResponseChunk"),
            chunked=True,
        ),
    )
}

#: The same phases by the ``StreamRequest`` payload that carries them.
BY_PAYLOAD: dict[str, Phase] = {p.payload: p for p in PHASES.values()}

#: Phases a sample file may use: the buffered ones (a whole header block or body).
SAMPLE_PHASES: tuple[str, ...] = tuple(p.name for p in PHASES.values() if not p.streaming)

#: ``PolicyCapabilities`` field -> the SDK policy class whose implementation it reports.
CAPABILITIES: dict[str, str] = {
    "request_headers": "RequestHeaderPolicy",
    "request_body": "RequestPolicy",
    "response_headers": "ResponseHeaderPolicy",
    "response_body": "ResponsePolicy",
    "streaming_request": "StreamingRequestPolicy",
    "streaming_response": "StreamingResponsePolicy",
}


__all__ = ["BY_PAYLOAD", "CAPABILITIES", "PHASES", "SAMPLE_PHASES", "Phase"]
