"""Thin container-engine wrapper: find (or start) a Docker engine, get a client, stream builds.

The client honours ``DOCKER_HOST`` (and the TLS variables), so a remote engine or a build farm
works; without it the local socket is used. Builds use the legacy builder API (no BuildKit, no
buildx), whose JSON stream is turned into live progress lines.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException

from gateway_builder import defaults
from gateway_builder.errors import BuildError
from gateway_builder.redact import redact_text, redact_url

LogFn = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def docker_host() -> str:
    """The engine address in use: ``DOCKER_HOST`` or the local socket."""
    return os.environ.get("DOCKER_HOST") or defaults.DOCKER_DEFAULT_HOST


def docker_client(*, timeout: int = defaults.DOCKER_API_TIMEOUT_S) -> docker.DockerClient:
    """A Docker SDK client for ``DOCKER_HOST`` (default: the local socket); BuildError if none answers."""
    try:
        if os.environ.get("DOCKER_HOST"):
            return docker.from_env(timeout=timeout)
        return docker.DockerClient(base_url=defaults.DOCKER_DEFAULT_HOST, timeout=timeout)
    except DockerException as exc:
        raise BuildError(
            f"no container engine answers at {redact_url(docker_host())}: {_first_line(exc)}"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = redact_text(str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def engine_answers() -> bool:
    """True when the engine at :func:`docker_host` answers a ping."""
    try:
        client = docker_client(timeout=10)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (BuildError, DockerException, OSError):
        return False


def can_start_local_engine() -> bool:
    """True when :func:`ensure_engine` may start dockerd itself: root on Linux, local socket."""
    return (
        sys.platform.startswith("linux")
        and os.geteuid() == 0
        and docker_host() == defaults.DOCKER_DEFAULT_HOST
    )


def apt_install(packages: Sequence[str], *, log: LogFn = _quiet) -> None:
    """Install Debian packages on this host (root only); BuildError with apt's output on failure."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BuildError(f"cannot install {' '.join(packages)}: needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log(f"installing {' '.join(packages)} with apt-get")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *packages]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BuildError(
                f"{' '.join(cmd[:2])} failed (exit {done.returncode}) installing {' '.join(packages)}",
                details=redact_text((done.stdout + done.stderr)[-4000:]),
            )


def ensure_host_tool(command: str, package: str, *, log: LogFn = _quiet) -> str:
    """Path of ``command``; installs Debian ``package`` when missing and we may (root + apt)."""
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        apt_install([package], log=log)
        found = shutil.which(command)
        if found:
            return found
    raise BuildError(f"{command} not found: install the Debian package {package!r}")


def _start_dockerd(log: LogFn, timeout: float) -> None:
    if shutil.which("dockerd") is None or not Path("/usr/bin/docker").exists():
        apt_install(["docker.io"], log=log)
    log_path = Path(defaults.DOCKERD_LOG)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log(f"starting dockerd (log: {log_path})")
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            ["dockerd", "--storage-driver=overlay2"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine_answers():
            log("dockerd is up")
            return
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    tail = log_path.read_text(errors="replace").splitlines()[-20:]
    state = "exited" if proc.poll() is not None else f"did not answer within {timeout:.0f}s"
    raise BuildError(f"dockerd {state}", details="\n".join(tail))


def ensure_engine(
    *, log: LogFn = _quiet, start_timeout: float = defaults.DOCKER_START_TIMEOUT_S
) -> docker.DockerClient:
    """A client for a running engine, starting a local dockerd first when none answers.

    An engine is started only as root on Linux with no ``DOCKER_HOST`` (installing Debian's
    ``docker.io`` if needed, like ``scripts/ensure-docker.sh``); otherwise BuildError.
    """
    if not engine_answers():
        if not can_start_local_engine():
            raise BuildError(
                f"no container engine answers at {redact_url(docker_host())}: start Docker "
                "or point DOCKER_HOST at an engine"
            )
        _start_dockerd(log, start_timeout)
    return docker_client()


def image_exists(client: docker.DockerClient, ref: str) -> bool:
    """True when ``ref`` (tag or id) is present in the engine's image store."""
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


def _build_lines(chunks: Iterable[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    for chunk in chunks:
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            yield "error", str(chunk.get("error") or detail.get("message") or chunk)
        elif "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
            yield "id", str(chunk["aux"]["ID"])
        elif "stream" in chunk:
            for line in str(chunk["stream"]).splitlines():
                if line.strip():
                    yield "line", line.rstrip()
        elif "status" in chunk:
            yield "line", " ".join(str(chunk[k]) for k in ("id", "status") if chunk.get(k))


def stream_build(client: docker.DockerClient, *, log: LogFn = _quiet, **build_kwargs: Any) -> str:
    """Run a legacy-builder build, passing each progress line to ``log``; return the image id.

    ``build_kwargs`` go to ``client.api.build`` (``path`` or ``fileobj``/``custom_context``,
    ``tag``, ``buildargs``, ``labels``, ``nocache``...). Never pulls, never injects proxy
    settings from the client's config. A failing step raises BuildError naming that step,
    with the last output lines as details.
    """
    build_kwargs = {
        "rm": True,
        "forcerm": True,
        "pull": False,
        "use_config_proxy": False,
        **build_kwargs,
        "decode": True,
    }
    step = "the build"
    tail: deque[str] = deque(maxlen=40)
    image_id: str | None = None
    try:
        for kind, text in _build_lines(client.api.build(**build_kwargs)):
            text = redact_text(text)
            if kind == "id":
                image_id = text
                continue
            if kind == "error":
                raise BuildError(f"docker build failed at {step}: {text}", details="\n".join(tail))
            if text.startswith("Step "):
                step = text
            elif text.startswith("Successfully built "):
                image_id = image_id or text.split()[-1]
            tail.append(text)
            log(text)
    except APIError as exc:
        raise BuildError(f"docker build failed: {_first_line(exc)}") from None
    except (DockerException, requests.RequestException) as exc:
        raise BuildError(f"docker build failed at {step}: {_first_line(exc)}") from None
    if not image_id:
        raise BuildError("docker build finished without an image id", details="\n".join(tail))
    return image_id
