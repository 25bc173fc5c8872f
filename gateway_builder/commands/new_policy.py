"""``gateway-builder new-policy NAME``: scaffold a complete, working policy folder."""

from __future__ import annotations

import argparse
from typing import Any

from gateway_builder import defaults
from gateway_builder.devkit.scaffold import new_policy
from gateway_builder.options import NewPolicyOptions
from gateway_builder.ui import UI


def options_from_args(args: argparse.Namespace) -> NewPolicyOptions:
    """NAME, ``--phase`` (repeatable, or several values), ``--python``, ``--out``."""
    return NewPolicyOptions(
        name=args.name,
        phases=tuple(args.phases or defaults.DEFAULT_SCAFFOLD_PHASES),
        python=args.python,
        out=args.out,
    )


def run(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    """Write the folder and say what to run next."""
    created = new_policy(options_from_args(args))
    result = {
        "ok": True,
        "name": created.name,
        "path": str(created.root),
        "phases": list(created.phases),
        "files": list(created.files),
    }
    human = "\n".join(
        [
            f"created {created.root}/ ({created.name} {defaults.SCAFFOLD_VERSION}, phases: "
            f"{', '.join(created.phases)})",
            *(f"  {f}" for f in created.files),
            "",
            "next:",
            f"  gateway-builder test-policy {created.root}",
            f"  gateway-builder describe-policy {created.root}",
            "  then add it to python-build.yaml (see its README.md) and build",
        ]
    )
    ui.result(result, human)
    return result
