"""Fetch Python policies (sources in :mod:`.sources`), validate them, cache them.

Every fetched policy becomes a :class:`FetchedPolicy`: either a *simple* directory (copied into
the image as ``<pkg>/``) or a *packaged* policy (a wheel with its sha256, installed into its venv).
Sources with a ``pyproject.toml`` (git or path) and every index package are packaged; the wheel is
built at fetch time so that every policy installs from a hashed artifact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from gateway_builder import defaults
from gateway_builder.cache import Cache
from gateway_builder.digest import value_digest
from gateway_builder.errors import InputError
from gateway_builder.fetch.definition import (
    PolicyDefinition,
    describe,
    read_python_version,
    validate_policy,
)
from gateway_builder.fetch.sandbox import LogFn
from gateway_builder.fetch.sources import (
    SourcePin,
    SourceTree,
    built_wheel,
    from_git,
    from_index,
    from_path,
    relative_path,
)
from gateway_builder.fetch.tree import content_hash, extract_zip
from gateway_builder.fetch.wheel import WheelInfo, build_wheel, read_wheel
from gateway_builder.manifest import GitSource, PathSource, PipSource, PythonPolicySpec
from gateway_builder.models import PolicyArtifact
from gateway_builder.redact import redact_url
from gateway_builder.ui import UI

Kind = Literal["simple", "packaged"]
SourceType = Literal["git", "pip", "path"]


@dataclass(frozen=True)
class FetchedPolicy:
    """One fetched, validated policy: everything lock and plan need."""

    name: str
    spec: PythonPolicySpec
    kind: Kind
    source_type: SourceType
    #: Simple policy: the directory to copy (in the cache). None for packaged policies.
    source_dir: Path | None
    #: Packaged policy: its wheel in the cache. None for simple policies.
    artifact: PolicyArtifact | None
    module: str  # "<pkg>.policy"
    package_dir_name: str  # simple: name with '-' -> '_'; packaged: the wheel's top-level package
    definition: PolicyDefinition
    definition_dir: Path  # holds policy-definition.yaml
    python_version: str
    requirements: tuple[str, ...]  # resolver input: requirements.txt lines or Requires-Dist
    resolved: str  # commit SHA, "sha256:<hex>" of the index artifact, or the path's content hash
    display: str  # redacted provenance (for labels and the registry)
    spec_digest: str
    tag: str | None = None  # git: the exact tag the ref resolved to
    commit_time: int | None = None  # git: committer time of the commit
    moved_from: str | None = None  # git: the locked commit of a tag that has moved
    index_url: str | None = field(default=None, repr=False)  # may carry credentials: never print
    source_file: str | None = None  # index: the downloaded file name (wheel or sdist)
    #: The fetched tree (source root, or the wheel's extracted package): samples/, tests/.
    tree: Path | None = None

    @property
    def locked_artifact_sha256(self) -> str | None:
        """The policy wheel's sha256 when it is the downloaded artifact itself (index wheels).

        Wheels built here (git/path sources, sdists) are identified by their source (commit,
        content hash, sdist sha256): a newer build backend may produce other bytes from the same
        source, so their hash is not an input of the lock.
        """
        if self.artifact is not None and self.source_file == self.artifact.filename:
            return self.artifact.sha256
        return None


# --------------------------------------------------------------------------------------------
# Digests and display
# --------------------------------------------------------------------------------------------


def source_descriptor(spec: PythonPolicySpec, base: Path) -> dict[str, Any]:
    """The manifest's source of a policy as portable, credential-free data."""
    src = spec.source
    if isinstance(src, GitSource):
        return {
            "type": "git",
            "url": redact_url(src.url),
            "ref": src.ref,
            "subdirectory": src.subdirectory or "",
        }
    if isinstance(src, PipSource):
        return {
            "type": "pip",
            "package": canonicalize_name(src.package),
            "version": str(SpecifierSet(src.version)),
            "index_url": redact_url(src.index_url) if src.index_url else "",
        }
    return {"type": "path", "path": relative_path(src.path, base)}


def spec_digest(spec: PythonPolicySpec, base: Path) -> str:
    """Digest of what the manifest says about a policy's source and Python version."""
    data = {
        "name": spec.name,
        "source": source_descriptor(spec, base),
        "python": spec.python or "",
        "default_python": spec.default_python,
    }
    return value_digest(data)


