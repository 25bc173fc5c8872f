"""Pure checks of the smoke test: container logs, the process table, isolation, the step table.

Nothing here talks to Docker or a socket; :mod:`gateway_builder.smoke` collects the raw data
(log text, a dump of ``/proc``, ``HealthCheck`` answers) and these functions judge it, so every
rule is unit-tested on fixed inputs. The log lines are those of ``templates/entrypoint.sh.j2``
(``[ent]`` lines) and of the processes it prefixes (``[py-pol]``, ``[pol]``, ``[rtr]``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.utils import canonicalize_name

from gateway_builder import defaults

# --------------------------------------------------------------------------------------------
# Container logs
# --------------------------------------------------------------------------------------------

#: Output prefixes of the entrypoint: itself and the three processes it supervises.
TAG_ENTRYPOINT, TAG_EXECUTOR, TAG_ENGINE, TAG_ROUTER = "[ent]", "[py-pol]", "[pol]", "[rtr]"
#: Process names the entrypoint uses in its own lines, in shutdown order.
STOP_ORDER = ("router", "engine", "executor")
#: The output prefix of each process the entrypoint names.
TAG_OF = {"router": TAG_ROUTER, "engine": TAG_ENGINE, "executor": TAG_EXECUTOR}

_ENT_READY = re.compile(r"^(executor|engine) is ready$")
_ENT_ALL_STARTED = re.compile(r"^all processes started$")
_EXECUTOR_READY = re.compile(r"executor ready: (\d+) polic")
#: A router that serves: the real Envoy, or the local bases' stand-in.
_ROUTER_READY = re.compile(r"starting main dispatch loop|router stand-in: listening on ")
_ENT_EXITED = re.compile(r"^(\w+) exited with status (\d+)")
_ENT_STOPPED = re.compile(r"^(\w+) (stopped|stopped with status \d+|killed)$")
_ENT_SHUTDOWN_DONE = "shutdown complete"
_ENT_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} ")


@dataclass(frozen=True)
class LogLine:
    """One line of container output, split into its prefix tag (or ``""``) and message."""

    tag: str
    text: str


def parse_log(log: str) -> list[LogLine]:
    """Split container output into tagged lines; the entrypoint's timestamp is dropped."""
    lines = []
    for raw in log.splitlines():
        tag, sep, rest = raw.partition(" ")
        if sep and tag in (TAG_ENTRYPOINT, TAG_EXECUTOR, TAG_ENGINE, TAG_ROUTER):
            if tag == TAG_ENTRYPOINT:
                rest = _ENT_TS.sub("", rest, count=1)
            lines.append(LogLine(tag, rest))
        else:
            lines.append(LogLine("", raw))
    return lines


@dataclass
class Readiness:
    """What the logs say about start-up."""

    executor: bool = False  # the entrypoint saw the executor's ready file
    executor_policies: int | None = None  # N from the executor's "executor ready: N policies"
    engine: bool = False
    router: bool = False  # the router logged that it serves
    all_started: bool = False  # the entrypoint's last start-up line

    def missing(self, *, expect_executor: bool = True) -> list[str]:
        """Names of the start-up markers not seen yet, in start order."""
        wanted = [
            ("executor ready", self.executor or not expect_executor),
            ("policy engine ready", self.engine),
            ("router serving", self.router),
            ("entrypoint: all processes started", self.all_started),
        ]
        return [name for name, seen in wanted if not seen]

    def complete(self, *, expect_executor: bool = True) -> bool:
        """Every marker seen."""
        return not self.missing(expect_executor=expect_executor)


