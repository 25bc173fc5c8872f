"""Helpers for testing the sample policies: load one by path and replay its sample files.

Each policy folder is a simple-directory policy whose name has dashes, so its ``policy.py`` is
loaded by path under a unique module name. A sample file (``samples/*.json``, format in
docs/DESIGN.md "Sample requests") is replayed by building the SDK context objects for its
phase, calling the policy's handler and comparing the resulting action with ``expect``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from apip_sdk_core.policy.v1alpha2 import (
    Body,
    DownstreamResponseHeaderModifications,
    DownstreamResponseModifications,
    ExecutionContext,
    ExecutionPhase,
    Headers,
    ImmediateResponse,
    Policy,
    PolicyMetadata,
    RequestContext,
    RequestHeaderContext,
    RequestHeaderPolicy,
    RequestPolicy,
    ResponseContext,
    ResponseHeaderContext,
    ResponseHeaderPolicy,
    ResponsePolicy,
    SharedContext,
    UpstreamRequestHeaderModifications,
    UpstreamRequestModifications,
)

POLICY_SOURCES = Path(__file__).resolve().parent
PHASES = ("request_headers", "request_body", "response_headers", "response_body")
EXPECT_KINDS = ("modify", "immediate_response", "passthrough")
SAMPLE_KEYS = {"description", "params", "phase", "request", "response", "expect"}
EXPECT_KEYS = {
    "kind",
    "status_code",
    "body_json",
    "body_contains",
    "body_not_contains",
    "headers_set",
}
TEST_METADATA = PolicyMetadata(
    route_name="sample-route", api_id="api-1", api_name="sample-api", api_version="v1.0"
)


def policy_folders() -> list[Path]:
    """Every sample policy folder (a directory holding a policy-definition.yaml)."""
    return sorted(p.parent for p in POLICY_SOURCES.glob("*/policy-definition.yaml"))


def load_policy_module(policy_dir: Path) -> ModuleType:
    """Import ``policy_dir/policy.py`` under a module name unique to the folder."""
    module_name = "_sample_policy_" + policy_dir.name.replace("-", "_")
    cached = sys.modules.get(module_name)
    if cached is not None:
        return cached
    spec = importlib.util.spec_from_file_location(module_name, policy_dir / "policy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def encode_body(value: Any) -> bytes | None:
    """A sample body as sent on the wire: str as UTF-8, other JSON compact, None as no body."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def make_body(value: Any) -> Body:
    """An SDK ``Body`` for a sample body value."""
    content = encode_body(value)
    return Body(content=content, end_of_stream=True, present=content is not None)


def make_headers(raw: dict[str, Any] | None) -> Headers:
    """SDK headers from a sample's ``{name: value | [values]}`` mapping."""
    values = {k: v if isinstance(v, list) else [v] for k, v in (raw or {}).items()}
    return Headers({k: [str(x) for x in v] for k, v in values.items()})


def execution_context(phase: str) -> ExecutionContext:
    """An execution context for one phase of a test request."""
    return ExecutionContext(
        request_id="req-1", phase=ExecutionPhase(phase), route_name=TEST_METADATA.route_name
    )


def run_phase(policy: Policy, sample: dict[str, Any]) -> Any:
    """Call the handler of ``sample['phase']`` with contexts built from the sample."""
    phase = sample["phase"]
    request = sample.get("request") or {}
    response = sample.get("response") or {}
    params = sample.get("params") or {}
    shared = SharedContext(
        request_id="req-1", api_id="api-1", api_name="sample-api", api_version="v1.0"
    )
    method, path = request.get("method", "POST"), request.get("path", "/")
    req_headers = make_headers(request.get("headers"))
    ectx = execution_context(phase)
    if phase == "request_headers":
        assert isinstance(policy, RequestHeaderPolicy), "policy has no request-header handler"
        hctx = RequestHeaderContext(shared=shared, headers=req_headers, path=path, method=method)
        return policy.on_request_headers(ectx, hctx, params)
    if phase == "request_body":
        assert isinstance(policy, RequestPolicy), "policy has no request-body handler"
        rctx = RequestContext(
            shared=shared,
            headers=req_headers,
            body=make_body(request.get("body")),
            path=path,
            method=method,
        )
        return policy.on_request_body(ectx, rctx, params)
    common: dict[str, Any] = {
        "shared": shared,
        "request_headers": req_headers,
        "request_body": make_body(request.get("body")),
        "request_path": path,
        "request_method": method,
        "response_headers": make_headers(response.get("headers")),
        "response_status": int(response.get("status", 200)),
    }
    if phase == "response_headers":
        assert isinstance(policy, ResponseHeaderPolicy), "policy has no response-header handler"
        return policy.on_response_headers(ectx, ResponseHeaderContext(**common), params)
    if phase == "response_body":
        assert isinstance(policy, ResponsePolicy), "policy has no response-body handler"
        sctx = ResponseContext(**common, response_body=make_body(response.get("body")))
        return policy.on_response_body(ectx, sctx, params)
    raise AssertionError(f"unknown phase {phase!r}")


