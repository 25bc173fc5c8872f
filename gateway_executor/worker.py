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

import collections
import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from gateway_executor import defaults, framing, output, procs
from gateway_executor.containment import Launch
from gateway_executor.framing import FrameError, FrameReader, encode
from gateway_executor.registry import PolicyEntry

log = logging.getLogger("gateway_executor.worker")

SHIM_PATH = Path(__file__).resolve().parent / "worker_shim.py"
#: How long a fork server may take to fork a worker (milliseconds when healthy).
FORK_TIMEOUT_S = 2.0


class WorkerError(Exception):
    """Base class for worker failures."""


class WorkerDied(WorkerError):
    """The worker exited or closed its socket (crash, ``os._exit``, OOM kill)."""


class WorkerTimeout(WorkerError):
    """The worker did not answer in time."""


class WorkerProtocolError(WorkerError):
    """The worker sent something that is not a valid frame, or a reply to another request."""


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
    """Starts every worker process from one long-lived thread, watches them end, and kills
    whatever they leave behind.

    The thread (``worker-spawner``) owns the processes' life: it starts them (Linux delivers
    ``PR_SET_PDEATHSIG`` when the *thread* that forked a child exits, so it must outlive them),
    waits on a pidfd per process, and when a worker process ends on its own, kills its process
    tree and shuts its socket down, so a call never waits for a child that inherited the socket:
    a worker that forks and exits is a crash at once. Where this process is a child subreaper
    (``procs.set_subreaper``, the executor's entry point sets it), processes orphaned below a
    worker come to us; the thread kills them at once and reaps them, every
    :data:`SWEEP_S` seconds and after every worker death.
    """

    #: How often a subreaper looks for orphans (processes whose parent, a worker or one of its
    #: children, exited) and for workers ending where pidfds are missing.
    SWEEP_S = 1.0

    def __init__(
        self, on_spawn: Callable[[int], None] | None = None, launch: Launch | None = None
    ) -> None:
        #: Called with each new process's pid on the spawner thread, right after it started.
        self.on_spawn = on_spawn
        #: How workers start: uid/gid, environment, home, CPUs (``containment.setup``).
        self.launch = launch if launch is not None else Launch()
        #: Orphans of our workers are re-parented to this process: sweep them.
        self.adopts = procs.is_subreaper()
        #: Protections that are off here, (name, detail), for ``HealthCheck``.
        self.off: list[tuple[str, str]] = []
        if procs.wanted and not self.adopts:
            self.off.append(
                (
                    "process trees",
                    "the executor could not become a child subreaper: a process a policy "
                    "starts and whose parent exits (a double fork) survives its worker, "
                    "and workers are not forked from a fork server",
                )
            )
        #: Guards :attr:`_live`; held while a process starts, so a sweep never takes a child
        #: that is being started for an orphan.
        self._lock = threading.Lock()
        self._live: dict[int, WorkerProcess] = {}
        self._jobs: collections.deque[tuple[Callable[[], Any], Future[Any]]] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller = select.poll()
        self._poller.register(self._wake_r, select.POLLIN)
        #: pidfd -> its worker (only the spawner thread touches these).
        self._pidfds: dict[int, WorkerProcess] = {}
        #: Workers watched by polling where pidfds are missing.
        self._unwatched: set[WorkerProcess] = set()
        #: Per policy (``name:version``): its fork server, None once it proved unusable.
        self._servers: dict[str, WorkerProcess | None] = {}
        self._server_locks: dict[str, threading.Lock] = collections.defaultdict(threading.Lock)
        self._stopping = False
        # The first threads the executor starts on purpose: after it dropped its capabilities
        # and chose its CPU (``containment``, ``affinity``), which threads inherit.
        output.sink().start()
        self._thread = threading.Thread(target=self._run, name="worker-spawner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_sweep = time.monotonic() + self.SWEEP_S
        while True:
            periodic = self.adopts or self._unwatched
            timeout = max(next_sweep - time.monotonic(), 0) * 1000 if periodic else None
            for fd, _ in self._poller.poll(timeout):
                if fd == self._wake_r:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 4096)
                    continue
                w = self._pidfds.pop(fd, None)
                self._poller.unregister(fd)
                os.close(fd)
                if w is not None:
                    self._ended(w)
            while self._jobs:
                fn, fut = self._jobs.popleft()
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    fut.set_result(fn())
                except BaseException as exc:  # handed to the caller
                    fut.set_exception(exc)
            if self._stopping and not self._jobs:
                return
            if periodic and time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.SWEEP_S
                for w in list(self._unwatched):
                    if _exited(w.pid):
                        self._unwatched.discard(w)
                        self._ended(w)
                if self.adopts:
                    self.sweep()

    def _ended(self, w: WorkerProcess) -> None:
        """``w``'s process ended. Unless the pool stopped or killed it (and cleans up itself),
        kill what it left and wake whoever reads its socket: its call fails now, as a crash."""
        w.gone = True
        if w.dead or w.leaving:
            return
        self.kill_tree(w)
        w.hang_up()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the spawner thread and return its result."""
        fut: Future[Any] = Future()
        self._jobs.append((fn, fut))
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")
        return fut.result()

    def start(self, entry: PolicyEntry, control: bool, fork_server: bool = False) -> WorkerProcess:
        """Spawner thread: start one worker process (or a policy's fork server) and watch it."""
        with self._lock:
            w = WorkerProcess._spawn(entry, control, self, fork_server)
            self._live[w.pid] = w
        self._watch(w)
        return w

    def _watch(self, w: WorkerProcess) -> None:
        """Spawner thread: wait on ``w``'s pidfd (or poll it where pidfds are missing)."""
        try:
            pidfd = os.pidfd_open(w.pid)
        except (AttributeError, OSError):
            self._unwatched.add(w)
        else:
            self._pidfds[pidfd] = w
            self._poller.register(pidfd, select.POLLIN)

    # ---- fork servers ------------------------------------------------------------------------
    def forked(self, entry: PolicyEntry, start_timeout_s: float) -> WorkerProcess | None:
        """A worker of ``entry`` forked by the policy's fork server (started, and its policy
        imported, on first use), or None where there is none: the caller spawns one.

        Only where orphans come to us (the forked worker is re-parented to this process, which
        reaps it) and for long-lived workers. Runs on the calling thread: policies import in
        parallel, and the spawner thread stays free to see processes end.
        """
        if not (self.adopts and entry.isolation == "worker" and sys.platform.startswith("linux")):
            return None
        with self._server_locks[entry.key]:
            if entry.key in self._servers and self._servers[entry.key] is None:
                return None
            server = self._servers.get(entry.key)
            if server is None or server.gone or server.dead:
                server = self._start_server(entry, start_timeout_s)
                self._servers[entry.key] = server
                if server is None:
                    return None
            try:
                with self._lock:  # no sweep takes the new child for an orphan before it is ours
                    w = server.fork_worker(self)
                    self._live[w.pid] = w
            except (WorkerError, OSError) as exc:
                # Held the spawner's lock meanwhile (bounded by FORK_TIMEOUT_S): never again
                # for this policy, whose workers now start on their own.
                log.warning(
                    "policy %s: fork server failed (%s): workers start on their own",
                    entry.key,
                    exc,
                )
                server.kill()
                self._servers[entry.key] = None
                return None
        self.call(lambda: self._watch(w))
        return w

    def drop_server(self, key: str) -> None:
        """Kill the fork server of policy ``key`` (quarantined); the next worker starts one."""
        with self._server_locks[key]:
            server = self._servers.pop(key, None)
        if server is not None:
            server.kill()

    def _start_server(self, entry: PolicyEntry, timeout: float) -> WorkerProcess | None:
        """Start the policy's fork server and import the policy in it; None if that fails
        (the policy's workers are then spawned one by one, as the start-up check will say)."""
        try:
            server = self.call(lambda: self.start(entry, control=False, fork_server=True))
            reply = server.request(server.start_message(check=False, report=True), timeout)
        except WorkerError as exc:
            log.warning(
                "policy %s: no fork server (%s): workers start on their own", entry.key, exc
            )
            return None
        if not reply.get("ok"):
            server.kill()
            return None
        return server

    def released(self, w: WorkerProcess) -> None:
        """``w`` was reaped: it is no longer ours (its pid may be reused)."""
        with self._lock:
            if self._live.get(w.pid) is w:
                del self._live[w.pid]

    def _orphans(self, snapshot: dict[int, procs.Proc]) -> set[int]:
        """Our children that are not workers: orphans re-parented to us (lock held)."""
        me = os.getpid()
        return {p.pid for p in snapshot.values() if p.ppid == me and p.pid not in self._live}

    def kill_tree(self, w: WorkerProcess) -> int:
        """Freeze and kill ``w``'s process, everything in its session or process group, every
        orphan, and everything below them; returns how many processes died."""
        if not sys.platform.startswith("linux"):
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGKILL)
            return 1
        if not self.adopts:
            return procs.kill_tree([w.pid], [w.pid])
        with self._lock:
            killed = procs.kill_tree([w.pid], [w.pid], self._orphans)
            procs.reap(procs.children_of_self() - set(self._live))
        if killed > 1:
            log.warning(
                "policy %s: killed %d processes of worker pid %d", w.entry.key, killed, w.pid
            )
        return killed

    def sweep(self) -> int:
        """Kill and reap orphans (processes a worker's tree left behind); returns how many
        were killed."""
        if not self.adopts:
            return 0
        with self._lock:
            kids = procs.children_of_self() - set(self._live)
            if not kids:
                return 0
            killed = procs.kill_tree(kids, (), self._orphans)
            procs.reap(kids)
        if killed:
            log.warning("killed %d orphaned policy processes", killed)
        return killed

    def kill_all(self) -> int:
        """Kill every process of ours: live workers (some may still be leaving), everything
        in their sessions and process groups, orphans, and everything below them."""
        if not sys.platform.startswith("linux"):
            return 0
        with self._lock:
            pids = set(self._live)
            killed = procs.kill_tree(pids, pids, self._orphans if self.adopts else None)
            if self.adopts:
                procs.reap(procs.children_of_self() - pids)
        return killed

    def stop(self) -> None:
        """Let the spawner thread end (after the pools stopped their workers), killing every
        process still left of them; their last output lines are queued before it returns."""
        self.call(self.kill_all)
        output.drain(0.5)
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")
        self._thread.join(5.0)


