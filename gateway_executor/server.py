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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType, SimpleNamespace
from typing import Any

import grpc

from gateway_executor import containment, defaults, output
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
    """One line per record on stdout: ``time [LEVEL] logger: message``, written by the
    stdout writer thread, which policy output never blocks (``output.py``)."""
    handler = output.SinkHandler(output.sink())
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


def _on_pool(method: Callable[..., Any], pool: ThreadPoolExecutor) -> Callable[..., Any]:
    """``method`` as a gRPC behaviour that grpcio runs on ``pool`` (its per-method
    ``experimental_thread_pool``), keeping ``experimental_non_blocking`` if it has it."""

    def behavior(*args: Any) -> Any:
        return method(*args)

    behavior.experimental_thread_pool = pool  # type: ignore[attr-defined]
    if getattr(method, "experimental_non_blocking", False):
        behavior.experimental_non_blocking = True  # type: ignore[attr-defined]
    return behavior


class ExecutorServer:
    """The gRPC server, the engine and the shutdown sequence.

    Threads: grpc's sync server runs every RPC on a thread of a pool, and an ``ExecuteStream``
    keeps its thread for as long as it is open (it reads the stream; see ``service.py``). So
    each kind of RPC gets a pool of its own: streams one that grows to ``MAX_STREAMS`` threads
    (a parked thread per open stream, created when needed), ``HealthCheck`` one and
    ``InitPolicy``/``DestroyPolicy`` one. No number of open streams delays a control RPC, and a
    hanging ``InitPolicy`` never delays ``HealthCheck``.
    """

    def __init__(self, cfg: ExecutorConfig) -> None:
        self.cfg = cfg
        # A ready file left by an executor that was killed must not announce this one.
        _remove(cfg.ready_file)
        try:
            entries = load_registry(cfg.registry)
        except RegistryError as exc:
            raise StartError(str(exc)) from exc
        # Before any thread starts (capabilities and no_new_privs belong to a thread; threads
        # copy them): drop what the executor does not need, decide how workers start.
        try:
            self.containment = containment.setup(entries)
        except containment.ContainmentError as exc:
            raise StartError(str(exc)) from exc
        launch = self.containment.launch
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
                max_message_bytes=cfg.max_message_bytes,
                quarantine_cooldown_s=cfg.quarantine_cooldown_s,
            ),
            on_spawn=self.placement.release,
            launch=launch,
        )
        launch.worker_cpus = self.placement.worker_cpus
        for off in self.containment.off:
            self.engine.protections.off(off.name, off.detail, off.policy)
        self.service = ExecutorService(self.engine)
        self._pools = {
            "stream": ThreadPoolExecutor(defaults.MAX_STREAMS, thread_name_prefix="grpc-stream"),
            "health": ThreadPoolExecutor(defaults.HEALTH_THREADS, thread_name_prefix="grpc-health"),
            "control": ThreadPoolExecutor(
                defaults.CONTROL_THREADS, thread_name_prefix="grpc-control"
            ),
        }
        self.server = grpc.server(
            self._pools["control"],
            options=[
                ("grpc.max_send_message_length", cfg.max_message_bytes),
                ("grpc.max_receive_message_length", cfg.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        service = self.service
        routed = SimpleNamespace(
            ExecuteStream=_on_pool(service.ExecuteStream, self._pools["stream"]),
            HealthCheck=_on_pool(service.HealthCheck, self._pools["health"]),
            InitPolicy=_on_pool(service.InitPolicy, self._pools["control"]),
            DestroyPolicy=_on_pool(service.DestroyPolicy, self._pools["control"]),
        )
        pb_grpc.add_PythonExecutorServiceServicer_to_server(routed, self.server)
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
        """Stop accepting, drain in-flight calls, stop workers: all within ``--shutdown-grace``.

        The drain ends early when every call still running has nobody waiting for its answer
        (its stream ended or it was cancelled, e.g. because the policy engine stopped first).
        """
        budget = self.cfg.shutdown_grace_s
        started = time.monotonic()
        end = started + budget
        drain_end = end - min(defaults.SHUTDOWN_STOP_RESERVE_S, budget / 2)
        log.info(
            "shutting down: in-flight calls get %.1fs, the whole shutdown %.1fs",
            drain_end - started,
            budget,
        )
        _remove(self.cfg.ready_file)
        with self.engine._lock:
            self.engine.draining = True
        stopped = self.server.stop(budget)
        while not self.engine.wait_idle(min(0.05, max(drain_end - time.monotonic(), 0))):
            if not self.service.awaited_calls():
                log.info("calls still running have nobody waiting for them: not waiting")
                break
            if time.monotonic() >= drain_end:
                log.warning(
                    "in-flight calls still running after %.1fs; stopping anyway",
                    drain_end - started,
                )
                break
        self.service.close_streams()
        stopped.wait(max(min(0.5, end - time.monotonic()), 0.05))
        self.engine.stop(timeout=max(min(1.0, end - time.monotonic() - 0.3), 0.1))
        if self._start_thread is not None:
            self._start_thread.join(max(end - time.monotonic(), 0.1))
        self.service.shutdown()
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        self.placement.stop()
        self.containment.launch.cleanup()
        _remove(self.cfg.socket_path)
        left = self.engine.live_pids()
        if left:
            log.error("worker processes still alive after shutdown: %s", left)
        log.info("executor stopped in %.1fs", time.monotonic() - started)
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
    """``python -m gateway_executor``.

    After a shutdown the process ends at once (``os._exit``): everything was stopped in order
    within the shutdown budget, and a thread still blocked somewhere (a gRPC handler, a
    policy's ``close``) must not hold the exit past it.
    """
    try:
        cfg = parse_config(argv)
    except ConfigError as exc:
        print(f"gateway_executor: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(cfg.log_level)
    started = time.monotonic()
    code = run(cfg)
    log.debug("ran for %.1fs", time.monotonic() - started)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
