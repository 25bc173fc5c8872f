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
#: Each policy's home (its workers' HOME and TMPDIR): owned by the policy's uid, mode 0700.
POLICY_HOMES_DIR: Final = "/var/lib/gateway-policies"
#: util-linux ``setpriv`` with the file capabilities CAP_SETUID, CAP_SETGID and CAP_KILL
#: (permitted only), executable by the runtime group alone: the entrypoint starts the executor
#: through it with those three as ambient capabilities, so the executor can run each policy's
#: workers under the policy's own uid.
EXECUTOR_LAUNCHER: Final = "/usr/libexec/gateway-runtime/setpriv-caps"


def venv_dir(policy: str) -> str:
    """Where a policy's virtualenv lives in the image."""
    return f"{VENVS_DIR}/{policy}"


def policy_dir(policy: str) -> str:
    """Where a policy's source tree lives in the image."""
    return f"{POLICIES_DIR}/{policy}"


def policy_home(policy: str) -> str:
    """A policy's private home and temp directory in the image."""
    return f"{POLICY_HOMES_DIR}/{policy}"
