"""token-scorer: score the prompt of an OpenAI-style request with numpy.

Two scores are computed for the prompt text:

- an estimated token count: per text segment ``ceil(max(chars / 4, words * 4 / 3))``, plus 3
  tokens per chat message and 3 for the reply priming (the usual rule of thumb for BPE
  tokenizers on English text; no tokenizer is shipped);
- the Shannon entropy of its characters in bits per character (0 for one repeated character,
  about 4-4.5 for English prose), from the code point histogram.

The prompt text is taken from ``messages[].content`` (strings and text parts), else from
``prompt`` / ``input`` (strings, lists of strings, or message lists), else, for a body that is
not JSON, from the whole UTF-8 body. Other JSON documents and binary bodies are not scored.

The scores go upstream as request headers ``<prefix>tokens``, ``<prefix>chars`` and
``<prefix>entropy``. Prompts over ``maxTokens`` are answered with 413, prompts of at least 32
characters under ``minEntropy`` with 422. With ``exposeInResponse`` the token estimate is also
set on the response headers (computed again from the request body the response phase sees).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from apip_sdk_core.policy.v1alpha2 import (
    BodyProcessingMode,
    DownstreamResponseHeaderModifications,
    ExecutionContext,
    HeaderProcessingMode,
    ImmediateResponse,
    PolicyMetadata,
    ProcessingMode,
    RequestAction,
    RequestContext,
    RequestPolicy,
    ResponseHeaderAction,
    ResponseHeaderContext,
    ResponseHeaderPolicy,
    UpstreamRequestModifications,
)

POLICY_NAME = "token-scorer"
MESSAGE_OVERHEAD_TOKENS = 3
REPLY_PRIMING_TOKENS = 3
#: The entropy floor only applies to prompts at least this long (short texts are naturally low).
MIN_ENTROPY_CHARS = 32
DEFAULTS: dict[str, Any] = {
    "headerPrefix": "x-prompt-",
    "maxTokens": 0,
    "minEntropy": 0,
    "exposeInResponse": True,
}
_TEXT_PART_TYPES = ("text", "input_text")


class ConfigError(ValueError):
    """The policy's parameters are unusable (raised from ``get_policy``)."""


@dataclass(frozen=True)
class Prompt:
    """The text segments of a prompt; ``messages`` counts chat messages (0 for plain prompts)."""

    segments: tuple[str, ...]
    messages: int = 0


@dataclass(frozen=True)
class Score:
    """Scores of one prompt."""

    tokens: int
    chars: int
    entropy: float

    def headers(self, prefix: str) -> dict[str, str]:
        return {
            f"{prefix}tokens": str(self.tokens),
            f"{prefix}chars": str(self.chars),
            f"{prefix}entropy": f"{self.entropy:.3f}",
        }


def char_entropy(text: str) -> float:
    """Shannon entropy of the code points of ``text``, in bits per character."""
    if not text:
        return 0.0
    # surrogatepass: JSON may carry lone surrogates ("\\ud800"), which strict UTF-32 rejects.
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    _, counts = np.unique(codes, return_counts=True)
    p = counts / codes.size
    return max(0.0, float(-(p * np.log2(p)).sum()))


def score_prompt(prompt: Prompt) -> Score:
    """Token estimate, character count and entropy of ``prompt``."""
    n = len(prompt.segments)
    chars = np.fromiter((len(s) for s in prompt.segments), dtype=np.float64, count=n)
    words = np.fromiter((len(s.split()) for s in prompt.segments), dtype=np.float64, count=n)
    per_segment = np.ceil(np.maximum(chars / 4.0, words * 4.0 / 3.0))
    tokens = int(per_segment.sum())
    if prompt.messages:
        tokens += prompt.messages * MESSAGE_OVERHEAD_TOKENS + REPLY_PRIMING_TOKENS
    return Score(
        tokens=tokens, chars=int(chars.sum()), entropy=char_entropy("".join(prompt.segments))
    )


def _content_segments(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") in _TEXT_PART_TYPES
            and isinstance(part.get("text"), str)
        ]
    return []


def _messages_prompt(messages: list[Any]) -> Prompt:
    segments: list[str] = []
    count = 0
    for message in messages:
        if isinstance(message, dict):
            count += 1
            segments += _content_segments(message.get("content"))
    return Prompt(tuple(segments), messages=count)


def extract_prompt(content: bytes | None) -> Prompt | None:
    """The prompt of a request body, or None when the body holds nothing to score."""
    if not content:
        return None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return Prompt((text,))
    if not isinstance(doc, dict):
        return None
    if isinstance(doc.get("messages"), list):
        return _messages_prompt(doc["messages"])
    for key in ("prompt", "input"):
        value = doc.get(key)
        if isinstance(value, str):
            return Prompt((value,))
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return Prompt(tuple(value))
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            return _messages_prompt(value)
    return None


