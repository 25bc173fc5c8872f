"""Loading both manifests: YAML with positions, validation, upstream ``pipPackage`` forms,
defaults applied, cross-manifest checks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway_builder import defaults
from gateway_builder.errors import InputError, ManifestError
from gateway_builder.manifest.schema import (
    BuildManifest,
    GitSourceModel,
    PipSourceModel,
    PythonBuildManifest,
)
from gateway_builder.manifest.specs import (
    GitSource,
    GoPolicySpec,
    Manifests,
    PathSource,
    PipSource,
    PolicySource,
    PythonPolicySpec,
)
from gateway_builder.manifest.validation import expected_text, validate_model
from gateway_builder.manifest.yamlpos import PathKey, Positions, load_yaml


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _parse_pip_package(
    spec: str, where: str, pos: Positions, loc: PathKey
) -> GitSource | PipSource:
    """Map an upstream ``pipPackage`` string to a source (every upstream form)."""
    s = spec.strip()
    direct = s
    m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s+@\s+(.+)$", s)
    if m:
        direct = m.group(2).strip()
        if not direct.startswith("git+"):
            raise pos.error(loc, "unsupported direct reference: only git+ VCS specs are supported")
    if direct.startswith("git+"):
        body = direct[len("git+") :]
        body, _, fragment = body.partition("#")
        subdirectory = None
        if fragment:
            frag = dict(p.split("=", 1) for p in fragment.split("&") if "=" in p)
            subdirectory = frag.get("subdirectory") or None
        scheme, sep, rest = body.partition("://")
        if not sep:
            raise pos.error(loc, "expected 'git+<scheme>://host/repo@<ref>[#subdirectory=<dir>]'")
        netloc_path, at, ref = rest.rpartition("@")
        # An '@' inside the host part is userinfo, not a ref separator.
        if not at or "/" not in netloc_path:
            url, ref = body, "HEAD"
        else:
            url = f"{scheme}://{netloc_path}"
        try:
            GitSourceModel(url=url, ref=ref, subdirectory=subdirectory)
        except ValidationError as exc:
            raise pos.error(loc, expected_text(dict(exc.errors()[0]), GitSourceModel, ())) from None
        return GitSource(url=url, ref=ref, subdirectory=subdirectory)
    if "==" in s or "~=" in s:
        index_url = None
        req_part = s
        if "@" in s:
            req_part, _, index_url = s.partition("@")
            if "://" not in index_url:
                raise pos.error(loc, "expected '<pkg>==<ver>@<index-url>' with a full index URL")
        op = "==" if "==" in req_part else "~="
        name, _, ver = req_part.partition(op)
        name, ver = name.strip(), ver.strip()
        if op == "~=" and not re.match(r"^\d+(\.\d+)?\.0$", ver):
            raise pos.error(
                loc,
                "invalid pip spec: expected '<pkg>==<ver>', '<pkg>~=<major>.0' or '<pkg>~=<major>.<minor>.0'",
            )
        try:
            PipSourceModel(package=name, version=f"{op}{ver}", index_url=index_url)
        except ValidationError as exc:
            raise pos.error(loc, expected_text(dict(exc.errors()[0]), PipSourceModel, ())) from None
        return PipSource(package=name, version=f"{op}{ver}", index_url=index_url)
    if "@" in s:
        path, _, version = s.rpartition("@")
        segments = [p for p in path.split("/") if p]
        if not version:
            raise pos.error(loc, "short URL must contain '@version'")
        if len(segments) < 4:
            raise pos.error(
                loc, "short URL must have at least 4 path segments (host/org/repo/subdir)"
            )
        host, org, repo = segments[:3]
        subdir = "/".join(segments[3:])
        url = f"https://{host}/{org}/{repo}.git"
        return GitSource(url=url, ref=f"{subdir}/{version}", subdirectory=subdir)
    raise pos.error(
        loc,
        "unrecognized pipPackage format: expected '<pkg>==<ver>', '<pkg>~=<ver>', 'git+<url>@<ref>' or 'host/org/repo/subdir@<ver>'",
    )


def _detect_python_dir(path: Path) -> bool:
    """Upstream runtime detection: go.mod means Go; root *.py files or pyproject.toml mean Python."""
    if (path / "go.mod").exists():
        return False
    return any(path.glob("*.py")) or (path / "pyproject.toml").exists()


def load_build_manifest(
    path: Path,
) -> tuple[BuildManifest, list[PythonPolicySpec], list[GoPolicySpec]]:
    """Load build.yaml; return the model, its Python entries as specs, and its Go entries."""
    name = _display(path)
    data, pos = load_yaml(path, name)
    model: BuildManifest = validate_model(BuildManifest, data, pos)
    base = path.resolve().parent
    py_specs: list[PythonPolicySpec] = []
    go_specs: list[GoPolicySpec] = []
    for i, entry in enumerate(model.policies):
        line, col = pos.of_value(("policies", i))
        origin = f"{name}:{line}:{col}"
        source: PolicySource | None = None
        if entry.pipPackage is not None:
            source = _parse_pip_package(
                entry.pipPackage, origin, pos, ("policies", i, "pipPackage")
            )
        elif entry.filePath is not None:
            fp = (base / entry.filePath).resolve()
            if not fp.is_dir():
                raise pos.error(("policies", i, "filePath"), f"directory not found: {fp}")
            if _detect_python_dir(fp):
                source = PathSource(fp)
            else:
                go_specs.append(GoPolicySpec(entry.name, None, fp, origin))
        else:
            go_specs.append(GoPolicySpec(entry.name, entry.gomodule, None, origin))
        if source is not None:
            py_specs.append(
                PythonPolicySpec(
                    name=entry.name,
                    source=source,
                    python=None,
                    failure_mode=defaults.DEFAULT_FAILURE_MODE,
                    timeout_ms=defaults.DEFAULT_TIMEOUT_MS,
                    isolation=defaults.DEFAULT_ISOLATION,
                    workers=defaults.DEFAULT_WORKERS,
                    params={},
                    origin=origin,
                    declared_in=name,
                )
            )
    _no_duplicates([(e.name, ("policies", i, "name")) for i, e in enumerate(model.policies)], pos)
    return model, py_specs, go_specs


def load_python_manifest(path: Path) -> tuple[PythonBuildManifest, list[PythonPolicySpec]]:
    """Load python-build.yaml; return the model and its policies as specs (defaults applied)."""
    name = _display(path)
    data, pos = load_yaml(path, name)
    model: PythonBuildManifest = validate_model(PythonBuildManifest, data, pos)
    base = path.resolve().parent
    d = model.defaults
    specs: list[PythonPolicySpec] = []
    for i, entry in enumerate(model.policies):
        line, col = pos.of_value(("policies", i))
        src = entry.source
        source: PolicySource
        if src.git is not None:
            source = GitSource(src.git.url, src.git.ref, src.git.subdirectory)
        elif src.pip is not None:
            source = PipSource(src.pip.package, src.pip.version, src.pip.index_url)
        else:
            assert src.path is not None
            p = (base / src.path).resolve()
            if not p.is_dir():
                raise pos.error(("policies", i, "source", "path"), f"directory not found: {p}")
            source = PathSource(p)
        specs.append(
            PythonPolicySpec(
                name=entry.name,
                source=source,
                python=entry.python,
                failure_mode=entry.failure_mode or d.failure_mode,
                timeout_ms=entry.timeout_ms or d.timeout_ms,
                init_timeout_ms=entry.init_timeout_ms or d.init_timeout_ms,
                isolation=entry.isolation or d.isolation,
                workers=entry.workers or d.workers,
                memory_mb=entry.memory_mb or d.memory_mb,
                params=dict(entry.params),
                env=tuple(entry.env),
                origin=f"{name}:{line}:{col}",
                declared_in=name,
                default_python=d.python,
            )
        )
    _no_duplicates([(e.name, ("policies", i, "name")) for i, e in enumerate(model.policies)], pos)
    return model, specs


def _no_duplicates(names: list[tuple[str, PathKey]], pos: Positions) -> None:
    seen: dict[str, PathKey] = {}
    for name, loc in names:
        if name in seen:
            first_line, _ = pos.of_value(seen[name])
            raise pos.error(
                loc, f"duplicate policy name '{name}' (first declared at line {first_line})"
            )
        seen[name] = loc


def load_manifests(
    build_file: Path | None = None,
    python_build_file: Path | None = None,
    *,
    require: bool = True,
) -> Manifests:
    """Load both manifests (either may be absent) and check names across files.

    Missing default files are skipped; a file the user named explicitly must exist.
    """
    build_model = python_model = None
    py_from_build: list[PythonPolicySpec] = []
    go_specs: list[GoPolicySpec] = []
    py_specs: list[PythonPolicySpec] = []
    raw: dict[str, bytes] = {}
    if build_file is not None:
        build_model, py_from_build, go_specs = load_build_manifest(build_file)
        raw["build.yaml"] = build_file.read_bytes()
    if python_build_file is not None:
        python_model, py_specs = load_python_manifest(python_build_file)
        raw["python-build.yaml"] = python_build_file.read_bytes()
    if require and build_model is None and python_model is None:
        raise InputError("no manifest given: expected build.yaml and/or python-build.yaml")
    # A name declared in both files is an error; report it where the second declaration is.
    if python_build_file is not None and build_file is not None:
        build_names = {s.name: s.origin for s in py_from_build}
        build_names.update({g.name: g.origin for g in go_specs})
        for spec in py_specs:
            if spec.name in build_names:
                file, line, col = spec.origin.rsplit(":", 2)
                raise ManifestError(
                    file,
                    int(line),
                    int(col),
                    f"policies[{py_specs.index(spec)}].name",
                    f"duplicate policy name '{spec.name}' (also declared at {build_names[spec.name]})",
                )
    return Manifests(
        build_file=build_file,
        python_build_file=python_build_file,
        build=build_model,
        python=python_model,
        python_specs=py_from_build + py_specs,
        go_specs=go_specs,
        raw_texts=raw,
    )


def json_schemas() -> dict[str, Any]:
    """JSON Schemas of both manifests, for editors."""
    return {
        "build.yaml": BuildManifest.model_json_schema(),
        "python-build.yaml": PythonBuildManifest.model_json_schema(),
    }