def _exited(pid: int) -> bool:
    """Whether child ``pid`` ended (without reaping it)."""
    try:
        res = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return res is not None


class AdoptedProc:
    """A worker a fork server forked, adopted by this process (a subreaper): the part of
    ``subprocess.Popen`` the pool uses (``pid``, ``poll``, ``wait``, ``send_signal``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None:
                try:
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:  # not ours (any more): gone, status unknown
                    self.returncode = -signal.SIGKILL
                else:
                    if pid:
                        self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        pause = 0.0005
        while (code := self.poll()) is None:
            if end is not None and time.monotonic() >= end:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)


class WorkerProcess:
    """A running worker: the process, its socket and its cancellation pipe."""

    def __init__(
        self,
        entry: PolicyEntry,
        proc: subprocess.Popen[bytes] | AdoptedProc,
        sock: socket.socket,
        control_w: int | None,
        spawner: Spawner,
    ) -> None:
        self.entry = entry
        self.spawner = spawner
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
        #: Set by the spawner thread once the process ended (whoever ended it).
        self.gone = False
        #: The pool asked it to exit (``exit``): its end is no crash, the pool cleans up.
        self.leaving = False
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
    def spawn(
        cls,
        entry: PolicyEntry,
        spawner: Spawner,
        control: bool = True,
        start_timeout_s: float = defaults.START_TIMEOUT_S,
        fork: bool = False,
    ) -> WorkerProcess:
        """Start a worker for ``entry``: with ``fork``, forked by the policy's fork server where
        there is one (its modules are imported already and shared copy-on-write; worth it from
        the second worker of a pool on), else a new interpreter started from the spawner
        thread."""
        if control and fork:
            forked = spawner.forked(entry, start_timeout_s)
            if forked is not None:
                return forked

        def start() -> WorkerProcess:
            w = spawner.start(entry, control)
            if spawner.on_spawn is not None:
                spawner.on_spawn(w.pid)
            return w

        return spawner.call(start)

    @classmethod
    def _spawn(
        cls, entry: PolicyEntry, control: bool, spawner: Spawner, fork_server: bool = False
    ) -> WorkerProcess:
        """Start the process (spawner thread). The worker leads its own session and process
        group, so its children are found (and killed) with it."""
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
            "--memory-mb",
            str(entry.memory_mb),
        ]
        if fork_server:
            args.append("--fork-server")
        fds: tuple[int, ...] = (child.fileno(),)
        if ctrl_r is not None:
            args += ["--control-fd", str(ctrl_r)]
            fds += (ctrl_r,)
        # stdout and stderr: pipes of its own, read by the output pump (never the executor's).
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        launch = spawner.launch
        try:
            with launch.spawning():
                proc = subprocess.Popen(
                    args,
                    pass_fds=fds,
                    stdin=subprocess.DEVNULL,
                    stdout=out_w,
                    stderr=err_w,
                    close_fds=True,
                    start_new_session=True,
                    **launch.popen_kwargs(entry),
                )
        except OSError as exc:
            parent.close()
            for fd in (ctrl_r, ctrl_w, out_r, err_r):
                if fd is not None:
                    os.close(fd)
            raise WorkerDied(f"cannot start {entry.python}: {exc.strerror or exc}") from exc
        finally:
            child.close()
            os.close(out_w)
            os.close(err_w)
        if ctrl_r is not None:
            os.close(ctrl_r)
        pump = output.pump()
        pump.add(out_r, entry.name, proc.pid, "out")
        pump.add(err_r, entry.name, proc.pid, "err")
        return cls(entry, proc, parent, ctrl_w, spawner)

    def fork_worker(self, spawner: Spawner) -> WorkerProcess:
        """Fork server: have it fork a worker, handing it its socket, control pipe, stdout and
        stderr (``SCM_RIGHTS``); the worker is re-parented to this process (a subreaper)."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ctrl_r, ctrl_w = os.pipe()
        os.set_blocking(ctrl_w, False)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        theirs = [child.fileno(), ctrl_r, out_w, err_w]
        ok = False
        try:
            msg = {"op": "fork", "seq": self.next_seq()}
            try:
                socket.send_fds(self.sock, [encode(msg)], theirs)
            except OSError as exc:
                raise WorkerDied(f"connection lost: {exc}") from exc
            reply = self.receive(FORK_TIMEOUT_S)
            check_seq(reply, msg["seq"])
            pid = reply.get("pid")
            if not reply.get("ok") or not isinstance(pid, int):
                raise WorkerProtocolError(f"fork failed: {reply.get('error', reply)}")
            ok = True
        finally:
            child.close()
            for fd in (ctrl_r, out_w, err_w):
                os.close(fd)
            if not ok:
                parent.close()
                for fd in (ctrl_w, out_r, err_r):
                    os.close(fd)
        pump = output.pump()
        pump.add(out_r, self.entry.name, pid, "out")
        pump.add(err_r, self.entry.name, pid, "err")
        return WorkerProcess(self.entry, AdoptedProc(pid), parent, ctrl_w, spawner)

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
        """Send one frame and wait for its reply (which must carry the request's ``seq``)."""
        seq = msg.setdefault("seq", self.next_seq())
        self.send(msg)
        reply = self.receive(timeout)
        check_seq(reply, seq)
        return reply

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
        except WorkerDied as exc:
            raise self._died(exc) from exc
        except OSError as exc:
            raise WorkerDied(f"connection lost: {exc}") from exc

    def _died(self, exc: WorkerDied) -> WorkerDied:
        """Say how the process ended when that is why the socket closed (it usually ends
        right after its socket closes)."""
        if self.dead:
            return exc
        if not self.gone:
            try:
                self.proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                return exc  # closed its socket and lives on: the pool kills it
        return WorkerDied(f"worker process ended ({self.exit_description()})")

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
        except WorkerDied as exc:
            raise self._died(exc) from exc
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
        """SIGKILL the process and everything it started, release its descriptors
        (idempotent). A thread blocked reading this worker's socket wakes up (the socket is
        shut down first)."""
        if self.dead:
            return
        self.dead = True
        self.spawner.kill_tree(self)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._close_fds()
        self._reap(5.0)

    def hang_up(self) -> None:
        """Shut the socket down (spawner thread, the process ended): a reader blocked on it
        wakes up with EOF even while a child of the worker still holds the other end."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _reap(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
            log.error("worker pid %d did not die after SIGKILL", self.pid)
            return
        self.spawner.released(self)

    def _after_exit(self) -> None:
        """The process exited when asked: kill what it left (its process group at once,
        orphans in the spawner's sweep) and forget it."""
        self.dead = True
        self._close_fds()
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)  # still ours: the zombie holds the pid
        self._reap(1.0)
        if self.spawner.adopts:
            self.spawner.sweep()

    def stop(self, timeout: float) -> None:
        """Ask the worker to close its instances and exit; kill it if it does not."""
        if self.dead:
            return
        self.leaving = True
        try:
            self.request({"op": "exit"}, timeout)
            self.proc.wait(timeout=timeout)
        except (WorkerError, subprocess.TimeoutExpired):
            self.kill()
            return
        self._after_exit()

    def finish_exit(self, timeout: float) -> None:
        """The worker answered ``exit``: wait for it to end (kill it if it lingers)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return
        self._after_exit()

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
        self.spawner.released(self)
        if code == framing.EXIT_MEMORY:
            return f"over its memory limit of {self.entry.memory_mb} MiB"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"


def check_seq(reply: dict[str, Any], seq: Any) -> None:
    """A reply answers the request it follows: same ``seq``, or the worker is broken (or a
    policy wrote a frame of its own on the socket)."""
    if reply.get("seq") != seq:
        raise WorkerProtocolError(
            f"reply for request {reply.get('seq')!r} while waiting for request {seq!r}"
        )


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
    "check_seq",
    "decode",
    "executable_exists",
]
