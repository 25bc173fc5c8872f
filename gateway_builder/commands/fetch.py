"""``gateway-builder fetch``: fetch and validate every Python policy into the cache."""

from __future__ import annotations

import argparse
import re
from typing import Any

from gateway_builder.commands._flags import session_options
from gateway_builder.fetch import summary
from gateway_builder.pipeline import Session
from gateway_builder.ui import UI


def _short(resolved: str) -> str:
    value = resolved.removeprefix("sha256:")
    return value[:12] if re.fullmatch(r"[0-9a-f]{40,64}", value) else value


def run(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    """Fetch (reusing the lock's pins) and print one line per policy."""
    session = Session.open(session_options(args))
    with ui.step("fetch"):
        fetched = session.fetch(ui)
    result = {
        "ok": True,
        "cache_dir": str(session.cache.root),
        "policies": [summary(f) for f in fetched],
    }
    lines = [
        f"{f.name:<24} {f.definition.version:<9} {f.kind:<9} py{f.python_version:<5} "
        f"{_short(f.resolved)}  {f.display}{f'  (tag {f.tag})' if f.tag else ''}"
        for f in fetched
    ]
    ui.result(result, "\n".join(lines) if lines else "no Python policies")
    return result
