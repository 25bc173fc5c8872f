"""Wheels of packaged policies: read their metadata and build them (the one place a policy's own
build code runs: in a sandbox container, or on the host with ``--allow-host-builds``)."""

from __future__ import annotations

import os
import re
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from email.parser import BytesParser
from pathlib import Path, PurePosixPath

from packaging.requirements import InvalidRequirement, Requirement

from gateway_builder import defaults
from gateway_builder.cache import Cache
from gateway_builder.errors import BuildError, InputError
from gateway_builder.fetch.sandbox import (
    LogFn,
    build_in_sandbox,
    build_on_host,
    build_requirements,
    fetch_build_wheels,
)
from gateway_builder.fetch.tree import copy_tree, extract_tar, extract_zip, safe_relpath

_EXTRA_MARKER_RE = re.compile(r"\bextra\s*==")


@dataclass(frozen=True)
class WheelInfo:
    """What the builder reads from a policy wheel."""

    name: str
    version: str
    requires_dist: tuple[str, ...]  # without extras-only requirements
    requires_python: str | None
    top_level: str  # the package holding policy.py


def read_wheel(path: Path, what: str) -> WheelInfo:
    """Metadata and the policy package of a wheel (nothing is imported or executed)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise InputError(f"{what}: {path.name} is not a valid wheel") from None
    with zf:
        names = [str(safe_relpath(n, what)) for n in zf.namelist()]
        dist_infos = sorted(
            {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
        )
        if len(dist_infos) != 1:
            raise InputError(f"{what}: {path.name} must contain exactly one .dist-info directory")
        meta = BytesParser().parsebytes(zf.read(f"{dist_infos[0]}/METADATA"))
        top_level_txt = f"{dist_infos[0]}/top_level.txt"
        declared: list[str] = []
        if top_level_txt in names:
            declared = [
                ln.strip() for ln in zf.read(top_level_txt).decode().splitlines() if ln.strip()
            ]
    with_policy = sorted(
        {
            PurePosixPath(n).parts[0]
            for n in names
            if len(PurePosixPath(n).parts) == 2
            and PurePosixPath(n).parts[1] == f"{defaults.POLICY_ENTRY_MODULE}.py"
        }
    )
    top = next((d for d in declared if d in with_policy), None)
    if top is None:
        if not with_policy:
            raise InputError(
                f"{what}: {path.name} has no top-level package containing "
                f"{defaults.POLICY_ENTRY_MODULE}.py"
            )
        if len(with_policy) > 1:
            raise InputError(
                f"{what}: {path.name} has several packages with policy.py: {', '.join(with_policy)}"
            )
        top = with_policy[0]
    requires = []
    for line in meta.get_all("Requires-Dist") or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            raise InputError(f"{what}: {path.name}: invalid Requires-Dist {line!r}") from None
        if req.marker is not None and _EXTRA_MARKER_RE.search(str(req.marker)):
            continue
        requires.append(str(req))
    return WheelInfo(
        name=str(meta.get("Name", "")),
        version=str(meta.get("Version", "")),
        requires_dist=tuple(requires),
        requires_python=meta.get("Requires-Python"),
        top_level=top,
    )


def build_wheel(
    source: Path,
    cache: Cache,
    *,
    what: str,
    python_version: str,
    index_url: str | None,
    source_date_epoch: int,
    is_sdist: bool = False,
    host_builds: bool = False,
    log: LogFn | None = None,
) -> Path:
    """Build a wheel from a source tree or an sdist; the policy's build code never runs on this
    machine unless ``host_builds`` (``--allow-host-builds``).

    The source is copied (or the sdist extracted) and checked first; the build requirements are
    fetched as wheels on the host; the build backend then runs in a sandbox container
    (:mod:`.sandbox`), with ``SOURCE_DATE_EPOCH`` set so that backends that honour it produce
    identical bytes.
    """
    if cache.offline:
        raise InputError(f"{what}: the policy wheel is not in the cache (--offline)")
    with tempfile.TemporaryDirectory(prefix="gwb-wheel-") as tmp:
        work = Path(tmp)
        src = work / "src"
        src.mkdir()
        if is_sdist:
            _unpack_sdist(source, work / "unpacked", src, what)
        else:
            copy_tree(source, src, what)
        wheels = work / "build-wheels"
        wheels.mkdir()
        fetch_build_wheels(
            build_requirements(src, what),
            wheels,
            cache,
            python_version=python_version,
            index_url=index_url,
            what=what,
        )
        out = work / "dist"
        out.mkdir()
        if host_builds:
            build_on_host(
                src, wheels, out, python_version=python_version, epoch=source_date_epoch, what=what
            )
        else:
            build_in_sandbox(
                src,
                wheels,
                out,
                python_version=python_version,
                epoch=source_date_epoch,
                what=what,
                log=log or (lambda _: None),
            )
        built = sorted(p for p in out.iterdir() if not p.name.startswith("."))  # uv: .gitignore
        if len(built) != 1 or built[0].suffix != ".whl":
            raise BuildError(
                f"{what}: the wheel build produced {', '.join(p.name for p in built) or 'nothing'}"
                ", expected one wheel"
            )
        if not stat.S_ISREG(built[0].lstat().st_mode):
            raise BuildError(f"{what}: the wheel build produced {built[0].name}, not a file")
        cached, _ = cache.put_artifact(built[0])
        return cached


def _unpack_sdist(archive: Path, unpacked: Path, src: Path, what: str) -> None:
    """Extract an sdist (checked like any untrusted tree) into ``src``."""
    unpacked.mkdir()
    if archive.name.endswith(".zip"):
        extract_zip(archive, unpacked, what)
    else:
        extract_tar(archive, unpacked, what)
    entries = list(unpacked.iterdir())
    root = entries[0] if len(entries) == 1 and entries[0].is_dir() else unpacked
    for child in root.iterdir():
        os.replace(child, src / child.name)
