"""The package layering, checked from the source: stages import only downward (no cycles), the
library never imports the command layer, argparse stays in the command layer, the runtime never
imports the builder, and the worker shim needs nothing but the standard library and the SDK.

Every failure names the offending import as ``file:line: importer -> imported``.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMAND_LAYER = ("gateway_builder.cli", "gateway_builder.commands", "gateway_builder.__main__")


@dataclass(frozen=True)
class Import:
    """One import statement's target as seen from its module."""

    importer: str
    imported: str
    path: str  # relative to the source root
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} -> {self.imported}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules_of(package: str, root: Path) -> dict[str, Path]:
    """Every module of ``package`` below ``root`` (generated protobuf code excluded)."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        if "proto" in path.parts or "assets" in path.parts:
            continue
        found[module_name(path, root)] = path
    return found


def imports_of(name: str, path: Path, known: set[str], root: Path = ROOT) -> list[Import]:
    """All imports of a module, function-local ones included, resolved to module names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    rel = path.relative_to(root).as_posix()
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # ``from pkg import mod`` imports the module pkg.mod when there is one.
            targets = [
                f"{module}.{a.name}" if f"{module}.{a.name}" in known else module
                for a in node.names
            ]
        for target in targets:
            out.append(Import(name, target, rel, node.lineno))
    return out


def import_graph(packages: tuple[str, ...], root: Path) -> dict[str, list[Import]]:
    """Module -> its imports of modules inside ``packages``.

    Importing ``a.b.c`` runs ``a.b``'s ``__init__`` first, so that is an edge too, except from a
    module inside ``a.b`` (a package importing its own submodules is not a cycle).
    """
    mods: dict[str, Path] = {}
    for package in packages:
        mods.update(modules_of(package, root))
    known = set(mods)
    graph: dict[str, list[Import]] = {m: [] for m in mods}
    for name, path in mods.items():
        for imp in imports_of(name, path, known, root):
            target = imp.imported
            while target and target not in known:
                target = target.rpartition(".")[0]
            if not target:
                continue
            edges = [target]
            parent = target.rpartition(".")[0]
            while parent:
                if parent in known and not name.startswith(parent + ".") and name != parent:
                    edges.append(parent)
                parent = parent.rpartition(".")[0]
            for edge in edges:
                if edge != name:
                    graph[name].append(Import(name, edge, imp.path, imp.line))
    return graph


def find_cycles(graph: dict[str, list[Import]]) -> list[list[Import]]:
    """One import cycle per strongly connected component (Tarjan), as the imports forming it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for edge in graph.get(node, ()):
            nxt = edge.imported
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            comp = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                comp.append(top)
                if top == node:
                    break
            if len(comp) > 1:
                components.append(comp)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(sorted(comp), graph) for comp in components]


def _cycle_in(component: list[str], graph: dict[str, list[Import]]) -> list[Import]:
    """A shortest path from the component's first module back to itself."""
    members = set(component)
    start = component[0]
    paths: dict[str, list[Import]] = {start: []}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for edge in graph[node]:
            if edge.imported == start:
                return [*paths[node], edge]
            if edge.imported in members and edge.imported not in paths:
                paths[edge.imported] = [*paths[node], edge]
                queue.append(edge.imported)
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover


def in_layer(module: str, layer: tuple[str, ...]) -> bool:
    return any(module == m or module.startswith(m + ".") for m in layer)


def command_layer_imports(graph: dict[str, list[Import]]) -> list[Import]:
    """Imports of the command layer made from library modules."""
    return [
        edge
        for name, edges in graph.items()
        if not in_layer(name, COMMAND_LAYER)
        for edge in edges
        if in_layer(edge.imported, COMMAND_LAYER)
    ]


def external_imports(package: str, root: Path, top: str) -> list[Import]:
    """Imports of the top-level package ``top`` (or module) anywhere in ``package``."""
    found = []
    for name, path in modules_of(package, root).items():
        for imp in imports_of(name, path, set(), root):
            if imp.imported.split(".")[0] == top:
                found.append(imp)
    return found


def _fmt(imports: list[Import]) -> str:
    return "\n".join(f"  {imp}" for imp in imports)


# --- the project's own layering ----------------------------------------------------------------


def test_no_import_cycles_in_the_builder_or_the_runtime() -> None:
    cycles = find_cycles(import_graph(("gateway_builder", "gateway_executor"), ROOT))
    assert not cycles, "import cycles:\n" + "\n\n".join(_fmt(c) for c in cycles)


def test_library_never_imports_the_command_layer() -> None:
    bad = command_layer_imports(import_graph(("gateway_builder",), ROOT))
    assert not bad, "library modules import the CLI layer:\n" + _fmt(bad)


