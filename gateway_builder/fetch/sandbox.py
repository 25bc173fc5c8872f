"""Where a policy's own build code runs: in a throwaway container (the default), or on the host
only when the user passes ``--allow-host-builds``.

A policy's build backend (hatchling, setuptools, an in-tree backend, a ``setup.py``) is untrusted
code. By default it runs in a container of the local Python base of the policy's version, with no
network, no credentials and no host file but its inputs: every capability dropped,
``no-new-privileges``, a read-only root file system and source, a private ``/tmp``, an
unprivileged user, limits on time, memory and processes. Its build requirements are resolved and
downloaded on the host as wheels only (``--only-binary :all:``: resolving runs no package code)
and mounted read-only; the wheel it writes is all that comes back. Host builds use the same
wheels and no index or credentials either.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from gateway_builder import defaults
from gateway_builder.cache import Cache
from gateway_builder.errors import BuildError, GatewayBuilderError, InputError
from gateway_builder.fetch.index import IndexClient, IndexFile, best_wheel, default_index_url
from gateway_builder.redact import redact_text
from gateway_builder.toolenv import find_python, first_line, isolated_env, run_tool, uv_binary

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LogFn = Callable[[str], None]

#: PEP 517's fallback for a source tree without ``[build-system]`` (pip adds ``wheel``).
LEGACY_BUILD_REQUIRES = ("setuptools>=40.8.0", "wheel")
#: Largest ``pyproject.toml`` read (a policy's is a few hundred bytes).
MAX_PYPROJECT_BYTES = 1 << 20
#: Label of every sandbox container (so a leftover one is easy to find).
SANDBOX_LABEL = "io.gateway-builder.sandbox"
#: Limits of one sandboxed wheel build.
SANDBOX_TIMEOUT_S = 900
SANDBOX_MEMORY = "2g"
SANDBOX_PIDS = 256
SANDBOX_TMP_SIZE = "1g"
#: The unprivileged user the build runs as (``nobody``).
SANDBOX_USER = "65534:65534"
#: Mount points inside the sandbox.
_SRC, _WHEELS, _OUT, _UV = "/src", "/wheels", "/out", "/opt/gateway-builder/uv"
#: Present in the wheels mount: the build refuses to run when the engine cannot see host files.
_MOUNT_MARKER = ".gwb-sandbox"
_EXIT_NO_MOUNTS = 97
# The build frontend: this machine's uv binary (mounted read-only; the same frontend as a host
# build, and several times faster than a venv with pip), else pip in a fresh venv.
_SCRIPT = f"""set -eu
if [ ! -e {_WHEELS}/{_MOUNT_MARKER} ]; then
  echo "error: the container engine does not see this machine's files (bind mounts)" >&2
  exit {_EXIT_NO_MOUNTS}
fi
PY=$(command -v "python$PYVER" || echo "/opt/python/$PYVER/bin/python$PYVER")
cp -R {_SRC} /tmp/src
if [ -x {_UV} ]; then
  {_UV} build --wheel --no-index --find-links {_WHEELS} --out-dir {_OUT} --python "$PY" \\
    --no-cache /tmp/src
else
  "$PY" -m venv /tmp/venv
  /tmp/venv/bin/python -m pip wheel --quiet --no-deps --no-index --find-links {_WHEELS} \\
    --no-cache-dir --wheel-dir {_OUT} /tmp/src
fi
"""
_IMAGE_LOCK = threading.Lock()


def build_requirements(tree: Path, what: str) -> tuple[str, ...]:
    """``[build-system] requires`` of the source tree (PEP 517's default when there is none)."""
    path = tree / "pyproject.toml"
    if not path.is_file() or path.is_symlink():
        return LEGACY_BUILD_REQUIRES
    with path.open("rb") as fh:
        raw = fh.read(MAX_PYPROJECT_BYTES + 1)
    if len(raw) > MAX_PYPROJECT_BYTES:
        raise InputError(f"{what}: pyproject.toml is larger than {MAX_PYPROJECT_BYTES} bytes")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what}: pyproject.toml is not valid TOML: {exc}") from None
    system = data.get("build-system")
    if system is None:
        return LEGACY_BUILD_REQUIRES
    requires = system.get("requires") if isinstance(system, dict) else None
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise InputError(f"{what}: pyproject.toml: build-system.requires must be a list of strings")
    out = []
    for line in requires:
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise InputError(f"{what}: pyproject.toml: build-system.requires: {exc}") from None
        if req.url:
            raise InputError(
                f"{what}: pyproject.toml: build-system.requires: direct references "
                f"({req.name} @ ...) are not supported; publish the package to an index"
            )
        out.append(str(req))
    return tuple(out)


