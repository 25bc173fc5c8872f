"""Running external tools (uv, pip, pip-compile, git) isolated from this machine's configuration.

pip and uv read user and site configuration files and ``PIP_*``/``UV_*`` environment variables
(extra indexes, find-links, constraints). Output that must be portable (a lock file) must not
depend on them, so every tool runs with a cleaned environment.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

from gateway_builder.errors import BuildError
from gateway_builder.redact import redact_text

#: Environment variables kept from the caller (network/TLS settings, locale, home).
_KEEP = {
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "PYENV_ROOT",
    "GIT_SSL_CAINFO",
    "SSH_AUTH_SOCK",
}


def isolated_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment: no pip/uv/Python configuration leaks in; ``extra`` added on top."""
    env = {k: v for k, v in os.environ.items() if k in _KEEP}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    if "SSL_CERT_FILE" in env:
        env["PIP_CERT"] = env["SSL_CERT_FILE"]
    env["UV_NO_CONFIG"] = "1"
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.setdefault("LANG", "C.UTF-8")
    if extra:
        env.update(extra)
    return env


def run_tool(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str],
    what: str,
    cwd: Path | None = None,
    timeout: float = 600,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; on failure raise :class:`BuildError` naming ``what`` with stderr in details."""
    argv = [os.fspath(c) for c in cmd]
    try:
        proc = subprocess.run(
            argv,
            env=dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise BuildError(f"{what}: {argv[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what}: timed out after {timeout:.0f}s") from None
    if check and proc.returncode != 0:
        details = redact_text((proc.stderr or "") + (proc.stdout or "")).strip()
        raise BuildError(
            f"{what}: {first_line(details) or f'exit code {proc.returncode}'}", details=details
        )
    return proc


def first_line(text: str) -> str:
    """The most telling line of a tool's error output (an ``error:`` line if any)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if ln.lower().startswith(("error:", "\u00d7 ", "x ")):
            return ln
    return lines[0] if lines else ""


def uv_binary() -> str:
    """The uv executable: the one installed with this package, else on PATH."""
    candidate = Path(sys.executable).parent / "uv"
    if candidate.is_file():
        return str(candidate)
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv")
    if not found:
        raise BuildError("uv is not installed (pip install uv)")
    return found


@cache
def tool_version(binary: str) -> str:
    """``X.Y.Z`` from ``<binary> --version`` (empty if it cannot be read)."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=60, check=False
        ).stdout
    except OSError:
        return ""
    m = re.search(r"(\d+\.\d+(?:\.\d+)?)", out)
    return m.group(1) if m else ""


def _pyenv_root() -> Path | None:
    root = os.environ.get("PYENV_ROOT")
    if root:
        return Path(root)
    exe = shutil.which("pyenv")
    if exe:
        try:
            out = subprocess.run(
                [exe, "root"], capture_output=True, text=True, timeout=30, check=False
            )
            if out.returncode == 0 and out.stdout.strip():
                return Path(out.stdout.strip())
        except OSError:
            return None
    default = Path.home() / ".pyenv"
    return default if default.is_dir() else None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name)[:3])


@cache
def find_python(version: str) -> Path | None:
    """A CPython interpreter for ``version`` ("3.12"): pyenv's newest patch release, else PATH."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version and not hasattr(
        sys, "real_prefix"
    ):
        base = Path(sys.base_prefix) / "bin" / f"python{version}"
        if base.is_file():
            return base
    root = _pyenv_root()
    if root and (root / "versions").is_dir():
        candidates = [
            d
            for d in (root / "versions").iterdir()
            if re.fullmatch(rf"{re.escape(version)}\.\d+", d.name)
            and (d / "bin" / f"python{version}").is_file()
        ]
        if candidates:
            best = max(candidates, key=lambda d: _version_key(d.name))
            return best / "bin" / f"python{version}"
    for name in (f"python{version}",):
        found = shutil.which(name)
        if found and "/.pyenv/shims/" not in found:
            return Path(found)
    return None
