"""Container logs: start-up markers, the cause of a failure, the shutdown sequence.

The log lines are those of ``templates/entrypoint.sh.j2`` (``[ent]`` lines) and of the processes
it prefixes (``[py-pol]``, ``[pol]``, ``[rtr]``); every rule here judges fixed text, so it is
unit-tested without a container.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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


#: A line a policy's worker wrote, as the executor relays it.
_POLICY_OUTPUT = re.compile(r"^\[policy \S+ pid \d+ (?:out|err)\] ")


def strip_log_prefix(text: str) -> str:
    """A log line without its timestamp, level and logger name."""
    return _LOG_PREFIX.sub("", text.strip(), count=1)


def policy_failures(lines: Iterable[LogLine], names: Iterable[str]) -> dict[str, str]:
    """Per policy, the cause of its start-up failure from the executor's log lines.

    The executor logs one line per failed policy (``policy NAME:VERSION failed: CAUSE``); that
    cause wins. Other executor error lines naming the policy are the fallback (without their
    logging prefix). A policy's own output (``[policy NAME pid N out|err] ...``, relayed by the
    executor) is never a cause: the executor's verdict on it follows.
    """
    causes: dict[str, str] = {}
    fallback: dict[str, str] = {}
    wanted = list(names)
    for line in lines:
        if line.tag != TAG_EXECUTOR or not _ERROR_HINT.search(line.text):
            continue
        if _POLICY_OUTPUT.match(strip_log_prefix(line.text)):
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
