"""prompt-enrichment: add operator-defined messages around an OpenAI-style chat request.

The policy buffers the request body and, when it is a JSON object with a ``messages`` list,
inserts the configured ``prepend`` messages before the list and the ``append`` messages after
it. Message contents are Jinja2 templates, compiled once in ``get_policy`` (a bad template or an
unknown variable fails there, not per request) and rendered in a sandbox with the configured
``variables`` plus a few request facts: ``api_name``, ``api_version``, ``route``, ``method``,
``path`` and ``model`` (the body's model name, or "").

Anything else (no body, a body that is not UTF-8 JSON, JSON without a ``messages`` list) passes
unchanged, or is answered with 400 when ``rejectInvalidBody`` is set and a body is present.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from apip_sdk_core.policy.v1alpha2 import (
    BodyProcessingMode,
    ExecutionContext,
    ImmediateResponse,
    PolicyMetadata,
    ProcessingMode,
    RequestAction,
    RequestContext,
    RequestPolicy,
    UpstreamRequestModifications,
)
from jinja2 import StrictUndefined, Template, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

POLICY_NAME = "prompt-enrichment"
ROLES = ("system", "developer", "user", "assistant")
#: Variables every template may use; filled from the request being processed.
REQUEST_FACTS = ("api_name", "api_version", "route", "method", "path", "model")
DEFAULTS: dict[str, Any] = {
    "prepend": [],
    "append": [],
    "variables": {},
    "skipIfPresent": True,
    "rejectInvalidBody": False,
}


class ConfigError(ValueError):
    """The policy's parameters are unusable (raised from ``get_policy``)."""


@dataclass(frozen=True)
class _MessageTemplate:
    role: str
    template: Template


def _bool_param(params: dict[str, Any], key: str) -> bool:
    value = params.get(key, DEFAULTS[key])
    if not isinstance(value, bool):
        raise ConfigError(f"{POLICY_NAME}: {key} must be a boolean, got {type(value).__name__}")
    return value


def _variables(params: dict[str, Any]) -> dict[str, str]:
    raw = params.get("variables", DEFAULTS["variables"])
    if not isinstance(raw, dict):
        raise ConfigError(f"{POLICY_NAME}: variables must be a mapping of name to value")
    out: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"{POLICY_NAME}: variables: {name!r} is not a valid variable name")
        if name in REQUEST_FACTS:
            raise ConfigError(f"{POLICY_NAME}: variables: {name!r} clashes with a request fact")
        if not isinstance(value, (str, int, float, bool)):
            raise ConfigError(
                f"{POLICY_NAME}: variables.{name} must be a string, number or boolean"
            )
        out[name] = _format_value(value)
    return out


def _format_value(value: str | float | bool) -> str:
    """A variable as text. Integral floats print as integers: params that crossed the gateway's
    protobuf Struct carry every number as a float (50 arrives as 50.0)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _templates(
    env: SandboxedEnvironment, params: dict[str, Any], key: str, known: frozenset[str]
) -> tuple[_MessageTemplate, ...]:
    raw = params.get(key, DEFAULTS[key])
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{POLICY_NAME}: {key} must be a list of {{role, content}} objects")
    out: list[_MessageTemplate] = []
    for index, item in enumerate(raw):
        where = f"{POLICY_NAME}: {key}[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be an object with role and content")
        role, content = item.get("role"), item.get("content")
        if role not in ROLES:
            raise ConfigError(f"{where}.role must be one of {', '.join(ROLES)}")
        if not isinstance(content, str) or not content:
            raise ConfigError(f"{where}.content must be a non-empty string")
        try:
            unknown = meta.find_undeclared_variables(env.parse(content)) - known
            template = env.from_string(content)
        except TemplateError as exc:
            raise ConfigError(f"{where}.content is not a valid template: {exc}") from exc
        if unknown:
            raise ConfigError(
                f"{where}.content uses unknown variables: {', '.join(sorted(unknown))}"
            )
        out.append(_MessageTemplate(role=role, template=template))
    return tuple(out)


def _json_object(content: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not UTF-8 JSON holding an object."""
    try:
        value = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class PromptEnrichmentPolicy(RequestPolicy):
    """Inserts rendered messages before/after the request's chat messages."""

    def __init__(self, metadata: PolicyMetadata, params: dict[str, Any]) -> None:
        if not isinstance(params, dict):
            raise ConfigError(f"{POLICY_NAME}: params must be a mapping")
        self._metadata = metadata
        self._env = SandboxedEnvironment(
            undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
        )
        self._variables = _variables(params)
        known = frozenset(REQUEST_FACTS) | frozenset(self._variables)
        self._prepend = _templates(self._env, params, "prepend", known)
        self._append = _templates(self._env, params, "append", known)
        self._skip_if_present = _bool_param(params, "skipIfPresent")
        self._reject_invalid = _bool_param(params, "rejectInvalidBody")

    def mode(self) -> ProcessingMode:
        """Only the buffered request body is needed."""
        return ProcessingMode(request_body_mode=BodyProcessingMode.BUFFER)

    def on_request_body(
        self, execution_ctx: ExecutionContext, ctx: RequestContext, params: dict[str, Any]
    ) -> RequestAction:
        """Return the enriched body, None when nothing changes, or 400 for a rejected body."""
        body = ctx.body
        if body is None or not body.content:
            return None
        payload = _json_object(body.content)
        messages = payload.get("messages") if payload is not None else None
        if payload is None or not isinstance(messages, list):
            return self._invalid_body() if self._reject_invalid else None

        context = self._render_context(ctx, payload)
        head = [self._render(m, context) for m in self._prepend]
        tail = [self._render(m, context) for m in self._append]
        if self._skip_if_present:
            head = [m for m in head if m not in messages]
            tail = [m for m in tail if m not in messages]
        if not head and not tail:
            return None
        payload["messages"] = [*head, *messages, *tail]
        new_body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return UpstreamRequestModifications(body=new_body)

    def _render_context(self, ctx: RequestContext, payload: dict[str, Any]) -> dict[str, str]:
        model = payload.get("model")
        facts = {
            "api_name": ctx.shared.api_name or self._metadata.api_name,
            "api_version": ctx.shared.api_version or self._metadata.api_version,
            "route": self._metadata.route_name,
            "method": ctx.method,
            "path": ctx.path,
            "model": model if isinstance(model, str) else "",
        }
        return {**self._variables, **facts}

    @staticmethod
    def _render(message: _MessageTemplate, context: dict[str, str]) -> dict[str, str]:
        return {"role": message.role, "content": message.template.render(context)}

    @staticmethod
    def _invalid_body() -> ImmediateResponse:
        error = {
            "error": {
                "message": "request body must be a JSON object with a 'messages' list",
                "type": "invalid_request_error",
                "code": "invalid_chat_body",
            }
        }
        return ImmediateResponse(
            status_code=400,
            headers={"content-type": "application/json"},
            body=json.dumps(error, separators=(",", ":")).encode("utf-8"),
        )


def get_policy(metadata: PolicyMetadata, params: dict[str, Any]) -> PromptEnrichmentPolicy:
    """Entry point: build the policy for one route attachment (raises ConfigError on bad params)."""
    return PromptEnrichmentPolicy(metadata, params if params is not None else {})
