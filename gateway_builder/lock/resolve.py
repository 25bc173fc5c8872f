"""Resolver backends: ``uv pip compile`` (default) and ``pip-compile`` (pip-tools).

Both turn one requirement set + a target (Python version, Linux architecture) into pinned
packages with the one artifact per package that installs on that target. Both run isolated from
this machine's pip/uv configuration and never write an index URL or find-links anywhere.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from gateway_builder import defaults
from gateway_builder.cache import Cache
from gateway_builder.errors import BuildError, InputError
from gateway_builder.fetch.index import IndexClient, best_wheel, default_index_url, file_version
from gateway_builder.lock.file import LockedPackage
from gateway_builder.redact import redact_text
from gateway_builder.toolenv import (
    find_python,
    isolated_env,
    run_tool,
    tool_version,
    uv_binary,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class ResolveRequest:
    """One environment to resolve for one target."""

    label: str  # "policy 'x'", "the executor", "the installer"
    requirements: tuple[str, ...]
    python_version: str
    platform: str
    index_url: str | None = None
    preferences: tuple[LockedPackage, ...] = ()
    upgrade: bool = False
    upgrade_packages: tuple[str, ...] = ()
    #: Where the requirements come from, for messages (a policy's requirements.txt).
    origin: str = ""


class Resolver(Protocol):
    """A resolver backend."""

    name: str

    @property
    def version(self) -> str:
        """The backend's version (recorded in the lock)."""

    def resolve(self, request: ResolveRequest) -> tuple[LockedPackage, ...]:
        """Pinned packages (sorted by name) for the request's target."""


#: A resolver's words for requirements that no set of releases satisfies: bad input (exit 2).
_UNSATISFIABLE = re.compile(
    r"no solution found|unsatisfiable|ResolutionImpossible|could not find a version that "
    r"satisfies|no matching distribution",
    re.IGNORECASE,
)
#: Box drawing and labels uv puts in front of its explanation lines.
_DECORATION = re.compile(r"^[\s\u00d7\u2500-\u257f\u25b6|:*-]*(error:\s*|cause:\s*|ERROR:\s*)?")


def _failure(request: ResolveRequest, tool: str, details: str) -> BuildError | InputError:
    """One error naming the environment, where its requirements come from and the reason; the
    resolver's other lines follow as details (nothing is printed twice)."""
    lines = [_DECORATION.sub("", line).strip() for line in details.splitlines()]
    lines = [line for line in lines if line]
    because = [line for line in lines if line.startswith("Because ")]
    reason = because[0] if because else (lines[0] if lines else "no explanation")
    rest = [line for line in lines if line != reason]
    origin = f" ({request.origin})" if request.origin else ""
    kind = InputError if _UNSATISFIABLE.search(details) else BuildError
    return kind(
        f"cannot resolve the requirements of {request.label}{origin} for Python "
        f"{request.python_version} on {request.platform} with {tool}: {reason}",
        details="\n".join(rest) or None,
    )


#: uv's words for a package it may not build: "Wheels are required for `x`", "x==1 has no usable
#: wheels", "... no wheels with a matching Python ABI tag" (the name is the first group found).
_NO_WHEEL = re.compile(
    r"Wheels are required for `(?P<a>[^`]+)`|(?P<b>[A-Za-z0-9][A-Za-z0-9._-]*)(?:==\S+)? has no "
    r"(?:usable )?wheels|only found wheels for `?(?P<c>[A-Za-z0-9][A-Za-z0-9._-]*)`?"
)


def sdist_only_error(request: ResolveRequest, package: str) -> InputError:
    """A dependency that has no wheel for the target: locking it would mean running its build
    code on this machine (an sdist's metadata comes from its build backend), so it is refused."""
    origin = f" ({request.origin})" if request.origin else ""
    return InputError(
        f"cannot lock {request.label}{origin} for Python {request.python_version} on "
        f"{request.platform}: {package} has no wheel for that target, only source (an sdist), "
        "whose build code would run on this machine; gateway-builder locks wheels only: "
        f"require a version of {package} that ships a wheel, or publish one"
    )


def _no_wheel_package(details: str) -> str | None:
    m = _NO_WHEEL.search(details)
    return (m.group("a") or m.group("b") or m.group("c")) if m else None


def _upgrade_args(request: ResolveRequest) -> list[str]:
    args = ["--upgrade"] if request.upgrade else []
    for pkg in request.upgrade_packages:
        args += ["--upgrade-package", pkg]
    return args