def host_platform() -> str:
    """This machine's architecture as a lock platform (the sandbox runs natively)."""
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    if arch not in defaults.UV_PLATFORM_TRIPLES:
        raise BuildError(f"wheel builds are not supported on this architecture ({machine})")
    return arch


def fetch_build_wheels(
    requires: Sequence[str],
    dest: Path,
    cache: Cache,
    *,
    python_version: str,
    index_url: str | None,
    what: str,
) -> list[Path]:
    """Resolve ``requires`` for the target as wheels only and put each wheel into ``dest``.

    Resolving with ``--only-binary :all:`` reads wheel metadata only: no package code runs here.
    """
    if not requires:
        return []
    arch = host_platform()
    with tempfile.TemporaryDirectory(prefix="gwb-build-reqs-") as tmp:
        work = Path(tmp)
        (work / "requirements.in").write_text("\n".join(requires) + "\n")
        out = work / "pylock.toml"
        cmd = [
            uv_binary(),
            "pip",
            "compile",
            "requirements.in",
            "--output-file",
            str(out),
            "--format",
            "pylock.toml",
            "--python-version",
            python_version,
            "--python-platform",
            defaults.UV_PLATFORM_TRIPLES[arch],
            "--only-binary",
            ":all:",
            "--no-header",
            "--quiet",
            "--cache-dir",
            str(cache.subdir("uv")),
        ]
        python = find_python(python_version)
        if python is not None:
            cmd += ["--python", str(python)]
        env = isolated_env({"UV_DEFAULT_INDEX": index_url or default_index_url()})
        proc = run_tool(cmd, env=env, what="uv", cwd=work, check=False)
        if proc.returncode != 0:
            details = redact_text((proc.stderr or "") + (proc.stdout or "")).strip()
            raise InputError(
                f"{what}: the build requirements ({', '.join(requires)}) must be installable from "
                f"wheels for Python {python_version}: {first_line(details) or 'uv failed'}",
                details=details or None,
            )
        data = tomllib.loads(out.read_text())
    client = IndexClient(index_url)
    paths = []
    for pkg in data.get("packages", []):
        files = {}
        for wheel in pkg.get("wheels", []):
            url = wheel.get("url") or wheel.get("path") or ""
            sha = (wheel.get("hashes") or {}).get("sha256")
            if url and sha:
                files[url.rstrip("/").rsplit("/", 1)[-1]] = (url, sha)
        best = best_wheel(sorted(files), python_version, arch)
        if best is None:
            raise InputError(
                f"{what}: build requirement {pkg.get('name')} has no wheel for Python "
                f"{python_version} on {arch}"
            )
        url, sha = files[best]
        cached = cache.artifact(sha)
        if cached is None:
            if not url.startswith(("http://", "https://", "file://")):
                url = Path(url).resolve().as_uri()
            with tempfile.TemporaryDirectory(prefix="gwb-dl-") as tmp:
                downloaded = client.download(IndexFile(best, url, sha), Path(tmp), sha)
                cached, _ = cache.put_artifact(downloaded)
        paths.append(Path(shutil.copyfile(cached, dest / best)))
    return paths


def build_on_host(
    src: Path, wheels: Path, out: Path, *, python_version: str, epoch: int, what: str
) -> None:
    """``uv build`` on this machine (``--allow-host-builds``): offline, from ``wheels`` only."""
    cmd: list[str] = [
        uv_binary(),
        "build",
        "--wheel",
        "--no-index",
        "--find-links",
        str(wheels),
        "--out-dir",
        str(out),
        "--no-cache",
        "--quiet",
    ]
    python = find_python(python_version)
    if python is not None:
        cmd += ["--python", str(python)]
    cmd.append(str(src))
    env = isolated_env({"SOURCE_DATE_EPOCH": str(epoch)})
    run_tool(cmd, env=env, what=f"{what}: building the policy wheel failed", cwd=src.parent)


def _indent(text: str) -> str:
    """A tool's output as details under our one error line (its own ``error:`` lines indented)."""
    return "\n".join(f"  {line}" for line in text.strip().splitlines())


