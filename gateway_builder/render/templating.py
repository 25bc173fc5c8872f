"""Jinja2 environment for the build-context templates (``Dockerfile.j2``, ``entrypoint.sh.j2``).

Templates are rendered with ``StrictUndefined`` (a missing value is an error, never an empty
string) and contain no timestamps, so identical inputs give identical bytes.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from gateway_builder import __version__, defaults


def template_dir() -> Path:
    """Where the templates live: inside an installed wheel, else the source checkout."""
    packaged = defaults.PACKAGE_DIR / "_templates"
    return packaged if packaged.is_dir() else defaults.REPO_DIR / "templates"


def _docker_json(value: Any) -> str:
    """A JSON literal for Dockerfile exec-form instructions and LABEL values."""
    return json.dumps(value, ensure_ascii=False)


def _label_quote(value: Any) -> str:
    """A double-quoted Dockerfile word: quotes, backslashes and ``$`` escaped, no control chars."""
    text = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in str(value))
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The shared Jinja2 environment (strict, no autoescape, trailing newline kept)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["sh"] = shlex.quote
    env.filters["json"] = _docker_json
    env.filters["label"] = _label_quote
    return env


def render_template(name: str, **values: Any) -> str:
    """Render one template by file name."""
    return environment().get_template(name).render(**values)


@dataclass(frozen=True)
class EntrypointValues:
    """Everything ``entrypoint.sh.j2`` needs; defaults are the in-image paths of defaults.py."""

    has_python_policies: bool
    builder_version: str = __version__
    executor_python: str = f"{defaults.EXECUTOR_VENV}/bin/python"
    executor_dir: str = defaults.EXECUTOR_DIR
    registry_path: str = defaults.REGISTRY_PATH
    executor_socket: str = defaults.PYTHON_EXECUTOR_SOCKET
    executor_ready_file: str = defaults.PYTHON_EXECUTOR_READY_FILE
    engine_binary: str = defaults.ENGINE_BINARY
    engine_socket: str = defaults.POLICY_ENGINE_SOCKET
    router_binary: str = defaults.ENVOY_BINARY
    router_config: str = defaults.ENVOY_CONFIG
    router_config_override: str = defaults.ENVOY_CONFIG_OVERRIDE
    socket_dir: str = defaults.SOCKET_DIR
    executor_launcher: str = defaults.EXECUTOR_LAUNCHER
    executor_caps: str = ",".join(f"+{c}" for c in defaults.EXECUTOR_CAPABILITIES)
    setpriv: str = defaults.RUNTIME_SETPRIV
    executor_ready_timeout: int = defaults.EXECUTOR_READY_TIMEOUT_S
    engine_ready_timeout: int = defaults.ENGINE_READY_TIMEOUT_S
    shutdown_grace: int = defaults.SHUTDOWN_GRACE_S


def render_entrypoint(values: EntrypointValues) -> str:
    """The bash entrypoint for an image with (or without) Python policies."""
    return render_template("entrypoint.sh.j2", **asdict(values))


@dataclass(frozen=True)
class HealthCheckValues:
    """Everything ``health-check.sh.j2`` (the image's HEALTHCHECK) needs."""

    has_python_policies: bool
    builder_version: str = __version__
    executor_python: str = f"{defaults.EXECUTOR_VENV}/bin/python"
    executor_dir: str = defaults.EXECUTOR_DIR
    executor_socket: str = defaults.PYTHON_EXECUTOR_SOCKET
    probe_timeout: int = defaults.HEALTH_PROBE_TIMEOUT_S


def render_health_check(values: HealthCheckValues) -> str:
    """The bash health check asking the executor, the policy engine and the router."""
    return render_template("health-check.sh.j2", **asdict(values))
