"""Unit tests of the token-scorer policy, called through the SDK objects."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from apip_sdk_core.policy.v1alpha2 import (
    Body,
    BodyProcessingMode,
    DownstreamResponseHeaderModifications,
    ExecutionContext,
    ExecutionPhase,
    HeaderProcessingMode,
    ImmediateResponse,
    PolicyMetadata,
    RequestContext,
    ResponseHeaderContext,
    ResponseHeaderPolicy,
    SharedContext,
    UpstreamRequestModifications,
)

METADATA = PolicyMetadata(route_name="chat-route")
REQ = ExecutionContext(request_id="r1", phase=ExecutionPhase.REQUEST_BODY)
RESP = ExecutionContext(request_id="r1", phase=ExecutionPhase.RESPONSE_HEADERS)


def body(content: bytes | None) -> Body:
    return Body(content=content, end_of_stream=True, present=content is not None)


def chat(*contents: Any) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": c} for c in contents]}).encode()


def on_request(module: ModuleType, params: dict[str, Any], content: bytes | None) -> Any:
    policy = module.get_policy(METADATA, params)
    return policy.on_request_body(
        REQ, RequestContext(shared=SharedContext(), body=body(content)), params
    )


def test_samples_replay(sample_path: Path, replay: Callable[[Path], Any]) -> None:
    replay(sample_path)


def test_has_samples(policy_dir: Path) -> None:
    assert len(list((policy_dir / "samples").glob("*.json"))) >= 3


def test_declares_python_312(policy_dir: Path) -> None:
    assert (policy_dir / "python_version.txt").read_text().strip() == "3.12"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0.0),
        ("aaaa", 0.0),
        ("ab", 1.0),
        ("abcd", 2.0),
        ("aabb", 1.0),
        ("\U0001f600\U0001f601", 1.0),  # astral code points count as one character each
        ("\ud800a", 1.0),  # a lone surrogate (legal in JSON) does not break the encoder
    ],
)
def test_char_entropy(policy_module: ModuleType, text: str, expected: float) -> None:
    assert math.isclose(policy_module.char_entropy(text), expected, abs_tol=1e-12)


def test_entropy_of_prose_is_in_the_usual_range(policy_module: ModuleType) -> None:
    prose = "The quick brown fox jumps over the lazy dog while the gateway counts every token."
    assert 3.5 < policy_module.char_entropy(prose) < 4.7


def test_token_estimate_rule(policy_module: ModuleType) -> None:
    score = policy_module.score_prompt(policy_module.Prompt(("abcdefgh", "a b c"), messages=2))
    # ceil(max(8/4, 1*4/3)) + ceil(max(5/4, 3*4/3)) + 2*3 + 3 = 2 + 4 + 9
    assert score.tokens == 15
    assert score.chars == 13


def test_extract_prompt_shapes(policy_module: ModuleType) -> None:
    extract = policy_module.extract_prompt
    parts = [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "u"}}]
    assert extract(chat("a", parts)).segments == ("a", "hi")
    assert extract(chat("a", parts)).messages == 2
    assert extract(b'{"prompt": "p"}').segments == ("p",)
    assert extract(b'{"prompt": ["p", "q"]}').segments == ("p", "q")
    assert extract(b'{"input": [{"role": "user", "content": "r"}]}').messages == 1
    assert extract(b"plain text").segments == ("plain text",)
    assert extract(b'{"messages": []}').segments == ()


@pytest.mark.parametrize(
    "content",
    [None, b"", b"\xff\xfe\x00", b"[1]", b"null", b"3", b'{"prompt": 5}', b'{"prompt": ["a", 1]}'],
)
def test_odd_bodies_pass(policy_module: ModuleType, content: bytes | None) -> None:
    assert on_request(policy_module, {"maxTokens": 1, "minEntropy": 5}, content) is None


def test_malformed_messages_are_tolerated(policy_module: ModuleType) -> None:
    raw = b'{"messages": [null, "x", {"role": "user"}, {"content": 7}, {"content": "abcd"}]}'
    action = on_request(policy_module, {}, raw)
    assert isinstance(action, UpstreamRequestModifications)
    # three dict messages: ceil(max(4/4, 1*4/3)) = 2 tokens of text + 3*3 overhead + 3 priming
    assert action.headers_to_set["x-prompt-tokens"] == "14"


def test_headers_and_no_body_change(policy_module: ModuleType) -> None:
    action = on_request(policy_module, {}, chat("hello world"))
    assert isinstance(action, UpstreamRequestModifications)
    assert action.body is None
    assert set(action.headers_to_set) == {"x-prompt-tokens", "x-prompt-chars", "x-prompt-entropy"}


def test_limit_is_inclusive(policy_module: ModuleType) -> None:
    raw = chat("abcd")  # ceil(max(4/4, 1*4/3)) + 3 + 3 = 8 tokens
    assert isinstance(
        on_request(policy_module, {"maxTokens": 8}, raw), UpstreamRequestModifications
    )
    blocked = on_request(policy_module, {"maxTokens": 7}, raw)
    assert isinstance(blocked, ImmediateResponse) and blocked.body is not None
    assert blocked.status_code == 413
    assert json.loads(blocked.body)["error"]["code"] == "prompt_too_large"


def test_entropy_floor_ignores_short_prompts(policy_module: ModuleType) -> None:
    short = "a" * (policy_module.MIN_ENTROPY_CHARS - 1)
    assert isinstance(
        on_request(policy_module, {"minEntropy": 2}, chat(short)), UpstreamRequestModifications
    )
    assert isinstance(
        on_request(policy_module, {"minEntropy": 2}, chat(short + "a")), ImmediateResponse
    )


def test_large_prompt_is_scored(policy_module: ModuleType) -> None:
    text = "lorem ipsum dolor sit amet " * 20000
    action = on_request(policy_module, {}, chat(text))
    assert int(action.headers_to_set["x-prompt-chars"]) == len(text)


def test_modes_follow_expose_in_response(policy_module: ModuleType) -> None:
    default = policy_module.get_policy(METADATA, {})
    assert isinstance(default, ResponseHeaderPolicy)
    assert default.mode().response_header_mode is HeaderProcessingMode.PROCESS
    assert default.mode().request_body_mode is BodyProcessingMode.BUFFER
    request_only = policy_module.get_policy(METADATA, {"exposeInResponse": False})
    assert not isinstance(request_only, ResponseHeaderPolicy)
    assert request_only.mode().response_header_mode is HeaderProcessingMode.SKIP


def test_response_headers(policy_module: ModuleType) -> None:
    policy = policy_module.get_policy(METADATA, {"headerPrefix": "x-s-"})
    ctx = ResponseHeaderContext(shared=SharedContext(), request_body=body(chat("abcd")))
    action = policy.on_response_headers(RESP, ctx, {})
    assert isinstance(action, DownstreamResponseHeaderModifications)
    assert action.headers_to_set == {"x-s-tokens": "8"}
    empty = ResponseHeaderContext(shared=SharedContext(), request_body=None)
    assert policy.on_response_headers(RESP, empty, {}) is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"headerPrefix": "X-Upper-"}, "headerPrefix"),
        ({"headerPrefix": ""}, "headerPrefix"),
        ({"headerPrefix": "bad prefix"}, "headerPrefix"),
        ({"maxTokens": -1}, "maxTokens"),
        ({"maxTokens": 1.5}, "maxTokens"),
        ({"maxTokens": True}, "maxTokens"),
        ({"minEntropy": -0.1}, "minEntropy"),
        ({"minEntropy": float("nan")}, "minEntropy"),
        ({"minEntropy": "2"}, "minEntropy"),
        ({"exposeInResponse": "no"}, "exposeInResponse"),
    ],
)
def test_bad_params_fail_at_init(
    policy_module: ModuleType, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(policy_module.ConfigError, match=message):
        policy_module.get_policy(METADATA, params)


def test_max_tokens_may_arrive_as_a_float(policy_module: ModuleType) -> None:
    # The executor hands params over from a protobuf Struct: 7 arrives as 7.0.
    assert isinstance(
        on_request(policy_module, {"maxTokens": 7.0}, chat("abcd")), ImmediateResponse
    )
    assert isinstance(
        on_request(policy_module, {"maxTokens": 8.0}, chat("abcd")), UpstreamRequestModifications
    )
