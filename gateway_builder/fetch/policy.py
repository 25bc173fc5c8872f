"""Fetch Python policies from git, a package index or a local path, validate them, cache them.

Every fetched policy becomes a :class:`FetchedPolicy`: either a *simple* directory (copied into
the image as ``<pkg>/``) or a *packaged* policy (a wheel with its sha256, installed into its venv).
Sources with a ``pyproject.toml`` (git or path) and every index package are packaged; the wheel is
built at fetch time so that every policy installs from a hashed artifact.

Also :func:`download_artifacts`, which fills a wheelhouse with exactly the locked artifacts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from gateway_builder import defaults
from gateway_builder.cache import Cache, sha256_text
from gateway_builder.errors import BuildError, InputError
from gateway_builder.fetch_git import fetch_git
from gateway_builder.fetch_wheel import WheelInfo, build_wheel, read_wheel
from gateway_builder.manifest import GitSource, PathSource, PipSource, PythonPolicySpec
from gateway_builder.plan import LockedRequirement, PolicyArtifact
from gateway_builder.policydef import (
    PolicyDefinition,
    describe,
    read_python_version,
    validate_policy,
)
from gateway_builder.pyindex import IndexClient, IndexFile, best_wheel, copy_into, file_version
from gateway_builder.redact import redact_url
from gateway_builder.treeutil import check_tree, content_hash, copy_tree, extract_zip
from gateway_builder.ui import UI

Kind = Literal["simple", "packaged"]
SourceType = Literal["git", "pip", "path"]
#: Timestamp given to wheel builds of path sources (1980-01-01, the zip epoch).
PATH_BUILD_EPOCH = defaults.DEFAULT_SOURCE_DATE_EPOCH


@dataclass(frozen=True)
class SourcePin:
    """What the lock recorded for a policy's source; fetch reuses it instead of re-resolving."""

    spec_digest: str
    resolved: str  # commit SHA, or "sha256:<hex>" of the index artifact
    tag: str | None = None  # git: the tag a version prefix resolved to
    filename: str | None = None  # index: the artifact's file name


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


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys (the input of every digest)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def relative_path(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` in posix form (``../x`` allowed), for portable digests."""
    try:
        return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
    except ValueError:
        return path.resolve().as_posix()


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
    return f"sha256:{sha256_text(canonical_json(data))}"


def _what(spec: PythonPolicySpec) -> str:
    return describe(spec)


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
# Per-source fetchers
# --------------------------------------------------------------------------------------------


@dataclass
class _Source:
    root: Path  # the policy's source directory (simple or packaged source tree)
    resolved: str
    display: str
    tag: str | None = None
    commit_time: int | None = None
    moved_from: str | None = None
    wheel: Path | None = None  # index sources: the downloaded or built wheel
    source_file: str | None = None
    epoch: int = defaults.DEFAULT_SOURCE_DATE_EPOCH


def _fetch_git(
    spec: PythonPolicySpec, src: GitSource, cache: Cache, pin: SourcePin | None
) -> _Source:
    origin_file = spec.origin.rsplit(":", 2)[0] if spec.origin else ""
    base_dir = Path(origin_file).parent if origin_file else Path.cwd()
    checkout = fetch_git(
        src.url,
        src.ref,
        src.subdirectory,
        cache,
        what=_what(spec),
        base_dir=base_dir,
        pin=pin.resolved if pin else None,
        pin_tag=pin.tag if pin else None,
    )
    sub = f"#subdirectory={src.subdirectory}" if src.subdirectory else ""
    return _Source(
        root=checkout.root,
        resolved=checkout.commit,
        display=f"git+{redact_url(src.url)}@{checkout.commit}{sub}",
        tag=checkout.tag,
        commit_time=checkout.commit_time,
        moved_from=checkout.moved_from,
        epoch=checkout.commit_time,
    )


def _fetch_path(spec: PythonPolicySpec, src: PathSource, cache: Cache, base: Path) -> _Source:
    what = _what(spec)
    if not src.path.is_dir():
        raise InputError(f"{what}: directory not found: {src.path}")
    check_tree(src.path, what)
    digest = content_hash(src.path)
    root = cache.put_tree(
        "path", digest.removeprefix("sha256:"), lambda dest: copy_tree(src.path, dest, what)
    )
    # The snapshot must match what was hashed (the directory may change while we copy).
    if content_hash(root) != digest:
        raise InputError(f"{what}: {src.path} changed while it was being fetched; try again")
    return _Source(root=root, resolved=digest, display=f"path:{relative_path(src.path, base)}")


def _select_index_file(
    files: list[IndexFile], spec_text: str, what: str, display: str
) -> IndexFile:
    specifier = SpecifierSet(spec_text)
    by_version: dict[Version, list[IndexFile]] = {}
    for f in files:
        version = f.version()
        if version is None or (f.yanked and not spec_text.startswith("==")):
            continue
        by_version.setdefault(version, []).append(f)
    allowed = set(specifier.filter(by_version))
    candidates = {v: fs for v, fs in by_version.items() if v in allowed}
    for version in sorted(candidates, reverse=True):
        group = candidates[version]
        wheels = sorted(
            (f for f in group if f.filename.endswith("-none-any.whl")), key=lambda f: f.filename
        )
        if wheels:
            return wheels[0]
        sdists = sorted((f for f in group if not f.is_wheel), key=lambda f: f.filename)
        if sdists:
            return sdists[0]
    raise InputError(
        f"{what}: no release matching '{spec_text or 'any'}' with a pure-Python wheel or an sdist "
        f"on {display}"
    )


def _fetch_index(
    spec: PythonPolicySpec, src: PipSource, cache: Cache, pin: SourcePin | None
) -> _Source:
    what = _what(spec)
    client = IndexClient(src.index_url)
    record_key = canonical_json([client.display, canonicalize_name(src.package), src.version])
    chosen: tuple[str, str] | None = None  # (filename, sha256)
    if pin and pin.filename:
        chosen = (pin.filename, pin.resolved.removeprefix("sha256:"))
    elif cache.offline:
        record = cache.read_record("pip", record_key)
        if record is None:
            raise InputError(
                f"{what}: {src.display()} is not in the cache (--offline); fetch it online first"
            )
        chosen = (record["filename"], record["sha256"])
    path = cache.artifact(chosen[1]) if chosen else None
    if path is None:
        files = client.project_files(src.package)
        if not files:
            raise InputError(f"{what}: package '{src.package}' not found on {client.display}")
        if chosen:
            match = [f for f in files if f.filename == chosen[0]]
            if not match:
                raise InputError(
                    f"{what}: the locked artifact {chosen[0]} is no longer on {client.display}"
                )
            file = match[0]
        else:
            file = _select_index_file(files, src.version, what, client.display)
        with tempfile.TemporaryDirectory(prefix="gwb-dl-") as tmp:
            downloaded = client.download(file, Path(tmp), chosen[1] if chosen else None)
            path, digest = cache.put_artifact(downloaded)
        chosen = (file.filename, digest)
    assert chosen is not None
    cache.write_record("pip", record_key, {"filename": chosen[0], "sha256": chosen[1]})
    version = file_version(chosen[0])
    display = f"{canonicalize_name(src.package)}=={version}"
    if src.index_url:
        display += f" ({redact_url(src.index_url)})"
    if chosen[0].endswith(".whl"):
        wheel = path
    else:
        wheel = _built_wheel(
            cache,
            key=f"sdist:{chosen[1]}",
            build=lambda: build_wheel(
                path,
                cache,
                what=what,
                python_version=spec.python or spec.default_python,
                index_url=src.index_url,
                source_date_epoch=defaults.DEFAULT_SOURCE_DATE_EPOCH,
                is_sdist=True,
            ),
        )
    return _Source(
        root=wheel.parent,
        resolved=f"sha256:{chosen[1]}",
        display=display,
        wheel=wheel,
        source_file=chosen[0],
    )


def _built_wheel(cache: Cache, *, key: str, build: Any) -> Path:
    """A wheel built once per source key (the record maps the key to the wheel's sha256)."""
    record = cache.read_record("built-wheel", key)
    if record is not None:
        cached = cache.artifact(record["sha256"])
        if cached is not None:
            return cached
    wheel: Path = build()
    cache.write_record("built-wheel", key, {"sha256": wheel.parent.name})
    return wheel


# --------------------------------------------------------------------------------------------
# fetch_policy
# --------------------------------------------------------------------------------------------


def fetch_policy(
    spec: PythonPolicySpec,
    cache: Cache,
    *,
    base: Path,
    pin: SourcePin | None = None,
) -> FetchedPolicy:
    """Fetch and validate one policy. ``base``: the lock file's directory (for portable paths)."""
    what = _what(spec)
    digest = spec_digest(spec, base)
    usable_pin = pin if pin is not None and pin.spec_digest == digest else None
    src = spec.source
    if isinstance(src, GitSource):
        got = _fetch_git(spec, src, cache, usable_pin)
    elif isinstance(src, PipSource):
        got = _fetch_index(spec, src, cache, usable_pin)
    else:
        got = _fetch_path(spec, src, cache, base)
    index_url = src.index_url if isinstance(src, PipSource) else None
    source_type: SourceType = (
        "git" if isinstance(src, GitSource) else "pip" if isinstance(src, PipSource) else "path"
    )

    wheel = got.wheel
    if wheel is None and (got.root / "pyproject.toml").is_file():
        root = got.root
        wheel = _built_wheel(
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
            ),
        )

    if wheel is not None:
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
        )
        package_dir = tree / info.top_level
        definition_dir = package_dir
        if (
            not (definition_dir / defaults.POLICY_DEFINITION_FILE).is_file()
            and (got.root / defaults.POLICY_DEFINITION_FILE).is_file()
            and got.wheel is None
        ):
            definition_dir = got.root
        policy_py = package_dir / f"{defaults.POLICY_ENTRY_MODULE}.py"
        kind: Kind = "packaged"
        module = f"{info.top_level}.{defaults.POLICY_ENTRY_MODULE}"
        package_dir_name = info.top_level
        requirements = info.requires_dist
        artifact: PolicyArtifact | None = PolicyArtifact(wheel.name, sha, wheel)
        source_dir = None
        version_folders = [got.root, package_dir] if got.wheel is None else [package_dir]
    else:
        kind = "simple"
        package_dir_name = spec.name.replace("-", "_")
        module = f"{package_dir_name}.{defaults.POLICY_ENTRY_MODULE}"
        definition_dir = got.root
        policy_py = got.root / f"{defaults.POLICY_ENTRY_MODULE}.py"
        requirements = read_requirements_txt(got.root / "requirements.txt", what)
        artifact = None
        source_dir = got.root
        version_folders = [got.root]

    definition = validate_policy(spec, definition_dir, policy_py)
    python_version = (
        spec.python or read_python_version(version_folders, what) or spec.default_python
    )
    if python_version not in defaults.SUPPORTED_PYTHONS:
        raise InputError(
            f"{what}: Python {python_version} is not supported "
            f"(expected one of {', '.join(defaults.SUPPORTED_PYTHONS)})"
        )
    return FetchedPolicy(
        name=spec.name,
        spec=spec,
        kind=kind,
        source_type=source_type,
        source_dir=source_dir,
        artifact=artifact,
        module=module,
        package_dir_name=package_dir_name,
        definition=definition,
        definition_dir=definition_dir,
        python_version=python_version,
        requirements=tuple(requirements),
        resolved=got.resolved,
        display=got.display,
        spec_digest=digest,
        tag=got.tag,
        commit_time=got.commit_time,
        moved_from=got.moved_from,
        index_url=index_url,
        source_file=got.source_file,
        tree=got.root if got.wheel is None else package_dir,
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
) -> list[FetchedPolicy]:
    """Fetch every policy (in parallel), in the order of ``specs``."""
    pins = pins or {}

    def one(spec: PythonPolicySpec) -> FetchedPolicy:
        fetched = fetch_policy(spec, cache, base=base, pin=pins.get(spec.name))
        if ui is not None:
            ui.info(
                f"fetched {fetched.name} {fetched.definition.version} ({fetched.kind}, "
                f"Python {fetched.python_version}) from {fetched.display}"
            )
        return fetched

    if len(specs) <= 1 or jobs <= 1:
        return [one(s) for s in specs]
    with ThreadPoolExecutor(max_workers=min(jobs, len(specs))) as pool:
        return list(pool.map(one, specs))


# --------------------------------------------------------------------------------------------
# Wheelhouse
# --------------------------------------------------------------------------------------------


def download_artifacts(
    requirements: Sequence[LockedRequirement],
    python_version: str,
    platform: str,
    dest_dir: Path,
    *,
    cache: Cache,
    index_url: str | None = None,
) -> list[Path]:
    """Place exactly the locked artifacts for a target into ``dest_dir``; return their paths.

    For each requirement, one wheel whose sha256 is in the lock's hashes and whose tags install
    on CPython ``python_version`` / manylinux ``platform``. Downloads are verified and cached by
    sha256; a cached file is reused without touching the network.
    """
    out: list[Path] = []
    client: IndexClient | None = None
    for req in requirements:
        wanted = {h.removeprefix("sha256:") for h in req.hashes}
        cached = [(h, p) for h in sorted(wanted) if (p := cache.artifact(h)) is not None]
        names = [p.name for _, p in cached]
        best = best_wheel(names, python_version, platform)
        if best is not None:
            path = next(p for _, p in cached if p.name == best)
            out.append(copy_into(path, dest_dir))
            continue
        if cache.offline:
            raise InputError(
                f"{req.name}=={req.version}: no wheel for Python {python_version} / {platform} in "
                "the cache (--offline)"
            )
        client = client or IndexClient(index_url)
        files = [
            f
            for f in client.project_files(req.name)
            if f.sha256 in wanted or (f.sha256 is None and file_version(f.filename) is not None)
        ]
        by_name = {f.filename: f for f in files if str(file_version(f.filename)) == req.version}
        best = best_wheel(sorted(by_name), python_version, platform)
        if best is None:
            raise BuildError(
                f"{req.name}=={req.version}: the lock has no wheel that installs on Python "
                f"{python_version} / {platform} (only an sdist?); building sdists of dependencies "
                "is not supported"
            )
        file = by_name[best]
        with tempfile.TemporaryDirectory(prefix="gwb-dl-") as tmp:
            downloaded = client.download(file, Path(tmp))
            path, digest = cache.put_artifact(downloaded)
        if digest not in wanted:
            raise BuildError(
                f"sha256 mismatch for {best}: the lock allows {', '.join(sorted(wanted))}, "
                f"downloaded {digest}"
            )
        out.append(copy_into(path, dest_dir))
    return out


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


def command(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    """``gateway-builder fetch``: fetch and validate every Python policy into the cache."""
    from gateway_builder import pipeline

    ctx = pipeline.open_context(args)
    with ui.step("fetch"):
        fetched = pipeline.fetch_for(ctx, ui)
    result = {
        "ok": True,
        "cache_dir": str(ctx.cache.root),
        "policies": [summary(f) for f in fetched],
    }
    lines = [
        f"{f.name:<24} {f.definition.version:<9} {f.kind:<9} py{f.python_version:<5} "
        f"{_short(f.resolved)}  {f.display}"
        for f in fetched
    ]
    ui.result(result, "\n".join(lines) if lines else "no Python policies")
    return result


def _short(resolved: str) -> str:
    value = resolved.removeprefix("sha256:")
    return value[:12] if re.fullmatch(r"[0-9a-f]{40,64}", value) else value
