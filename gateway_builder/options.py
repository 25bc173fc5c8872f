"""Typed, frozen options: what a command asks the library to do, built once from flags.

``gateway_builder.commands`` turns the command line (plus environment and defaults) into these
values; everything below it takes them as arguments and never sees ``argparse``. The value
parsers here are pure so that the CLI and tests check a flag the same way.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway_builder import defaults
from gateway_builder.errors import InputError

_PY_VERSION = re.compile(r"^3\.\d{1,2}$")


class Stage(enum.IntEnum):
    """Pipeline stages in order; ``pipeline.run(..., until=Stage.X)`` stops after X."""

    FETCH = 1
    LOCK = 2
    RENDER = 3
    BUILD = 4
    SMOKE = 5


@dataclass(frozen=True)
class SessionOptions:
    """What every pipeline command opens: the manifests, the fetch cache and the lock file."""

    build_file: Path | None = None
    python_build_file: Path | None = None
    cache_dir: Path | None = None
    offline: bool = False
    #: None: ``python-build.lock`` next to the Python manifest.
    lock_file: Path | None = None
    #: Run policies' build code on this machine (``--allow-host-builds``) instead of a sandbox.
    allow_host_builds: bool = False

    def manifest_paths(self) -> tuple[Path | None, Path | None]:
        """The manifests to load: the explicit ones, else the defaults that exist."""
        build, python_build = self.build_file, self.python_build_file
        if build is None and python_build is None:
            if defaults.DEFAULT_BUILD_FILE.exists():
                build = defaults.DEFAULT_BUILD_FILE
            if defaults.DEFAULT_PYTHON_BUILD_FILE.exists():
                python_build = defaults.DEFAULT_PYTHON_BUILD_FILE
            if build is None and python_build is None:
                raise InputError(
                    f"no manifests found: expected {defaults.DEFAULT_BUILD_FILE} and/or "
                    f"{defaults.DEFAULT_PYTHON_BUILD_FILE}, or pass --build-file / "
                    "--python-build-file"
                )
        return build, python_build


@dataclass(frozen=True)
class LockOptions:
    """How to lock: resolver, target platforms and what to re-resolve."""

    resolver: str = defaults.DEFAULT_RESOLVER
    platforms: tuple[str, ...] = ()
    upgrade: bool = False
    upgrade_policies: tuple[str, ...] = ()
    upgrade_packages: tuple[str, ...] = ()
    #: False for ``lock --check`` and ``--locked``: the lock is verified (stale environments are
    #: reported), never re-resolved or written.
    resolve: bool = True
    jobs: int = 4


@dataclass(frozen=True)
class BaseImageOptions:
    """Which base images the Dockerfile starts from (upstream defaults or local bases)."""

    #: "upstream" (the default images of gateway.version) or "local" (built from Debian).
    kind: str = "upstream"
    registry_mirror: str | None = None
    builder_image: str | None = None
    runtime_image: str | None = None
    #: Python version -> image, each replacing one default Python base.
    python_images: Mapping[str, str] = field(default_factory=dict)
    #: Python version -> interpreter prefix for a local base.
    python_prefixes: Mapping[str, Path] = field(default_factory=dict)
    #: A prebuilt engine binary is given, so no engine builder image is needed.
    prebuilt_engine: bool = False
    #: tini's path in the runtime image (None: the base's own).
    tini: str | None = None


@dataclass(frozen=True)
class LocalBasesOptions:
    """``bases build``: which local bases to build."""

    pythons: tuple[str, ...] = (defaults.DEFAULT_PYTHON,)
    python_prefixes: Mapping[str, Path] = field(default_factory=dict)
    rebuild: bool = False


@dataclass(frozen=True)
class RenderOptions:
    """What goes into the build context beyond the lock."""

    platform: str = defaults.DEFAULT_PLATFORM
    policy_engine: Path | None = None
    labels: tuple[tuple[str, str], ...] = ()
    source_date_epoch: int | None = None


@dataclass(frozen=True)
class SmokeOptions:
    """How to smoke-test an image."""

    timeout: float = defaults.SMOKE_READY_TIMEOUT_S
    transport: str = "auto"


@dataclass(frozen=True)
class BuildOptions:
    """One ``build``: every stage's options and where to stop."""

    session: SessionOptions = field(default_factory=SessionOptions)
    lock: LockOptions = field(default_factory=LockOptions)
    bases: BaseImageOptions = field(default_factory=BaseImageOptions)
    render: RenderOptions = field(default_factory=RenderOptions)
    smoke: SmokeOptions = field(default_factory=SmokeOptions)
    tags: tuple[str, ...] = ()
    no_cache: bool = False
    #: Where to keep the rendered context (None: a temporary directory).
    out: Path | None = None
    #: Build this already rendered context instead of running the front half.
    from_context: Path | None = None
    until: Stage = Stage.SMOKE
    #: Keep the builder stages' step images (the layer cache) instead of removing them.
    keep_stages: bool = False


