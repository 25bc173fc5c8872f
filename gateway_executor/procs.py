"""Process trees of policy workers: find every process a worker started, freeze it, kill it.

A policy may fork, double-fork, ``setsid`` and fork-bomb. What keeps its processes findable:

* each worker leads its own session and process group (``start_new_session``), so children
  that do not leave it are found by group;
* the executor is a *child subreaper* (``PR_SET_CHILD_SUBREAPER``, set by the process entry
  point): a process whose parent exits is re-parented to the executor instead of init, so a
  ``setsid`` grandchild of a dead worker is still the executor's child. Every child of the
  executor that is not a live worker is such an orphan, and is killed;
* a tree is killed by freezing first (``SIGSTOP`` on every process found, scanning ``/proc``
  again until a scan finds nothing new: a stopped process cannot fork), then ``SIGKILL``. Signals
  go through pidfds checked against the process's start time, so a pid reused meanwhile is
  never hit.

Linux only (``/proc``); elsewhere the functions do nothing and say so.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
#: Freeze rounds before giving up on a tree that keeps growing (each round stops all it finds).
MAX_ROUNDS = 64
#: ... and the time bound of one kill.
MAX_KILL_S = 5.0


@dataclass(frozen=True)
class Proc:
    """One line of ``/proc/<pid>/stat`` (what tree-walking needs)."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    start: int  # clock ticks after boot: tells a reused pid apart

    @property
    def gone(self) -> bool:
        """A zombie (or dead): nothing left to kill, only to reap."""
        return self.state in ("Z", "X", "x")


def read_stat(pid: int) -> Proc | None:
    """``/proc/<pid>/stat``, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ")".
    rest = text[text.rfind(")") + 2 :].split()
    try:
        return Proc(pid, int(rest[1]), int(rest[2]), int(rest[3]), rest[0], int(rest[19]))
    except (IndexError, ValueError):
        return None


def snapshot() -> dict[int, Proc]:
    """Every process visible in ``/proc``."""
    found: dict[int, Proc] = {}
    for path in glob.glob("/proc/[0-9]*"):
        pid = int(path[6:])
        info = read_stat(pid)
        if info is not None:
            found[pid] = info
    return found


def children_of_self() -> set[int]:
    """This process's children (every thread's ``children`` file; any thread may be a parent)."""
    kids: set[int] = set()
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        try:
            with open(path, "rb") as f:
                kids.update(int(x) for x in f.read().split())
        except OSError:
            continue
    return kids


#: Set by :func:`set_subreaper`: the process meant to be a subreaper, and whether it became one.
wanted = False


def set_subreaper() -> bool:
    """Make this process the child subreaper of its descendants; False where not possible."""
    global wanted
    wanted = True
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def is_subreaper() -> bool:
    """Whether this process is a child subreaper (orphans of its descendants come to it)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        value = ctypes.c_int(0)
        if libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0) != 0:
            return False
        return value.value != 0
    except (OSError, AttributeError):
        return False


def signal_proc(info: Proc, sig: int) -> bool:
    """Send ``sig`` to the process ``info`` describes, unless its pid now names another one."""
    try:
        fd = os.pidfd_open(info.pid)
    except ProcessLookupError:
        return False
    except (AttributeError, OSError):
        fd = -1
    try:
        now = read_stat(info.pid)
        if now is None or now.start != info.start:
            return False  # exited and the pid was reused
        if fd >= 0:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(info.pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        if fd >= 0:
            os.close(fd)


def _closure(procs: dict[int, Proc], roots: set[int]) -> set[int]:
    """``roots`` and every process below them (by parent pid)."""
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found = set(roots)
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def kill_tree(
    roots: Iterable[int],
    groups: Iterable[int] = (),
    orphans: Callable[[dict[int, Proc]], set[int]] | None = None,
) -> int:
    """Freeze, then SIGKILL: ``roots``, every process in a session or process group of
    ``groups``, what ``orphans(snapshot)`` names, and everything below any of them.

    Returns how many processes were killed. Bounded in rounds and time: a tree that outgrows
    :data:`MAX_ROUNDS` rounds is killed as far as it was found (the next sweep finds the rest).
    """
    roots, groups = set(roots), set(groups)
    me = os.getpid()
    stopped: dict[int, Proc] = {}
    end = time.monotonic() + MAX_KILL_S
    for _ in range(MAX_ROUNDS):
        procs = snapshot()
        picked = {p.pid for p in procs.values() if p.pgid in groups or p.sid in groups}
        picked |= {pid for pid in roots if pid in procs}
        if orphans is not None:
            picked |= orphans(procs)
        picked.discard(me)
        new = [
            procs[pid]
            for pid in _closure(procs, picked)
            if pid != me and pid not in stopped and not procs[pid].gone
        ]
        if not new:
            break
        for info in new:
            if signal_proc(info, signal.SIGSTOP):
                stopped[info.pid] = info
            else:
                stopped.setdefault(info.pid, info)
        if time.monotonic() > end:
            break
    killed = 0
    for info in stopped.values():
        killed += signal_proc(info, signal.SIGKILL)
    return killed


def reap(pids: Iterable[int]) -> None:
    """Collect the exit status of children that are not ``subprocess`` objects (orphans)."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


__all__ = [
    "Proc",
    "children_of_self",
    "is_subreaper",
    "kill_tree",
    "read_stat",
    "reap",
    "set_subreaper",
    "signal_proc",
    "snapshot",
]
