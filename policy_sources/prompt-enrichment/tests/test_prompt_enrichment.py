"""Unit tests of the prompt-enrichment policy, called through the SDK objects."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import jinja2
import pytest
from apip_sdk_core.policy.v1alpha2 import (
    Body,
    BodyProcessingMode,
    ExecutionContext,
    ExecutionPhase,
    HeaderProcessingMode,
    ImmediateResponse,
    PolicyMetadata,
    RequestContext,
    SharedContext,
    UpstreamRequestModifications,
)

METADATA = PolicyMetadata(route_name="chat-route", api_name="chat-api", api_version="v2")
ECTX = ExecutionContext(request_id="r1", phase=ExecutionPhase.REQUEST_BODY)


def request_ctx(body: bytes | None, method: str = "POST", path: str = "/v1/chat") -> RequestContext:
    return RequestContext(
        shared=SharedContext(api_name="chat-api", api_version="v2"),
        body=Body(content=body, end_of_stream=True, present=body is not None),
        method=method,
        path=path,
    )


def chat(*messages: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({**extra, "messages": list(messages)}).encode()


def run(module: ModuleType, params: dict[str, Any], body: bytes | None, **kw: Any) -> Any:
    policy = module.get_policy(METADATA, params)
    return policy.on_request_body(ECTX, request_ctx(body, **kw), params)


def test_samples_replay(sample_path: Path, replay: Callable[[Path], Any]) -> None:
    replay(sample_path)


def test_has_samples(policy_dir: Path) -> None:
    assert len(list((policy_dir / "samples").glob("*.json"))) >= 3


def test_mode_buffers_only_the_request_body(policy_module: ModuleType) -> None:
    mode = policy_module.get_policy(METADATA, {}).mode()
    assert mode.request_body_mode is BodyProcessingMode.BUFFER
    assert mode.request_header_mode is HeaderProcessingMode.SKIP
    assert mode.response_body_mode is BodyProcessingMode.SKIP


def test_prepend_and_append_keep_order_and_other_fields(policy_module: ModuleType) -> None:
    params = {
        "prepend": [
            {"role": "system", "content": "first"},
            {"role": "developer", "content": "second"},
        ],
        "append": [{"role": "system", "content": "last"}],
    }
    action = run(policy_module, params, chat({"role": "user", "content": "q"}, stream=False))
    assert isinstance(action, UpstreamRequestModifications)
    assert action.body is not None
    out = json.loads(action.body)
    assert [m["content"] for m in out["messages"]] == ["first", "second", "q", "last"]
    assert out["stream"] is False


def test_request_facts_are_available_to_templates(policy_module: ModuleType) -> None:
    template = "{{ api_name }}|{{ api_version }}|{{ route }}|{{ method }}|{{ path }}|{{ model }}"
    params = {"prepend": [{"role": "system", "content": template}]}
    body = chat({"role": "user", "content": "q"}, model="m-1")
    action = run(policy_module, params, body, method="PUT", path="/chat")
    assert (
        json.loads(action.body)["messages"][0]["content"] == "chat-api|v2|chat-route|PUT|/chat|m-1"
    )


def test_model_that_is_not_a_string_renders_empty(policy_module: ModuleType) -> None:
    params = {"prepend": [{"role": "system", "content": "[{{ model }}]"}]}
    action = run(policy_module, params, chat({"role": "user", "content": "q"}, model={"x": 1}))
    assert json.loads(action.body)["messages"][0]["content"] == "[]"


def test_variables_of_every_allowed_type(policy_module: ModuleType) -> None:
    params = {
        "prepend": [{"role": "system", "content": "{{ a }} {{ b }} {{ c }} {{ d }}"}],
        "variables": {"a": "x", "b": 3, "c": 1.5, "d": True},
    }
    action = run(policy_module, params, chat({"role": "user", "content": "q"}))
    assert json.loads(action.body)["messages"][0]["content"] == "x 3 1.5 true"


def test_unicode_is_kept_verbatim(policy_module: ModuleType) -> None:
    params = {"append": [{"role": "system", "content": "Réponds en français ✓"}]}
    action = run(policy_module, params, chat({"role": "user", "content": "héllo"}))
    assert "Réponds en français ✓".encode() in action.body
    assert "héllo".encode() in action.body


def test_multimodal_messages_are_left_intact(policy_module: ModuleType) -> None:
    parts = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "x"}},
    ]
    params = {"prepend": [{"role": "system", "content": "s"}]}
    action = run(policy_module, params, chat({"role": "user", "content": parts}))
    assert json.loads(action.body)["messages"][1]["content"] == parts


def test_skip_if_present_false_adds_duplicates(policy_module: ModuleType) -> None:
    params = {"prepend": [{"role": "system", "content": "s"}], "skipIfPresent": False}
    action = run(policy_module, params, chat({"role": "system", "content": "s"}))
    assert len(json.loads(action.body)["messages"]) == 2


def test_no_configured_messages_is_a_passthrough(policy_module: ModuleType) -> None:
    assert run(policy_module, {}, chat({"role": "user", "content": "q"})) is None


ODD_BODIES = [
    b"",
    b"\xff\xfe\x00not utf-8",
    b"{truncated",
    b"[1, 2, 3]",
    b'"just a string"',
    b"null",
    b'{"messages": "not a list"}',
    b'{"messages": null}',
    b'{"model": "m"}',
]


@pytest.mark.parametrize("body", [None, *ODD_BODIES])
def test_odd_bodies_pass_unchanged(policy_module: ModuleType, body: bytes | None) -> None:
    params = {"prepend": [{"role": "system", "content": "s"}]}
    assert run(policy_module, params, body) is None


@pytest.mark.parametrize("body", ODD_BODIES[1:])
def test_odd_bodies_are_rejected_when_asked(policy_module: ModuleType, body: bytes) -> None:
    params = {"prepend": [{"role": "system", "content": "s"}], "rejectInvalidBody": True}
    action = run(policy_module, params, body)
    assert isinstance(action, ImmediateResponse)
    assert action.status_code == 400
    assert action.body is not None
    assert json.loads(action.body)["error"]["code"] == "invalid_chat_body"


def test_absent_body_is_never_rejected(policy_module: ModuleType) -> None:
    params = {"rejectInvalidBody": True}
    assert run(policy_module, params, None) is None
    assert run(policy_module, params, b"") is None


def test_empty_messages_list_still_gets_enriched(policy_module: ModuleType) -> None:
    params = {"prepend": [{"role": "system", "content": "s"}]}
    action = run(policy_module, params, chat())
    assert json.loads(action.body)["messages"] == [{"role": "system", "content": "s"}]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"prepend": "nope"}, "prepend must be a list"),
        ({"prepend": ["nope"]}, "prepend[0] must be an object"),
        ({"append": [{"role": "robot", "content": "x"}]}, "append[0].role"),
        ({"append": [{"role": "system", "content": ""}]}, "append[0].content must be"),
        ({"prepend": [{"role": "system", "content": "{{ x "}]}, "not a valid template"),
        ({"prepend": [{"role": "system", "content": "{{ nope }}"}]}, "unknown variables: nope"),
        ({"variables": {"model": "x"}}, "clashes with a request fact"),
        ({"variables": {"bad name": "x"}}, "not a valid variable name"),
        ({"variables": {"v": [1]}}, "variables.v must be"),
        ({"variables": "x"}, "variables must be a mapping"),
        ({"skipIfPresent": "yes"}, "skipIfPresent must be a boolean"),
        ({"rejectInvalidBody": 1}, "rejectInvalidBody must be a boolean"),
    ],
)
def test_bad_params_fail_at_init(
    policy_module: ModuleType, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(
        policy_module.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")
    ):
        policy_module.get_policy(METADATA, params)


def test_templates_run_in_a_sandbox(policy_module: ModuleType) -> None:
    params = {"prepend": [{"role": "system", "content": "{{ model.__class__.__mro__ }}"}]}
    policy = policy_module.get_policy(METADATA, params)
    with pytest.raises(jinja2.TemplateError):
        policy.on_request_body(ECTX, request_ctx(chat(model="m")), params)


def test_none_params_means_defaults(policy_module: ModuleType) -> None:
    policy = policy_module.get_policy(METADATA, None)
    assert policy.on_request_body(ECTX, request_ctx(chat()), {}) is None


def test_params_with_float_numbers_from_the_wire(policy_module: ModuleType) -> None:
    # The executor hands params over from a protobuf Struct: 50 arrives as 50.0.
    params = {
        "prepend": [{"role": "system", "content": "{{ n }}|{{ x }}"}],
        "variables": {"n": 50.0, "x": 0.5},
    }
    action = run(policy_module, params, chat({"role": "user", "content": "q"}))
    assert json.loads(action.body)["messages"][0]["content"] == "50|0.5"
