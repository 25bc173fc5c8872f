"""Containment of policy processes: what keeps a hostile policy away from the executor, the
policy engine, the router, tini, the container's secrets and the other policies.

:func:`setup` runs once at start, on the main thread before any other thread exists
(capabilities and ``no_new_privs`` belong to a thread, and new threads copy them):

* the executor becomes not dumpable (``PR_SET_DUMPABLE`` 0): no process of its uid may trace it,
  or open its ``/proc/<pid>/mem`` or ``environ``;
* it clears its ambient and inheritable capabilities and keeps of the others only CAP_SETUID,
  CAP_SETGID and CAP_KILL (the image's entrypoint grants exactly these, through its launcher),
  so a worker's ``exec`` gets no capability at all;
* it sets ``no_new_privs``, which every worker inherits: no setuid program and no file
  capability (the launcher's included) can raise a worker's privileges;
* workers run under their policy's own uid and gid (the registry's ``uid``/``gid``, from the
  image build) only when it holds all three capabilities; otherwise they share the executor's
  uid and that protection is reported off (a WARNING and ``HealthCheck.protections_off``).

:class:`Launch` is how a worker process is started: its environment holds only ``PATH``,
``HOME`` and ``TMPDIR`` (the policy's private home, mode 0700) and the variables the policy's
``env`` allow-list names, copied from the executor's environment; with uid separation the
process switches to the policy's uid and gid, without supplementary groups, before ``exec``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway_executor.registry import PolicyEntry

log = logging.getLogger("gateway_executor.containment")

CAP_KILL = 5
CAP_SETGID = 6
CAP_SETUID = 7
#: The capabilities the executor keeps: start workers under other uids, and signal them.
KEPT_CAPS = (1 << CAP_KILL) | (1 << CAP_SETGID) | (1 << CAP_SETUID)
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
#: A worker's ``PATH`` (the container's own is not passed on).
WORKER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Names of what :func:`setup` may report off (``HealthCheck.protections_off[].name``).
UIDS = "per-policy uids"
NOT_DUMPABLE = "not dumpable"
NO_NEW_PRIVS = "no_new_privs"
CAPABILITIES = "capabilities"
PRIVATE_HOME = "private home"


class ContainmentError(RuntimeError):
    """The executor cannot make its workers safe to start (they would inherit capabilities)."""


@dataclass(frozen=True)
class Off:
    """A protection :func:`setup` could not apply: name, why and what it means, policy key."""

    name: str
    detail: str
    policy: str = ""


@dataclass
class Launch:
    """How worker processes start: environment, uid/gid, home, CPUs."""

    #: Workers switch to their registry uid/gid (the executor holds the capabilities for it).
    separate: bool = False
    #: ``entry.key`` -> the workers' HOME and TMPDIR.
    homes: dict[str, str] = field(default_factory=dict)
    #: The CPU set a new worker must get (the executor's own threads may be confined to one).
    worker_cpus: Callable[[], frozenset[int] | None] | None = None
    #: Where allow-listed variables come from (the executor's environment).
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    #: Homes this executor made (removed by :meth:`cleanup`).
    made: list[str] = field(default_factory=list)

    def env(self, entry: PolicyEntry) -> dict[str, str]:
        """The worker's whole environment."""
        home = self.homes.get(entry.key) or tempfile.gettempdir()
        env = {name: self.environ[name] for name in entry.env if name in self.environ}
        env.update(PATH=WORKER_PATH, HOME=home, TMPDIR=home)
        return env

    def popen_kwargs(self, entry: PolicyEntry) -> dict[str, Any]:
        """``subprocess.Popen`` arguments: ``env``, and the policy's uid/gid when separate."""
        kwargs: dict[str, Any] = {"env": self.env(entry)}
        if self.separate and entry.uid is not None:
            kwargs.update(user=entry.uid, group=entry.gid, extra_groups=[])
        return kwargs

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        """Around the fork of a worker: the forking thread runs on the workers' CPUs, which the
        child inherits (once it has another uid, ``sched_setaffinity`` on it needs
        CAP_SYS_NICE, which the executor does not have)."""
        cpus = self.worker_cpus() if self.worker_cpus is not None else None
        before: set[int] | None = None
        if cpus:
            try:
                before = os.sched_getaffinity(0)
                os.sched_setaffinity(0, cpus)
            except (AttributeError, OSError):
                before = None
        try:
            yield
        finally:
            if before is not None:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(0, before)

    def cleanup(self) -> None:
        """Remove the homes this executor made (on shutdown)."""
        for path in self.made:
            shutil.rmtree(path, ignore_errors=True)
        self.made.clear()


@dataclass
class Containment:
    """The outcome of :func:`setup`."""

    launch: Launch
    off: list[Off]


