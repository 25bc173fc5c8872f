"""A policy's own venv for the test harness, cached by exactly what is installed in it.

Two sources, as in the image: the policy's pins from a lock file (the same hash-checked
artifacts the image build installs, downloaded into the fetch cache, installed with
``--require-hashes --no-deps`` from that wheelhouse only), or its requirements plus the SDK,
resolved by uv from the index. The venv lives in the fetch cache under a key made of the
interpreter and that input, so a second run with unchanged requirements installs nothing; a
change of requirements gives a new venv and leaves the old one for switching back.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from gateway_builder import defaults
from gateway_builder.cache import Cache
from gateway_builder.devkit.policydir import LocalPolicy
from gateway_builder.digest import sha256_text, value_digest
from gateway_builder.errors import BuildError, InputError
from gateway_builder.fetch.artifacts import download_artifacts
from gateway_builder.fetch.index import default_index_url
from gateway_builder.lock.file import LockedPolicy, read_lock
from gateway_builder.lock.resolve import dedupe
from gateway_builder.models import LockedRequirement
from gateway_builder.options import PolicyEnvOptions
from gateway_builder.toolenv import find_python, isolated_env, run_tool, uv_binary

#: Where the venvs live in the cache, and the file marking one as complete.
VENVS_SUBDIR = "policy-venvs"
MARKER = ".gateway-builder-env.json"
_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


@dataclass(frozen=True)
class PolicyEnv:
    """A ready venv for one policy."""

    #: The venv's interpreter (what the executor starts the policy's workers with).
    python: Path
    python_version: str
    #: ``lock <file>`` or ``requirements``.
    origin: str
    #: What was installed: ``name==version`` pins, or requirement lines plus the SDK.
    installed: tuple[str, ...]
    #: True when an existing venv was reused (nothing installed).
    reused: bool


def host_platform() -> str:
    """This machine's lock platform (``x86_64`` or ``aarch64``)."""
    machine = platform.machine().lower()
    if machine not in _MACHINES:
        raise BuildError(f"this machine ({machine}) is not a platform a lock can target")
    return _MACHINES[machine]


def locked_entry(policy: LocalPolicy, lock_file: Path) -> LockedPolicy:
    """The policy's entry in ``lock_file``, checked against the folder's requirements."""
    lock = read_lock(lock_file)
    entry = lock.policy(policy.name)
    if entry is None:
        raise InputError(
            f"{lock_file}: no policy '{policy.name}' in the lock (add it to the manifest and run "
            "`gateway-builder lock`, or test without --lock-file)"
        )
    wanted = _canonical([*policy.requirements, lock.sdk_requirement])
    locked = _canonical(entry.env.requirements_in)
    if wanted != locked:
        raise InputError(
            f"{lock_file}: the lock of policy '{policy.name}' is stale: it was locked for "
            f"{', '.join(sorted(locked))}, the folder asks for {', '.join(sorted(wanted))} "
            "(run `gateway-builder lock`)"
        )
    return entry


def _canonical(lines: Iterable[str]) -> set[str]:
    """Requirements compared by meaning: canonical names, sorted extras, normalized specifiers."""
    out = set()
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            out.add(line.strip())
            continue
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        marker = f"; {req.marker}" if req.marker else ""
        out.add(f"{canonicalize_name(req.name)}{extras}{req.specifier}{marker}")
    return out


def choose_python(policy: LocalPolicy, options: PolicyEnvOptions, locked: str | None) -> str:
    """``--python``, else ``python_version.txt``, else the lock's version, else the default.

    A lock fixes the version: asking for another one is an input error.
    """
    version = options.python or policy.python_version or locked or defaults.DEFAULT_PYTHON
    if locked is not None and version != locked:
        raise InputError(
            f"{policy.root}: the lock has policy '{policy.name}' for Python {locked}, not "
            f"{version} (drop --python, or relock)"
        )
    return version


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created) so that two runs never build one venv."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _uv_install(
    venv_python: Path, args: list[str], env: dict[str, str], what: str, *, offline_first: bool
) -> None:
    """``uv pip install`` into the venv; with ``offline_first`` the uv cache is tried before the
    network (a warm cache then needs no index at all)."""
    base = [uv_binary(), "pip", "install", "--quiet", "--python", str(venv_python), *args]
    if offline_first:
        done = run_tool([*base, "--offline"], env=env, what=what, check=False)
        if done.returncode == 0:
            return
    run_tool(base, env=env, what=what)