def readiness(lines: Iterable[LogLine]) -> Readiness:
    """Scan log lines for the start-up markers of the three processes."""
    ready = Readiness()
    for line in lines:
        if line.tag == TAG_ENTRYPOINT:
            m = _ENT_READY.match(line.text)
            if m:
                setattr(ready, m.group(1), True)
            elif _ENT_ALL_STARTED.match(line.text):
                ready.all_started = True
        elif line.tag == TAG_EXECUTOR:
            m = _EXECUTOR_READY.search(line.text)
            if m:
                ready.executor_policies = int(m.group(1))
        elif line.tag == TAG_ROUTER and _ROUTER_READY.search(line.text):
            ready.router = True
    return ready


def exited_process(lines: Iterable[LogLine]) -> tuple[str, int] | None:
    """``(name, status)`` from the entrypoint's "NAME exited with status N" line, if any."""
    for line in lines:
        if line.tag == TAG_ENTRYPOINT:
            m = _ENT_EXITED.match(line.text)
            if m:
                return m.group(1), int(m.group(2))
    return None


_ERROR_HINT = re.compile(r"(?i)\b(error|exception|traceback|failed|fatal|not ready|cannot)\b")


def last_error_line(lines: Sequence[LogLine], tag: str | None = None) -> str | None:
    """The last line (of ``tag``, or any) that looks like an error, for failure messages."""
    for line in reversed(lines):
        if (tag is None or line.tag == tag) and _ERROR_HINT.search(line.text):
            return line.text.strip()
    return None


_FAILED_CAUSE = re.compile(r"\bfailed: (.+)$")
#: "2026-11-27 04:00:01,002 [ERROR] gateway_executor.engine: " and similar logging prefixes.
_LOG_PREFIX = re.compile(
    r"^\d{4}-\d\d-\d\d[ T][\d:.,]+(?:[+-]\d{2}:?\d{2}|Z)?\s+\[?[A-Z]+\]?\s+[\w.]+:\s+"
)


def strip_log_prefix(text: str) -> str:
    """A log line without its timestamp, level and logger name."""
    return _LOG_PREFIX.sub("", text.strip(), count=1)


def policy_failures(lines: Iterable[LogLine], names: Iterable[str]) -> dict[str, str]:
    """Per policy, the cause of its start-up failure from the executor's log lines.

    The executor logs one line per failed policy (``policy NAME:VERSION failed: CAUSE``); that
    cause wins. Other executor error lines naming the policy are the fallback (without their
    logging prefix).
    """
    causes: dict[str, str] = {}
    fallback: dict[str, str] = {}
    wanted = list(names)
    for line in lines:
        if line.tag != TAG_EXECUTOR or not _ERROR_HINT.search(line.text):
            continue
        for name in wanted:
            if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", line.text):
                m = _FAILED_CAUSE.search(line.text)
                if m:
                    causes[name] = m.group(1).strip()
                else:
                    fallback[name] = strip_log_prefix(line.text)
    return {**fallback, **causes}


def last_line(lines: Sequence[LogLine], tag: str) -> str | None:
    """The last error-looking line of ``tag``, else its last non-empty line."""
    found = last_error_line(lines, tag)
    if found:
        return found
    for line in reversed(lines):
        if line.tag == tag and line.text.strip():
            return line.text.strip()
    return None


def shutdown_problems(lines: Sequence[LogLine], *, expect_executor: bool = True) -> list[str]:
    """Why the shutdown log is not an ordered, clean stop (empty when it is)."""
    stopped: list[str] = []
    problems: list[str] = []
    done = False
    for line in lines:
        if line.tag != TAG_ENTRYPOINT:
            continue
        m = _ENT_STOPPED.match(line.text)
        if m:
            stopped.append(m.group(1))
            if m.group(2) != "stopped":
                problems.append(f"{m.group(1)} {m.group(2)}")
        elif line.text.startswith(_ENT_SHUTDOWN_DONE):
            done = True
        elif "did not stop within" in line.text:
            problems.append(line.text)
    wanted = [n for n in STOP_ORDER if expect_executor or n != "executor"]
    if stopped != wanted:
        problems.append(
            f"stop order: expected {', '.join(wanted)}, "
            f"got {', '.join(stopped) if stopped else 'no stop lines'}"
        )
    if not done:
        problems.append(f"no '[ent] {_ENT_SHUTDOWN_DONE}' line")
    return problems


