"""prompt-guard: block or mask personal data in OpenAI-style chat traffic.

Detectors: ``email``, ``phone``, ``credit_card`` (13-19 digits that pass the Luhn check),
``ssn`` (US social security numbers in ``AAA-GG-SSSS`` form, impossible area/group/serial values
excluded) and operator-defined regular expressions (``customPatterns``, name -> regex). Built-ins
run in a fixed order (email, credit card, SSN, phone) before the custom patterns, each on the
output of the previous one, so a finding is counted once and masked as ``[EMAIL]``,
``[CREDIT_CARD]``, ``[SSN]``, ``[PHONE]`` or ``[<NAME>]``.

What is scanned in a request body: chat ``messages`` of the configured ``roles`` (string contents
and the text parts of multi-part contents), else ``prompt`` / ``input`` of completion-style APIs,
else every string of any other JSON document, else the whole body when it is UTF-8 text. In a
response body (``scanResponse``): ``choices[].message.content`` and ``choices[].text``, with the
same fallbacks. Bodies that are not UTF-8 pass unchanged.

``action: block`` answers with ``blockStatus`` and ``blockMessage`` (JSON, or an HTML page whose
message is escaped with MarkupSafe); ``action: mask`` forwards the rewritten body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apip_sdk_core.policy.v1alpha2 import (
    BodyProcessingMode,
    DownstreamResponseModifications,
    ExecutionContext,
    ImmediateResponse,
    PolicyMetadata,
    ProcessingMode,
    RequestAction,
    RequestContext,
    RequestPolicy,
    ResponseAction,
    ResponseContext,
    ResponsePolicy,
    UpstreamRequestModifications,
)
from markupsafe import Markup

POLICY_NAME = "prompt-guard"
BUILTINS = ("email", "credit_card", "ssn", "phone")
ROLES = ("system", "developer", "user", "assistant", "tool")
ACTIONS = ("block", "mask")
FORMATS = ("json", "html")
CUSTOM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
DEFAULTS: dict[str, Any] = {
    "builtins": ["email", "phone", "credit_card", "ssn"],
    "customPatterns": {},
    "action": "block",
    "blockStatus": 403,
    "blockMessage": "Blocked by prompt-guard: sensitive data detected ({types}).",
    "blockFormat": "json",
    "roles": ["user"],
    "scanResponse": False,
}
ACTION_HEADER = "x-prompt-guard-action"
TYPES_HEADER = "x-prompt-guard-types"

# Matches start only where a local part can start, which keeps long runs linear.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,63}"
)
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?!\d)")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}(?:[ .-]?\d){6,14}"  # international, E.164-like
    r"|(?:\+?1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-]?)\d{3}[ .-]?\d{4}"  # North American
    r")(?![\w])"
)


class ConfigError(ValueError):
    """The policy's parameters are unusable (raised from ``get_policy``)."""