class UvResolver:
    """``uv pip compile --format pylock.toml`` for an explicit Python version and platform."""

    name = "uv"

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.binary = uv_binary()

    @property
    def version(self) -> str:
        """uv's version."""
        return tool_version(self.binary)

    def resolve(self, request: ResolveRequest) -> tuple[LockedPackage, ...]:
        """Resolve with uv (previous pins in a seed ``pylock.toml`` are kept as preferences)."""
        with tempfile.TemporaryDirectory(prefix="gwb-uv-") as tmp:
            work = Path(tmp)
            (work / "requirements.in").write_text("\n".join(request.requirements) + "\n")
            out = work / "pylock.toml"
            if request.preferences and not request.upgrade:
                seed = 'lock-version = "1.0"\ncreated-by = "gateway-builder"\n'
                for pkg in request.preferences:
                    seed += f'\n[[packages]]\nname = "{pkg.name}"\nversion = "{pkg.version}"\n'
                out.write_text(seed)
            cmd = [
                self.binary,
                "pip",
                "compile",
                "requirements.in",
                "--output-file",
                str(out),
                "--format",
                "pylock.toml",
                "--python-version",
                request.python_version,
                "--python-platform",
                defaults.UV_PLATFORM_TRIPLES[request.platform],
                "--no-header",
                "--quiet",
                "--cache-dir",
                str(self.cache.subdir("uv")),
                # Wheels only: an sdist's metadata would come from running its build code here.
                "--only-binary",
                ":all:",
                *_upgrade_args(request),
            ]
            python = find_python(request.python_version)
            if python is not None:
                cmd += ["--python", str(python)]
            if self.cache.offline:
                cmd.append("--offline")
            # The index goes through the environment: a credential never shows in `ps`.
            env = isolated_env({"UV_DEFAULT_INDEX": request.index_url or default_index_url()})
            proc = run_tool(cmd, env=env, what="uv", cwd=work, check=False)
            if proc.returncode != 0:
                details = redact_text((proc.stderr or "") + (proc.stdout or "")).strip()
                package = _no_wheel_package(details)
                if package is not None:
                    raise sdist_only_error(request, package)
                raise _failure(request, "uv", details)
            data = tomllib.loads(out.read_text())
        return tuple(sorted(_from_pylock(data, request), key=lambda p: p.name))


def _artifact_name(entry: Mapping[str, Any]) -> str:
    for key in ("name", "url", "path"):
        value = entry.get(key)
        if isinstance(value, str) and value:
            return value.rstrip("/").rsplit("/", 1)[-1]
    return ""


def _from_pylock(data: Mapping[str, Any], request: ResolveRequest) -> list[LockedPackage]:
    out = []
    packages = data.get("packages", [])
    assert isinstance(packages, list)
    for pkg in packages:
        name = canonicalize_name(pkg["name"])
        version = str(pkg.get("version", ""))
        wheels = {
            _artifact_name(w): w["hashes"]["sha256"]
            for w in pkg.get("wheels", [])
            if w.get("hashes", {}).get("sha256")
        }
        best = best_wheel(sorted(wheels), request.python_version, request.platform)
        if best is not None:
            files, hashes = (best,), (f"sha256:{wheels[best]}",)
        elif isinstance(pkg.get("sdist"), dict):
            raise sdist_only_error(request, str(name))
        else:
            raise BuildError(
                f"{request.label}: {name}=={version} has no hashed wheel or sdist for Python "
                f"{request.python_version} on {request.platform} (direct references cannot be locked)"
            )
        out.append(LockedPackage(str(name), version, files, hashes))
    return out


_VENV_LOCK = threading.Lock()


