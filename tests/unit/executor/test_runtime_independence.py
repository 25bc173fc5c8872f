"""The runtime package stays independent of the builder."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[3] / "gateway_executor"


def test_runtime_package_never_imports_the_builder() -> None:
    for path in PKG.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] == "gateway_builder" for n in names), path


def test_worker_shim_uses_only_stdlib_and_the_sdk() -> None:
    import sys

    tree = ast.parse((PKG / "worker_shim.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            mods = [node.module.split(".")[0]]
        else:
            continue
        for mod in mods:
            assert mod in sys.stdlib_module_names or mod in ("__future__", "apip_sdk_core"), mod