def luhn_valid(number: str) -> bool:
    """True when the digits of ``number`` (13-19 of them) pass the Luhn checksum."""
    digits = [int(c) for c in number if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


@dataclass(frozen=True)
class Detector:
    """One kind of sensitive data: a pattern and an optional check of each match."""

    name: str
    pattern: re.Pattern[str]
    check: Callable[[str], bool] | None = None

    @property
    def placeholder(self) -> str:
        return f"[{self.name.upper()}]"

    def redact(self, text: str) -> tuple[str, int]:
        """``text`` with every (checked) match replaced by the placeholder, and the count."""
        hits = 0

        def replace(match: re.Match[str]) -> str:
            nonlocal hits
            if self.check is not None and not self.check(match.group(0)):
                return match.group(0)
            hits += 1
            return self.placeholder

        return self.pattern.sub(replace, text), hits


BUILTIN_DETECTORS = {
    "email": Detector("email", _EMAIL),
    "credit_card": Detector("credit_card", _CARD, luhn_valid),
    "ssn": Detector("ssn", _SSN),
    "phone": Detector("phone", _PHONE),
}


@dataclass(frozen=True)
class GuardConfig:
    """Validated parameters."""

    detectors: tuple[Detector, ...]
    action: str
    block_status: int
    block_message: str
    block_format: str
    roles: frozenset[str]
    scan_response: bool

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> GuardConfig:
        """Validate ``params`` (missing keys take their defaults)."""
        if not isinstance(params, dict):
            raise ConfigError(f"{POLICY_NAME}: params must be a mapping")
        p = {**DEFAULTS, **params}
        builtins = _string_list(p, "builtins", BUILTINS)
        detectors = [BUILTIN_DETECTORS[name] for name in BUILTINS if name in builtins]
        detectors += _custom_detectors(p["customPatterns"])
        action = _choice(p, "action", ACTIONS)
        status = _integer(p["blockStatus"])
        if status is None or not 400 <= status <= 599:
            raise ConfigError(f"{POLICY_NAME}: blockStatus must be an integer from 400 to 599")
        message = p["blockMessage"]
        if not isinstance(message, str) or not message.strip():
            raise ConfigError(f"{POLICY_NAME}: blockMessage must be a non-empty string")
        scan_response = p["scanResponse"]
        if not isinstance(scan_response, bool):
            raise ConfigError(f"{POLICY_NAME}: scanResponse must be a boolean")
        return cls(
            detectors=tuple(detectors),
            action=action,
            block_status=status,
            block_message=message,
            block_format=_choice(p, "blockFormat", FORMATS),
            roles=frozenset(_string_list(p, "roles", ROLES)),
            scan_response=scan_response,
        )


def _integer(value: Any) -> int | None:
    """``value`` as an int, accepting integral floats (params that crossed the gateway's
    protobuf Struct carry every number as a float); None when it is not an integer."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _choice(p: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = p[key]
    if value not in allowed:
        raise ConfigError(
            f"{POLICY_NAME}: {key} must be one of {', '.join(allowed)}, got {value!r}"
        )
    return str(value)


def _string_list(p: dict[str, Any], key: str, allowed: tuple[str, ...]) -> list[str]:
    value = p[key]
    if not isinstance(value, list) or any(item not in allowed for item in value):
        raise ConfigError(f"{POLICY_NAME}: {key} must be a list drawn from {', '.join(allowed)}")
    return [str(item) for item in value]


def _custom_detectors(raw: Any) -> list[Detector]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{POLICY_NAME}: customPatterns must be a mapping of name to regex")
    out: list[Detector] = []
    for name in sorted(raw, key=str):
        pattern = raw[name]
        if not isinstance(name, str) or not CUSTOM_NAME.fullmatch(name):
            raise ConfigError(f"{POLICY_NAME}: customPatterns: {name!r} is not a valid name")
        if name.lower() in BUILTINS:
            raise ConfigError(f"{POLICY_NAME}: customPatterns: {name!r} repeats a built-in name")
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"{POLICY_NAME}: customPatterns.{name} must be a non-empty string")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(
                f"{POLICY_NAME}: customPatterns.{name} is not a valid regex: {exc}"
            ) from exc
        if compiled.fullmatch(""):
            raise ConfigError(f"{POLICY_NAME}: customPatterns.{name} matches the empty string")
        out.append(Detector(name, compiled))
    return out


class _Scan:
    """Redacts strings with the configured detectors and records which types were found."""

    def __init__(self, detectors: tuple[Detector, ...], roles: frozenset[str]) -> None:
        self._detectors = detectors
        self._roles = roles
        self.found: set[str] = set()

    def text(self, value: str) -> str:
        for detector in self._detectors:
            value, hits = detector.redact(value)
            if hits:
                self.found.add(detector.name)
        return value

    def anything(self, value: Any) -> Any:
        """Every string inside a JSON value (mapping keys excepted)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.anything(item) for item in value]
        if isinstance(value, dict):
            return {key: self.anything(item) for key, item in value.items()}
        return value

    def content(self, value: Any) -> Any:
        """A chat content: a string, or a list of parts whose text parts are scanned."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self._part(part) for part in value]
        return value

    def _part(self, part: Any) -> Any:
        if isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
            text = part.get("text")
            if isinstance(text, str):
                return {**part, "text": self.text(text)}
        return part

    def messages(self, messages: list[Any]) -> list[Any]:
        out = []
        for message in messages:
            wanted = not self._roles or (
                isinstance(message, dict) and message.get("role") in self._roles
            )
            if isinstance(message, dict) and wanted and "content" in message:
                message = {**message, "content": self.content(message["content"])}
            out.append(message)
        return out

    def request_document(self, doc: Any) -> Any:
        if isinstance(doc, dict) and isinstance(doc.get("messages"), list):
            return {**doc, "messages": self.messages(doc["messages"])}
        if isinstance(doc, dict) and ("prompt" in doc or "input" in doc):
            doc = dict(doc)
            for key in ("prompt", "input"):
                value = doc.get(key)
                if isinstance(value, list) and all(
                    isinstance(m, dict) and "role" in m for m in value
                ):
                    doc[key] = self.messages(value)
                elif key in doc:
                    doc[key] = self.anything(value)
            return doc
        return self.anything(doc)

    def response_document(self, doc: Any) -> Any:
        if not (isinstance(doc, dict) and isinstance(doc.get("choices"), list)):
            return self.anything(doc)
        choices = []
        for choice in doc["choices"]:
            if isinstance(choice, dict):
                choice = dict(choice)
                message = choice.get("message")
                if isinstance(message, dict) and "content" in message:
                    choice["message"] = {**message, "content": self.content(message["content"])}
                if isinstance(choice.get("text"), str):
                    choice["text"] = self.text(choice["text"])
            choices.append(choice)
        return {**doc, "choices": choices}


_NOT_JSON = object()


def _decode(content: bytes) -> tuple[str | None, Any]:
    """(text, parsed JSON or _NOT_JSON); text is None when the bytes are not UTF-8."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None, _NOT_JSON
    try:
        return text, json.loads(text)
    except ValueError:
        return text, _NOT_JSON


