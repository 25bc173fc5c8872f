"""The executor's stdout: its own log lines and its workers' output, never blocking either.

One writer thread owns file descriptor 1 (:class:`Sink`). Log records (:class:`SinkHandler`)
and policy output (:class:`OutputPump`) are queued to it and never wait for it: when stdout is
slow or nobody drains it, policy lines beyond :data:`POLICY_BUDGET` queued bytes are dropped
and counted (the writer says how many, once it can write again), and the executor's own lines
get a budget of their own, so a flooding policy can neither block a call nor crowd out the
executor's log.

Each worker writes stdout and stderr into pipes of its own, read by the pump thread without
blocking. Every line is prefixed with the policy and the worker's pid
(``[policy NAME pid N out]`` or ``err``), control characters and invalid UTF-8 are escaped, and
a line longer than :data:`MAX_LINE` is cut: a policy cannot write a line that looks like the
executor's own (those start with a timestamp), overwrite one (``\\r``, terminal escapes), or
hold memory with a line that never ends.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import select
import threading
from typing import Final

#: Bytes of queued policy output (all workers together) beyond which lines are dropped.
POLICY_BUDGET: Final = 4 * 1024 * 1024
#: ... and of the executor's own log lines.
EXECUTOR_BUDGET: Final = 4 * 1024 * 1024
#: A policy line is cut after this many bytes (the rest follows as another line).
MAX_LINE: Final = 8192
#: Bytes read from one pipe at a time.
_READ: Final = 65536

_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")


def _escape_byte(m: re.Match[bytes]) -> bytes:
    return b"\\x%02x" % m.group()[0]


def clean(text: bytes) -> bytes:
    """One line made harmless: control characters (tab kept) and invalid UTF-8 as ``\\xNN``."""
    text = _CONTROL.sub(_escape_byte, text)
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        text = text.decode("utf-8", "backslashreplace").encode("utf-8")
    return text


class Sink:
    """The writer thread of one file descriptor; :meth:`put` never blocks."""

    def __init__(self, fd: int = 1) -> None:
        self.fd = fd
        self._cond = threading.Condition(threading.Lock())
        self._lines: collections.deque[tuple[bool, bytes]] = collections.deque()
        self._queued = [0, 0]  # bytes queued: executor, policy
        #: Lines dropped since the writer last reported it (policy, executor).
        self.dropped = [0, 0]
        #: Dropped in all (for statistics and tests).
        self.dropped_total = 0
        #: The writer is writing a batch.
        self._busy = False
        self._thread: threading.Thread | None = None

    def start(self) -> Sink:
        """Start the writer thread. Until then lines are written at once by whoever logs
        (start-up): the thread must start after the executor dropped its capabilities and chose
        its CPU (both per thread, copied by new threads), so the spawner starts it."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stdout-writer", daemon=True)
            self._thread.start()
        return self

    def put(self, line: bytes, policy: bool, lines: int = 1) -> bool:
        """Queue ``line`` (newline included; it may hold ``lines`` lines); False if dropped."""
        if self._thread is None:
            self._write(line)
            return True
        budget = POLICY_BUDGET if policy else EXECUTOR_BUDGET
        with self._cond:
            if self._queued[policy] + len(line) > budget:
                self.dropped[policy] += lines
                self.dropped_total += lines
                return False
            self._queued[policy] += len(line)
            self._lines.append((policy, line))
            self._cond.notify_all()
        return True

    def drop(self, lines: int) -> None:
        """Count policy lines dropped before queueing (the pump, when the budget is full)."""
        with self._cond:
            self.dropped[True] += lines
            self.dropped_total += lines

    def full(self) -> bool:
        """Whether policy output is being dropped now."""
        return self._queued[True] >= POLICY_BUDGET

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._lines and not any(self.dropped):
                    self._cond.wait()
                batch = list(self._lines)
                self._lines.clear()
                self._busy = True
                self._queued = [0, 0]
                lost_policy, lost_executor = self.dropped[True], self.dropped[False]
                self.dropped = [0, 0]
            data = b"".join(line for _, line in batch)
            if lost_policy or lost_executor:
                data += (
                    b"executor: stdout could not keep up: dropped %d lines of policy output"
                    b" and %d of the executor's own\n" % (lost_policy, lost_executor)
                )
            self._write(data)
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except InterruptedError:
                continue
            except OSError:
                return  # stdout is gone: nothing to tell anyone
            view = view[n:]

    def flush(self, timeout: float = 1.0) -> None:
        """Wait (at most ``timeout``) until everything queued was written (at exit)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._lines and not self._busy, timeout)


class SinkHandler(logging.Handler):
    """A logging handler that queues each record as one line: newlines and control characters
    in a message (which may quote a policy's error) are escaped, so no record makes two lines."""

    def __init__(self, sink: Sink) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record).encode("utf-8", "backslashreplace")
        except Exception:
            self.handleError(record)
            return
        text = text.replace(b"\n", b"\\n")
        self.sink.put(_CONTROL.sub(_escape_byte, text) + b"\n", policy=False)

    def flush(self) -> None:
        """``logging.shutdown`` calls this: let the writer finish (bounded)."""
        self.sink.flush()


