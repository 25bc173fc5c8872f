"""The process table, from a dump of ``/proc`` taken inside the container.

The dump is read with ``docker exec`` (see :data:`PROC_DUMP_SCRIPT`); the rules here find tini
and the three supervised processes in it and say what is wrong with the tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway_builder import defaults

#: POSIX sh run with ``docker exec``: for every process, its stat line, status and cmdline.
PROC_DUMP_SCRIPT = r"""
for d in /proc/[0-9]*; do
  [ -r "$d/stat" ] || continue
  printf '\n@@proc %s\n' "${d#/proc/}"
  cat "$d/stat" 2>/dev/null
  printf '\n@@status\n'
  cat "$d/status" 2>/dev/null
  printf '@@cmdline\n'
  cat "$d/cmdline" 2>/dev/null
done
printf '\n@@end\n'
"""


@dataclass(frozen=True)
class Proc:
    """One process as seen in the container's PID namespace."""

    pid: int
    ppid: int
    uids: tuple[int, ...]  # real, effective, saved, filesystem
    argv: tuple[str, ...]
    comm: str

    def describe(self) -> str:
        """``pid 12 (/app/policy-engine -xds-server ...)`` for messages."""
        cmd = " ".join(self.argv) if self.argv else f"[{self.comm}]"
        return f"pid {self.pid} ({cmd[:120]})"


def parse_proc_dump(data: bytes) -> list[Proc]:
    """Parse :data:`PROC_DUMP_SCRIPT` output; processes that vanished mid-read are skipped."""
    procs = []
    for chunk in data.split(b"\n@@proc ")[1:]:
        head, _, rest = chunk.partition(b"\n")
        stat, _, rest = rest.partition(b"\n@@status\n")
        status, _, cmdline = rest.partition(b"@@cmdline\n")
        cmdline = cmdline.split(b"\n@@end\n", 1)[0]
        try:
            pid = int(head.strip())
        except ValueError:
            continue
        text = stat.decode("utf-8", "replace")
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses; split at the last ')'.
        if ")" not in text:
            continue
        comm = text[text.find("(") + 1 : text.rfind(")")]
        fields = text[text.rfind(")") + 1 :].split()
        uid_line = re.search(rb"^Uid:\s+(.*)$", status, re.MULTILINE)
        if len(fields) < 2 or uid_line is None:
            continue
        uids = tuple(int(u) for u in uid_line.group(1).split())
        argv = tuple(a.decode("utf-8", "replace") for a in cmdline.split(b"\0") if a)
        procs.append(Proc(pid=pid, ppid=int(fields[1]), uids=uids, argv=argv, comm=comm))
    return sorted(procs, key=lambda p: p.pid)


def _by_pid(procs: Iterable[Proc]) -> dict[int, Proc]:
    return {p.pid: p for p in procs}


def is_descendant(proc: Proc, ancestor: int, table: Mapping[int, Proc]) -> bool:
    """True when ``ancestor`` is on ``proc``'s parent chain."""
    seen: set[int] = set()
    current: Proc | None = proc
    while current is not None and current.pid not in seen:
        seen.add(current.pid)
        if current.ppid == ancestor:
            return True
        current = table.get(current.ppid)
    return False


def without_exec_sessions(procs: Sequence[Proc]) -> list[Proc]:
    """Drop processes started by ``docker exec`` (parent 0 but not PID 1) and their children."""
    table = _by_pid(procs)
    roots = {p.pid for p in procs if p.ppid == 0 and p.pid != 1}
    return [
        p
        for p in procs
        if p.pid not in roots and not any(is_descendant(p, r, table) for r in roots)
    ]


def _basename(arg: str) -> str:
    return arg.rsplit("/", 1)[-1]


def _is_router(p: Proc) -> bool:
    # argv[2]: a script at Envoy's path runs as "<interpreter> [-flag] /usr/local/bin/envoy ...".
    return any(a == defaults.ENVOY_BINARY or _basename(a) == "envoy" for a in p.argv[:3])


def _is_engine(p: Proc) -> bool:
    return any(a == defaults.ENGINE_BINARY or _basename(a) == "policy-engine" for a in p.argv[:1])


def _runs_executor(p: Proc) -> bool:
    return "gateway_executor" in p.argv or any(
        a.startswith("gateway_executor") for a in p.argv[1:3]
    )


@dataclass
class ProcessRoles:
    """PID 1 and the three supervised processes (None when not found)."""

    init: Proc | None = None
    router: Proc | None = None
    engine: Proc | None = None
    executor: Proc | None = None
    others: list[Proc] = field(default_factory=list)


def classify(procs: Sequence[Proc]) -> ProcessRoles:
    """Find tini, the router, the engine and the executor (its workers count as 'others')."""
    table = _by_pid(procs)
    roles = ProcessRoles(init=table.get(1))
    for p in procs:
        if p.pid == 1:
            continue
        if roles.router is None and _is_router(p):
            roles.router = p
        elif roles.engine is None and _is_engine(p):
            roles.engine = p
        elif (
            roles.executor is None
            and _runs_executor(p)
            and not (p.ppid in table and _runs_executor(table[p.ppid]))
        ):
            roles.executor = p
        else:
            roles.others.append(p)
    return roles


def process_problems(procs: Sequence[Proc], *, expect_executor: bool = True) -> list[str]:
    """Why the process table is wrong: PID 1 not tini, a missing or orphan process, root."""
    procs = without_exec_sessions(procs)
    table = _by_pid(procs)
    roles = classify(procs)
    problems = []
    init = roles.init
    if init is None:
        problems.append("no PID 1 in the process table")
    elif not init.argv or _basename(init.argv[0]) != _basename(defaults.TINI_PATH):
        problems.append(f"PID 1 is not tini: {init.describe()}")
    wanted: list[tuple[str, Proc | None]] = [("router", roles.router), ("engine", roles.engine)]
    if expect_executor:
        wanted.append(("executor", roles.executor))
    for name, proc in wanted:
        if proc is None:
            problems.append(f"no {name} process")
        elif not is_descendant(proc, 1, table):
            problems.append(f"the {name} is not a descendant of PID 1: {proc.describe()}")
    root = [p for p in procs if 0 in p.uids]
    problems += [f"runs as root: {p.describe()}" for p in root]
    return problems
