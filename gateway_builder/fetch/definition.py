"""Validation of a fetched policy: ``policy-definition.yaml``, ``policy.py`` and the manifest params.

Nothing here imports or runs policy code: ``policy.py`` is checked with :mod:`ast`. Both files
are untrusted and read within bounds: the definition through the one bounded YAML loader, the
module with a size cap and a guarded, serialized parse.
"""

from __future__ import annotations

import ast
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError, best_match

from gateway_builder import defaults
from gateway_builder.errors import InputError, ManifestError
from gateway_builder.manifest import PythonPolicySpec
from gateway_builder.manifest.yamlpos import DEFINITION_LIMITS, load_yaml

VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+$")
_PY_RE = re.compile(r"^3\.(\d{1,2})(?:\.\d+)?$")
#: Largest ``policy.py`` checked (read before parsing; a policy module is far smaller).
MAX_POLICY_PY_BYTES = 512 << 10
#: ``ast.parse`` is not thread-safe on CPython 3.11 (its AST conversion keeps the recursion depth
#: per interpreter, so two threads parsing at once can fail with "AST constructor recursion depth
#: mismatch"); fetch checks policies in parallel, so parsing is serialized.
_AST_LOCK = threading.Lock()


@dataclass(frozen=True)
class PolicyDefinition:
    """The parts of ``policy-definition.yaml`` the builder uses."""

    name: str
    version: str  # "vX.Y.Z"
    parameters: dict[str, Any] = field(default_factory=dict, hash=False)
    system_parameters: dict[str, Any] = field(default_factory=dict, hash=False)
    display_name: str | None = None
    description: str | None = None


def describe(spec: PythonPolicySpec) -> str:
    """``<origin>: policy '<name>'``, the prefix of every error about one policy."""
    return f"{spec.origin}: policy '{spec.name}'" if spec.origin else f"policy '{spec.name}'"


def load_definition(definition_dir: Path, what: str) -> PolicyDefinition:
    """Read and check ``policy-definition.yaml`` in ``definition_dir``."""
    path = definition_dir / defaults.POLICY_DEFINITION_FILE
    if not path.is_file() or path.is_symlink():
        raise InputError(
            f"{what}: {defaults.POLICY_DEFINITION_FILE} not found in the policy source"
        )
    try:
        data, _ = load_yaml(
            path,
            defaults.POLICY_DEFINITION_FILE,
            limits=DEFINITION_LIMITS,
            empty="file is empty, expected a mapping with 'name' and 'version'",
        )
    except ManifestError as exc:
        raise InputError(f"{what}: {exc.message}") from None
    if not isinstance(data, dict):
        raise InputError(f"{what}: {defaults.POLICY_DEFINITION_FILE}: expected a mapping")
    name, version = data.get("name"), data.get("version")
    if not isinstance(name, str) or not name:
        raise InputError(f"{what}: {defaults.POLICY_DEFINITION_FILE}: 'name' is missing")
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise InputError(
            f"{what}: {defaults.POLICY_DEFINITION_FILE}: version {version!r} is not of the form "
            "vX.Y.Z (e.g. v1.0.0)"
        )
    params = data.get("parameters") or {}
    system = data.get("systemParameters") or {}
    for key, value in (("parameters", params), ("systemParameters", system)):
        if not isinstance(value, dict):
            raise InputError(
                f"{what}: {defaults.POLICY_DEFINITION_FILE}: '{key}' must be a JSON Schema object"
            )
        try:
            jsonschema.validators.validator_for(value).check_schema(value)
        except SchemaError as exc:
            raise InputError(
                f"{what}: {defaults.POLICY_DEFINITION_FILE}: '{key}' is not a valid JSON Schema: "
                f"{exc.message}"
            ) from None
    display = data.get("displayName")
    description = data.get("description")
    return PolicyDefinition(
        name=name,
        version=version,
        parameters=params,
        system_parameters=system,
        display_name=display if isinstance(display, str) else None,
        description=description if isinstance(description, str) else None,
    )


def check_name(definition: PolicyDefinition, spec: PythonPolicySpec) -> None:
    """The definition's name must equal the manifest's policy name."""
    if definition.name != spec.name:
        raise InputError(
            f"{describe(spec)}: policy name mismatch: the manifest declares '{spec.name}' but "
            f"{defaults.POLICY_DEFINITION_FILE} has '{definition.name}'"
        )


