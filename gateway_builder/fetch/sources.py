"""Per-source fetchers: a git ref, an index artifact or a local path -> a checked source tree
(or a wheel) in the cache, with what was resolved."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from gateway_builder import defaults
from gateway_builder.cache import Cache
from gateway_builder.digest import canonical_json
from gateway_builder.errors import InputError
from gateway_builder.fetch.definition import (
    describe,
)
from gateway_builder.fetch.git import fetch_git
from gateway_builder.fetch.index import IndexClient, IndexFile, file_version
from gateway_builder.fetch.sandbox import LogFn
from gateway_builder.fetch.tree import content_hash, copy_tree
from gateway_builder.fetch.wheel import build_wheel
from gateway_builder.manifest import GitSource, PathSource, PipSource, PythonPolicySpec
from gateway_builder.redact import redact_url

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


def relative_path(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` in posix form (``../x`` allowed), for portable digests."""
    try:
        return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
    except ValueError:
        return path.resolve().as_posix()


@dataclass
class SourceTree:
    root: Path  # the policy's source directory (simple or packaged source tree)
    resolved: str
    display: str
    tag: str | None = None
    commit_time: int | None = None
    moved_from: str | None = None
    wheel: Path | None = None  # index sources: the downloaded or built wheel
    source_file: str | None = None
    epoch: int = defaults.DEFAULT_SOURCE_DATE_EPOCH


def from_git(
    spec: PythonPolicySpec, src: GitSource, cache: Cache, pin: SourcePin | None
) -> SourceTree:
    origin_file = spec.origin.rsplit(":", 2)[0] if spec.origin else ""
    base_dir = Path(origin_file).parent if origin_file else Path.cwd()
    checkout = fetch_git(
        src.url,
        src.ref,
        src.subdirectory,
        cache,
        what=describe(spec),
        base_dir=base_dir,
        pin=pin.resolved if pin else None,
        pin_tag=pin.tag if pin else None,
    )
    sub = f"#subdirectory={src.subdirectory}" if src.subdirectory else ""
    return SourceTree(
        root=checkout.root,
        resolved=checkout.commit,
        display=f"git+{redact_url(src.url)}@{checkout.commit}{sub}",
        tag=checkout.tag,
        commit_time=checkout.commit_time,
        moved_from=checkout.moved_from,
        epoch=checkout.commit_time,
    )


def from_path(spec: PythonPolicySpec, src: PathSource, cache: Cache, base: Path) -> SourceTree:
    what = describe(spec)
    if not src.path.is_dir():
        raise InputError(f"{what}: directory not found: {src.path}")
    # Copy first (never following a link), then check and hash the copy: what is built is
    # exactly what was checked, whatever happens to the live directory meanwhile.
    staging_parent = cache.tree("path", "_").parent
    staging_parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".stage-", dir=staging_parent))
    try:
        copy_tree(src.path, staging, what)
        digest = content_hash(staging)
        root = cache.put_tree(
            "path",
            digest.removeprefix("sha256:"),
            lambda dest: _move_children(staging, dest),
            digest=content_hash,
            expected=digest,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # The snapshot must match what was hashed (the directory may change while we copy).
    if content_hash(root) != digest:
        raise InputError(f"{what}: {src.path} changed while it was being fetched; try again")
    return SourceTree(root=root, resolved=digest, display=f"path:{relative_path(src.path, base)}")


def _move_children(src: Path, dest: Path) -> None:
    for child in src.iterdir():
        os.replace(child, dest / child.name)


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


def from_index(
    spec: PythonPolicySpec,
    src: PipSource,
    cache: Cache,
    pin: SourcePin | None,
    *,
    host_builds: bool = False,
    log: LogFn | None = None,
) -> SourceTree:
    what = describe(spec)
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
        wheel = built_wheel(
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
                host_builds=host_builds,
                log=log,
            ),
        )
    return SourceTree(
        root=wheel.parent,
        resolved=f"sha256:{chosen[1]}",
        display=display,
        wheel=wheel,
        source_file=chosen[0],
    )


def built_wheel(cache: Cache, *, key: str, build: Any) -> Path:
    """A wheel built once per source key (the record maps the key to the wheel's sha256)."""
    record = cache.read_record("built-wheel", key)
    if record is not None:
        cached = cache.artifact(record["sha256"])
        if cached is not None:
            return cached
    wheel: Path = build()
    cache.write_record("built-wheel", key, {"sha256": wheel.parent.name})
    return wheel
