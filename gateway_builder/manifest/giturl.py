"""Which git URLs a manifest may name: the transports fetch allows, and nothing git would read
as an option or as a remote helper (``ext::``, ``fd::``, ``<transport>::<address>``)."""

from __future__ import annotations

import re

#: Schemes fetch passes to git (``git+ssh://`` is rewritten to ``ssh://``).
ALLOWED_SCHEMES = ("https://", "http://", "ssh://", "git://", "file://", "git+ssh://")
#: ``user@host:path`` (scp-like ssh).
SCP_RE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/].*$|^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:/.*$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def git_url_problem(url: str) -> str:
    """Why ``url`` is not an acceptable git URL ("" when it is)."""
    if not url.strip():
        return "expected a git URL"
    if _CONTROL_RE.search(url):
        return "expected a git URL without control characters or newlines"
    if url.startswith("-"):
        return "refusing a git URL that starts with '-' (git would read it as an option)"
    if url.startswith(ALLOWED_SCHEMES):
        return ""
    if "://" in url or "::" in url:
        return (
            "unsupported git URL: expected https://, http://, ssh://, git://, file://, "
            "user@host:path or a local path (remote helpers such as ext:: and fd:: are refused)"
        )
    return ""
