"""Credential redaction for URLs and free text (logs, errors, lock files, labels), and escaping
of terminal control characters in text that is shown to a person.

A URL's password or token (``user:secret@``, ``token@``) and every query value (signed URLs
carry ``sig=``, ``X-Amz-Signature=``, ``X-Amz-Credential=`` ...) are replaced by ``****``. In
free text the userinfo of a URL runs to the last ``@`` before its host, so a raw ``@`` or space
in a password does not cut the redaction short.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "****"

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
#: Where a URL's authority ends in free text (quotes and brackets: a URL inside JSON or prose).
_AUTHORITY_END_RE = re.compile(r"[/?#\n\r\"'<>`\\]")
#: Where a URL ends in free text.
_URL_END_RE = re.compile(r"[\s\"'<>`\\{}|^()\[\]]")
#: What may follow the last ``@`` of a userinfo: a host (name, IPv4, [IPv6]) and a port.
_HOST_RE = re.compile(r"(?:[A-Za-z0-9\-._~%]+|\[[0-9A-Fa-f:.]+\])(?::\d*)?")
_MAX_AUTHORITY = 512
# Query parameters that commonly carry secrets, outside URLs too (``token=...`` in a message).
_SECRET_QUERY_RE = re.compile(
    r"(?i)([?&](?:token|access_token|private_token|password|passwd|secret|api[_-]?key|auth|sig|"
    r"signature|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|"
    r"x-goog-credential)=)[^&#\s\"'<>`\\{}|^()\[\],;]+"
)
# C0/C1 controls except tab and newline, and the bidirectional overrides and isolates that can
# make a file name or key read differently from what it is.
_CONTROLS_RE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _redact_userinfo(scheme: str, userinfo: str) -> str:
    if ":" in userinfo:
        return f"{userinfo.split(':', 1)[0]}:{REDACTED}"
    if scheme.lower() in ("ssh", "git+ssh") or userinfo == "git":
        return userinfo  # a bare user name (ssh://git@host) is not a secret
    return REDACTED


def _redact_query(query: str) -> str:
    """Every value of a query string replaced (keys stay readable)."""
    items = []
    for item in query.split("&"):
        key, sep, _ = item.partition("=")
        items.append(f"{key}={REDACTED}" if sep else (REDACTED if item else item))
    return "&".join(items)


def redact_url(url: str) -> str:
    """Return ``url`` with any password/token and every query value replaced by ``****``.

    A bare ``user@`` (as in ``ssh://git@host``) is kept because it is not a secret;
    ``user:secret@`` becomes ``user:****@`` and a lone token (``https://TOKEN@host``) becomes
    ``****@``. A URL without credentials or query comes back unchanged.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if not parts.scheme or ("@" not in parts.netloc and not parts.query):
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{_redact_userinfo(parts.scheme, userinfo)}@{hostport}"
    query = _redact_query(parts.query) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _userinfo_end(window: str) -> int:
    """Index of the ``@`` that ends a URL's userinfo in ``window`` (its authority), or -1."""
    at = window.rfind("@")
    while at >= 0:
        host = _HOST_RE.match(window, at + 1)
        rest = window[host.end() :] if host else "x"
        if host and host.end() > at + 1 and (not rest or rest[0].isspace() or rest[0] in ").,;'\""):
            userinfo = window[:at]
            spaced = [i for i, c in enumerate(userinfo) if c.isspace()]
            # A space is part of a password only after "user:"; otherwise this is prose.
            if not spaced or ":" in userinfo[: spaced[0]]:
                return at
            return -1
        at = window.rfind("@", 0, at)
    return -1


def _redact_urls(text: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _SCHEME_RE.finditer(text):
        if m.start() < pos:
            continue
        start = m.end()
        limit = min(len(text), start + _MAX_AUTHORITY)
        end_match = _AUTHORITY_END_RE.search(text, start, limit)
        end = end_match.start() if end_match else limit
        at = _userinfo_end(text[start:end])
        out.append(text[pos:start])
        pos = start
        if at >= 0:
            out.append(_redact_userinfo(m.group()[:-3], text[start : start + at]) + "@")
            pos = start + at + 1
        # The rest of the URL (up to whitespace): every query value goes.
        url_end = _URL_END_RE.search(text, pos)
        token_end = url_end.start() if url_end else len(text)
        tail = text[pos:token_end]
        q = tail.find("?")
        if q >= 0:
            query, hash_sign, fragment = tail[q + 1 :].partition("#")
            tail = tail[: q + 1] + _redact_query(query) + hash_sign + fragment
        out.append(tail)
        pos = token_end
    out.append(text[pos:])
    return "".join(out)


def escape_controls(text: str) -> str:
    """Terminal control characters and bidi overrides as visible escapes (``\\x1b``, ``\\u202e``);
    tabs and newlines stay."""

    def escape(m: re.Match[str]) -> str:
        code = ord(m.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _CONTROLS_RE.sub(escape, text)


def redact_text(text: str) -> str:
    """Redact every URL-embedded credential found anywhere in ``text`` and escape terminal
    controls, so untrusted text (a manifest key, a path, a tool's output) is safe to print."""
    text = _redact_urls(text)
    text = _SECRET_QUERY_RE.sub(lambda m: m.group(1) + REDACTED, text)
    return escape_controls(text)
