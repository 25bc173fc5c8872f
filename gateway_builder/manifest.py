"""The two manifests: ``build.yaml`` (upstream schema) and ``python-build.yaml``.

Pydantic models (strict: unknown keys and wrong types are errors) plus a loader that turns every
problem into one :class:`~gateway_builder.errors.ManifestError` naming file, line, column and field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway_builder import defaults
from gateway_builder.errors import InputError, ManifestError
from gateway_builder.redact import redact_url
from gateway_builder.yamlpos import PathKey, Positions, format_path, load_yaml

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
PYTHON_RE = re.compile(r"^3\.(\d{1,2})$")
_GIT_REF_RE = re.compile(r"^[A-Za-z0-9._/+-]+$")

FailureMode = Literal["fail", "skip"]
Isolation = Literal["worker", "per-call"]


def _check_name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            "expected a policy name of lowercase letters, digits, '-' or '_' (at most 63 characters)"
        )
    return value


def _check_python(value: str) -> str:
    if value not in defaults.SUPPORTED_PYTHONS:
        raise ValueError(
            f"expected a Python version, one of {', '.join(defaults.SUPPORTED_PYTHONS)}"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --------------------------------------------------------------------------------------------
# build.yaml (upstream schema)
# --------------------------------------------------------------------------------------------


class GatewayImages(_Strict):
    """Base image overrides read by the upstream CLI."""

    builder: str | None = None
    controller: str | None = None
    runtime: str | None = None


class GatewayBlock(_Strict):
    """The optional ``gateway`` block of build.yaml."""

    version: str | None = None
    images: GatewayImages | None = None


class BuildPolicyEntry(_Strict):
    """One ``policies[]`` entry of build.yaml: a name and exactly one source."""

    name: Annotated[str, Field(min_length=1)]
    filePath: str | None = None  # upstream field name
    gomodule: str | None = None
    pipPackage: str | None = None  # upstream field name
    version: str | None = None  # legacy CLI field, accepted and ignored

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value)

    @model_validator(mode="after")
    def _one_source(self) -> BuildPolicyEntry:
        given = [k for k in ("filePath", "gomodule", "pipPackage") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("expected exactly one of filePath, gomodule, pipPackage")
        return self

    @field_validator("gomodule")
    @classmethod
    def _gomodule(cls, value: str | None) -> str | None:
        if value is None:
            return value
        module, sep, ref = value.rpartition("@")
        if not sep or not module or not ref or " " in value:
            raise ValueError("expected a Go module query 'module/path@ref'")
        return value

    @field_validator("filePath", "pipPackage")
    @classmethod
    def _non_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("expected a non-empty string")
        return value


class BuildManifest(_Strict):
    """``build.yaml``: the upstream gateway build file (version v1)."""

    version: Literal["v1"]
    gateway: GatewayBlock | None = None
    versionResolution: str | None = None  # legacy CLI field, accepted
    policies: Annotated[list[BuildPolicyEntry], Field(min_length=1)]


# --------------------------------------------------------------------------------------------
# python-build.yaml
# --------------------------------------------------------------------------------------------


class Defaults(_Strict):
    """Defaults applied to every Python policy."""

    python: str = defaults.DEFAULT_PYTHON
    failure_mode: FailureMode = "fail"
    timeout_ms: Annotated[int, Field(gt=0, le=3_600_000)] = defaults.DEFAULT_TIMEOUT_MS
    isolation: Isolation = "worker"
    workers: Annotated[int, Field(ge=1, le=64)] = defaults.DEFAULT_WORKERS

    @field_validator("python")
    @classmethod
    def _py(cls, value: str) -> str:
        return _check_python(value)


class GitSourceModel(_Strict):
    """``source.git``: a git repository, a ref and an optional subdirectory."""

    url: Annotated[str, Field(min_length=1)]
    ref: Annotated[str, Field(min_length=1)] = "HEAD"
    subdirectory: str | None = None

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str) -> str:
        if not _GIT_REF_RE.match(value) or ".." in value:
            raise ValueError("expected a git tag, branch or commit (no spaces or '..')")
        return value

    @field_validator("subdirectory")
    @classmethod
    def _subdir(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = Path(value).parts
        if not value.strip() or Path(value).is_absolute() or ".." in parts:
            raise ValueError("expected a relative path inside the repository (no '..')")
        return value


class PipSourceModel(_Strict):
    """``source.pip``: a package on an index with a PEP 440 version specifier."""

    package: Annotated[str, Field(min_length=1)]
    version: str = ""
    index_url: str | None = None

    @field_validator("package")
    @classmethod
    def _package(cls, value: str) -> str:
        try:
            req = Requirement(value)
        except InvalidRequirement:
            raise ValueError("expected a distribution name (PEP 508)") from None
        if req.specifier or req.url or req.marker or req.extras:
            raise ValueError("expected a bare distribution name; put the version in 'version'")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        try:
            SpecifierSet(value)
        except InvalidSpecifier:
            raise ValueError(
                "expected a PEP 440 version specifier such as '==1.2.0' or '~=1.2'"
            ) from None
        return value

    @field_validator("index_url")
    @classmethod
    def _index(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(https?|file)://\S+$", value):
            raise ValueError("expected an http(s):// or file:// index URL")
        return value


class SourceModel(_Strict):
    """``source``: exactly one of ``git``, ``pip`` or ``path``."""

    git: GitSourceModel | None = None
    pip: PipSourceModel | None = None
    path: Annotated[str, Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SourceModel:
        given = [k for k in ("git", "pip", "path") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("expected exactly one of git, pip, path")
        return self


class PythonPolicyEntry(_Strict):
    """One ``policies[]`` entry of python-build.yaml."""

    name: str
    source: SourceModel
    python: str | None = None
    failure_mode: FailureMode | None = None
    timeout_ms: Annotated[int, Field(gt=0, le=3_600_000)] | None = None
    isolation: Isolation | None = None
    workers: Annotated[int, Field(ge=1, le=64)] | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value)

    @field_validator("python")
    @classmethod
    def _py(cls, value: str | None) -> str | None:
        return None if value is None else _check_python(value)


class PythonBuildManifest(_Strict):
    """``python-build.yaml``: the Python policies (version v1)."""

    version: Literal["v1"]
    defaults: Defaults = Field(default_factory=Defaults)
    policies: Annotated[list[PythonPolicyEntry], Field(min_length=1)]


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
    origin: str = ""  # "manifests/python-build.yaml:12:5" for messages
    declared_in: str = ""  # "python-build.yaml" or "build.yaml"
    default_python: str = defaults.DEFAULT_PYTHON


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


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

_TYPE_WORDS = {
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "bool_type": "expected true or false",
    "dict_type": "expected a mapping",
    "list_type": "expected a list",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "missing": "required field is missing",
}


def _expected(err: dict[str, Any], model: type[BaseModel], loc: PathKey) -> str:
    etype = err["type"]
    if etype == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown key{hint}"
    if etype == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"expected {expected}"
    if (
        etype == "string_type"
        and isinstance(err.get("input"), float)
        and loc
        and loc[-1] == "python"
    ):
        return 'expected a quoted string such as "3.12" (an unquoted 3.10 reads as the number 3.1)'
    if etype == "too_short" and err.get("ctx", {}).get("min_length") == 1:
        return (
            "expected at least one entry"
            if isinstance(err.get("input"), list)
            else "expected a non-empty value"
        )
    if etype in ("greater_than", "greater_than_equal", "less_than_equal", "less_than"):
        return err["msg"].replace("Input should be", "expected a number")
    if etype == "value_error":
        msg: str = err.get("ctx", {}).get("error", err["msg"])
        return str(msg).removeprefix("Value error, ")
    if etype in _TYPE_WORDS:
        return _TYPE_WORDS[etype]
    return str(err["msg"]).replace("Input should be", "expected").replace("Value error, ", "")


def _allowed_keys(model: type[BaseModel], loc: PathKey) -> list[str]:
    """Field names valid at ``loc`` (walks the model tree; best effort)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        info = current.model_fields.get(str(part))
        if info is None:
            return []
        current = _model_of(info.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _validate(model: type[BaseModel], data: Any, pos: Positions) -> Any:
    if not isinstance(data, dict):
        raise pos.error((), "expected a mapping with 'version' and 'policies'")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)

        # Report the first error in document order: that is what a person fixes first.
        def where(e: Any) -> tuple[int, int]:
            loc = _clean_loc(e["loc"])
            return pos.of_key(loc) if e["type"] == "extra_forbidden" else pos.of_value(loc)

        err = min(errors, key=where)
        loc = _clean_loc(err["loc"])
        expected = _expected(dict(err), model, loc)
        if err["type"] == "extra_forbidden":
            raise pos.error(loc, expected, at_key=True) from None
        if err["type"] == "missing":
            line, col = pos.of_value(loc[:-1])
            raise ManifestError(pos.file, line, col, format_path(loc), expected) from None
        raise pos.error(loc, expected) from None


def _clean_loc(loc: tuple[Any, ...]) -> PathKey:
    # Drop pydantic's synthetic segments (union member names, "[key]" markers).
    return tuple(
        p for p in loc if isinstance(p, int) or not str(p).startswith(("function-", "union["))
    )


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
            raise pos.error(loc, _expected(dict(exc.errors()[0]), GitSourceModel, ())) from None
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
            raise pos.error(loc, _expected(dict(exc.errors()[0]), PipSourceModel, ())) from None
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
    model: BuildManifest = _validate(BuildManifest, data, pos)
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
    model: PythonBuildManifest = _validate(PythonBuildManifest, data, pos)
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
                isolation=entry.isolation or d.isolation,
                workers=entry.workers or d.workers,
                params=dict(entry.params),
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
