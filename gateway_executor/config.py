"""Command line and environment of the executor (flags win over the environment)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway_executor import defaults
from gateway_executor.affinity import AffinityError, CpuPolicy, parse_cpus

LOG_LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "warn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
    "critical": "CRITICAL",
}


class ConfigError(ValueError):
    """An invalid flag or environment value (reported in one line, exit 2)."""


_DEFAULT_CPUS = parse_cpus(defaults.EXECUTOR_CPUS)


@dataclass(frozen=True)
class ExecutorConfig:
    """Everything ``python -m gateway_executor`` was told."""

    registry: str
    listen: str
    ready_file: str | None
    workers: int | None
    max_concurrent: int
    timeout_s: float | None
    log_level: str
    start_timeout_s: float
    shutdown_grace_s: float
    #: Extra TCP listener for debugging (``HOST:PORT``), served next to the main one.
    debug_listen: str | None = None
    #: Fast-path reply wait in microseconds (0: off); see ``Settings.sync_wait_s``.
    sync_wait_us: int = defaults.SYNC_WAIT_US
    #: Where the executor's own threads run (see ``affinity.py``).
    executor_cpus: CpuPolicy = _DEFAULT_CPUS
    #: gRPC message limit both ways; a policy reply over it fails that one call.
    max_message_bytes: int = defaults.MAX_MESSAGE_BYTES
    #: Seconds until a quarantined policy is released on probation (0: never).
    quarantine_cooldown_s: float = defaults.QUARANTINE_COOLDOWN_S

    @property
    def is_tcp(self) -> bool:
        """``HOST:PORT`` rather than a socket path."""
        return is_tcp_address(self.listen)

    @property
    def socket_path(self) -> str | None:
        """The Unix socket path (None for TCP)."""
        if self.is_tcp:
            return None
        return self.listen[len("unix:") :] if self.listen.startswith("unix:") else self.listen


def is_tcp_address(listen: str) -> bool:
    """True for ``host:port`` / ``[v6]:port``; paths and ``unix:`` addresses are sockets."""
    if listen.startswith(("unix:", "/", ".")):
        return False
    host, sep, port = listen.rpartition(":")
    return bool(sep and host and port.isdigit())


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw, 10)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{name}: expected a positive integer, got {raw!r}")
    return value


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name}: expected a positive number of seconds, got {raw!r}")
    return value


#: Largest accepted ``--sync-wait-us``: the stream reader is held at most this long per call.
MAX_SYNC_WAIT_US = 100_000


def _sync_wait_us(name: str, raw: str) -> int:
    try:
        value = int(raw, 10)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SYNC_WAIT_US:
        raise ConfigError(
            f"{name}: expected an integer number of microseconds from 0 to "
            f"{MAX_SYNC_WAIT_US}, got {raw!r}"
        )
    return value


def _message_bytes(name: str, raw: str) -> int:
    try:
        value = int(raw, 10)
    except ValueError:
        value = 0
    if not defaults.MIN_MESSAGE_BYTES <= value <= defaults.MAX_MESSAGE_BYTES_LIMIT:
        raise ConfigError(
            f"{name}: expected a number of bytes from {defaults.MIN_MESSAGE_BYTES} to "
            f"{defaults.MAX_MESSAGE_BYTES_LIMIT}, got {raw!r}"
        )
    return value


def _cooldown(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ConfigError(f"{name}: expected a number of seconds >= 0 (0: never), got {raw!r}")
    return value


def _log_level(name: str, raw: str) -> str:
    level = LOG_LEVELS.get(raw.strip().lower())
    if level is None:
        raise ConfigError(f"{name}: expected one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return level


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser (kept separate for ``--help`` tests)."""
    p = argparse.ArgumentParser(
        prog="python -m gateway_executor",
        description="Python policy executor: gRPC on a Unix socket, each policy in its own venv.",
    )
    p.add_argument(
        "--registry",
        default=defaults.REGISTRY_PATH,
        help="policy registry JSON (default: %(default)s)",
    )
    p.add_argument(
        "--listen",
        default=None,
        help=f"Unix socket path or HOST:PORT (default: {defaults.SOCKET_PATH}; "
        "env PYTHON_EXECUTOR_LISTEN)",
    )
    p.add_argument(
        "--debug-listen",
        default=None,
        help="also listen on this HOST:PORT, for debugging (env PYTHON_EXECUTOR_DEBUG_LISTEN)",
    )
    p.add_argument(
        "--ready-file", default=None, help="written once every policy passed its start-up check"
    )
    p.add_argument(
        "--workers",
        default=None,
        help=f"override every policy's worker count (env {defaults.ENV_WORKERS})",
    )
    p.add_argument(
        "--max-concurrent",
        default=None,
        help="calls running at once, all policies together "
        f"(default {defaults.DEFAULT_MAX_CONCURRENT}; "
        f"env {defaults.ENV_MAX_CONCURRENT})",
    )
    p.add_argument(
        "--timeout",
        default=None,
        help=f"override every policy's timeout, seconds (env {defaults.ENV_TIMEOUT})",
    )
    p.add_argument(
        "--log-level",
        default=None,
        help=f"debug, info, warning, error (default info; env {defaults.ENV_LOG_LEVEL})",
    )
    p.add_argument(
        "--start-timeout",
        default=None,
        help=f"seconds a policy may take to import (default {defaults.START_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--sync-wait-us",
        default=None,
        help="with no other call in flight, the receiving thread polls this many microseconds "
        "for the worker's reply before handing it to the worker's reader thread; 0 turns the "
        f"fast path off (default {defaults.SYNC_WAIT_US}; env {defaults.ENV_SYNC_WAIT_US})",
    )
    p.add_argument(
        "--executor-cpus",
        default=None,
        help="CPUs for the executor's own threads: auto (one CPU, moved off a busy one), off, "
        "or a list like 0,2-3; policy workers always get every allowed CPU "
        f"(default {defaults.EXECUTOR_CPUS}; env {defaults.ENV_EXECUTOR_CPUS})",
    )
    p.add_argument(
        "--shutdown-grace",
        default=None,
        help="seconds the whole shutdown on SIGTERM may take: in-flight calls get this minus "
        f"{defaults.SHUTDOWN_STOP_RESERVE_S:g} (at most half of it) to finish, then the workers "
        f"are stopped (default {defaults.SHUTDOWN_GRACE_S:g}; env {defaults.ENV_SHUTDOWN_GRACE})",
    )
    p.add_argument(
        "--max-message-bytes",
        default=None,
        help="gRPC message limit both ways; a policy reply over it becomes that call's "
        f"execution_error (default {defaults.MAX_MESSAGE_BYTES}, upstream's 50 MiB; "
        f"env {defaults.ENV_MAX_MESSAGE_BYTES})",
    )
    p.add_argument(
        "--quarantine-cooldown",
        default=None,
        help="seconds until a quarantined policy is released on probation; a crash within "
        f"{defaults.QUARANTINE_WINDOW_S:g}s of the release quarantines it again; 0: never release "
        f"(default {defaults.QUARANTINE_COOLDOWN_S:g}; env {defaults.ENV_QUARANTINE_COOLDOWN})",
    )
    return p