def status_caps() -> dict[str, int]:
    """``CapInh``, ``CapPrm``, ``CapEff``, ``CapBnd``, ``CapAmb`` of the calling thread (empty
    where ``/proc`` is missing)."""
    caps: dict[str, int] = {}
    try:
        with open("/proc/thread-self/status", encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.startswith("Cap"):
                    caps[key] = int(value.strip(), 16)
    except (OSError, ValueError):
        return {}
    return caps


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _errno_text() -> str:
    return os.strerror(ctypes.get_errno())


def _keep_only_needed_caps(libc: Any) -> None:
    """Clear the ambient and inheritable sets, keep only :data:`KEPT_CAPS` of the rest."""
    # EINVAL before Linux 4.3 (no ambient set there): nothing to clear then.
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise ContainmentError(f"cannot read the executor's capabilities: {_errno_text()}")
    data[0].effective &= KEPT_CAPS
    data[0].permitted &= KEPT_CAPS
    data[0].inheritable = 0
    data[1].effective = data[1].permitted = data[1].inheritable = 0
    if libc.capset(ctypes.byref(header), data) != 0:
        raise ContainmentError(f"cannot drop the executor's capabilities: {_errno_text()}")
    left = status_caps()
    if left.get("CapAmb", 0) or left.get("CapInh", 0):
        raise ContainmentError(
            "ambient or inheritable capabilities remain after clearing them "
            f"(CapAmb {left.get('CapAmb', 0):x}, CapInh {left.get('CapInh', 0):x}): "
            "policy workers would inherit them"
        )


def _private_dir(path: str, uid: int) -> bool:
    """``path`` is a directory owned by ``uid`` that nobody else may enter."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o077


def _homes(entries: Iterable[PolicyEntry], separate: bool, launch: Launch, off: list[Off]) -> None:
    """Each policy's HOME/TMPDIR: its image home when it runs under its own uid, else a fresh
    private directory of the executor's (which its workers then share with the executor)."""
    for entry in entries:
        if separate and entry.uid is not None:
            if entry.home and _private_dir(entry.home, entry.uid):
                launch.homes[entry.key] = entry.home
            else:
                off.append(
                    Off(
                        PRIVATE_HOME,
                        f"{entry.home or '(none in the registry)'} is not a directory of uid "
                        f"{entry.uid} closed to others: temporary files go to "
                        f"{tempfile.gettempdir()}, shared with every policy",
                        entry.key,
                    )
                )
            continue
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in entry.name)
        path = tempfile.mkdtemp(prefix=f"gateway-policy-{safe}-")
        launch.homes[entry.key] = path
        launch.made.append(path)


def setup(entries: list[PolicyEntry]) -> Containment:
    """Apply the executor's own protections and decide how workers start (see the module doc).

    Must run before any thread is started. Raises :class:`ContainmentError` only when workers
    would inherit capabilities; every other failure is reported in :attr:`Containment.off`.
    """
    off: list[Off] = []
    launch = Launch()
    if not sys.platform.startswith("linux"):
        off.append(Off(UIDS, "not Linux: every policy runs under the executor's uid"))
        _homes(entries, False, launch, off)
        return Containment(launch, off)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        off.append(
            Off(
                NOT_DUMPABLE,
                f"PR_SET_DUMPABLE failed ({_errno_text()}): processes of the executor's uid "
                "may trace it and read its memory",
            )
        )
    _keep_only_needed_caps(libc)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        off.append(
            Off(
                NO_NEW_PRIVS,
                f"PR_SET_NO_NEW_PRIVS failed ({_errno_text()}): a policy may gain privileges "
                "through setuid programs or file capabilities",
            )
        )
    caps = status_caps().get("CapEff", 0)
    separate = caps & KEPT_CAPS == KEPT_CAPS
    with_uid = [e for e in entries if e.uid is not None]
    if not separate and with_uid:
        off.append(
            Off(
                UIDS,
                "the executor lacks CAP_SETUID, CAP_SETGID or CAP_KILL (the container runs "
                "with --cap-drop, --security-opt no-new-privileges or as another user): every "
                f"policy runs under the executor's uid {os.getuid()} and can signal every "
                "process of the container (tini, the executor, the engine, the router, the "
                "other policies' workers), read the container's environment through tini's "
                "/proc/1/environ, read the other policies' workers' memory, environment and "
                "files, and write the socket directory",
            )
        )
    elif entries and not with_uid:
        off.append(
            Off(
                UIDS,
                "the registry gives no policy a uid of its own: every policy runs under the "
                f"executor's uid {os.getuid()}",
            )
        )
    else:
        for entry in entries:
            if entry.uid is None:
                off.append(
                    Off(UIDS, "no uid in the registry: runs under the executor's uid", entry.key)
                )
    launch.separate = separate
    _homes(entries, separate, launch, off)
    if separate and with_uid:
        log.info(
            "policy workers run under their own uids (%s); the executor keeps CAP_SETUID, "
            "CAP_SETGID and CAP_KILL",
            ", ".join(f"{e.name}={e.uid}" for e in with_uid),
        )
    return Containment(launch, off)


__all__ = [
    "KEPT_CAPS",
    "Containment",
    "ContainmentError",
    "Launch",
    "Off",
    "setup",
    "status_caps",
]
