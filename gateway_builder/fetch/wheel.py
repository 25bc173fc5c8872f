"""Wheels of packaged policies: read their metadata and build them (the one place a policy's own
build code runs on the host, through the standard isolated wheel build)."""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from email.parser import BytesParser
from pathlib import Path, PurePosixPath

from packaging.requirements import InvalidRequirement, Requirement

from gateway_builder import defaults
from gateway_builder.cache import Cache
from gateway_builder.errors import BuildError, InputError
from gateway_builder.fetch.index import default_index_url
from gateway_builder.fetch.tree import copy_tree, safe_relpath
from gateway_builder.toolenv import find_python, isolated_env, run_tool, uv_binary

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
) -> Path:
    """Build a wheel from a source tree (copied to a temp dir first) or an sdist, with uv.

    The build runs in an isolated build environment (the build backend from the index),
    with ``SOURCE_DATE_EPOCH`` set so that backends that honour it produce identical bytes.
    """
    if cache.offline:
        raise InputError(f"{what}: the policy wheel is not in the cache (--offline)")
    python = find_python(python_version)
    with tempfile.TemporaryDirectory(prefix="gwb-wheel-") as tmp:
        work = Path(tmp)
        if is_sdist:
            target = work / source.name
            shutil.copyfile(source, target)
        else:
            target = work / "src"
            target.mkdir()
            copy_tree(source, target, what)
        out = work / "dist"
        cmd: list[str] = [
            uv_binary(),
            "build",
            "--wheel",
            "--out-dir",
            str(out),
            "--cache-dir",
            str(cache.subdir("uv")),
            "--quiet",
        ]
        if python is not None:
            cmd += ["--python", str(python)]
        cmd.append(str(target))
        env = isolated_env(
            {
                "SOURCE_DATE_EPOCH": str(source_date_epoch),
                "UV_DEFAULT_INDEX": index_url or default_index_url(),
            }
        )
        run_tool(cmd, env=env, what=f"{what}: building the policy wheel failed", cwd=work)
        wheels = sorted(out.glob("*.whl"))
        if len(wheels) != 1:
            raise BuildError(f"{what}: the wheel build produced {len(wheels)} wheels, expected 1")
        cached, _ = cache.put_artifact(wheels[0])
        return cached