# --------------------------------------------------------------------------------------------
# The process table (a dump of /proc taken inside the container)
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Isolation: each policy's own dependency versions
# --------------------------------------------------------------------------------------------

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;,]+)")


def parse_pins(text: str) -> dict[str, str]:
    """``name==version`` pins of a requirements or lock file (canonical names).

    Comments, ``--hash`` options, environment markers and backslash continuations are allowed;
    lines that pin nothing (ranges, ``-r``, URLs) are ignored.
    """
    pins: dict[str, str] = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].strip()
        m = _PIN.match(line)
        if m and not line.startswith("#"):
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def manifest_distributions(data: Any) -> dict[str, dict[str, str]]:
    """Per policy, every distribution of its venv from a ``build-manifest.json`` document."""
    found: dict[str, dict[str, str]] = {}
    policies = data.get("python_policies") if isinstance(data, dict) else None
    for entry in policies if isinstance(policies, list) else []:
        dists = entry.get("distributions") if isinstance(entry, dict) else None
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("name"), str)
            and isinstance(dists, dict)
        ):
            found[entry["name"]] = {canonicalize_name(k): str(v) for k, v in dists.items()}
    return found


def canonical_distributions(reported: Mapping[str, str]) -> dict[str, str]:
    """A HealthCheck ``distributions`` map with canonical names."""
    return {canonicalize_name(k): v for k, v in reported.items()}


@dataclass
class IsolationResult:
    """The isolation step's findings."""

    problems: list[str] = field(default_factory=list)
    #: Distributions reported with different versions by different policies: name -> {policy: ver}
    differing: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Pins checked against the reported versions, per policy.
    pins_checked: dict[str, int] = field(default_factory=dict)


def check_isolation(
    reported: Mapping[str, Mapping[str, str]],
    pins: Mapping[str, Mapping[str, str]],
    *,
    complete: Iterable[str] = (),
    sdk: str = "apip-sdk-core",
) -> IsolationResult:
    """Compare each policy's reported distributions with its pins and with the other policies.

    ``reported``: policy -> distributions from HealthCheck; ``pins``: policy -> ``==`` pins (from
    the build manifest's lock, or the policy's requirements.txt; may be empty). Every policy must
    report a non-empty set that holds the SDK and each of its pins at the pinned version; for the
    policies in ``complete`` the pins are the whole venv, so anything else installed is a problem
    too. Where two policies pin one distribution differently, each must report its own version.
    """
    result = IsolationResult()
    whole = set(complete)
    canon = {name: canonical_distributions(d) for name, d in reported.items()}
    for name in sorted(canon):
        dists = canon[name]
        if not dists:
            result.problems.append(f"policy {name} reports no installed distributions")
            continue
        if canonicalize_name(sdk) not in dists:
            result.problems.append(f"policy {name}: {sdk} is not installed in its environment")
        own = {canonicalize_name(k): v for k, v in pins.get(name, {}).items()}
        result.pins_checked[name] = len(own)
        for dist, version in sorted(own.items()):
            got = dists.get(dist)
            if got != version:
                result.problems.append(
                    f"policy {name}: {dist} is {got or 'not installed'}, its lock pins {version}"
                )
        if name in whole:
            extra = sorted(set(dists) - set(own))
            if extra:
                shown = ", ".join(f"{d} {dists[d]}" for d in extra[:5])
                result.problems.append(f"policy {name}: installed but not locked: {shown}")
    all_dists: list[str] = sorted({d for dists in canon.values() for d in dists})
    for shared in all_dists:
        versions = {name: canon[name][shared] for name in sorted(canon) if shared in canon[name]}
        if len(set(versions.values())) > 1:
            result.differing[shared] = versions
    return result