_HTML_PAGE = Markup(
    '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>'
    "<body><h1>{title}</h1><p>{message}</p></body></html>\n"
)


class PromptGuardPolicy(RequestPolicy):
    """Scans the request body; blocks or masks what the detectors find."""

    def __init__(self, config: GuardConfig) -> None:
        self.config = config

    def mode(self) -> ProcessingMode:
        """The request body is buffered (and, in the response-scanning variant, the response)."""
        return ProcessingMode(request_body_mode=BodyProcessingMode.BUFFER)

    def on_request_body(
        self, execution_ctx: ExecutionContext, ctx: RequestContext, params: dict[str, Any]
    ) -> RequestAction:
        """Block (ImmediateResponse), mask (new body) or pass (None)."""
        content = ctx.body.content if ctx.body is not None else None
        result = self._scan(content, "request")
        if result is None:
            return None
        new_body, found = result
        if self.config.action == "block":
            return self._block(found, "request")
        return UpstreamRequestModifications(body=new_body, headers_to_set=self._mask_headers(found))

    def _scan(self, content: bytes | None, direction: str) -> tuple[bytes, list[str]] | None:
        """(masked body, sorted found types), or None when nothing was found."""
        if not content:
            return None
        text, doc = _decode(content)
        if text is None:
            return None
        scan = _Scan(self.config.detectors, self.config.roles)
        if doc is _NOT_JSON:
            new_body = scan.text(text).encode("utf-8")
        else:
            masked = (
                scan.request_document(doc)
                if direction == "request"
                else scan.response_document(doc)
            )
            new_body = json.dumps(masked, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if not scan.found:
            return None
        return new_body, sorted(scan.found)

    @staticmethod
    def _mask_headers(found: list[str]) -> dict[str, str]:
        return {ACTION_HEADER: "masked", TYPES_HEADER: ",".join(found)}

    def _block(self, found: list[str], direction: str) -> ImmediateResponse:
        status = self.config.block_status
        message = self.config.block_message.replace("{types}", ", ".join(found))
        headers = {ACTION_HEADER: "blocked", TYPES_HEADER: ",".join(found)}
        if self.config.block_format == "html":
            page = _HTML_PAGE.format(title=f"{status} Blocked", message=message)
            headers["content-type"] = "text/html; charset=utf-8"
            body = str(page).encode("utf-8")
        else:
            error = {
                "message": message,
                "type": "prompt_guard",
                "code": "sensitive_data_detected",
                "direction": direction,
                "detected": found,
            }
            headers["content-type"] = "application/json"
            body = json.dumps({"error": error}, ensure_ascii=False, separators=(",", ":")).encode()
        return ImmediateResponse(status_code=status, headers=headers, body=body)


class PromptGuardResponsePolicy(PromptGuardPolicy, ResponsePolicy):
    """The variant used when ``scanResponse`` is true: also scans the response body."""

    def mode(self) -> ProcessingMode:
        """Buffer both bodies."""
        return ProcessingMode(
            request_body_mode=BodyProcessingMode.BUFFER,
            response_body_mode=BodyProcessingMode.BUFFER,
        )

    def on_response_body(
        self, execution_ctx: ExecutionContext, ctx: ResponseContext, params: dict[str, Any]
    ) -> ResponseAction:
        """Replace (block) or rewrite (mask) a response that carries sensitive data."""
        content = ctx.response_body.content if ctx.response_body is not None else None
        result = self._scan(content, "response")
        if result is None:
            return None
        new_body, found = result
        if self.config.action == "block":
            return self._block(found, "response")
        return DownstreamResponseModifications(
            body=new_body, headers_to_set=self._mask_headers(found)
        )


def get_policy(metadata: PolicyMetadata, params: dict[str, Any]) -> PromptGuardPolicy:
    """Entry point: build the policy for one route attachment (raises ConfigError on bad params)."""
    config = GuardConfig.from_params(params if params is not None else {})
    return PromptGuardResponsePolicy(config) if config.scan_response else PromptGuardPolicy(config)
