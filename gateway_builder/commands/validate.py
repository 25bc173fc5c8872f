"""``gateway-builder validate``: load and check both manifests."""

from __future__ import annotations

import argparse
from typing import Any

from gateway_builder.manifest import load_manifests
from gateway_builder.options import SessionOptions
from gateway_builder.ui import UI, counted


def run(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    """Check the manifests (nothing is fetched) and list their policies."""
    paths = SessionOptions(build_file=args.build_file, python_build_file=args.python_build_file)
    build, python_build = paths.manifest_paths()
    manifests = load_manifests(build, python_build)
    py = manifests.python_policies()
    result = {
        "ok": True,
        "build_file": str(build) if build else None,
        "python_build_file": str(python_build) if python_build else None,
        "go_policies": [g.name for g in manifests.go_specs],
        "python_policies": [{"name": s.name, "source": s.source.display()} for s in py],
    }
    ui.result(
        result,
        f"ok: {counted(len(manifests.go_specs), 'Go policy')}, {counted(len(py), 'Python policy')}",
    )
    return result
