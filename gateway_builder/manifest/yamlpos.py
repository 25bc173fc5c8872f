"""YAML loading that remembers where every value came from.

``load_yaml`` returns plain Python data plus a :class:`Positions` map from a field path
(``("policies", 2, "source")``) to the 1-based line and column of that value (and of its key),
so that validation errors can name ``file:line:column``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway_builder.errors import InputError, ManifestError

PathKey = tuple[str | int, ...]


@dataclass
class Positions:
    """Field path -> (line, column) of the value, and of the mapping key that introduced it."""

    file: str
    values: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    keys: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    nodes: int = 0

    def of_value(self, path: PathKey) -> tuple[int, int]:
        """Position of the value at ``path``, or of its nearest ancestor."""
        for i in range(len(path), -1, -1):
            pos = self.values.get(tuple(path[:i]))
            if pos is not None:
                return pos
        return (1, 1)

    def of_key(self, path: PathKey) -> tuple[int, int]:
        """Position of the key of ``path`` (falls back to the value's position)."""
        return self.keys.get(tuple(path)) or self.of_value(path)

    def error(self, path: PathKey, expected: str, *, at_key: bool = False) -> ManifestError:
        """A :class:`ManifestError` located at ``path``."""
        line, col = self.of_key(path) if at_key else self.of_value(path)
        return ManifestError(self.file, line, col, format_path(path), expected)


def format_path(path: PathKey) -> str:
    """``("policies", 2, "source")`` -> ``policies[2].source``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def load_yaml(path: Path, display_name: str | None = None) -> tuple[Any, Positions]:
    """Read ``path`` and return ``(data, positions)``; raise :class:`ManifestError` on bad YAML."""
    name = display_name or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory, expected a YAML file") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read file: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(name, 1, 1, "", f"file is not UTF-8 text (byte {exc.start})") from None
    return parse_yaml(text, name)


def parse_yaml(text: str, name: str) -> tuple[Any, Positions]:
    """Parse YAML ``text`` (named ``name`` in errors) into ``(data, positions)``."""
    positions = Positions(name)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ManifestError(
                name, 1, 1, "", "file is empty, expected a mapping with 'version' and 'policies'"
            )
        data = _build(loader, node, (), positions)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        if "'\\t'" in problem or "tab" in problem.lower():
            problem = f"{problem} (YAML indentation must use spaces, not tabs)"
        raise ManifestError(name, line, col, "", f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(name, 1, 1, "", f"invalid YAML: {exc}") from None
    except RecursionError:
        raise ManifestError(name, 1, 1, "", "invalid YAML: nesting too deep") from None
    finally:
        loader.dispose()
    return data, positions


#: Upper bound on values in one manifest (stops alias "billion laughs" expansion).
MAX_NODES = 100_000


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: PathKey, pos: Positions) -> Any:
    pos.nodes += 1
    if pos.nodes > MAX_NODES:
        line, col = _mark(node)
        raise ManifestError(
            pos.file,
            line,
            col,
            format_path(path),
            f"document too large (more than {MAX_NODES} values)",
        )
    pos.values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        loader.flatten_mapping(node)  # resolve YAML merge keys (<<)
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line, col = _mark(key_node)
                raise ManifestError(
                    pos.file, line, col, format_path(path), "mapping keys must be plain strings"
                )
            key = loader.construct_object(key_node)
            if not isinstance(key, str):
                key = str(key) if key is not None else "null"
            if key in result:
                line, col = _mark(key_node)
                raise ManifestError(pos.file, line, col, format_path((*path, key)), "duplicate key")
            child = (*path, key)
            pos.keys[child] = _mark(key_node)
            result[key] = _build(loader, value_node, child, pos)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, i), pos) for i, item in enumerate(node.value)]
    value = loader.construct_object(node, deep=True)
    # Dates and binary are not manifest types; keep their text so validation reports them.
    if not isinstance(value, str | int | float | bool) and value is not None:
        return str(node.value)
    return value
