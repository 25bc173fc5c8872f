"""The one loader of untrusted YAML and JSON: bounded, JSON values only, with positions.

``load_yaml`` returns plain Python data plus a :class:`Positions` map from a field path
(``("policies", 2, "source")``) to the 1-based line and column of that value (and of its key),
so that validation errors can name ``file:line:column``. Manifests and ``policy-definition.yaml``
files are read with it; ``load_json`` reads untrusted JSON (index responses) with the same rules.

Every document is bounded (:class:`Limits`): its size is checked before parsing, and values
(counted with every alias expanded) and nesting are counted while the document is composed, so
an alias bomb, a huge or a deeply nested file is refused after a bounded amount of work. Only
JSON values pass: ``.nan``/``.inf``, dates, ``!!binary``, sets and other YAML-only types are
refused where they are, instead of turning into strings or non-JSON numbers.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.events import AliasEvent

from gateway_builder.errors import InputError, ManifestError

_EventParser: Any
try:  # libyaml scans and parses in C; composing stays in Python (below) to count as it goes.
    from yaml import _yaml

    _EventParser = _yaml.CParser
except ImportError:  # pragma: no cover (PyYAML without libyaml)
    _EventParser = None


@dataclass(frozen=True)
class Limits:
    """Bounds on one untrusted document."""

    max_bytes: int
    #: Values (scalars, lists, mappings) with every alias expanded.
    max_values: int
    #: Nesting of lists and mappings, aliases expanded.
    max_depth: int


#: Manifests: thousands of policies fit; a billion laughs or a 16 MB file does not.
MANIFEST_LIMITS = Limits(max_bytes=1 << 20, max_values=100_000, max_depth=64)
#: ``policy-definition.yaml`` (a name, a version and two JSON Schemas).
DEFINITION_LIMITS = Limits(max_bytes=1 << 20, max_values=20_000, max_depth=64)
#: Untrusted JSON documents such as an index's project page (PEP 691).
JSON_LIMITS = Limits(max_bytes=64 << 20, max_values=2_000_000, max_depth=64)

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


def read_limited(path: Path, name: str, limits: Limits) -> bytes:
    """The bytes of ``path``, refused before reading when larger than ``limits.max_bytes``."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(limits.max_bytes + 1)
    except FileNotFoundError:
        raise InputError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory, expected a YAML file") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read file: {exc.strerror}") from None
    if len(raw) > limits.max_bytes:
        raise ManifestError(name, 1, 1, "", f"file is larger than {limits.max_bytes} bytes")
    return raw


def load_yaml(
    path: Path,
    display_name: str | None = None,
    *,
    limits: Limits = MANIFEST_LIMITS,
    empty: str = "file is empty, expected a mapping with 'version' and 'policies'",
) -> tuple[Any, Positions]:
    """Read ``path`` and return ``(data, positions)``; raise :class:`ManifestError` on bad YAML."""
    name = display_name or str(path)
    raw = read_limited(path, name, limits)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(name, 1, 1, "", f"file is not UTF-8 text (byte {exc.start})") from None
    return parse_yaml(text, name, limits=limits, empty=empty)


class _BoundedComposer(Composer):
    """PyYAML's composer, counting values (aliases expanded) and depth as nodes are made."""

    def _init_bounds(self, name: str, limits: Limits) -> None:
        self.anchors: dict[str, yaml.Node] = {}
        self.bounds_name = name
        self.limits = limits
        self.values = 0
        self.depth = 0
        self.reach = 0  # the deepest level (aliases expanded) seen in the current node
        #: Anchored nodes -> (values, height) once complete.
        self.expanded: dict[int, tuple[int, int]] = {}

    def _refuse(self, mark: Any, expected: str) -> ManifestError:
        return ManifestError(self.bounds_name, mark.line + 1, mark.column + 1, "", expected)

    def _count(self, values: int, deepest: int, mark: Any) -> None:
        self.values += values
        if self.values > self.limits.max_values:
            raise self._refuse(
                mark, f"document too large (more than {self.limits.max_values} values)"
            )
        self.reach = max(self.reach, deepest)
        if self.reach > self.limits.max_depth:
            raise self._refuse(mark, f"nested more than {self.limits.max_depth} levels deep")

    def compose_node(self, parent: Any, index: Any) -> Any:
        depth = self.depth + 1
        event = self.peek_event()  # type: ignore[attr-defined]
        mark = event.start_mark
        if isinstance(event, AliasEvent):
            node = super().compose_node(parent, index)
            size = self.expanded.get(id(node))
            if size is None:  # the anchor is still open: the data would contain itself
                raise self._refuse(mark, f"alias *{event.anchor} refers to a value containing it")
            self._count(size[0], depth + size[1] - 1, mark)
            return node
        if depth > self.limits.max_depth:
            raise self._refuse(mark, f"nested more than {self.limits.max_depth} levels deep")
        anchor = getattr(event, "anchor", None)
        before, outer_reach = self.values, self.reach
        self.depth, self.reach = depth, depth
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth = depth - 1
        self._count(1, depth, mark)
        if anchor is not None:
            self.expanded[id(node)] = (self.values - before, self.reach - depth + 1)
        self.reach = max(outer_reach, self.reach)
        return node


