"""Unit tests of the prompt-guard policy, called through the SDK objects."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from apip_sdk_core.policy.v1alpha2 import (
    Body,
    BodyProcessingMode,
    DownstreamResponseModifications,
    ExecutionContext,
    ExecutionPhase,
    ImmediateResponse,
    PolicyMetadata,
    RequestContext,
    ResponseContext,
    ResponsePolicy,
    SharedContext,
    UpstreamRequestModifications,
)

METADATA = PolicyMetadata(route_name="chat-route", api_name="chat-api")
REQ = ExecutionContext(request_id="r1", phase=ExecutionPhase.REQUEST_BODY)
RESP = ExecutionContext(request_id="r1", phase=ExecutionPhase.RESPONSE_BODY)


def body(content: bytes | None) -> Body:
    return Body(content=content, end_of_stream=True, present=content is not None)


def user(text: Any, role: str = "user") -> bytes:
    return json.dumps({"messages": [{"role": role, "content": text}]}).encode()


def on_request(module: ModuleType, params: dict[str, Any], content: bytes | None) -> Any:
    policy = module.get_policy(METADATA, params)
    return policy.on_request_body(
        REQ, RequestContext(shared=SharedContext(), body=body(content)), params
    )


def on_response(module: ModuleType, params: dict[str, Any], content: bytes | None) -> Any:
    policy = module.get_policy(METADATA, params)
    ctx = ResponseContext(shared=SharedContext(), response_body=body(content))
    return policy.on_response_body(RESP, ctx, params)


def masked_text(module: ModuleType, text: str, **params: Any) -> str:
    action = on_request(module, {"action": "mask", **params}, user(text))
    if action is None:
        return text
    assert isinstance(action, UpstreamRequestModifications) and action.body is not None
    return str(json.loads(action.body)["messages"][0]["content"])


def test_samples_replay(sample_path: Path, replay: Callable[[Path], Any]) -> None:
    replay(sample_path)


def test_has_samples(policy_dir: Path) -> None:
    assert len(list((policy_dir / "samples").glob("*.json"))) >= 3


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("4111111111111111", True),
        ("4111 1111 1111 1111", True),
        ("5500-0000-0000-0004", True),
        ("378282246310005", True),
        ("6011111111111117", True),
        ("4111111111111112", False),
        ("1234567890123", False),
        ("411111111111", False),  # 12 digits: too short
        ("41111111111111111111", False),  # 20 digits: too long
    ],
)
def test_luhn(policy_module: ModuleType, number: str, valid: bool) -> None:
    assert policy_module.luhn_valid(number) is valid


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail a@b.com now", "mail [EMAIL] now"),
        ("x first.last+tag@sub.example.co.uk, y", "x [EMAIL], y"),
        ("card 4111-1111-1111-1111.", "card [CREDIT_CARD]."),
        ("card 4111-1111-1111-1112.", "card 4111-1111-1111-1112."),
        ("ssn 123-45-6789", "ssn [SSN]"),
        ("ssn 123 45 6789", "ssn [SSN]"),
        ("ssn 123-45 6789", "ssn 123-45 6789"),  # mixed separators
        ("ssn 666-45-6789", "ssn 666-45-6789"),  # impossible area
        ("ssn 123-00-6789", "ssn 123-00-6789"),  # impossible group
        ("call (555) 123-4567", "call [PHONE]"),
        ("call +1 415 555 0100", "call [PHONE]"),
        ("call +44 20 7946 0958", "call [PHONE]"),
        (
            "on 2024-01-15 at 10:30, order 12345, v1.2.3",
            "on 2024-01-15 at 10:30, order 12345, v1.2.3",
        ),
        ("a@b.com and 4111111111111111", "[EMAIL] and [CREDIT_CARD]"),
    ],
)
def test_builtin_detectors_mask(policy_module: ModuleType, text: str, expected: str) -> None:
    assert masked_text(policy_module, text) == expected


def test_only_selected_builtins_run(policy_module: ModuleType) -> None:
    text = "a@b.com 123-45-6789"
    assert masked_text(policy_module, text, builtins=["ssn"]) == "a@b.com [SSN]"
    assert masked_text(policy_module, text, builtins=[]) == text


def test_block_response_is_json_with_detected_types(policy_module: ModuleType) -> None:
    action = on_request(policy_module, {}, user("a@b.com 123-45-6789"))
    assert isinstance(action, ImmediateResponse)
    assert action.status_code == 403
    assert action.body is not None
    error = json.loads(action.body)["error"]
    assert error["detected"] == ["email", "ssn"]
    assert error["direction"] == "request"
    assert error["message"] == "Blocked by prompt-guard: sensitive data detected (email, ssn)."
    assert "a@b.com" not in action.body.decode()


def test_custom_block_message_and_status(policy_module: ModuleType) -> None:
    params = {"blockStatus": 451, "blockMessage": "nope: {types} {other}"}
    action = on_request(policy_module, params, user("a@b.com"))
    assert action.status_code == 451
    assert json.loads(action.body)["error"]["message"] == "nope: email {other}"


def test_html_block_escapes_message(policy_module: ModuleType) -> None:
    params = {"blockFormat": "html", "blockMessage": "<script>alert('{types}')</script>"}
    action = on_request(policy_module, params, user("a@b.com"))
    page = action.body.decode()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#39;email&#39;)&lt;/script&gt;" in page
    assert action.headers["content-type"].startswith("text/html")


def test_roles_filter(policy_module: ModuleType) -> None:
    assert on_request(policy_module, {}, user("a@b.com", role="system")) is None
    assert isinstance(
        on_request(policy_module, {"roles": []}, user("a@b.com", role="system")), ImmediateResponse
    )
    assert isinstance(
        on_request(policy_module, {"roles": ["system"]}, user("a@b.com", role="system")),
        ImmediateResponse,
    )


def test_multipart_content_text_parts_only(policy_module: ModuleType) -> None:
    parts = [
        {"type": "text", "text": "mail a@b.com"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,5551234567a@b.com"}},
    ]
    action = on_request(policy_module, {"action": "mask"}, user(parts))
    out = json.loads(action.body)["messages"][0]["content"]
    assert out[0]["text"] == "mail [EMAIL]"
    assert out[1] == parts[1]


def test_completion_prompt_and_input_fields(policy_module: ModuleType) -> None:
    for doc in ({"prompt": "a@b.com"}, {"prompt": ["x", "a@b.com"]}, {"input": "a@b.com"}):
        action = on_request(policy_module, {"action": "mask"}, json.dumps(doc).encode())
        assert b"[EMAIL]" in action.body and b"a@b.com" not in action.body
    responses_api = {
        "input": [{"role": "user", "content": "a@b.com"}, {"role": "system", "content": "c@d.com"}]
    }
    action = on_request(policy_module, {"action": "mask"}, json.dumps(responses_api).encode())
    assert json.loads(action.body)["input"][1]["content"] == "c@d.com"  # role not scanned


def test_other_json_is_scanned_everywhere(policy_module: ModuleType) -> None:
    doc = {"a": [{"b": "a@b.com"}], "n": 5, "ok": True, "none": None}
    action = on_request(policy_module, {"action": "mask"}, json.dumps(doc).encode())
    assert json.loads(action.body) == {"a": [{"b": "[EMAIL]"}], "n": 5, "ok": True, "none": None}


@pytest.mark.parametrize(
    "content",
    [
        None,
        b"",
        b"\xff\xfe\x00binary a@b.com",
        b"[]",
        b"null",
        b"42",
        b'{"messages": null}',
        b'{"messages": [null, 3, "x", {"role": "user"}, {"role": "user", "content": 7}]}',
    ],
)
def test_odd_bodies_pass(policy_module: ModuleType, content: bytes | None) -> None:
    assert on_request(policy_module, {}, content) is None


def test_truncated_json_is_scanned_as_text(policy_module: ModuleType) -> None:
    action = on_request(policy_module, {"action": "mask"}, b'{"messages": [{"content": "a@b.com"')
    assert action.body == b'{"messages": [{"content": "[EMAIL]"'


def test_modes_follow_scan_response(policy_module: ModuleType) -> None:
    plain = policy_module.get_policy(METADATA, {})
    assert not isinstance(plain, ResponsePolicy)
    assert plain.mode().response_body_mode is BodyProcessingMode.SKIP
    both = policy_module.get_policy(METADATA, {"scanResponse": True})
    assert isinstance(both, ResponsePolicy)
    assert both.mode().request_body_mode is BodyProcessingMode.BUFFER
    assert both.mode().response_body_mode is BodyProcessingMode.BUFFER


def test_response_block_and_mask(policy_module: ModuleType) -> None:
    answer = {
        "choices": [
            {"message": {"role": "assistant", "content": "ssn 123-45-6789"}},
            {"text": "a@b.com"},
        ]
    }
    raw = json.dumps(answer).encode()
    blocked = on_response(policy_module, {"scanResponse": True}, raw)
    assert isinstance(blocked, ImmediateResponse) and blocked.body is not None
    assert json.loads(blocked.body)["error"]["direction"] == "response"
    masked = on_response(policy_module, {"scanResponse": True, "action": "mask"}, raw)
    assert isinstance(masked, DownstreamResponseModifications) and masked.body is not None
    out = json.loads(masked.body)["choices"]
    assert out[0]["message"]["content"] == "ssn [SSN]"
    assert out[1]["text"] == "[EMAIL]"
    assert on_response(policy_module, {"scanResponse": True}, b'{"choices": []}') is None
    assert on_response(policy_module, {"scanResponse": True}, None) is None


def test_unicode_survives_masking(policy_module: ModuleType) -> None:
    assert masked_text(policy_module, "écrivez à a@b.com ✓") == "écrivez à [EMAIL] ✓"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"builtins": ["email", "iban"]}, "builtins must be a list"),
        ({"builtins": "email"}, "builtins must be a list"),
        ({"customPatterns": {"x": "("}}, "not a valid regex"),
        ({"customPatterns": {"x": "a*"}}, "matches the empty string"),
        ({"customPatterns": {"Email": "x"}}, "repeats a built-in"),
        ({"customPatterns": {"9bad": "x"}}, "not a valid name"),
        ({"customPatterns": {"x": 5}}, "must be a non-empty string"),
        ({"customPatterns": ["x"]}, "must be a mapping"),
        ({"action": "drop"}, "action must be one of"),
        ({"blockStatus": 200}, "blockStatus"),
        ({"blockStatus": True}, "blockStatus"),
        ({"blockStatus": "403"}, "blockStatus"),
        ({"blockMessage": " "}, "blockMessage"),
        ({"blockFormat": "xml"}, "blockFormat"),
        ({"roles": ["robot"]}, "roles must be a list"),
        ({"scanResponse": "yes"}, "scanResponse must be a boolean"),
    ],
)
def test_bad_params_fail_at_init(
    policy_module: ModuleType, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(policy_module.ConfigError, match=message):
        policy_module.get_policy(METADATA, params)


def test_pathological_input_is_fast_enough_to_finish(policy_module: ModuleType) -> None:
    # Long digit runs and separator soup must not send the card or phone regex into
    # catastrophic backtracking: this finishes (no timing assertion, just completion).
    for text in (
        "1 " * 20000,
        "9" * 50000,
        "a" * 50000,
        "+1" * 20000,
        "a@" * 20000,
        "a@b." * 20000,
    ):
        assert masked_text(policy_module, text + " x@y.io").endswith(" [EMAIL]")


def test_block_status_may_arrive_as_a_float(policy_module: ModuleType) -> None:
    # The executor hands params over from a protobuf Struct: 422 arrives as 422.0.
    action = on_request(policy_module, {"blockStatus": 422.0}, user("a@b.com"))
    assert action.status_code == 422 and isinstance(action.status_code, int)
    with pytest.raises(policy_module.ConfigError, match="blockStatus"):
        policy_module.get_policy(METADATA, {"blockStatus": 422.5})