def parse_config(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> ExecutorConfig:
    """Parse flags and environment; raises :class:`ConfigError` on invalid values."""
    env = os.environ if env is None else env
    args = build_parser().parse_args(argv)

    def pick(flag: str | None, env_name: str | None) -> tuple[str, str] | None:
        if flag is not None:
            return f"--{_flag_name(env_name, flag)}", flag
        if env_name and env.get(env_name, "") != "":
            return env_name, env[env_name]
        return None

    workers = pick(args.workers, defaults.ENV_WORKERS)
    max_conc = pick(args.max_concurrent, defaults.ENV_MAX_CONCURRENT)
    timeout = pick(args.timeout, defaults.ENV_TIMEOUT)
    level = pick(args.log_level, defaults.ENV_LOG_LEVEL)
    sync_wait = pick(args.sync_wait_us, defaults.ENV_SYNC_WAIT_US)
    cpus = pick(args.executor_cpus, defaults.ENV_EXECUTOR_CPUS)
    max_message = pick(args.max_message_bytes, defaults.ENV_MAX_MESSAGE_BYTES)
    cooldown = pick(args.quarantine_cooldown, defaults.ENV_QUARANTINE_COOLDOWN)
    grace_raw = pick(args.shutdown_grace, defaults.ENV_SHUTDOWN_GRACE)
    try:
        cpu_policy = parse_cpus(cpus[1] if cpus else defaults.EXECUTOR_CPUS)
    except AffinityError as exc:
        raise ConfigError(f"{cpus[0] if cpus else '--executor-cpus'}: {exc}") from exc
    listen = args.listen or env.get("PYTHON_EXECUTOR_LISTEN") or defaults.SOCKET_PATH
    debug_listen = args.debug_listen or env.get("PYTHON_EXECUTOR_DEBUG_LISTEN") or None
    if debug_listen is not None and not is_tcp_address(debug_listen):
        raise ConfigError(f"--debug-listen: expected HOST:PORT, got {debug_listen!r}")
    start_timeout = (
        _positive_float("--start-timeout", args.start_timeout)
        if args.start_timeout is not None
        else defaults.START_TIMEOUT_S
    )
    grace = _positive_float(grace_raw[0], grace_raw[1]) if grace_raw else defaults.SHUTDOWN_GRACE_S
    return ExecutorConfig(
        registry=args.registry,
        listen=listen,
        ready_file=args.ready_file,
        workers=_positive_int(workers[0], workers[1]) if workers else None,
        max_concurrent=(
            _positive_int(max_conc[0], max_conc[1]) if max_conc else defaults.DEFAULT_MAX_CONCURRENT
        ),
        timeout_s=_positive_float(timeout[0], timeout[1]) if timeout else None,
        log_level=_log_level(level[0], level[1]) if level else "INFO",
        start_timeout_s=start_timeout,
        shutdown_grace_s=grace,
        debug_listen=debug_listen,
        sync_wait_us=(
            _sync_wait_us(sync_wait[0], sync_wait[1]) if sync_wait else defaults.SYNC_WAIT_US
        ),
        executor_cpus=cpu_policy,
        max_message_bytes=(
            _message_bytes(max_message[0], max_message[1])
            if max_message
            else defaults.MAX_MESSAGE_BYTES
        ),
        quarantine_cooldown_s=(
            _cooldown(cooldown[0], cooldown[1]) if cooldown else defaults.QUARANTINE_COOLDOWN_S
        ),
    )


def _flag_name(env_name: str | None, _value: str) -> str:
    return {
        defaults.ENV_WORKERS: "workers",
        defaults.ENV_MAX_CONCURRENT: "max-concurrent",
        defaults.ENV_TIMEOUT: "timeout",
        defaults.ENV_LOG_LEVEL: "log-level",
        defaults.ENV_SYNC_WAIT_US: "sync-wait-us",
        defaults.ENV_EXECUTOR_CPUS: "executor-cpus",
        defaults.ENV_MAX_MESSAGE_BYTES: "max-message-bytes",
        defaults.ENV_QUARANTINE_COOLDOWN: "quarantine-cooldown",
        defaults.ENV_SHUTDOWN_GRACE: "shutdown-grace",
    }.get(env_name or "", "value")