if _EventParser is not None:

    class _Loader(
        _BoundedComposer, _EventParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver
    ):
        """libyaml's events, the bounded composer, the safe constructor."""

        def __init__(self, text: str, name: str, limits: Limits) -> None:
            _EventParser.__init__(self, text)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self._init_bounds(name, limits)

else:  # pragma: no cover

    class _Loader(  # type: ignore[no-redef]
        _BoundedComposer,
        yaml.reader.Reader,
        yaml.scanner.Scanner,
        yaml.parser.Parser,
        yaml.constructor.SafeConstructor,
        yaml.resolver.Resolver,
    ):
        """Pure-Python events, the bounded composer, the safe constructor."""

        def __init__(self, text: str, name: str, limits: Limits) -> None:
            yaml.reader.Reader.__init__(self, text)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self._init_bounds(name, limits)


def parse_yaml(
    text: str,
    name: str,
    *,
    limits: Limits = MANIFEST_LIMITS,
    empty: str = "file is empty, expected a mapping with 'version' and 'policies'",
) -> tuple[Any, Positions]:
    """Parse YAML ``text`` (named ``name`` in errors) into ``(data, positions)``."""
    positions = Positions(name)
    if len(text.encode("utf-8", "surrogatepass")) > limits.max_bytes:
        raise ManifestError(name, 1, 1, "", f"file is larger than {limits.max_bytes} bytes")
    loader = _Loader(text, name, limits)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ManifestError(name, 1, 1, "", empty)
        data = _build(loader, node, (), positions, limits.max_values)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        if "'\\t'" in problem or "tab" in problem.lower() or _char_at(text, mark) == "\t":
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
MAX_NODES = MANIFEST_LIMITS.max_values
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


def _build(
    loader: Any, node: yaml.Node, path: PathKey, pos: Positions, max_values: int = MAX_NODES
) -> Any:
    pos.nodes += 1
    if pos.nodes > max_values:
        line, col = _mark(node)
        raise ManifestError(
            pos.file,
            line,
            col,
            format_path(path),
            f"document too large (more than {max_values} values)",
        )
    pos.values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in (
        _MAP_TAG,
        _SEQ_TAG,
    ):
        line, col = _mark(node)
        raise ManifestError(
            pos.file, line, col, format_path(path), f"expected a JSON value, not {node.tag}"
        )
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
            result[key] = _build(loader, value_node, child, pos, max_values)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, item, (*path, i), pos, max_values) for i, item in enumerate(node.value)
        ]
    value = loader.construct_object(node, deep=True)
    problem = _not_json(value)
    if problem:
        line, col = _mark(node)
        raise ManifestError(pos.file, line, col, format_path(path), problem)
    return value


def _char_at(text: str, mark: Any) -> str:
    """The character an error mark points at ("" if none)."""
    if mark is None:
        return ""
    lines = text.split("\n")
    if mark.line >= len(lines) or mark.column >= len(lines[mark.line]):
        return ""
    return lines[mark.line][mark.column]


def _not_json(value: Any) -> str:
    """Why a constructed YAML scalar is not a JSON value ("" when it is one)."""
    if value is None or isinstance(value, str | bool | int):
        return ""
    if isinstance(value, float):
        return (
            "" if math.isfinite(value) else "expected a finite number (.nan and .inf are not JSON)"
        )
    if isinstance(value, datetime.date):
        return "expected a JSON value, not a YAML date (quote it to keep the text)"
    if isinstance(value, bytes):
        return "expected a JSON value, not !!binary data"
    return f"expected a JSON value, not a YAML {type(value).__name__}"


def load_json(raw: bytes, name: str, limits: Limits = JSON_LIMITS) -> Any:
    """Parse untrusted JSON within ``limits``: size first, then values and depth.

    NaN and Infinity are refused; nesting deeper than the limit is refused however deep (the C
    parser's own recursion guard is caught too).
    """
    if len(raw) > limits.max_bytes:
        raise InputError(f"{name}: larger than {limits.max_bytes} bytes")

    def constant(text: str) -> Any:
        raise ValueError(f"{text} is not a JSON number")

    try:
        data = json.loads(raw, parse_constant=constant)
    except RecursionError:
        raise InputError(f"{name}: nested more than {limits.max_depth} levels deep") from None
    except ValueError as exc:
        where = f":{exc.lineno}:{exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise InputError(f"{name}{where}: invalid JSON: {message}") from None
    values = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        values += 1
        if values > limits.max_values:
            raise InputError(f"{name}: more than {limits.max_values} values")
        if depth > limits.max_depth:
            raise InputError(f"{name}: nested more than {limits.max_depth} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return data