def test_argparse_only_in_the_command_layer() -> None:
    bad = [
        imp
        for imp in external_imports("gateway_builder", ROOT, "argparse")
        if not in_layer(imp.importer, COMMAND_LAYER)
    ]
    assert not bad, "argparse below the command layer:\n" + _fmt(bad)


def test_runtime_never_imports_the_builder() -> None:
    bad = external_imports("gateway_executor", ROOT, "gateway_builder")
    assert not bad, "the runtime imports the builder:\n" + _fmt(bad)


#: Runtime modules the shim may load: standard library only, loaded beside it by file path.
SHIM_SIBLINGS = frozenset({"framing", "phases"})


def test_worker_shim_uses_only_stdlib_and_the_sdk() -> None:
    shim = ROOT / "gateway_executor" / "worker_shim.py"
    allowed = set(sys.stdlib_module_names) | {"__future__", "apip_sdk_core"}
    bad = []
    for imp in imports_of("gateway_executor.worker_shim", shim, set()):
        top = imp.imported.split(".")[0]
        sibling = imp.imported.removeprefix("gateway_executor.")
        if top not in allowed and not (top == "gateway_executor" and sibling in SHIM_SIBLINGS):
            bad.append(imp)
    assert not bad, "the worker shim imports more than stdlib + apip_sdk_core:\n" + _fmt(bad)
    for sibling in sorted(SHIM_SIBLINGS):
        path = ROOT / "gateway_executor" / f"{sibling}.py"
        if not path.exists():
            continue
        for imp in imports_of(f"gateway_executor.{sibling}", path, set()):
            assert imp.imported.split(".")[0] in allowed, f"{imp} (the shim loads this module)"


# --- the checker itself, on a package made to break each rule -----------------------------------


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    _write(tmp_path, "gateway_builder/__init__.py", "")
    _write(
        tmp_path, "gateway_builder/cli.py", "import argparse\nfrom gateway_builder import fetch\n"
    )
    _write(tmp_path, "gateway_builder/commands/__init__.py", "")
    _write(tmp_path, "gateway_builder/commands/fetch.py", "from gateway_builder.fetch import x\n")
    _write(tmp_path, "gateway_builder/fetch.py", "from gateway_builder.cache import c\nx = 1\n")
    _write(tmp_path, "gateway_builder/cache.py", "c = 1\n")
    _write(tmp_path, "gateway_builder/smoke/__init__.py", "from .steps import run\n")
    _write(tmp_path, "gateway_builder/smoke/steps.py", "from gateway_builder.smoke import report\n")
    _write(tmp_path, "gateway_builder/smoke/report.py", "")
    return tmp_path


def test_checker_accepts_a_clean_layering(fake_root: Path) -> None:
    graph = import_graph(("gateway_builder",), fake_root)
    assert find_cycles(graph) == []
    assert command_layer_imports(graph) == []


def test_checker_names_a_cycle(fake_root: Path) -> None:
    _write(
        fake_root,
        "gateway_builder/cache.py",
        "c = 1\n\ndef late():\n    from gateway_builder import fetch\n",
    )
    cycles = find_cycles(import_graph(("gateway_builder",), fake_root))
    assert [[str(e) for e in c] for c in cycles] == [
        [
            "gateway_builder/cache.py:4: gateway_builder.cache -> gateway_builder.fetch",
            "gateway_builder/fetch.py:1: gateway_builder.fetch -> gateway_builder.cache",
        ]
    ]


def test_checker_sees_a_cycle_through_a_package_init(fake_root: Path) -> None:
    _write(fake_root, "gateway_builder/cache.py", "from gateway_builder.smoke.report import r\n")
    _write(fake_root, "gateway_builder/smoke/steps.py", "from gateway_builder import cache\n")
    cycles = find_cycles(import_graph(("gateway_builder",), fake_root))
    assert len(cycles) == 1
    assert {e.importer for e in cycles[0]} == {
        "gateway_builder.cache",
        "gateway_builder.smoke",
        "gateway_builder.smoke.steps",
    }


def test_checker_names_a_cli_import_from_a_stage(fake_root: Path) -> None:
    _write(
        fake_root,
        "gateway_builder/fetch.py",
        "x = 1\n\ndef f():\n    from gateway_builder.cli import main\n",
    )
    bad = command_layer_imports(import_graph(("gateway_builder",), fake_root))
    assert [str(b) for b in bad] == [
        "gateway_builder/fetch.py:4: gateway_builder.fetch -> gateway_builder.cli"
    ]
    _write(fake_root, "gateway_builder/fetch.py", "from gateway_builder.commands import fetch\n")
    bad = command_layer_imports(import_graph(("gateway_builder",), fake_root))
    assert [b.imported for b in bad] == [
        "gateway_builder.commands.fetch",
        "gateway_builder.commands",
    ]
