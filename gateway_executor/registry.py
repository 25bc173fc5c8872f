"""The policy registry (``policy-registry.json``): the one data file the executor reads.

The document format lives here, writer beside reader: the builder maps its build plan to
:class:`PolicyEntry` values and writes them with :func:`registry_text`; the executor reads them
back with :func:`load_registry`. The text is canonical (keys sorted, 2-space indent, trailing
newline, no timestamps), so identical plans give identical bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway_executor import defaults

FAILURE_MODES = ("fail", "skip")
ISOLATIONS = ("worker", "per-call")
#: An environment variable name a policy may be given (``env:`` allow-list).
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Set by the executor for every worker; never taken from the container.
RESERVED_ENV = ("HOME", "PATH", "TMPDIR")


class RegistryError(ValueError):
    """The registry file is missing, malformed or of an unknown format version."""


@dataclass(frozen=True)
class PolicyEntry:
    """One policy as the executor runs it."""

    name: str
    version: str
    module: str
    python: str
    sys_path: tuple[str, ...] = ()
    python_version: str = ""
    failure_mode: str = "fail"
    timeout_ms: int = int(defaults.DEFAULT_TIMEOUT_S * 1000)
    isolation: str = "worker"
    workers: int = defaults.DEFAULT_WORKERS
    params: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    #: The uid and gid the policy's workers run under (allocated at build time; the image has a
    #: user and group for them). None: the executor's own.
    uid: int | None = None
    gid: int | None = None
    #: Names of the container's environment variables the workers get (nothing else passes).
    env: tuple[str, ...] = ()
    #: The workers' HOME and TMPDIR, private to ``uid`` ("": the executor makes one).
    home: str = ""
    #: ``InitPolicy`` timeout (``get_policy``); None: the same as ``timeout_ms``.
    init_timeout_ms: int | None = None
    #: Memory limit of each worker process, MiB (exceeding it ends the worker as a crash).
    memory_mb: int = defaults.DEFAULT_MEMORY_MB

    @property
    def key(self) -> str:
        """``name:version``, unique in a registry."""
        return f"{self.name}:{self.version}"

    @property
    def major(self) -> str:
        """``v1`` for ``v1.2.3`` (upstream falls back to the major version)."""
        return self.version.split(".", 1)[0]


def entry_to_dict(entry: PolicyEntry) -> dict[str, Any]:
    """One ``policies[]`` item of the document."""
    return {
        "name": entry.name,
        "version": entry.version,
        "module": entry.module,
        "sys_path": list(entry.sys_path),
        "python": entry.python,
        "python_version": entry.python_version,
        "failure_mode": entry.failure_mode,
        "timeout_ms": entry.timeout_ms,
        "init_timeout_ms": entry.init_timeout_ms or entry.timeout_ms,
        "isolation": entry.isolation,
        "workers": entry.workers,
        "memory_mb": entry.memory_mb,
        "params": entry.params,
        "source": entry.source,
        "uid": entry.uid,
        "gid": entry.gid,
        "env": list(entry.env),
        "home": entry.home,
    }


def registry_document(entries: Iterable[PolicyEntry]) -> dict[str, Any]:
    """The whole registry as a JSON-able dict (policies sorted by name, then version)."""
    return {
        "format": defaults.REGISTRY_FORMAT,
        "format_version": defaults.REGISTRY_FORMAT_VERSION,
        "policies": [entry_to_dict(e) for e in sorted(entries, key=lambda e: (e.name, e.version))],
    }


def registry_text(entries: Iterable[PolicyEntry]) -> str:
    """The registry file's exact text."""
    document = registry_document(entries)
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _expect(cond: bool, where: str, what: str, got: Any) -> None:
    if not cond:
        raise RegistryError(f"{where}: expected {what}, got {got!r}")