# --------------------------------------------------------------------------------------------
# requirements.txt of simple policies
# --------------------------------------------------------------------------------------------


def read_requirements_txt(path: Path, what: str) -> tuple[str, ...]:
    """Requirement specifiers from a policy's requirements.txt (options and URLs are refused)."""
    if not path.is_file():
        return ()
    out: list[str] = []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, raw in enumerate(lines, 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise InputError(
                f"{what}: requirements.txt:{number}: options such as {line.split()[0]} are not "
                "supported (only requirement specifiers; indexes come from the manifest)"
            )
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise InputError(f"{what}: requirements.txt:{number}: {exc}") from None
        if req.url:
            raise InputError(
                f"{what}: requirements.txt:{number}: direct references ({req.name} @ ...) cannot "
                "be locked with hashes; publish the package to an index"
            )
        out.append(str(req))
    return tuple(out)


# --------------------------------------------------------------------------------------------
# fetch_policy
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Where a fetched policy's parts are: its module, definition, requirements, artifact."""

    kind: Kind
    module: str
    package_dir_name: str
    definition_dir: Path
    policy_py: Path
    requirements: tuple[str, ...]
    artifact: PolicyArtifact | None
    source_dir: Path | None
    version_folders: list[Path]
    tree: Path


def _packaged_layout(
    got: SourceTree, wheel: Path, cache: Cache, what: str, src: GitSource | PipSource | PathSource
) -> _Layout:
    info: WheelInfo = read_wheel(wheel, what)
    if isinstance(src, PipSource) and canonicalize_name(info.name) != canonicalize_name(
        src.package
    ):
        raise InputError(
            f"{what}: the artifact's metadata names '{info.name}', expected '{src.package}'"
        )
    sha = wheel.parent.name
    tree = cache.put_tree(
        "wheel",
        f"{sha}-{info.top_level}",
        lambda dest: _extract_package(wheel, dest, what, info.top_level),
        digest=content_hash,
    )
    package_dir = tree / info.top_level
    definition_dir = package_dir
    if (
        not (definition_dir / defaults.POLICY_DEFINITION_FILE).is_file()
        and (got.root / defaults.POLICY_DEFINITION_FILE).is_file()
        and got.wheel is None
    ):
        definition_dir = got.root
    return _Layout(
        kind="packaged",
        module=f"{info.top_level}.{defaults.POLICY_ENTRY_MODULE}",
        package_dir_name=info.top_level,
        definition_dir=definition_dir,
        policy_py=package_dir / f"{defaults.POLICY_ENTRY_MODULE}.py",
        requirements=tuple(info.requires_dist),
        artifact=PolicyArtifact(wheel.name, sha, wheel),
        source_dir=None,
        version_folders=[got.root, package_dir] if got.wheel is None else [package_dir],
        tree=got.root if got.wheel is None else package_dir,
    )


def _simple_layout(spec: PythonPolicySpec, got: SourceTree, what: str) -> _Layout:
    package_dir_name = spec.name.replace("-", "_")
    return _Layout(
        kind="simple",
        module=f"{package_dir_name}.{defaults.POLICY_ENTRY_MODULE}",
        package_dir_name=package_dir_name,
        definition_dir=got.root,
        policy_py=got.root / f"{defaults.POLICY_ENTRY_MODULE}.py",
        requirements=read_requirements_txt(got.root / "requirements.txt", what),
        artifact=None,
        source_dir=got.root,
        version_folders=[got.root],
        tree=got.root,
    )


def fetch_policy(
    spec: PythonPolicySpec,
    cache: Cache,
    *,
    base: Path,
    pin: SourcePin | None = None,
    host_builds: bool = False,
    log: LogFn | None = None,
) -> FetchedPolicy:
    """Fetch and validate one policy. ``base``: the lock file's directory (for portable paths).

    ``host_builds``: run a policy's build code on this machine instead of a sandbox container
    (``--allow-host-builds``); ``log`` gets progress lines (e.g. a sandbox image being built).
    """
    what = describe(spec)
    digest = spec_digest(spec, base)
    usable_pin = pin if pin is not None and pin.spec_digest == digest else None
    src = spec.source
    if isinstance(src, GitSource):
        got = from_git(spec, src, cache, usable_pin)
    elif isinstance(src, PipSource):
        got = from_index(spec, src, cache, usable_pin, host_builds=host_builds, log=log)
    else:
        got = from_path(spec, src, cache, base)
    index_url = src.index_url if isinstance(src, PipSource) else None
    source_type: SourceType = (
        "git" if isinstance(src, GitSource) else "pip" if isinstance(src, PipSource) else "path"
    )

    wheel = got.wheel
    if wheel is None and (got.root / "pyproject.toml").is_file():
        root = got.root
        wheel = built_wheel(
            cache,
            key=f"tree:{content_hash(root)}",
            build=lambda: build_wheel(
                root,
                cache,
                what=what,
                python_version=spec.python
                or read_python_version([root], what)
                or spec.default_python,
                index_url=index_url,
                source_date_epoch=got.epoch,
                host_builds=host_builds,
                log=log,
            ),
        )
    layout = (
        _packaged_layout(got, wheel, cache, what, src)
        if wheel is not None
        else _simple_layout(spec, got, what)
    )
    definition = validate_policy(spec, layout.definition_dir, layout.policy_py)
    python_version = (
        spec.python or read_python_version(layout.version_folders, what) or spec.default_python
    )
    if python_version not in defaults.SUPPORTED_PYTHONS:
        raise InputError(
            f"{what}: Python {python_version} is not supported "
            f"(expected one of {', '.join(defaults.SUPPORTED_PYTHONS)})"
        )
    return FetchedPolicy(
        name=spec.name,
        spec=spec,
        kind=layout.kind,
        source_type=source_type,
        source_dir=layout.source_dir,
        artifact=layout.artifact,
        module=layout.module,
        package_dir_name=layout.package_dir_name,
        definition=definition,
        definition_dir=layout.definition_dir,
        python_version=python_version,
        requirements=layout.requirements,
        resolved=got.resolved,
        display=got.display,
        spec_digest=digest,
        tag=got.tag,
        commit_time=got.commit_time,
        moved_from=got.moved_from,
        index_url=index_url,
        source_file=got.source_file,
        tree=layout.tree,
    )


def _extract_package(wheel: Path, dest: Path, what: str, top: str) -> None:
    extract_zip(wheel, dest, what, only=top)


def fetch_policies(
    specs: Sequence[PythonPolicySpec],
    cache: Cache,
    *,
    base: Path,
    pins: Mapping[str, SourcePin] | None = None,
    ui: UI | None = None,
    jobs: int = 4,
    host_builds: bool = False,
) -> list[FetchedPolicy]:
    """Fetch every policy (in parallel), in the order of ``specs``; ``host_builds``: see
    :func:`fetch_policy`."""
    pins = pins or {}

    def one(spec: PythonPolicySpec) -> FetchedPolicy:
        fetched = fetch_policy(
            spec,
            cache,
            base=base,
            pin=pins.get(spec.name),
            host_builds=host_builds,
            log=ui.info if ui is not None else None,
        )
        if ui is not None:
            tag = f"tag {fetched.tag}, " if fetched.tag else ""
            ui.info(
                f"fetched {fetched.name} {fetched.definition.version} ({tag}{fetched.kind}, "
                f"Python {fetched.python_version}) from {fetched.display}"
            )
        return fetched

    if len(specs) <= 1 or jobs <= 1:
        return [one(s) for s in specs]
    with ThreadPoolExecutor(max_workers=min(jobs, len(specs))) as pool:
        return list(pool.map(one, specs))


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def summary(fetched: FetchedPolicy) -> dict[str, Any]:
    """A JSON-able description of one fetched policy (no credentials)."""
    return {
        "name": fetched.name,
        "version": fetched.definition.version,
        "kind": fetched.kind,
        "source": fetched.display,
        "resolved": fetched.resolved,
        "tag": fetched.tag,
        "python": fetched.python_version,
        "module": fetched.module,
        "requirements": list(fetched.requirements),
        "artifact": (
            {"filename": fetched.artifact.filename, "sha256": fetched.artifact.sha256}
            if fetched.artifact
            else None
        ),
    }