class _Stream:
    """One worker pipe being read: its prefix and the unfinished line."""

    __slots__ = ("fd", "partial", "prefix")

    def __init__(self, fd: int, prefix: bytes) -> None:
        self.fd = fd
        self.prefix = prefix
        self.partial = b""


class OutputPump:
    """One thread reading every worker's stdout and stderr pipes into the :class:`Sink`."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._lock = threading.Lock()
        self._closed = threading.Condition(self._lock)
        self._streams: dict[int, _Stream] = {}
        self._poller = select.poll()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._poller.register(self._wake_r, select.POLLIN)
        self._thread = threading.Thread(target=self._run, name="worker-output", daemon=True)
        self._thread.start()

    def add(self, fd: int, policy: str, pid: int, kind: str) -> None:
        """Read pipe ``fd`` (``kind``: out or err) of worker ``pid``; the pump closes it."""
        os.set_blocking(fd, False)
        prefix = clean(f"[policy {policy} pid {pid} {kind}] ".encode())
        with self._lock:
            self._streams[fd] = _Stream(fd, prefix)
            self._poller.register(fd, select.POLLIN)
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def drain(self, timeout: float) -> bool:
        """Wait (at most ``timeout``) until every pipe reached its end and its last lines are
        queued: at exit, after the workers were killed."""
        with self._closed:
            return self._closed.wait_for(lambda: not self._streams, timeout)

    def _run(self) -> None:
        while True:
            for fd, _ in self._poller.poll():
                if fd == self._wake_r:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    stream = self._streams.get(fd)
                if stream is not None:
                    self._read(stream)

    def _read(self, stream: _Stream) -> None:
        try:
            data = os.read(stream.fd, _READ)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # every writer closed it: the worker (and its children) ended
            if stream.partial:
                self._emit(stream, [stream.partial])
            with self._lock:
                del self._streams[stream.fd]
                self._poller.unregister(stream.fd)
                self._closed.notify_all()
            os.close(stream.fd)
            return
        if self.sink.full():  # dropped anyway: count the lines, skip the work
            self.sink.drop(data.count(b"\n") or 1)
            stream.partial = b""
            return
        lines = (stream.partial + data).split(b"\n")
        stream.partial = lines.pop()
        if len(stream.partial) > MAX_LINE:
            lines.append(stream.partial)
            stream.partial = b""
        if lines:
            self._emit(stream, lines)

    def _emit(self, stream: _Stream, lines: list[bytes]) -> None:
        prefix = stream.prefix
        out = []
        for line in lines:
            while len(line) > MAX_LINE:
                out.append(prefix + clean(line[:MAX_LINE]) + b" [cut]\n")
                line = line[MAX_LINE:]
            out.append(prefix + clean(line) + b"\n")
        self.sink.put(b"".join(out), policy=True, lines=len(out))


_sink: Sink | None = None
_pump: OutputPump | None = None
_setup = threading.Lock()


def sink() -> Sink:
    """The process's stdout sink (started on first use)."""
    global _sink
    with _setup:
        if _sink is None:
            _sink = Sink(1)
        return _sink


def pump() -> OutputPump:
    """The process's worker-output pump (started on first use, with the sink's writer)."""
    global _pump
    s = sink().start()
    with _setup:
        if _pump is None:
            _pump = OutputPump(s)
        return _pump


def drain(timeout: float) -> bool:
    """:meth:`OutputPump.drain` of the process's pump, if it has one."""
    with _setup:
        current = _pump
    return True if current is None else current.drain(timeout)


__all__ = [
    "EXECUTOR_BUDGET",
    "MAX_LINE",
    "POLICY_BUDGET",
    "OutputPump",
    "Sink",
    "SinkHandler",
    "clean",
    "drain",
    "pump",
    "sink",
]
