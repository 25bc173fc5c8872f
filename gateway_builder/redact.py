"""Credential redaction for URLs and free text (logs, errors, lock files, labels)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "****"

# scheme://user:password@host or scheme://token@host (also git+https://, ssh://).
_USERINFO_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s]+)@")
# Query parameters that commonly carry secrets.
_SECRET_QUERY_RE = re.compile(
    r"(?i)([?&](?:token|access_token|private_token|password|passwd|secret|api[_-]?key|auth)=)[^&#\s]+"
)


def redact_url(url: str) -> str:
    """Return ``url`` with any password/token replaced by ``****``.

    A bare ``user@`` (as in ``ssh://git@host``) is kept because it is not a secret;
    ``user:secret@`` becomes ``user:****@`` and a lone token (``https://TOKEN@host``) becomes ``****@``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if parts.scheme and "@" in parts.netloc:
        userinfo, _, hostport = parts.netloc.rpartition("@")
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            userinfo = f"{user}:{REDACTED}"
        elif parts.scheme not in ("ssh", "git+ssh") and userinfo != "git":
            userinfo = REDACTED
        netloc = f"{userinfo}@{hostport}"
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return _SECRET_QUERY_RE.sub(lambda m: m.group(1) + REDACTED, url)


def redact_text(text: str) -> str:
    """Redact every URL-embedded credential found anywhere in ``text``."""

    def _userinfo(m: re.Match[str]) -> str:
        scheme, userinfo = m.group("scheme"), m.group("userinfo")
        if ":" in userinfo:
            return f"{scheme}{userinfo.split(':', 1)[0]}:{REDACTED}@"
        if scheme.rstrip(":/") in ("ssh", "git+ssh") or userinfo == "git":
            return m.group(0)
        return f"{scheme}{REDACTED}@"

    text = _USERINFO_RE.sub(_userinfo, text)
    return _SECRET_QUERY_RE.sub(lambda m: m.group(1) + REDACTED, text)
