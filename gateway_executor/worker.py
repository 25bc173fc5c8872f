"""One worker process: spawn it with the policy's interpreter, talk framed JSON to it, kill it.

Frames are those of :mod:`gateway_executor.framing`. Replies are only JSON-decoded, so a
compromised policy process cannot run code in the executor; a frame larger than
:data:`framing.MAX_FRAME`, trailing bytes or undecodable JSON are protocol errors and the worker
is killed.

All processes are started from one long-lived thread (:class:`Spawner`): Linux delivers
``PR_SET_PDEATHSIG`` when the *thread* that forked a child exits, so spawning from short-lived
threads would kill workers at random.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from gateway_executor import framing
from gateway_executor.framing import FrameError, FrameReader, encode
from gateway_executor.registry import PolicyEntry

log = logging.getLogger("gateway_executor.worker")

SHIM_PATH = Path(__file__).resolve().parent / "worker_shim.py"


class WorkerError(Exception):
    """Base class for worker failures."""


class WorkerDied(WorkerError):
    """The worker exited or closed its socket (crash, ``os._exit``, OOM kill)."""


class WorkerTimeout(WorkerError):
    """The worker did not answer in time."""


class WorkerProtocolError(WorkerError):
    """The worker sent something that is not a valid frame."""


def decode(body: bytes) -> dict[str, Any]:
    """Parse one reply frame's body; only JSON objects are valid replies."""
    try:
        reply = framing.decode(body)
    except FrameError as exc:
        raise WorkerProtocolError(str(exc)) from exc
    if not isinstance(reply, dict):
        raise WorkerProtocolError("frame is not an object")
    return reply


