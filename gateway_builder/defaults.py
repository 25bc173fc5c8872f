"""Constants of the builder: file names, base images, knobs. In-image paths and the values the
executor also needs are defined once in the executor package and re-exported here."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from gateway_executor import defaults as _executor
from gateway_executor.paths import (  # noqa: F401 (the image layout, shared with the executor)
    APP_DIR,
    EXECUTOR_DIR,
    EXECUTOR_LAUNCHER,
    EXECUTOR_VENV,
    EXECUTOR_VENV_NAME,
    POLICIES_DIR,
    POLICY_ENGINE_SOCKET,
    POLICY_HOMES_DIR,
    PYTHON_EXECUTOR_READY_FILE,
    PYTHON_EXECUTOR_SOCKET,
    REGISTRY_FILE_NAME,
    REGISTRY_PATH,
    SAMPLES_DIR,
    SOCKET_DIR,
    VENVS_DIR,
)
from gateway_executor.phases import SAMPLE_PHASES as _SAMPLE_PHASES

# --- Repository / manifests -------------------------------------------------------------------
PACKAGE_DIR: Final = Path(__file__).resolve().parent
#: The source checkout (present for editable installs and in CI).
REPO_DIR: Final = PACKAGE_DIR.parent
DEFAULT_MANIFEST_DIR: Final = Path("manifests")
DEFAULT_BUILD_FILE: Final = DEFAULT_MANIFEST_DIR / "build.yaml"
DEFAULT_PYTHON_BUILD_FILE: Final = DEFAULT_MANIFEST_DIR / "python-build.yaml"
#: The lock file sits next to python-build.yaml.
LOCK_FILE_NAME: Final = "python-build.lock"
#: Committed copy of the generated registry for the default manifests.
COMMITTED_REGISTRY_DIR: Final = Path("registry")

SUPPORTED_MANIFEST_VERSION: Final = "v1"

# --- Python policies -------------------------------------------------------------------------
#: Python versions a policy may ask for.
SUPPORTED_PYTHONS: Final = ("3.10", "3.11", "3.12", "3.13")
DEFAULT_PYTHON: Final = "3.11"
DEFAULT_FAILURE_MODE: Final = "fail"
DEFAULT_TIMEOUT_MS: Final = int(_executor.DEFAULT_TIMEOUT_S * 1000)
DEFAULT_ISOLATION: Final = "worker"
DEFAULT_WORKERS: Final = _executor.DEFAULT_WORKERS
#: Memory limit of each worker process of a policy (``memory_mb``), MiB.
DEFAULT_MEMORY_MB: Final = _executor.DEFAULT_MEMORY_MB
#: Every policy venv gets the SDK; the lock pins it.
SDK_REQUIREMENT: Final = "apip-sdk-core>=0.2.3,<0.3"
POLICY_DEFINITION_FILE: Final = "policy-definition.yaml"
POLICY_ENTRY_MODULE: Final = "policy"
PYTHON_VERSION_FILE: Final = "python_version.txt"
#: A policy folder's sample requests (``*.json``, docs/DESIGN.md "Sample requests").
POLICY_SAMPLES_DIR: Final = "samples"

# --- Policy developer kit (new-policy, test-policy, describe-policy) -------------------------
#: ``new-policy --phase`` values: the sample phases, and ``streaming`` (a streamed response body
#: with its buffered fallback).
SCAFFOLD_PHASES: Final = (*_SAMPLE_PHASES, "streaming")
DEFAULT_SCAFFOLD_PHASES: Final = ("request_headers",)
#: Version a new policy starts at.
SCAFFOLD_VERSION: Final = "v0.1.0"
#: Seconds between two looks at a policy folder in ``test-policy --watch``.
WATCH_POLL_S: Final = 0.5
#: Per-call timeout of the test harness's executor (a hanging hook fails the call, not the run).
HARNESS_TIMEOUT_MS: Final = 10_000
#: Seconds the harness's executor gets to import the policy and pass its start-up check.
HARNESS_START_TIMEOUT_S: Final = 120.0

# --- Lock / resolve --------------------------------------------------------------------------
DEFAULT_RESOLVER: Final = "uv"
RESOLVERS: Final = ("uv", "pip-tools")
#: Linux architectures a lock can target; x86_64 is always locked.
PLATFORMS: Final = ("x86_64", "aarch64")
DEFAULT_PLATFORM: Final = "x86_64"
#: uv --python-platform target per architecture (glibc 2.28+ wheels run on bookworm's 2.36).
UV_PLATFORM_TRIPLES: Final = {
    "x86_64": "x86_64-manylinux_2_28",
    "aarch64": "aarch64-manylinux_2_28",
}
DEFAULT_INDEX_URL: Final = "https://pypi.org/simple"
#: Environment variable naming another default index (a mirror); policies' own index_url win.
INDEX_URL_ENV: Final = "GATEWAY_BUILDER_INDEX_URL"
#: The installer locked for the image's builder stages (a pinned, hashed pip wheel).
INSTALLER_REQUIREMENTS: Final = ("pip",)
#: Python version the installer is resolved for: the oldest supported, so it runs on all of them.
INSTALLER_PYTHON: Final = SUPPORTED_PYTHONS[0]
#: The executor's own requirements, relative to the gateway_executor package.
EXECUTOR_REQUIREMENTS_FILE: Final = "requirements.in"
#: Timestamp used when nothing else gives one (1980-01-01T00:00:00Z, the zip epoch): wheel builds
#: of path sources, and the image's created time when no git source has a commit time.
DEFAULT_SOURCE_DATE_EPOCH: Final = 315_532_800

# --- Paths inside the image ------------------------------------------------------------------
ENGINE_BINARY: Final = "/app/policy-engine"
ENTRYPOINT_PATH: Final = "/app/entrypoint.sh"
ENVOY_BINARY: Final = "/usr/local/bin/envoy"
ENVOY_CONFIG: Final = "/etc/envoy/envoy.yaml"
#: Upstream runtime images ship this override; the entrypoint passes it through envsubst if present.
ENVOY_CONFIG_OVERRIDE: Final = "/etc/envoy/config-override.yaml"
#: Init process of the runtime base (upstream and local bases both install Debian's tini here).
TINI_PATH: Final = "/usr/bin/tini"
#: util-linux ``setpriv`` in the runtime base (Debian and Ubuntu ship it in an essential package):
#: the image's executor launcher is a copy of it with file capabilities.
RUNTIME_SETPRIV: Final = "/usr/bin/setpriv"
RUNTIME_USER: Final = "wso2"
RUNTIME_UID: Final = 10001
#: Each Python policy's workers run under a uid (and gid of the same number) of its own, taken
#: from this range by a hash of the policy's name (``plan.allocate_uids``); the image has a user
#: ``<POLICY_USER_PREFIX><name>`` for each.
POLICY_UID_FIRST: Final = 20000
POLICY_UID_COUNT: Final = 10000
POLICY_USER_PREFIX: Final = "pol-"
#: The capabilities the executor keeps (ambient, through ``EXECUTOR_LAUNCHER``) to start its
#: workers under those uids and to stop them; it drops every other one.
EXECUTOR_CAPABILITIES: Final = ("kill", "setgid", "setuid")
EXPOSED_PORTS: Final = (8080, 8443, 9901, 9002, 9003)
#: TCP fallback port for the executor (debugging only).
EXECUTOR_DEBUG_PORT: Final = 9004

# --- Base images -----------------------------------------------------------------------------
DEFAULT_GATEWAY_VERSION: Final = "1.2.0"
UPSTREAM_REGISTRY: Final = "ghcr.io/wso2/api-platform"


def upstream_builder_image(gateway_version: str) -> str:
    """Default image that compiles the Go policy engine."""
    return f"{UPSTREAM_REGISTRY}/gateway-builder:{gateway_version}"


#: How the upstream builder image compiles the engine (its ENTRYPOINT, which adds the system
#: policies); the Dockerfile appends ``-build-file FILE -out-dir DIR``.
UPSTREAM_ENGINE_BUILDER_COMMAND: Final = (
    "/usr/local/bin/gateway-builder",
    "-system-build-lock",
    "/api-platform/gateway/system-policies/system-build-lock.yaml",
)
#: Where the upstream builder writes the compiled engine, relative to ``-out-dir``.
ENGINE_BUILDER_OUTPUT: Final = "gateway-runtime/policy-engine"


def upstream_runtime_image(gateway_version: str) -> str:
    """Default runtime base (Envoy, its configuration and tini)."""
    return f"{UPSTREAM_REGISTRY}/gateway-runtime:{gateway_version}"


def upstream_python_image(python_version: str) -> str:
    """Default Python builder base for one Python version."""
    return f"python:{python_version}-slim-bookworm"


def with_mirror(image: str, mirror: str | None) -> str:
    """Rewrite ``image`` to pull through a registry mirror prefix (``mirror.example/pfx``)."""
    if not mirror:
        return image
    mirror = mirror.rstrip("/")
    first = image.split("/", 1)[0]
    has_registry = "/" in image and ("." in first or ":" in first or first == "localhost")
    path = image.split("/", 1)[1] if has_registry else image
    if not has_registry and "/" not in path:
        path = f"library/{path}"
    return f"{mirror}/{path}"


#: Prefix of the locally built base images (``gateway-builder bases build``).
LOCAL_BASE_REPO: Final = "gateway-builder-local"
#: Label set on images whose router/engine are stand-ins.
STANDIN_LABEL: Final = "io.gateway-builder.standin"
#: What the stand-ins are, for the ``<STANDIN_LABEL>.note`` label of bases and images.
STANDIN_NOTE: Final = (
    f"router ({ENVOY_BINARY}) and policy engine are gateway-builder stand-ins, "
    "not Envoy or the upstream policy engine"
)
#: What ``build`` says when it builds on local bases.
STANDIN_WARNING: Final = (
    f"--bases local: STAND-INS in this image: the {STANDIN_NOTE}. The image runs your Python policies for real; do not "
    f"deploy it as a gateway (label {STANDIN_LABEL}=true)."
)
#: Debian release, debootstrap variant and mirrors of the local Debian base (plain HTTP:
#: containers here do not trust the host's TLS-intercepting CA, and apt verifies signatures).
LOCAL_DEBIAN_SUITE: Final = "bookworm"
LOCAL_DEBIAN_VARIANT: Final = "minbase"
LOCAL_DEBIAN_MIRROR: Final = "http://deb.debian.org/debian"
LOCAL_DEBIAN_SECURITY_MIRROR: Final = "http://deb.debian.org/debian-security"
#: The CPython that Debian packages for LOCAL_DEBIAN_SUITE: its local base (and the local runtime)
#: install Debian's package instead of copying an interpreter prefix. Tied to the suite, not to
#: DEFAULT_PYTHON.
LOCAL_DEBIAN_PYTHON: Final = "3.11"
#: Where a Python copied from an interpreter prefix lives in the local bases.
LOCAL_PYTHON_ROOT: Final = "/opt/python"
#: Debian packages with the shared libraries a copied CPython's extension modules link against.
LOCAL_PYTHON_RUNTIME_PACKAGES: Final = (
    "libbz2-1.0",
    "libcrypt1",
    "libffi8",
    "liblzma5",
    "libncursesw6",
    "libnsl2",
    "libreadline8",
    "libsqlite3-0",
    "libssl3",
    "libtinfo6",
    "libtirpc3",
    "libuuid1",
    "zlib1g",
)

# --- Container engine ------------------------------------------------------------------------
DOCKER_DEFAULT_HOST: Final = "unix:///var/run/docker.sock"
#: HTTP timeout of Docker API calls (a build step can be silent for minutes).
DOCKER_API_TIMEOUT_S: Final = 1800
#: How long ensure_engine() waits for a dockerd it started.
DOCKER_START_TIMEOUT_S: Final = 60
DOCKERD_LOG: Final = "/var/log/dockerd.log"

# --- Cache -----------------------------------------------------------------------------------
CACHE_ENV: Final = "GATEWAY_BUILDER_CACHE_DIR"

# --- Entrypoint / runtime knobs --------------------------------------------------------------
EXECUTOR_READY_TIMEOUT_S: Final = 120
ENGINE_READY_TIMEOUT_S: Final = 30
#: The whole ordered shutdown (router, engine, executor) in seconds: inside ``docker stop``'s 10.
SHUTDOWN_GRACE_S: Final = 8
#: Environment variables the entrypoint reads to override the three values above (seconds).
EXECUTOR_READY_TIMEOUT_ENV: Final = "PYTHON_EXECUTOR_READY_TIMEOUT"
ENGINE_READY_TIMEOUT_ENV: Final = "POLICY_ENGINE_READY_TIMEOUT"
SHUTDOWN_GRACE_ENV: Final = "SHUTDOWN_GRACE_SECONDS"
#: The image's Docker HEALTHCHECK: ``health-check.sh`` asks the executor, engine and router, each
#: within HEALTH_PROBE_TIMEOUT_S (env HEALTH_CHECK_TIMEOUT_SECONDS). Failures during the start
#: period (as long as the entrypoint waits for readiness) do not count.
HEALTH_CHECK_PATH: Final = "/app/health-check.sh"
HEALTH_PROBE_TIMEOUT_S: Final = 3
HEALTHCHECK_INTERVAL_S: Final = 10
HEALTHCHECK_TIMEOUT_S: Final = 15
HEALTHCHECK_START_PERIOD_S: Final = EXECUTOR_READY_TIMEOUT_S + ENGINE_READY_TIMEOUT_S
HEALTHCHECK_RETRIES: Final = 3

# --- Smoke test (gateway-builder smoke-test) -------------------------------------------------
#: Seconds the three processes get to report ready (--timeout).
SMOKE_READY_TIMEOUT_S: Final = 120.0
#: After SIGTERM the container must exit 0 within this many seconds.
SMOKE_SHUTDOWN_DEADLINE_S: Final = float(SHUTDOWN_GRACE_S + 5)
#: After the executor is killed the container must exit (non-zero) within this many seconds.
SMOKE_FAIL_FAST_DEADLINE_S: Final = float(SHUTDOWN_GRACE_S + 5)
#: Deadline of one gRPC call (HealthCheck, InitPolicy, one sample through ExecuteStream).
SMOKE_CALL_TIMEOUT_S: Final = 15.0
#: Container log lines shown on failure.
SMOKE_LOG_TAIL_LINES: Final = 200
#: How long the smoke test waits for the bind-mounted socket to connect before it uses TCP.
SMOKE_SOCKET_PROBE_S: Final = 3.0
