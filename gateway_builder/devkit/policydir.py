"""A policy folder on the author's disk, read the way fetch reads a path source.

The definition, entry-module and requirements checks are fetch's own; what is added here is
what a developer tool needs without building a wheel or importing the policy: the folder's
samples, its requirements whether it is a simple folder or a ``pyproject.toml`` package, and the
phases it implements, found in ``policy.py`` with :mod:`ast` (policy code is never run here).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from gateway_builder import defaults
from gateway_builder.errors import InputError
from gateway_builder.fetch.definition import (
    PolicyDefinition,
    check_entry_module,
    load_definition,
    read_python_version,
)
from gateway_builder.fetch.policy import read_requirements_txt
from gateway_executor import samples as samples_mod
from gateway_executor.phases import PHASES
from gateway_executor.samples import Sample

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Each SDK policy interface and the SDK interfaces it extends.
_SDK_BASES: dict[str, tuple[str, ...]] = {
    "StreamingRequestPolicy": ("RequestPolicy",),
    "StreamingResponsePolicy": ("ResponsePolicy",),
}


@dataclass(frozen=True)
class LocalPolicy:
    """A policy folder: its definition and what it needs to run."""

    root: Path
    definition: PolicyDefinition
    #: The package the folder becomes in the image (the name with '-' as '_').
    package: str
    #: It has a ``pyproject.toml`` (fetch builds a wheel of it).
    packaged: bool
    #: Its own requirements (``requirements.txt``, or ``[project].dependencies`` when packaged).
    requirements: tuple[str, ...]
    #: From ``python_version.txt`` (None: not given).
    python_version: str | None

    @property
    def name(self) -> str:
        """The definition's name."""
        return self.definition.name

    @property
    def module(self) -> str:
        """The entry module the executor imports."""
        return f"{self.package}.{defaults.POLICY_ENTRY_MODULE}"

    @property
    def samples_dir(self) -> Path:
        """``samples/`` of the folder."""
        return self.root / defaults.POLICY_SAMPLES_DIR


def _pyproject_dependencies(root: Path, what: str) -> tuple[str, ...] | None:
    """``[project].dependencies`` of a package folder (None when declared dynamic)."""
    path = root / "pyproject.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{what}: pyproject.toml cannot be read: {exc}") from None
    project = data.get("project") or {}
    if "dependencies" in (project.get("dynamic") or []):
        return None
    deps = project.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise InputError(f"{what}: pyproject.toml: project.dependencies must be a list of strings")
    out = []
    for dep in deps:
        try:
            out.append(str(Requirement(dep)))
        except InvalidRequirement as exc:
            raise InputError(f"{what}: pyproject.toml: project.dependencies: {exc}") from None
    return tuple(out)


def read_policy_dir(path: Path) -> LocalPolicy:
    """Read and check a policy folder (definition, ``policy.py``, requirements); every problem
    is one :class:`InputError` naming the folder."""
    root = path.expanduser().resolve()
    what = str(path)
    if not root.is_dir():
        raise InputError(f"{what}: not a directory")
    definition = load_definition(root, what)
    check_entry_module(root / f"{defaults.POLICY_ENTRY_MODULE}.py", what)
    packaged = (root / "pyproject.toml").is_file()
    requirements = _pyproject_dependencies(root, what) if packaged else None
    if requirements is None:
        requirements = read_requirements_txt(root / "requirements.txt", what)
    return LocalPolicy(
        root=root,
        definition=definition,
        package=definition.name.replace("-", "_"),
        packaged=packaged,
        requirements=requirements,
        python_version=read_python_version([root], what),
    )


def load_policy_samples(policy: LocalPolicy, *, label_root: Path | None = None) -> list[Sample]:
    """Every ``samples/*.json`` of the folder, validated; a bad sample is an :class:`InputError`
    naming its file (relative to ``label_root``, default the folder's parent)."""
    folder = policy.samples_dir
    if not folder.is_dir():
        return []
    root = label_root or policy.root.parent
    try:
        return samples_mod.load_samples(policy.name, folder, label_root=root)
    except samples_mod.SampleError as exc:
        raise InputError(str(exc)) from None


def expect_summary(expect: dict[str, Any]) -> str:
    """A sample's ``expect`` in the words of :meth:`gateway_executor.samples.Outcome.summary`."""
    parts = [str(expect.get("kind"))]
    if "status_code" in expect:
        parts.append(f"status {expect['status_code']}")
    if expect.get("headers_set"):
        parts.append("sets " + ", ".join(sorted(k.lower() for k in expect["headers_set"])))
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# Phases, from policy.py's classes (no import)
# --------------------------------------------------------------------------------------------


def _base_name(node: ast.expr, aliases: dict[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):  # v1alpha2.RequestPolicy
        return node.attr
    return None


def implemented_interfaces(policy_py: Path) -> set[str]:
    """The SDK policy interfaces the classes of ``policy_py`` implement (directly, through other
    classes of the module, and through the SDK's own hierarchy)."""
    tree = ast.parse(policy_py.read_bytes(), filename=str(policy_py))
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
    interfaces = {p.interface for p in PHASES.values()}
    bases: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            names = (_base_name(b, aliases) for b in node.bases)
            bases[node.name] = {n for n in names if n}
    resolved: dict[str, set[str]] = {}

    def closure(cls: str, seen: frozenset[str]) -> set[str]:
        if cls in resolved:
            return resolved[cls]
        out: set[str] = set()
        for base in bases.get(cls, ()):
            if base in interfaces:
                out |= {base, *_SDK_BASES.get(base, ())}
            elif base in bases and base not in seen:
                out |= closure(base, seen | {base})
        resolved[cls] = out
        return out

    implemented: set[str] = set()
    for cls in bases:
        implemented |= closure(cls, frozenset({cls}))
    return implemented


def implemented_phases(policy: LocalPolicy) -> tuple[str, ...]:
    """The hook phases ``policy.py`` implements, in protocol order (``needs_more_*`` questions
    left out: they come with the chunk phases)."""
    interfaces = implemented_interfaces(policy.root / f"{defaults.POLICY_ENTRY_MODULE}.py")
    return tuple(
        p.name for p in PHASES.values() if p.interface in interfaces and p.context is not None
    )
