"""The image's file layout: the one place both the builder (which lays the image out) and the
executor (which runs in it) read these paths from. Standard library only."""

from __future__ import annotations

from typing import Final

APP_DIR: Final = "/app"
EXECUTOR_DIR: Final = f"{APP_DIR}/python-executor"
REGISTRY_FILE_NAME: Final = "policy-registry.json"
REGISTRY_PATH: Final = f"{EXECUTOR_DIR}/{REGISTRY_FILE_NAME}"
POLICIES_DIR: Final = f"{APP_DIR}/policies"
#: Each policy's sample requests (JSON data only), so a smoke test of the image needs nothing else.
SAMPLES_DIR: Final = f"{APP_DIR}/policy-samples"
VENVS_DIR: Final = "/opt/venvs"
EXECUTOR_VENV_NAME: Final = "_executor"
EXECUTOR_VENV: Final = f"{VENVS_DIR}/{EXECUTOR_VENV_NAME}"
SOCKET_DIR: Final = "/var/run/api-platform"
PYTHON_EXECUTOR_SOCKET: Final = f"{SOCKET_DIR}/python-executor.sock"
PYTHON_EXECUTOR_READY_FILE: Final = f"{SOCKET_DIR}/python-executor.ready"
POLICY_ENGINE_SOCKET: Final = f"{SOCKET_DIR}/policy-engine.sock"


def venv_dir(policy: str) -> str:
    """Where a policy's virtualenv lives in the image."""
    return f"{VENVS_DIR}/{policy}"


def policy_dir(policy: str) -> str:
    """Where a policy's source tree lives in the image."""
    return f"{POLICIES_DIR}/{policy}"
