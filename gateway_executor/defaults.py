"""Executor defaults. The runtime never imports ``gateway_builder``; the builder reads the values
both sides share (paths in :mod:`gateway_executor.paths`, timeouts, worker counts) from here."""

from __future__ import annotations

from typing import Final

from gateway_executor import paths

SOCKET_PATH: Final = paths.PYTHON_EXECUTOR_SOCKET
READY_FILE: Final = paths.PYTHON_EXECUTOR_READY_FILE
REGISTRY_PATH: Final = paths.REGISTRY_PATH
REGISTRY_FORMAT: Final = "gateway-builder/policy-registry"
REGISTRY_FORMAT_VERSION: Final = 1

#: Upstream environment variables (same names as the upstream executor).
ENV_WORKERS: Final = "PYTHON_POLICY_WORKERS"
ENV_MAX_CONCURRENT: Final = "PYTHON_POLICY_MAX_CONCURRENT"
ENV_TIMEOUT: Final = "PYTHON_POLICY_TIMEOUT"
ENV_LOG_LEVEL: Final = "LOG_LEVEL"

DEFAULT_MAX_CONCURRENT: Final = 100
DEFAULT_LOG_LEVEL: Final = "info"
#: Used for registry entries that carry no timeout/workers of their own.
DEFAULT_TIMEOUT_S: Final = 30.0
DEFAULT_WORKERS: Final = 2
#: Memory of each worker process of a policy, in MiB (``memory_mb``): RLIMIT_DATA, and
#: RLIMIT_AS with ``framing.ADDRESS_SPACE_HEADROOM_MB`` more (worker_shim.py).
DEFAULT_MEMORY_MB: Final = 1024

#: A worker must import its policy and pass the start-up check within this many seconds.
START_TIMEOUT_S: Final = 120.0
#: SIGTERM: the whole shutdown fits in this many seconds: in-flight calls get it minus
#: ``SHUTDOWN_STOP_RESERVE_S``, then the workers are stopped. Docker's ``docker stop`` waits
#: 10 s; the image's entrypoint gives its whole ordered shutdown 8 s and the executor 6 of them.
SHUTDOWN_GRACE_S: Final = 6.0
#: ... of which stopping the workers (``exit``, then SIGKILL) and the server may take this long.
SHUTDOWN_STOP_RESERVE_S: Final = 1.5
#: Crash handling: replacement backoff (doubles per crash in the window) and quarantine.
RESPAWN_BACKOFF_S: Final = 0.1
RESPAWN_BACKOFF_MAX_S: Final = 5.0
QUARANTINE_CRASHES: Final = 5
QUARANTINE_WINDOW_S: Final = 60.0
#: Fast path: with no other call in flight, the thread that received a call polls this many
#: microseconds for the worker's reply before handing it to the worker's driver thread (0: off).
SYNC_WAIT_US: Final = 200
ENV_SYNC_WAIT_US: Final = "PYTHON_EXECUTOR_SYNC_WAIT_US"
#: Where the executor's own threads run (``affinity.py``): auto, off or a CPU list.
EXECUTOR_CPUS: Final = "auto"
ENV_EXECUTOR_CPUS: Final = "PYTHON_EXECUTOR_CPUS"
#: ... but only for a request the stream was idle for: one read sooner than this after the
#: previous request was handled was already queued (the stream is busy), so it goes to the
#: worker's driver thread and the reader moves on to the next request.
SYNC_IDLE_GAP_US: Final = 100
#: ... and only after this many requests in a row found the stream idle.
SYNC_IDLE_STREAK: Final = 6
#: gRPC message size limit (upstream uses 50 MiB both ways). Worker frames have their own limit,
#: ``framing.MAX_FRAME``.
MAX_MESSAGE_BYTES: Final = 50 * 1024 * 1024
ENV_MAX_MESSAGE_BYTES: Final = "PYTHON_EXECUTOR_MAX_MESSAGE_BYTES"
#: ``--max-message-bytes`` accepts this range (gRPC's limit is a signed 32-bit length).
MIN_MESSAGE_BYTES: Final = 4096
MAX_MESSAGE_BYTES_LIMIT: Final = 2**31 - 1
#: A quarantined policy is released on probation after this many seconds (0: never); a crash
#: within ``QUARANTINE_WINDOW_S`` of the release quarantines it again at once.
QUARANTINE_COOLDOWN_S: Final = 60.0
ENV_QUARANTINE_COOLDOWN: Final = "PYTHON_EXECUTOR_QUARANTINE_COOLDOWN"
ENV_SHUTDOWN_GRACE: Final = "PYTHON_EXECUTOR_SHUTDOWN_GRACE"
#: Threads of the gRPC server. Each open ``ExecuteStream`` holds one thread of its own pool (a
#: parked thread: no CPU, a few tens of KiB) while it is open, up to this many streams; the
#: control RPCs have pools of their own, so no number of streams makes them wait.
MAX_STREAMS: Final = 1024
CONTROL_THREADS: Final = 16
HEALTH_THREADS: Final = 4
