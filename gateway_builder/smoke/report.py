"""What a smoke test reports: the step table, each policy's results, and the failure.

:class:`SmokeReport` is the ``--json`` result and the human step table; a failed run raises
:class:`SmokeTestError`, whose details are the table and the tail of the container's logs with
credentials redacted (they are printed and may end up in CI logs).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway_builder import defaults
from gateway_builder.errors import BuildError
from gateway_builder.redact import redact_text


class StepFailed(Exception):
    """A step's check failed; the message names the cause (the step runner catches it)."""


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
    """A fixed-width table: step, result, seconds, detail; a long detail wraps onto indented
    lines at word boundaries (a word longer than a line is split), never cut: it is often the
    reason a step failed."""
    name_w = max([len("step"), *(len(s.name) for s in steps)])
    head = f"{'step':<{name_w}}  {'result':<7} {'seconds':>7}  detail"
    rows = [head, "-" * min(width, max(len(head), 40))]
    indent = name_w + 2 + 8 + 7 + 2
    detail_w = max(width - indent, 40)
    for s in steps:
        lines = textwrap.wrap(s.detail, detail_w, break_on_hyphens=False) or [""]
        rows.append(f"{s.name:<{name_w}}  {s.status.upper():<7} {s.seconds:>7.2f}  {lines[0]}")
        rows += [" " * indent + line for line in lines[1:]]
    return "\n".join(rows)


@dataclass
class PolicyResult:
    """What the smoke test saw of one policy."""

    name: str
    version: str
    python_version: str = ""
    ready: bool = False
    distributions: dict[str, str] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "version": self.version,
            "python_version": self.python_version,
            "ready": self.ready,
            "distributions": dict(sorted(self.distributions.items())),
            "samples": self.samples,
        }


@dataclass
class SmokeReport:
    """The outcome of one smoke test."""

    image: str
    steps: list[StepResult] = field(default_factory=list)
    policies: list[PolicyResult] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every step passed."""
        return self.error is None and all(s.status == "pass" for s in self.steps)

    def table(self) -> str:
        """The human step table."""
        return format_table(self.steps)

    def as_dict(self) -> dict[str, Any]:
        """JSON form (the ``--json`` result)."""
        return {
            "ok": self.ok,
            "image": self.image,
            "seconds": round(self.seconds, 2),
            "error": self.error,
            "steps": [s.as_dict() for s in self.steps],
            "policies": [p.as_dict() for p in self.policies],
            "warnings": self.warnings,
        }


class SmokeTestError(BuildError):
    """The image failed its smoke test; ``report`` holds every step run so far."""

    def __init__(self, message: str, report: SmokeReport, *, details: str | None = None) -> None:
        super().__init__(message, details=details)
        self.report = report


def log_tail(log: str, lines: int = defaults.SMOKE_LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of container output, credentials redacted."""
    return redact_text("\n".join(log.splitlines()[-lines:]))


def failure_details(table: str, log: str | None) -> str:
    """What a failed smoke test prints after its one-line error: the steps and the logs."""
    if not log:
        return table
    shown = log_tail(log)
    count = len(shown.splitlines())
    return f"{table}\n--- container logs (last {count} lines) ---\n{shown}"