def _error(status: int, code: str, message: str, score: Score, prefix: str) -> ImmediateResponse:
    error = {"message": message, "type": "invalid_request_error", "code": code}
    return ImmediateResponse(
        status_code=status,
        headers={"content-type": "application/json", **score.headers(prefix)},
        body=json.dumps({"error": error}, separators=(",", ":")).encode("utf-8"),
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


class TokenScorerPolicy(RequestPolicy):
    """Scores the request prompt; sets score headers or blocks."""

    def __init__(self, params: dict[str, Any]) -> None:
        if not isinstance(params, dict):
            raise ConfigError(f"{POLICY_NAME}: params must be a mapping")
        p = {**DEFAULTS, **params}
        prefix = p["headerPrefix"]
        if (
            not isinstance(prefix, str)
            or not prefix
            or prefix != prefix.lower()
            or not all(c.isascii() and (c.isalnum() or c == "-") for c in prefix)
        ):
            raise ConfigError(
                f"{POLICY_NAME}: headerPrefix must be lower-case letters, digits and '-'"
            )
        max_tokens, min_entropy = _integer(p["maxTokens"]), p["minEntropy"]
        if max_tokens is None or max_tokens < 0:
            raise ConfigError(f"{POLICY_NAME}: maxTokens must be a non-negative integer")
        if (
            isinstance(min_entropy, bool)
            or not isinstance(min_entropy, (int, float))
            or not math.isfinite(min_entropy)
            or min_entropy < 0
        ):
            raise ConfigError(f"{POLICY_NAME}: minEntropy must be a non-negative number")
        if not isinstance(p["exposeInResponse"], bool):
            raise ConfigError(f"{POLICY_NAME}: exposeInResponse must be a boolean")
        self.prefix: str = prefix
        self.max_tokens: int = max_tokens
        self.min_entropy = float(min_entropy)
        self.expose_in_response: bool = p["exposeInResponse"]

    def mode(self) -> ProcessingMode:
        """Buffer the request body."""
        return ProcessingMode(request_body_mode=BodyProcessingMode.BUFFER)

    def on_request_body(
        self, execution_ctx: ExecutionContext, ctx: RequestContext, params: dict[str, Any]
    ) -> RequestAction:
        """Score headers for the upstream, a 413/422 block, or None when there is no prompt."""
        prompt = extract_prompt(ctx.body.content if ctx.body is not None else None)
        if prompt is None:
            return None
        score = score_prompt(prompt)
        if self.max_tokens and score.tokens > self.max_tokens:
            message = (
                f"prompt too large: about {score.tokens} tokens, the limit is {self.max_tokens}"
            )
            return _error(413, "prompt_too_large", message, score, self.prefix)
        if (
            self.min_entropy
            and score.chars >= MIN_ENTROPY_CHARS
            and score.entropy < self.min_entropy
        ):
            message = (
                f"prompt rejected: character entropy {score.entropy:.3f} bits is below "
                f"{self.min_entropy:g}"
            )
            return _error(422, "low_entropy_prompt", message, score, self.prefix)
        return UpstreamRequestModifications(headers_to_set=score.headers(self.prefix))


class TokenScorerResponsePolicy(TokenScorerPolicy, ResponseHeaderPolicy):
    """The variant used when ``exposeInResponse`` is true: also annotates response headers."""

    def mode(self) -> ProcessingMode:
        """Buffer the request body and process the response headers."""
        return ProcessingMode(
            request_body_mode=BodyProcessingMode.BUFFER,
            response_header_mode=HeaderProcessingMode.PROCESS,
        )

    def on_response_headers(
        self, execution_ctx: ExecutionContext, ctx: ResponseHeaderContext, params: dict[str, Any]
    ) -> ResponseHeaderAction:
        """Set ``<prefix>tokens`` on the response when the request body had a prompt."""
        body = ctx.request_body
        prompt = extract_prompt(body.content if body is not None else None)
        if prompt is None:
            return None
        tokens = score_prompt(prompt).tokens
        return DownstreamResponseHeaderModifications(
            headers_to_set={f"{self.prefix}tokens": str(tokens)}
        )


def get_policy(metadata: PolicyMetadata, params: dict[str, Any]) -> TokenScorerPolicy:
    """Entry point: build the policy for one route attachment (raises ConfigError on bad params)."""
    params = params if params is not None else {}
    policy = TokenScorerPolicy(params)
    return TokenScorerResponsePolicy(params) if policy.expose_in_response else policy
