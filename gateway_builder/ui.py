"""User-facing output: logs on stderr (redacted, -v/-q aware), results on stdout."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from gateway_builder.redact import redact_text


class UI:
    """Logging and result printing for one CLI invocation.

    ``verbosity``: -1 quiet (errors only), 0 normal, 1+ verbose. In ``json_mode`` the final result
    goes to stdout as one JSON document and every log line goes to stderr.
    """

    def __init__(
        self,
        verbosity: int = 0,
        json_mode: bool = False,
        err: TextIO | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.verbosity = verbosity
        self.json_mode = json_mode
        self._err = err or sys.stderr
        self._out = out or sys.stdout
        self.steps: list[dict[str, Any]] = []

    def _emit(self, text: str) -> None:
        self._err.write(redact_text(text) + "\n")
        self._err.flush()

    def info(self, message: str) -> None:
        """A normal progress line."""
        if self.verbosity >= 0:
            self._emit(message)

    def debug(self, message: str) -> None:
        """A line shown only with -v."""
        if self.verbosity >= 1:
            self._emit(message)

    def warn(self, message: str) -> None:
        """A warning (shown unless -q)."""
        if self.verbosity >= 0:
            self._emit(f"warning: {message}")

    def error(self, message: str) -> None:
        """An error line (always shown)."""
        self._emit(f"error: {message}")

    def __call__(self, message: str) -> None:
        """Allow passing the UI where a ``Callable[[str], None]`` log is expected."""
        self.info(message)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time a named pipeline step and log its start and end."""
        self.info(f"==> {name}")
        start = time.monotonic()
        ok = False
        try:
            yield
            ok = True
        finally:
            seconds = round(time.monotonic() - start, 2)
            self.steps.append({"step": name, "ok": ok, "seconds": seconds})
            if ok:
                self.debug(f"    {name}: done in {seconds:.2f}s")

    def result(self, data: dict[str, Any], human: str | None = None) -> None:
        """Print the command's result: JSON in json mode, else ``human`` (if any) on stdout;
        ``-q`` prints no human result (errors only), but ``--json`` still prints the JSON."""
        if self.json_mode:
            payload = dict(data)
            if self.steps and "steps" not in payload:
                payload["steps"] = self.steps
            self._out.write(
                redact_text(json.dumps(payload, indent=2, sort_keys=True, default=str)) + "\n"
            )
        elif human and self.verbosity >= 0:
            self._out.write(redact_text(human) + ("\n" if not human.endswith("\n") else ""))
        self._out.flush()


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``1 Python policy``, ``2 Python policies``: a count with its noun in the right number."""
    if count == 1:
        return f"1 {singular}"
    if plural is None:
        plural = singular[:-1] + "ies" if singular.endswith("y") else singular + "s"
    return f"{count} {plural}"