def _pin_lines(pins: tuple[LockedRequirement, ...]) -> str:
    return "".join(
        f"{p.name}=={p.version}" + "".join(f" --hash={h}" for h in p.hashes) + "\n" for p in pins
    )


def ensure_policy_env(
    policy: LocalPolicy,
    options: PolicyEnvOptions,
    *,
    log: Callable[[str], None] | None = None,
) -> PolicyEnv:
    """The policy's venv: reused when one with the same interpreter and input exists, else
    created (atomically: a half-built venv is never reused)."""
    say = log or (lambda _msg: None)
    cache = Cache.open(options.cache_dir)
    locked = locked_entry(policy, options.lock_file) if options.lock_file is not None else None
    version = choose_python(policy, options, locked.env.python if locked else None)
    interpreter = find_python(version)
    if interpreter is None:
        raise BuildError(
            f"{policy.root}: no CPython {version} on this machine (install it, e.g. with pyenv, "
            "or pick another with --python)"
        )
    pins: tuple[LockedRequirement, ...] = ()
    requirements: tuple[str, ...] = ()
    if locked is not None:
        arch = host_platform()
        try:
            pins = locked.env.requirements(arch)
        except KeyError:
            raise InputError(
                f"{options.lock_file}: policy '{policy.name}' is not locked for {arch} "
                f"(run `gateway-builder lock --platform {arch}`)"
            ) from None
        installed = tuple(f"{p.name}=={p.version}" for p in pins)
        origin = f"lock {options.lock_file}"
        inputs: dict[str, object] = {
            "pins": [[p.name, p.version, sorted(p.hashes)] for p in pins],
            "platform": arch,
        }
    else:
        requirements = dedupe([*policy.requirements, defaults.SDK_REQUIREMENT])
        installed = requirements
        origin = "requirements"
        # The index can change what open requirements resolve to; only its digest is kept.
        inputs = {"requirements": list(requirements), "index": sha256_text(default_index_url())}
    inputs.update({"interpreter": str(interpreter.resolve()), "python": version})
    key = value_digest(inputs).removeprefix("sha256:")[:32]
    folder = cache.subdir(VENVS_SUBDIR) / key
    venv_python = folder / "bin" / "python"
    with _exclusive(folder.parent / f".{key}.lock"):
        if (folder / MARKER).is_file() and venv_python.exists():
            return PolicyEnv(venv_python, version, origin, installed, reused=True)
        say(f"creating the venv of {policy.name} (Python {version}, from {origin})")
        shutil.rmtree(folder, ignore_errors=True)
        env = isolated_env({"UV_CACHE_DIR": str(cache.subdir("uv"))})
        what = f"{policy.name}: creating its venv"
        run_tool(
            [uv_binary(), "venv", "--quiet", "--python", str(interpreter), str(folder)],
            env=env,
            what=what,
        )
        try:
            with tempfile.TemporaryDirectory(prefix="gwb-env-") as tmp:
                work = Path(tmp)
                if locked is not None:
                    wheelhouse = work / "wheels"
                    wheelhouse.mkdir()
                    download_artifacts(pins, version, host_platform(), wheelhouse, cache=cache)
                    (work / "pins.txt").write_text(_pin_lines(pins), encoding="utf-8")
                    args = ["--no-index", "--find-links", str(wheelhouse), "--require-hashes"]
                    args += ["--no-deps", "--offline", "-r", str(work / "pins.txt")]
                    _uv_install(venv_python, args, env, what, offline_first=False)
                else:
                    (work / "requirements.in").write_text(
                        "".join(f"{r}\n" for r in requirements), encoding="utf-8"
                    )
                    index_env = {**env, "UV_DEFAULT_INDEX": default_index_url()}
                    args = ["-r", str(work / "requirements.in")]
                    _uv_install(venv_python, args, index_env, what, offline_first=True)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        marker = {"python": version, "origin": origin, "installed": list(installed)}
        tmp_marker = folder / f"{MARKER}.tmp"
        tmp_marker.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp_marker, folder / MARKER)
    return PolicyEnv(venv_python, version, origin, installed, reused=False)