def _params_path(path: Any) -> str:
    out = "params"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def check_params(definition: PolicyDefinition, params: dict[str, Any], what: str) -> None:
    """Validate the manifest ``params`` against the definition's ``parameters`` schema."""
    schema = definition.parameters
    if not schema:
        return
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    error = best_match(validator.iter_errors(params))
    if error is not None:
        raise InputError(f"{what}: {_params_path(error.absolute_path)}: {error.message}")


def _defines_get_policy(body: list[ast.stmt], what: str) -> bool:
    found = False
    for node in body:
        if isinstance(node, ast.FunctionDef) and node.name == "get_policy":
            args = node.args
            positional = len(args.posonlyargs) + len(args.args)
            required = positional - len(args.defaults)
            if (positional < 2 and args.vararg is None) or required > 2:
                raise InputError(
                    f"{what}: policy.py:{node.lineno}: get_policy must accept two arguments "
                    "(metadata, params)"
                )
            found = True
        elif isinstance(node, ast.AsyncFunctionDef) and node.name == "get_policy":
            raise InputError(
                f"{what}: policy.py:{node.lineno}: get_policy must be a plain function, not async"
            )
        elif (
            (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "get_policy" for t in node.targets)
            )
            or (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id == "get_policy"
            )
            or (
                isinstance(node, ast.ImportFrom | ast.Import)
                and any((alias.asname or alias.name) == "get_policy" for alias in node.names)
            )
        ):
            found = True
        elif isinstance(node, ast.If | ast.Try):
            branches = [node.body, node.orelse]
            if isinstance(node, ast.Try):
                branches += [h.body for h in node.handlers] + [node.finalbody]
            for branch in branches:
                if _defines_get_policy(branch, what):
                    found = True
    return found


def check_entry_module(policy_py: Path, what: str) -> None:
    """``policy.py`` must parse and define a module-level ``get_policy`` (checked with ast)."""
    if not policy_py.is_file() or policy_py.is_symlink():
        raise InputError(
            f"{what}: {defaults.POLICY_ENTRY_MODULE}.py not found in the policy source"
        )
    with policy_py.open("rb") as fh:
        source = fh.read(MAX_POLICY_PY_BYTES + 1)
    if len(source) > MAX_POLICY_PY_BYTES:
        raise InputError(f"{what}: policy.py is larger than {MAX_POLICY_PY_BYTES} bytes")
    try:
        with _AST_LOCK:
            tree = ast.parse(source, filename="policy.py")
    except SyntaxError as exc:
        raise InputError(f"{what}: policy.py:{exc.lineno}: syntax error: {exc.msg}") from None
    except ValueError as exc:
        raise InputError(f"{what}: policy.py cannot be parsed: {exc}") from None
    except (RecursionError, MemoryError):
        # CPython's parser and AST conversion give up on very deep nesting this way.
        raise InputError(
            f"{what}: policy.py is nested too deeply to be checked (simplify the expression)"
        ) from None
    if not _defines_get_policy(tree.body, what):
        raise InputError(
            f"{what}: policy.py does not define a module-level get_policy(metadata, params)"
        )


def read_python_version(folders: list[Path], what: str) -> str | None:
    """The version in the first ``python_version.txt`` found in ``folders`` ("3.12"), or None."""
    for folder in folders:
        path = folder / defaults.PYTHON_VERSION_FILE
        if not path.is_file() or path.is_symlink():
            continue
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        m = _PY_RE.match(text)
        version = f"3.{m.group(1)}" if m else None
        if version not in defaults.SUPPORTED_PYTHONS:
            raise InputError(
                f"{what}: {defaults.PYTHON_VERSION_FILE} says {text[:20]!r}: expected one of "
                f"{', '.join(defaults.SUPPORTED_PYTHONS)}"
            )
        return version
    return None


def validate_policy(
    spec: PythonPolicySpec, definition_dir: Path, policy_py: Path
) -> PolicyDefinition:
    """Every check on one fetched policy; each failure is one :class:`InputError` naming it."""
    what = describe(spec)
    definition = load_definition(definition_dir, what)
    check_name(definition, spec)
    check_entry_module(policy_py, what)
    check_params(definition, spec.params, what)
    return definition
