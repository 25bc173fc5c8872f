"""Process entry point: bind the socket, start the policies, serve, shut down cleanly."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

import grpc

from gateway_executor import defaults
from gateway_executor.affinity import AffinityError, Placement
from gateway_executor.config import ConfigError, ExecutorConfig, parse_config
from gateway_executor.engine import Engine, Settings
from gateway_executor.proto import python_executor_pb2_grpc as pb_grpc
from gateway_executor.registry import RegistryError, load_registry
from gateway_executor.service import ExecutorService

log = logging.getLogger("gateway_executor")


class StartError(RuntimeError):
    """The executor cannot start (bad registry, socket path in use, ...)."""


def setup_logging(level: str) -> None:
    """One line per record on stdout: ``time [LEVEL] logger: message``."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("grpc").setLevel(logging.WARNING)


def _prepare_socket(path: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = target.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StartError(f"{path} exists and is not a socket; refusing to replace it")
    target.unlink()  # stale socket from a previous run


def _write_atomic(path: str, text: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)


def _remove(path: str | None) -> None:
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class ExecutorServer:
    """The gRPC server, the engine and the shutdown sequence."""

    def __init__(self, cfg: ExecutorConfig) -> None:
        self.cfg = cfg
        try:
            entries = load_registry(cfg.registry)
        except RegistryError as exc:
            raise StartError(str(exc)) from exc
        # Before any thread starts: gRPC's threads and the worker drivers inherit the CPU.
        self.placement = Placement(cfg.executor_cpus)
        try:
            self.placement.apply()
        except AffinityError as exc:
            raise StartError(f"--executor-cpus: {exc}") from exc
        self.engine = Engine(
            entries,
            Settings(
                workers=cfg.workers,
                timeout_s=cfg.timeout_s,
                max_concurrent=cfg.max_concurrent,
                start_timeout_s=cfg.start_timeout_s,
                shutdown_grace_s=cfg.shutdown_grace_s,
                sync_wait_s=cfg.sync_wait_us / 1e6,
            ),
            on_spawn=self.placement.release,
        )
        self.service = ExecutorService(self.engine)
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=64, thread_name_prefix="grpc"),
            options=[
                ("grpc.max_send_message_length", defaults.MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", defaults.MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        pb_grpc.add_PythonExecutorServiceServicer_to_server(self.service, self.server)
        self.address = ""
        self.stopped = threading.Event()
        self._start_thread: threading.Thread | None = None

    def bind(self) -> str:
        """Bind the socket / port; returns the address actually listened on."""
        cfg = self.cfg
        if cfg.socket_path is not None:
            _prepare_socket(cfg.socket_path)
            address = f"unix:{cfg.socket_path}"
        else:
            address = cfg.listen
        try:
            port = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            raise StartError(f"cannot listen on {cfg.listen}: {exc}") from exc
        if cfg.socket_path is None:
            if port == 0:
                raise StartError(f"cannot listen on {cfg.listen}")
            host = cfg.listen.rpartition(":")[0]
            address = f"{host}:{port}"
        if cfg.debug_listen:
            try:
                debug_port = self.server.add_insecure_port(cfg.debug_listen)
            except RuntimeError as exc:
                raise StartError(f"cannot listen on {cfg.debug_listen}: {exc}") from exc
            if debug_port == 0:
                raise StartError(f"cannot listen on {cfg.debug_listen}")
            log.info("debug listener on %s:%d", cfg.debug_listen.rpartition(":")[0], debug_port)
        self.address = address
        return address

    def start(self) -> None:
        """Start serving (HealthCheck answers at once), then start the policies."""
        self.server.start()
        log.info("listening on %s", self.address)
        self._start_thread = threading.Thread(
            target=self._start_policies, name="start-policies", daemon=True
        )
        self._start_thread.start()

    def _start_policies(self) -> None:
        ok = self.engine.start()
        if self.engine.draining:
            return
        n = len(self.engine.runtimes)
        if ok:
            if self.cfg.ready_file:
                _write_atomic(self.cfg.ready_file, f"{os.getpid()}\n")
            log.info("executor ready: %d policies", n)
        else:
            log.error("executor not ready: %s", self.engine.not_ready_reason())

    def shutdown(self) -> None:
        """Stop accepting, drain in-flight calls (up to the grace period), stop workers."""
        grace = self.cfg.shutdown_grace_s
        log.info("shutting down (grace %.1fs)", grace)
        _remove(self.cfg.ready_file)
        with self.engine._lock:
            self.engine.draining = True
        stopped = self.server.stop(grace + 1.0)
        if not self.engine.wait_idle(grace):
            log.warning("in-flight calls still running after %.1fs; stopping anyway", grace)
        self.service.close_streams()
        stopped.wait(grace + 2.0)
        self.engine.stop(timeout=2.0)
        if self._start_thread is not None:
            self._start_thread.join(5.0)
        self.service.shutdown()
        self.placement.stop()
        _remove(self.cfg.socket_path)
        left = self.engine.live_pids()
        if left:
            log.error("worker processes still alive after shutdown: %s", left)
        log.info("executor stopped")
        self.stopped.set()


def run(cfg: ExecutorConfig) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        srv = ExecutorServer(cfg)
        srv.bind()
    except StartError as exc:
        log.error("%s", exc)
        return 2
    srv.start()
    while not stop.wait(1.0):
        pass
    srv.shutdown()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gateway_executor``."""
    try:
        cfg = parse_config(argv)
    except ConfigError as exc:
        print(f"gateway_executor: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(cfg.log_level)
    started = time.monotonic()
    code = run(cfg)
    log.debug("ran for %.1fs", time.monotonic() - started)
    return code
