"""Values that cross stage boundaries and belong to no one stage: pinned requirements, a
policy's own artifact, the base images. Kept apart so that fetch, lock, bases and render can
share them without importing each other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway_builder import defaults


@dataclass(frozen=True)
class LockedRequirement:
    """One pinned distribution of a venv, with every acceptable artifact hash."""

    name: str  # canonical (PEP 503 normalized) name
    version: str
    hashes: tuple[str, ...]  # "sha256:<hex>", sorted

    def requirement_line(self) -> str:
        """The ``name==version --hash=...`` line pip's hash-checking mode wants."""
        hashes = " ".join(f"--hash={h}" for h in self.hashes)
        return f"{self.name}=={self.version} {hashes}".rstrip()


@dataclass(frozen=True)
class PolicyArtifact:
    """A packaged policy's own wheel, built or downloaded at fetch time."""

    filename: str
    sha256: str
    path: Path  # on the host (in the fetch cache)


@dataclass(frozen=True)
class PythonBase:
    """A base image providing one CPython version for the builder stages."""

    version: str  # "3.12"
    image: str
    executable: str  # interpreter path inside the image, e.g. "/usr/local/bin/python3.12"
    #: Paths copied from this image into the runtime so venvs find their interpreter.
    #: Empty when the runtime base already ships this Python at ``executable``.
    runtime_copy: tuple[str, ...] = ()


@dataclass(frozen=True)
class BaseImages:
    """Every base image the Dockerfile needs."""

    engine_builder: str | None  # None when a prebuilt engine binary is given
    pythons: tuple[PythonBase, ...]  # sorted by version
    runtime: str
    #: True when the router/engine in these bases are stand-ins (local bases).
    standin: bool = False
    #: Init process in the runtime base (the image's ENTRYPOINT runs it).
    tini: str = defaults.TINI_PATH
    #: Command that compiles the engine in the builder image; the Dockerfile appends
    #: ``-build-file FILE -out-dir DIR``.
    engine_builder_command: tuple[str, ...] = defaults.UPSTREAM_ENGINE_BUILDER_COMMAND

    def python(self, version: str) -> PythonBase:
        """The base for ``version``."""
        for base in self.pythons:
            if base.version == version:
                return base
        raise KeyError(version)