# --------------------------------------------------------------------------------------------
# Where the registry and the samples are
# --------------------------------------------------------------------------------------------


def find_registry(root: Path) -> Path | None:
    """The policy registry in a rendered context (or an extracted image tree); shallowest wins."""
    return _find_file(root, defaults.REGISTRY_PATH)


#: File name of the build manifest (render writes it at the context root and into the image).
BUILD_MANIFEST_NAME = "build-manifest.json"
BUILD_MANIFEST_PATH = f"{defaults.APP_DIR}/{BUILD_MANIFEST_NAME}"


def find_build_manifest(root: Path) -> Path | None:
    """The build manifest in a rendered context or an extracted image tree."""
    return _find_file(root, BUILD_MANIFEST_PATH)


def _find_file(root: Path, image_path: str) -> Path | None:
    """``image_path`` under ``root`` as the context (root, rootfs/) or an image tree has it."""
    name = PurePosixPath(image_path).name
    rel = image_path.lstrip("/")
    for path in (root / name, root / "rootfs" / rel, root / rel):
        if path.is_file():
            return path
    found = sorted(
        (p for p in _walk(root) if p.name == name and p.is_file()),
        key=lambda p: (len(p.parts), str(p)),
    )
    return found[0] if found else None


#: How deep the input search goes below a context (rendered contexts need 5: rootfs/app/...).
SEARCH_DEPTH = 6


def _walk(root: Path, depth: int = SEARCH_DEPTH) -> Iterator[Path]:
    """Every path below ``root`` down to ``depth`` levels (symlinked directories not followed)."""
    for current, dirs, files in os.walk(root):
        level = len(Path(current).relative_to(root).parts)
        if level >= depth:
            dirs[:] = []
        dirs.sort()
        for name in (*dirs, *sorted(files)):
            yield Path(current) / name


def _name_forms(policy: str) -> set[str]:
    return {policy, policy.replace("-", "_")}


def find_policy_dirs(root: Path, policies: Iterable[str]) -> dict[str, Path]:
    """For each policy, the directory holding its ``samples/`` under ``root``.

    Any layout works where a path component below ``root`` is the policy name (or the name with
    ``_`` for ``-``), e.g. ``policies/<name>/samples`` or ``policies/<name>/<pkg>/samples``;
    the shallowest match wins.
    """
    sample_dirs = sorted(
        (p for p in _walk(root) if p.name == "samples" and p.is_dir() and any(p.glob("*.json"))),
        key=lambda p: (len(p.parts), str(p)),
    )
    found: dict[str, Path] = {}
    for policy in policies:
        forms = _name_forms(policy)
        for sample_dir in sample_dirs:
            parts = sample_dir.parent.relative_to(root).parts
            if forms & set(parts):
                found[policy] = sample_dir.parent
                break
    return found


# --------------------------------------------------------------------------------------------
# The step table
# --------------------------------------------------------------------------------------------


@dataclass
class StepResult:
    """One named smoke-test step."""

    name: str
    status: str  # "pass" | "fail" | "skipped"
    seconds: float = 0.0
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "step": self.name,
            "status": self.status,
            "ok": self.status == "pass",
            "seconds": round(self.seconds, 2),
            "detail": self.detail,
        }


def format_table(steps: Sequence[StepResult], *, width: int = 120) -> str:
    """A fixed-width table: step, result, seconds, detail (clipped to ``width`` columns)."""
    name_w = max([len("step"), *(len(s.name) for s in steps)])
    head = f"{'step':<{name_w}}  {'result':<7} {'seconds':>7}  detail"
    rows = [head, "-" * min(width, max(len(head), 40))]
    for s in steps:
        row = f"{s.name:<{name_w}}  {s.status.upper():<7} {s.seconds:>7.2f}  {s.detail}"
        rows.append(row if len(row) <= width else row[: width - 3] + "...")
    return "\n".join(rows)
