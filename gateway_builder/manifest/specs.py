"""Normalized policy specs: what later stages consume, whichever manifest a policy came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway_builder import defaults
from gateway_builder.manifest.schema import BuildManifest, PythonBuildManifest
from gateway_builder.redact import redact_url

# --------------------------------------------------------------------------------------------
# Normalized policy specs (what later stages consume)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GitSource:
    """A policy in a git repository."""

    url: str
    ref: str
    subdirectory: str | None = None

    def display(self) -> str:
        """Redacted one-line description."""
        sub = f"#subdirectory={self.subdirectory}" if self.subdirectory else ""
        return f"git+{redact_url(self.url)}@{self.ref}{sub}"


@dataclass(frozen=True)
class PipSource:
    """A policy distributed as a package on an index."""

    package: str
    version: str = ""
    index_url: str | None = None

    def display(self) -> str:
        """Redacted one-line description."""
        index = f" (index {redact_url(self.index_url)})" if self.index_url else ""
        return f"{self.package}{self.version}{index}"


@dataclass(frozen=True)
class PathSource:
    """A policy in a local directory."""

    path: Path

    def display(self) -> str:
        """One-line description."""
        return str(self.path)


PolicySource = GitSource | PipSource | PathSource


@dataclass(frozen=True)
class PythonPolicySpec:
    """A Python policy from either manifest, with defaults applied."""

    name: str
    source: PolicySource
    python: str | None  # None: use python_version.txt from the source, else the default
    failure_mode: str
    timeout_ms: int
    isolation: str
    workers: int
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)
    #: Names of the container's environment variables its workers get (the ``env:`` allow-list).
    env: tuple[str, ...] = ()
    origin: str = ""  # "manifests/python-build.yaml:12:5" for messages
    declared_in: str = ""  # "python-build.yaml" or "build.yaml"
    default_python: str = defaults.DEFAULT_PYTHON
    #: ``InitPolicy`` timeout; None: ``timeout_ms``.
    init_timeout_ms: int | None = None
    #: Memory limit of each worker process, MiB.
    memory_mb: int = defaults.DEFAULT_MEMORY_MB


@dataclass(frozen=True)
class GoPolicySpec:
    """A Go policy from build.yaml (passed to the engine builder)."""

    name: str
    gomodule: str | None
    file_path: Path | None
    origin: str = ""


@dataclass
class Manifests:
    """Both loaded manifests and the merged view later stages use."""

    build_file: Path | None
    python_build_file: Path | None
    build: BuildManifest | None
    python: PythonBuildManifest | None
    python_specs: list[PythonPolicySpec]
    go_specs: list[GoPolicySpec]
    raw_texts: dict[str, bytes] = field(default_factory=dict)

    def python_policies(self) -> list[PythonPolicySpec]:
        """The merged Python policies from both files, in declaration order."""
        return list(self.python_specs)

    @property
    def gateway_version(self) -> str:
        """``gateway.version`` from build.yaml, or the builder's default."""
        if self.build and self.build.gateway and self.build.gateway.version:
            return self.build.gateway.version
        return defaults.DEFAULT_GATEWAY_VERSION