class Spawner:
    """Starts every worker process from one dedicated, long-lived thread."""

    def __init__(self, on_spawn: Callable[[int], None] | None = None) -> None:
        #: Called with each new process's pid on the spawner thread, right after it started.
        self.on_spawn = on_spawn
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="worker-spawner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # handed to the caller
                fut.set_exception(exc)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the spawner thread and return its result."""
        fut: Future[Any] = Future()
        self._jobs.put((fn, fut))
        return fut.result()

    def stop(self) -> None:
        """Let the spawner thread end (only after every worker is gone)."""
        self._jobs.put(None)


class WorkerProcess:
    """A running worker: the process, its socket and its cancellation pipe."""

    def __init__(
        self,
        entry: PolicyEntry,
        proc: subprocess.Popen[bytes],
        sock: socket.socket,
        control_w: int | None,
    ) -> None:
        self.entry = entry
        self.proc = proc
        self.pid = proc.pid
        self.sock = sock
        #: Reads replies with no deadline (the socket is blocking once the pool drives it).
        self._frames = FrameReader(sock.recv)
        self._control_w = control_w
        self._seq = 0
        self.dead = False
        #: Policy instances this process has created (lazily, on first call).
        self.known: set[str] = set()
        #: Instances destroyed since this worker last ran; closed before its next call.
        self.pending_drop: list[str] = []
        self.python_version = ""
        self.distributions: dict[str, str] = {}
        #: The pool's job now running here (a ``jobs.Job``), and why the pool condemned this
        #: worker ("" while healthy). Both are guarded by the owning pool's lock.
        self.job: Any = None
        self.doomed = ""
        #: Who reads the next reply (guarded by the pool's lock): ``"driver"`` (the driver
        #: thread), ``"parked"`` (idle; the driver sleeps in :meth:`park`) or ``"sync"`` (the
        #: thread that submitted the call waits for its reply itself).
        self.reader = "driver"
        #: Set once :meth:`park` saw the process end.
        self.exited = False
        self._pidfd: int | None = None
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._park_poll: Any = None
        #: ``poll`` of a poller on the reply socket, made on the first fast-path call.
        self._reply_poll: Any = None
        #: Orders wake-ups against the driver closing the wake pipe (no write to a closed,
        #: possibly reused descriptor).
        self._park_lock = threading.Lock()

    @classmethod
    def spawn(cls, entry: PolicyEntry, spawner: Spawner, control: bool = True) -> WorkerProcess:
        """Start a worker for ``entry`` (from the spawner thread)."""

        def start() -> WorkerProcess:
            w = cls._spawn(entry, control)
            if spawner.on_spawn is not None:
                spawner.on_spawn(w.pid)
            return w

        return spawner.call(start)

    @classmethod
    def _spawn(cls, entry: PolicyEntry, control: bool) -> WorkerProcess:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ctrl_r = ctrl_w = None
        if control:
            ctrl_r, ctrl_w = os.pipe()
            os.set_blocking(ctrl_w, False)
        args = [
            entry.python,
            "-I",
            "-u",
            str(SHIM_PATH),
            "--fd",
            str(child.fileno()),
            "--parent-pid",
            str(os.getpid()),
        ]
        fds: tuple[int, ...] = (child.fileno(),)
        if ctrl_r is not None:
            args += ["--control-fd", str(ctrl_r)]
            fds += (ctrl_r,)
        try:
            proc = subprocess.Popen(args, pass_fds=fds, stdin=subprocess.DEVNULL, close_fds=True)
        except OSError as exc:
            parent.close()
            for fd in (ctrl_r, ctrl_w):
                if fd is not None:
                    os.close(fd)
            raise WorkerDied(f"cannot start {entry.python}: {exc.strerror or exc}") from exc
        finally:
            child.close()
        if ctrl_r is not None:
            os.close(ctrl_r)
        return cls(entry, proc, parent, ctrl_w)

    # ---- parking: the driver sleeps while a submitting thread reads -------------------------
    def enable_parking(self) -> bool:
        """Open what a parked driver waits on: a pidfd (the process ended) and a wake pipe.

        False where pidfds are missing (not Linux, kernel < 5.3): the driver then always reads.
        """
        if self._pidfd is not None:
            return True
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            return False
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        poller = select.poll()
        poller.register(wake_r, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        self._pidfd, self._wake_r, self._wake_w, self._park_poll = pidfd, wake_r, wake_w, poller
        return True

    @property
    def parks(self) -> bool:
        """Whether this worker's driver sleeps while the worker is idle."""
        return self._pidfd is not None

    def park(self) -> None:
        """Driver thread: sleep until :meth:`wake_driver` or the process ends (sets
        :attr:`exited`). Once the end was seen only a wake ends the sleep."""
        if self._park_poll is None:
            return
        if self.exited:  # the pidfd stays readable: wait for the wake alone
            only_wake = select.poll()
            only_wake.register(self._wake_r, select.POLLIN)  # type: ignore[arg-type]
            only_wake.poll()
        else:
            for fd, _ in self._park_poll.poll():
                if fd == self._pidfd:
                    self.exited = True
        with contextlib.suppress(OSError):  # drain: one wake is enough however many came
            os.read(self._wake_r, 4096)  # type: ignore[arg-type]

    def wake_driver(self) -> None:
        """Wake the parked driver thread (a full pipe means it is woken already)."""
        with self._park_lock:
            if self._wake_w is not None:
                with contextlib.suppress(OSError):
                    os.write(self._wake_w, b"\0")

    def close_park_fds(self) -> None:
        """Release the parking descriptors (by the driver thread, when it ends)."""
        with self._park_lock:
            fds = (self._pidfd, self._wake_r, self._wake_w)
            self._pidfd = self._wake_r = self._wake_w = self._park_poll = None
        for fd in fds:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def wait_reply(self, spin_s: float) -> bool:
        """Poll the socket without sleeping for up to ``spin_s``; True once it is readable
        (a reply, or the end of the connection)."""
        fd = self.sock.fileno()
        if fd < 0:
            return True  # closed (killed): the read reports it
        poll = self._reply_poll
        if poll is None:  # the socket lives as long as the worker: register it once
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            poll = self._reply_poll = poller.poll
        clock = time.perf_counter
        # Yield between polls: where the worker shares this CPU (one core, or pinned) a bare
        # spin would keep it from running (measured 4% slower than no fast path at all; with
        # the yield, equal), and with a free core the yield returns at once.
        yield_cpu = os.sched_yield
        end = clock() + spin_s
        while not poll(0):
            if clock() >= end:
                return False
            yield_cpu()
        return True

    # ---- request / reply -----------------------------------------------------------------
    def next_seq(self) -> int:
        """A fresh call sequence number (used for cancellation)."""
        self._seq += 1
        return self._seq

    def request(self, msg: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        """Send one frame and wait for its reply."""
        self.send(msg)
        return self.receive(timeout)

    def send(self, msg: dict[str, Any]) -> None:
        """Send one frame (the reply is read with :meth:`receive`)."""
        if self.dead:
            raise WorkerDied("worker already stopped")
        try:
            self.sock.settimeout(None)
            self.sock.sendall(encode(msg))
        except OSError as exc:
            raise WorkerDied(f"connection lost: {exc}") from exc

    def write(self, data: bytes) -> None:
        """Send an encoded frame; a failure is left to the reader, which sees the worker die."""
        # Per-call path: a bare try costs nothing, contextlib.suppress allocates a manager.
        try:  # noqa: SIM105
            self.sock.sendall(data)
        except OSError:
            pass

    def read_frame(self) -> dict[str, Any]:
        """Block until the next reply frame (the socket is in blocking mode, no timeout)."""
        try:
            return self._read(self._frames)
        except OSError as exc:
            raise WorkerDied(f"connection lost: {exc}") from exc

    def receive(self, timeout: float | None) -> dict[str, Any]:
        """Read one reply frame within ``timeout`` seconds."""
        if self.dead:
            raise WorkerDied("worker already stopped")
        sock = self.sock
        try:
            sock.settimeout(timeout)
            if timeout is None:
                return self._read(self._frames)
            deadline = time.monotonic() + timeout
            return self._read(FrameReader(lambda size: self._recv_until(sock, deadline, size)))
        except TimeoutError as exc:
            raise WorkerTimeout("no reply in time") from exc
        except OSError as exc:
            raise WorkerDied(f"connection lost: {exc}") from exc

    def start_message(self, check: bool, report: bool) -> dict[str, Any]:
        """The ``start`` frame for this worker's policy."""
        e = self.entry
        return {
            "op": "start",
            "policy": e.name,
            "version": e.version,
            "module": e.module,
            "sys_path": list(e.sys_path),
            "params": e.params,
            "check": check,
            "report": report,
        }

    def note_start(self, reply: dict[str, Any]) -> None:
        """Remember what the worker reported at start-up."""
        self.python_version = str(reply.get("python", ""))
        dists = reply.get("distributions")
        if isinstance(dists, dict):
            self.distributions = {str(k): str(v) for k, v in dists.items()}

    @staticmethod
    def _read(frames: FrameReader) -> dict[str, Any]:
        """One reply: exactly one frame (a worker answers each request once, in order)."""
        try:
            body = frames.read()
        except EOFError as exc:
            raise WorkerDied("worker closed the connection mid-frame") from exc
        except FrameError as exc:
            raise WorkerProtocolError(str(exc)) from exc
        if body is None:
            raise WorkerDied("worker closed the connection")
        if frames.buffer:
            raise WorkerProtocolError("trailing bytes after a frame")
        return decode(body)

    @staticmethod
    def _recv_until(sock: socket.socket, deadline: float, size: int) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        sock.settimeout(left)
        return sock.recv(size)

    def cancel(self, seq: int) -> None:
        """Tell the running call ``seq`` that it is cancelled (``is_cancelled()``)."""
        if self._control_w is None or self.dead:
            return
        with contextlib.suppress(OSError):
            os.write(self._control_w, framing.SEQ.pack(seq))

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self, check: bool, report: bool, timeout: float) -> dict[str, Any]:
        """Import the policy (and run the start-up check); returns the worker's reply."""
        reply = self.request(self.start_message(check, report), timeout)
        self.note_start(reply)
        return reply

    def kill(self) -> None:
        """SIGKILL the process and release its descriptors (idempotent).

        A thread blocked reading this worker's socket wakes up (the socket is shut down first).
        """
        if self.dead:
            return
        self.dead = True
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._close_fds()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
            log.error("worker pid %d did not die after SIGKILL", self.pid)

    def stop(self, timeout: float) -> None:
        """Ask the worker to close its instances and exit; kill it if it does not."""
        if self.dead:
            return
        try:
            self.request({"op": "exit"}, timeout)
            self.proc.wait(timeout=timeout)
            self.dead = True
            self._close_fds()
        except (WorkerError, subprocess.TimeoutExpired):
            self.kill()

    def finish_exit(self, timeout: float) -> None:
        """The worker answered ``exit``: wait for it to end (kill it if it lingers)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return
        self.dead = True
        self._close_fds()

    def _close_fds(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        if self._control_w is not None:
            with contextlib.suppress(OSError):
                os.close(self._control_w)
            self._control_w = None

    def exit_description(self) -> str:
        """Human-readable exit status (after the process ended)."""
        code = self.proc.poll()
        if code is None:
            try:
                code = self.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                return "still running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"


def executable_exists(path: str) -> bool:
    """True if ``path`` is an executable file."""
    return os.path.isfile(path) and os.access(path, os.X_OK)


__all__ = [
    "SHIM_PATH",
    "Spawner",
    "WorkerDied",
    "WorkerError",
    "WorkerProcess",
    "WorkerProtocolError",
    "WorkerTimeout",
    "decode",
    "executable_exists",
]