def _entry(raw: Any, where: str) -> PolicyEntry:
    _expect(isinstance(raw, dict), where, "an object", raw)
    known = {
        "name",
        "version",
        "module",
        "sys_path",
        "python",
        "python_version",
        "failure_mode",
        "timeout_ms",
        "init_timeout_ms",
        "isolation",
        "workers",
        "memory_mb",
        "params",
        "source",
        "uid",
        "gid",
        "env",
        "home",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise RegistryError(f"{where}: unknown field {unknown[0]!r}")
    for key in ("name", "version", "module", "python"):
        value = raw.get(key)
        _expect(
            isinstance(value, str) and value != "", f"{where}.{key}", "a non-empty string", value
        )
    sys_path = raw.get("sys_path", [])
    _expect(
        isinstance(sys_path, list) and all(isinstance(p, str) for p in sys_path),
        f"{where}.sys_path",
        "a list of strings",
        sys_path,
    )
    failure_mode = raw.get("failure_mode", "fail")
    _expect(failure_mode in FAILURE_MODES, f"{where}.failure_mode", "fail or skip", failure_mode)
    isolation = raw.get("isolation", "worker")
    _expect(isolation in ISOLATIONS, f"{where}.isolation", "worker or per-call", isolation)
    timeout_ms = raw.get("timeout_ms", int(defaults.DEFAULT_TIMEOUT_S * 1000))
    _expect(
        isinstance(timeout_ms, int) and not isinstance(timeout_ms, bool) and timeout_ms > 0,
        f"{where}.timeout_ms",
        "a positive integer",
        timeout_ms,
    )
    init_timeout_ms = raw.get("init_timeout_ms", timeout_ms)
    _expect(
        isinstance(init_timeout_ms, int)
        and not isinstance(init_timeout_ms, bool)
        and init_timeout_ms > 0,
        f"{where}.init_timeout_ms",
        "a positive integer",
        init_timeout_ms,
    )
    workers = raw.get("workers", defaults.DEFAULT_WORKERS)
    _expect(
        isinstance(workers, int) and not isinstance(workers, bool) and workers > 0,
        f"{where}.workers",
        "a positive integer",
        workers,
    )
    memory_mb = raw.get("memory_mb", defaults.DEFAULT_MEMORY_MB)
    _expect(
        isinstance(memory_mb, int) and not isinstance(memory_mb, bool) and memory_mb >= 16,
        f"{where}.memory_mb",
        "an integer of at least 16 (MiB)",
        memory_mb,
    )
    params = raw.get("params", {})
    _expect(isinstance(params, dict), f"{where}.params", "an object", params)
    for key in ("python_version", "source", "home"):
        _expect(isinstance(raw.get(key, ""), str), f"{where}.{key}", "a string", raw.get(key))
    ids: dict[str, int | None] = {}
    for key in ("uid", "gid"):
        value = raw.get(key)
        _expect(
            value is None
            or (isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31),
            f"{where}.{key}",
            "null or a positive integer (never root)",
            value,
        )
        ids[key] = value
    _expect(
        (ids["uid"] is None) == (ids["gid"] is None), f"{where}.gid", "set together with uid", ids
    )
    env = raw.get("env", [])
    _expect(
        isinstance(env, list)
        and all(isinstance(n, str) and ENV_NAME.match(n) and n not in RESERVED_ENV for n in env),
        f"{where}.env",
        f"a list of environment variable names (not {', '.join(RESERVED_ENV)})",
        env,
    )
    return PolicyEntry(
        name=raw["name"],
        version=raw["version"],
        module=raw["module"],
        python=raw["python"],
        sys_path=tuple(sys_path),
        python_version=raw.get("python_version", ""),
        failure_mode=failure_mode,
        timeout_ms=timeout_ms,
        isolation=isolation,
        workers=workers,
        params=params,
        source=raw.get("source", ""),
        uid=ids["uid"],
        gid=ids["gid"],
        env=tuple(env),
        home=raw.get("home", ""),
        init_timeout_ms=init_timeout_ms,
        memory_mb=memory_mb,
    )


def parse_registry(data: Any, origin: str = "policy-registry.json") -> list[PolicyEntry]:
    """Validate decoded registry JSON and return its entries."""
    _expect(isinstance(data, dict), origin, "a JSON object", type(data).__name__)
    fmt = data.get("format")
    _expect(
        fmt == defaults.REGISTRY_FORMAT, f"{origin}: format", repr(defaults.REGISTRY_FORMAT), fmt
    )
    version = data.get("format_version")
    if version != defaults.REGISTRY_FORMAT_VERSION:
        raise RegistryError(
            f"{origin}: format_version {version!r} is not supported "
            f"(this executor reads version {defaults.REGISTRY_FORMAT_VERSION})"
        )
    policies = data.get("policies")
    _expect(isinstance(policies, list), f"{origin}: policies", "a list", policies)
    entries = [_entry(raw, f"{origin}: policies[{i}]") for i, raw in enumerate(policies)]
    seen: set[str] = set()
    for entry in entries:
        if entry.key in seen:
            raise RegistryError(f"{origin}: policy {entry.key} is listed twice")
        seen.add(entry.key)
    return entries


def load_registry(path: str | Path) -> list[PolicyEntry]:
    """Read ``path`` and return its entries; raises :class:`RegistryError` with a one-line reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read the registry: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from exc
    return parse_registry(data, str(path))
