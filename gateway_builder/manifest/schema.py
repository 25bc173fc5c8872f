"""Pydantic models of ``build.yaml`` (upstream schema) and ``python-build.yaml``: strict, so
unknown keys and wrong types are errors, and the JSON Schema comes from the same models."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway_builder import defaults
from gateway_builder.manifest.giturl import git_url_problem
from gateway_executor.registry import ENV_NAME, RESERVED_ENV

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


def _check_env_name(value: str) -> str:
    if not ENV_NAME.match(value) or value in RESERVED_ENV:
        raise ValueError(
            "expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*; "
            f"not {', '.join(RESERVED_ENV)}, which the executor sets)"
        )
    return value


EnvName = Annotated[str, AfterValidator(_check_env_name)]


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
    failure_mode: FailureMode = defaults.DEFAULT_FAILURE_MODE
    timeout_ms: Annotated[int, Field(gt=0, le=3_600_000)] = defaults.DEFAULT_TIMEOUT_MS
    #: ``InitPolicy`` (``get_policy``) timeout; default: the policy's ``timeout_ms``.
    init_timeout_ms: Annotated[int, Field(gt=0, le=3_600_000)] | None = None
    isolation: Isolation = defaults.DEFAULT_ISOLATION
    workers: Annotated[int, Field(ge=1, le=64)] = defaults.DEFAULT_WORKERS
    #: Memory limit of each worker process, MiB.
    memory_mb: Annotated[int, Field(ge=64, le=1_048_576)] = defaults.DEFAULT_MEMORY_MB

    @field_validator("python")
    @classmethod
    def _py(cls, value: str) -> str:
        return _check_python(value)


class GitSourceModel(_Strict):
    """``source.git``: a git repository, a ref and an optional subdirectory."""

    url: Annotated[str, Field(min_length=1)]
    ref: Annotated[str, Field(min_length=1)] = "HEAD"
    subdirectory: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        problem = git_url_problem(value)
        if problem:
            raise ValueError(problem)
        return value

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
    init_timeout_ms: Annotated[int, Field(gt=0, le=3_600_000)] | None = None
    isolation: Isolation | None = None
    workers: Annotated[int, Field(ge=1, le=64)] | None = None
    memory_mb: Annotated[int, Field(ge=64, le=1_048_576)] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    #: Environment variables of the container the policy's workers get (default: none).
    env: Annotated[list[EnvName], Field(max_length=64)] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value)

    @field_validator("python")
    @classmethod
    def _py(cls, value: str | None) -> str | None:
        return None if value is None else _check_python(value)

    @field_validator("env")
    @classmethod
    def _env(cls, value: list[str]) -> list[str]:
        dup = sorted({n for n in value if value.count(n) > 1})
        if dup:
            raise ValueError(f"expected each name once ({dup[0]} is listed twice)")
        return value


class PythonBuildManifest(_Strict):
    """``python-build.yaml``: the Python policies (version v1)."""

    version: Literal["v1"]
    defaults: Defaults = Field(default_factory=Defaults)
    policies: Annotated[list[PythonPolicyEntry], Field(min_length=1)]