_MODIFICATIONS = (
    UpstreamRequestHeaderModifications,
    UpstreamRequestModifications,
    DownstreamResponseHeaderModifications,
    DownstreamResponseModifications,
)


@dataclass
class Outcome:
    """What an action does, normalized for comparison with a sample's ``expect``."""

    kind: str
    status_code: int | None = None
    body: bytes | None = None
    headers_set: dict[str, str] = field(default_factory=dict)


def outcome_of(action: Any, sample: dict[str, Any]) -> Outcome:
    """Normalize an action; an unchanged body falls back to the phase's original body."""
    phase = sample["phase"]
    side = sample.get("request" if phase.startswith("request") else "response") or {}
    original = encode_body(side.get("body"))
    if action is None:
        return Outcome(kind="passthrough", body=original)
    if isinstance(action, ImmediateResponse):
        return Outcome(
            kind="immediate_response",
            status_code=action.status_code,
            body=action.body,
            headers_set={k.lower(): v for k, v in action.headers.items()},
        )
    assert isinstance(action, _MODIFICATIONS), f"unexpected action type {type(action).__name__}"
    body = getattr(action, "body", None)
    status = getattr(action, "status_code", None)
    headers = {k.lower(): v for k, v in action.headers_to_set.items()}
    changed = body is not None or status is not None or headers or action.headers_to_remove
    return Outcome(
        kind="modify" if changed else "passthrough",
        status_code=status,
        body=body if body is not None else original,
        headers_set=headers,
    )


def check_expectation(outcome: Outcome, expect: dict[str, Any]) -> list[str]:
    """Every way ``outcome`` differs from ``expect`` (empty when it matches).

    Deliberately a sibling of ``gateway_builder.smoke_samples.check_expectation``, not an import:
    these helpers run in each policy's own venv (its pins and the SDK only, no protobuf).
    """
    problems: list[str] = []
    if outcome.kind != expect["kind"]:
        problems.append(f"kind: expected {expect['kind']}, got {outcome.kind}")
    if "status_code" in expect and outcome.status_code != expect["status_code"]:
        problems.append(f"status_code: expected {expect['status_code']}, got {outcome.status_code}")
    text = (outcome.body or b"").decode("utf-8", errors="replace")
    if "body_json" in expect:
        try:
            actual = json.loads(text)
        except ValueError:
            problems.append(f"body_json: body is not JSON: {text[:200]!r}")
        else:
            if actual != expect["body_json"]:
                problems.append(f"body_json: expected {expect['body_json']!r}, got {actual!r}")
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


def validate_sample_shape(sample: dict[str, Any]) -> list[str]:
    """Structural problems of a sample file (unknown keys, bad phase or kind)."""
    problems = [f"unknown key {k!r}" for k in sorted(set(sample) - SAMPLE_KEYS)]
    problems += [
        f"missing key {k!r}"
        for k in ("description", "phase", "request", "expect")
        if k not in sample
    ]
    if sample.get("phase") not in PHASES:
        problems.append(f"phase must be one of {PHASES}")
    expect = sample.get("expect") or {}
    problems += [f"unknown expect key {k!r}" for k in sorted(set(expect) - EXPECT_KEYS)]
    if expect.get("kind") not in EXPECT_KINDS:
        problems.append(f"expect.kind must be one of {EXPECT_KINDS}")
    return problems


def wire_params(value: Any) -> Any:
    """``value`` as the executor hands it over: params cross a protobuf ``Struct``, so every
    number (bools excepted) arrives as a float."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, list):
        return [wire_params(v) for v in value]
    if isinstance(value, dict):
        return {k: wire_params(v) for k, v in value.items()}
    return value


def replay_sample(policy_dir: Path, sample_path: Path) -> Outcome:
    """Run one sample file against its policy and assert its expectation holds, both with the
    params as written and as they arrive through the executor (numbers as floats)."""
    sample = json.loads(sample_path.read_text(encoding="utf-8"))
    shape = validate_sample_shape(sample)
    assert not shape, f"{sample_path.name}: {shape}"
    module = load_policy_module(policy_dir)
    outcomes = []
    for params in (sample.get("params") or {}, wire_params(sample.get("params") or {})):
        policy = module.get_policy(TEST_METADATA, params)
        outcome = outcome_of(run_phase(policy, {**sample, "params": params}), sample)
        problems = check_expectation(outcome, sample["expect"])
        assert not problems, (
            f"{sample_path.name} ({sample['description']}), params {params}: {problems}"
        )
        outcomes.append(outcome)
    return outcomes[0]