@dataclass(frozen=True)
class NewPolicyOptions:
    """``new-policy``: the policy to scaffold and where."""

    name: str
    #: Phases the policy implements (``defaults.SCAFFOLD_PHASES``), in the order given.
    phases: tuple[str, ...] = defaults.DEFAULT_SCAFFOLD_PHASES
    #: Written to ``python_version.txt`` when given (else the manifest's default applies).
    python: str | None = None
    #: The directory to create (None: ``./NAME``).
    out: Path | None = None


@dataclass(frozen=True)
class PolicyEnvOptions:
    """Where the test harness gets a policy's venv: its lock entry or its requirements."""

    #: None: ``python_version.txt``, else the lock's version, else the default.
    python: str | None = None
    #: Install the pins (with hashes) this lock has for the policy instead of resolving its
    #: requirements.
    lock_file: Path | None = None
    cache_dir: Path | None = None


@dataclass(frozen=True)
class PolicyTestOptions:
    """``test-policy``: run a policy's samples through the real executor."""

    policy_dir: Path
    env: PolicyEnvOptions = field(default_factory=PolicyEnvOptions)
    #: Rerun whenever a file of the policy changes.
    watch: bool = False
    #: ``--watch``: stop after this many runs (None: until interrupted).
    max_runs: int | None = None
    poll_interval: float = defaults.WATCH_POLL_S


@dataclass(frozen=True)
class DescribePolicyOptions:
    """``describe-policy``: what to describe and how."""

    policy_dir: Path
    #: "markdown" or "json".
    format: str = "markdown"


# --- value parsers ----------------------------------------------------------------------------


def parse_labels(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE`` strings -> sorted pairs."""
    out = []
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--label {value!r}: expected KEY=VALUE")
        out.append((key.strip(), val))
    return tuple(sorted(out))


def check_python_version(version: str, flag: str = "--python") -> str:
    """A supported ``3.X`` version, else InputError."""
    if not _PY_VERSION.match(version) or version not in defaults.SUPPORTED_PYTHONS:
        raise InputError(
            f"{flag} {version}: expected one of {', '.join(defaults.SUPPORTED_PYTHONS)}"
        )
    return version


def python_version_key(version: str) -> tuple[int, ...]:
    """Sort key of an ``X.Y`` version, so that 3.10 sorts after 3.9."""
    return tuple(int(part) for part in version.split("."))


def parse_python_images(values: Sequence[str]) -> dict[str, str]:
    """``VERSION=IMAGE`` flags -> {version: image}."""
    out: dict[str, str] = {}
    for value in values:
        version, sep, image = value.partition("=")
        version, image = version.strip(), image.strip()
        if not sep or not _PY_VERSION.match(version) or not image:
            raise InputError(
                f"--python-image {value!r}: expected VERSION=IMAGE, e.g. 3.12=python:3.12-slim"
            )
        if version not in defaults.SUPPORTED_PYTHONS:
            raise InputError(
                f"--python-image {value!r}: Python {version} is not supported "
                f"({', '.join(defaults.SUPPORTED_PYTHONS)})"
            )
        if version in out and out[version] != image:
            raise InputError(f"--python-image: two images for Python {version}")
        out[version] = image
    return out


def parse_python_prefixes(values: Sequence[str]) -> dict[str, Path]:
    """``VERSION=DIR`` flags -> {version: prefix}."""
    out: dict[str, Path] = {}
    for value in values:
        version, sep, path = value.partition("=")
        version, path = version.strip(), path.strip()
        if not sep or not path:
            raise InputError(f"--python-prefix {value}: expected VERSION=DIR, e.g. 3.12=/opt/py312")
        check_python_version(version, "--python-prefix")
        out[version] = Path(path).expanduser()
    return out


def check_tini(path: str | None) -> str | None:
    """``--tini``: an absolute path in the runtime image."""
    if path is not None and not path.startswith("/"):
        raise InputError(f"--tini {path!r}: expected an absolute path in the runtime image")
    return path


def check_tags(tags: Sequence[str]) -> tuple[str, ...]:
    """``--tag`` values (``name[:tag]``)."""
    # Imported here: the Docker SDK takes a noticeable part of a second to import, and most
    # commands (test-policy's warm run above all) never parse a tag.
    from docker.utils import parse_repository_tag

    out = []
    for tag in tags:
        repo, version = parse_repository_tag(tag)
        if not repo or repo != repo.lower() or " " in tag or (version is not None and not version):
            raise InputError(
                f"--tag {tag!r}: expected NAME[:TAG] in lower case, e.g. my/gateway:1.0"
            )
        out.append(tag)
    return tuple(out)