class PipToolsResolver:
    """``pip-compile`` run by an interpreter of the target Python version (pyenv or PATH).

    pip-compile resolves for the interpreter that runs it, on this machine's architecture; for
    another ``--platform`` the same pins are kept and that platform's wheels are selected.
    """

    name = "pip-tools"

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        try:
            self.piptools_version = metadata.version("pip-tools")
            self.pip_version = metadata.version("pip")
        except metadata.PackageNotFoundError:
            raise BuildError("--resolver pip-tools: pip-tools is not installed") from None
        self._clients: dict[str, IndexClient] = {}

    @property
    def version(self) -> str:
        """pip-tools' version."""
        return self.piptools_version

    def _venv(self, python_version: str) -> Path:
        python = find_python(python_version)
        if python is None:
            raise BuildError(
                f"--resolver pip-tools needs a Python {python_version} interpreter: none found "
                f"with pyenv or on PATH (python{python_version}); install it (pyenv install "
                f"{python_version}) or use --resolver uv"
            )
        venv = self.cache.subdir("venvs") / f"pip-tools-{self.piptools_version}-py{python_version}"
        marker = venv / ".ready"
        if marker.is_file():
            return venv
        if self.cache.offline:
            raise InputError(
                f"the pip-tools environment for Python {python_version} is not in the cache (--offline)"
            )
        with _VENV_LOCK:
            if marker.is_file():
                return venv
            # venvs embed their own path: build in place; the marker says it is complete.
            shutil.rmtree(venv, ignore_errors=True)
            env = isolated_env()
            try:
                run_tool([python, "-m", "venv", venv], env=env, what="creating the pip-tools venv")
                run_tool(
                    [
                        venv / "bin" / "python",
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--index-url",
                        defaults.DEFAULT_INDEX_URL,
                        f"pip-tools=={self.piptools_version}",
                        f"pip=={self.pip_version}",
                    ],
                    env=env,
                    what="installing pip-tools",
                )
            except BaseException:
                shutil.rmtree(venv, ignore_errors=True)
                raise
            marker.write_text("ok\n")
        return venv

    def resolve(self, request: ResolveRequest) -> tuple[LockedPackage, ...]:
        """Resolve with pip-compile, then pick each pin's artifact for the target from the index."""
        venv = self._venv(request.python_version)
        with tempfile.TemporaryDirectory(prefix="gwb-piptools-") as tmp:
            work = Path(tmp)
            (work / "requirements.in").write_text("\n".join(request.requirements) + "\n")
            out = work / "requirements.txt"
            if request.preferences and not request.upgrade:
                out.write_text("".join(f"{p.name}=={p.version}\n" for p in request.preferences))
            cmd: list[str | Path] = [
                venv / "bin" / "python",
                "-m",
                "piptools",
                "compile",
                "requirements.in",
                "--output-file",
                out,
                "--generate-hashes",
                "--no-header",
                "--no-annotate",
                "--allow-unsafe",
                "--strip-extras",
                "--no-emit-index-url",
                "--no-emit-find-links",
                "--no-emit-trusted-host",
                "--cache-dir",
                self.cache.subdir("pip"),
                "--quiet",
                *_upgrade_args(request),
            ]
            # Wheels only, as with uv: pip would run an sdist's build code for its metadata.
            env = isolated_env(
                {
                    "PIP_INDEX_URL": request.index_url or default_index_url(),
                    "PIP_ONLY_BINARY": ":all:",
                }
            )
            proc = run_tool(cmd, env=env, what="pip-compile", cwd=work, check=False)
            if proc.returncode != 0:
                details = redact_text((proc.stderr or "") + (proc.stdout or "")).strip()
                missing = re.search(r"satisfies the requirement ([A-Za-z0-9][\w.-]*)", details)
                if missing and self._only_sdists(missing.group(1), request):
                    raise sdist_only_error(request, missing.group(1))
                raise _failure(request, "pip-tools", details)
            pins = parse_hashed_requirements(out.read_text())
        return tuple(sorted(self._artifacts(pins, request), key=lambda p: p.name))

    def _client(self, request: ResolveRequest) -> IndexClient:
        key = request.index_url or default_index_url()
        return self._clients.setdefault(key, IndexClient(request.index_url))

    def _only_sdists(self, name: str, request: ResolveRequest) -> bool:
        """Whether the index has files for ``name`` but no wheel at all."""
        try:
            files = self._client(request).project_files(name)
        except BuildError:
            return False
        return bool(files) and not any(f.is_wheel for f in files)

    def _artifacts(
        self, pins: list[tuple[str, str, set[str]]], request: ResolveRequest
    ) -> list[LockedPackage]:
        client = self._client(request)
        out = []
        for name, version, hashes in pins:
            files = {
                f.filename: f.sha256
                for f in client.project_files(name)
                if f.sha256 in hashes and str(file_version(f.filename)) == version
            }
            best = best_wheel(sorted(files), request.python_version, request.platform)
            if best is None:
                if any(not f.endswith(".whl") for f in files):
                    raise sdist_only_error(request, name)
                raise BuildError(
                    f"{request.label}: {name}=={version} has no artifact for Python "
                    f"{request.python_version} on {request.platform}"
                )
            out.append(LockedPackage(name, version, (best,), (f"sha256:{files[best]}",)))
        return out


def parse_hashed_requirements(text: str) -> list[tuple[str, str, set[str]]]:
    """``name==version --hash=sha256:...`` lines (with continuations) -> (name, version, hashes)."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;]+)", line)
        if not m:
            raise BuildError(f"pip-compile wrote an unexpected line: {line[:80]!r}")
        hashes = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
        out.append((str(canonicalize_name(m.group(1))), m.group(2), hashes))
    return out


def get_resolver(name: str, cache: Cache) -> Resolver:
    """The backend called ``name`` (``uv`` or ``pip-tools``)."""
    if name == "uv":
        return UvResolver(cache)
    if name == "pip-tools":
        return PipToolsResolver(cache)
    raise InputError(f"unknown resolver {name!r}: expected one of {', '.join(defaults.RESOLVERS)}")


def dedupe(lines: Sequence[str]) -> tuple[str, ...]:
    """Requirement lines normalized (PEP 508 form), without duplicates, sorted case-insensitively."""
    normalized = set()
    for line in lines:
        try:
            normalized.add(str(Requirement(line)))
        except InvalidRequirement:
            normalized.add(line.strip())
    return tuple(sorted(normalized, key=lambda s: (s.lower(), s)))