def _native_uv() -> Path | None:
    """This machine's uv as a Linux executable the container can run (None: use pip)."""
    try:
        path = Path(uv_binary()).resolve()
        with path.open("rb") as fh:
            is_elf = fh.read(4) == b"\x7fELF"
    except (BuildError, OSError):
        return None
    return path if is_elf and sys.platform == "linux" else None


def sandbox_image(python_version: str, log: LogFn) -> str:
    """The local Python base of ``python_version`` (built when no such image exists)."""
    from gateway_builder.bases import build_local_bases
    from gateway_builder.bases.keys import KIND_LABEL
    from gateway_builder.dockerd import ensure_engine
    from gateway_builder.options import LocalBasesOptions

    with _IMAGE_LOCK:
        client = ensure_engine(log=log)
        try:
            found = client.images.list(filters={"label": f"{KIND_LABEL}=python{python_version}"})
            tagged = [i for i in found if i.tags]
            if tagged:
                newest = max(tagged, key=lambda i: str(i.attrs.get("Created", "")))
                return str(newest.tags[0])
            log(f"building the local Python {python_version} base for sandboxed wheel builds")
            bases = build_local_bases(
                LocalBasesOptions(pythons=(python_version,)),
                client=client,
                log=log,
                engine_builder=False,
            ).bases
            return bases.python(python_version).image
        finally:
            client.close()


def build_in_sandbox(
    src: Path,
    wheels: Path,
    out: Path,
    *,
    python_version: str,
    epoch: int,
    what: str,
    log: LogFn,
) -> None:
    """Run the build backend on ``src`` in a throwaway container; the wheel lands in ``out``."""
    import requests

    from gateway_builder.dockerd import ensure_engine

    try:
        image = sandbox_image(python_version, log)
    except GatewayBuilderError as exc:
        raise BuildError(
            f"{what}: no Python {python_version} image to build the policy wheel in a sandbox "
            f"({exc.message}); run `gateway-builder bases build --python {python_version}`, "
            "or pass --allow-host-builds to run the build code on this machine",
            details=exc.details,
        ) from None
    (wheels / _MOUNT_MARKER).write_text("")
    os.chmod(out, 0o777)  # the unprivileged build user writes the wheel here
    volumes = {
        str(src): {"bind": _SRC, "mode": "ro"},
        str(wheels): {"bind": _WHEELS, "mode": "ro"},
        str(out): {"bind": _OUT, "mode": "rw"},
    }
    uv = _native_uv()
    if uv is not None:
        volumes[str(uv)] = {"bind": _UV, "mode": "ro"}
    client = ensure_engine(log=log)
    container = client.containers.create(
        image,
        command=["sh", "-c", _SCRIPT],
        environment={
            "PYVER": python_version,
            "HOME": "/tmp",
            "SOURCE_DATE_EPOCH": str(epoch),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "UV_NO_CONFIG": "1",
            "UV_PYTHON_DOWNLOADS": "never",
            "LANG": "C.UTF-8",
        },
        user=SANDBOX_USER,
        working_dir="/tmp",
        network_mode="none",
        read_only=True,
        tmpfs={"/tmp": f"rw,exec,nosuid,nodev,size={SANDBOX_TMP_SIZE}"},
        volumes=volumes,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        pids_limit=SANDBOX_PIDS,
        mem_limit=SANDBOX_MEMORY,
        labels={SANDBOX_LABEL: "wheel-build"},
    )
    try:
        container.start()
        try:
            status = int(container.wait(timeout=SANDBOX_TIMEOUT_S).get("StatusCode", 1))
        except requests.exceptions.RequestException:
            raise BuildError(
                f"{what}: the sandboxed wheel build did not finish within {SANDBOX_TIMEOUT_S}s"
            ) from None
        if status != 0:
            logs = redact_text(container.logs(stdout=True, stderr=True).decode(errors="replace"))
            if status == _EXIT_NO_MOUNTS:
                raise BuildError(
                    f"{what}: the container engine cannot see this machine's files, so the "
                    "policy wheel cannot be built in a sandbox; use a local engine or pass "
                    "--allow-host-builds"
                )
            reason = first_line(logs).removeprefix("error:").strip()
            raise BuildError(
                f"{what}: building the policy wheel failed in the sandbox: "
                f"{reason or f'exit code {status}'}",
                details=_indent(logs[-4000:]) or None,
            )
    finally:
        try:
            container.remove(force=True)
        finally:
            client.close()
