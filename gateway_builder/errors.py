"""Error types shared by every stage; the CLI maps them to exit codes.

* :class:`InputError` -- the user's input is wrong (manifest, lock, flag): exit code 2.
* :class:`BuildError` -- the input is fine but a stage failed (resolver, docker, smoke test): exit 1.

Messages are one line, already redacted, and never carry a traceback.
"""

from __future__ import annotations

from typing import Any


class GatewayBuilderError(Exception):
    """Base class: a message for the user and the exit code the CLI returns."""

    exit_code = 1

    def __init__(self, message: str, *, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: Optional multi-line extra text (a diff, a resolver's explanation, container logs).
        self.details = details
        #: Optional ``--json`` result of a command that failed part-way (e.g. the smoke test's
        #: steps): printed with ``ok: false`` so its shape does not change on failure.
        self.result: dict[str, Any] | None = None

    def __str__(self) -> str:
        return self.message


class InputError(GatewayBuilderError):
    """Bad input: a manifest, lock file, policy source or flag is invalid (exit 2)."""

    exit_code = 2


class ManifestError(InputError):
    """A manifest problem located at ``file:line:column`` with a field path."""

    def __init__(
        self,
        file: str,
        line: int,
        column: int,
        field: str,
        expected: str,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        self.expected = expected
        where = f"{file}:{line}:{column}"
        message = f"{where}: {field}: {expected}" if field else f"{where}: {expected}"
        super().__init__(message)


class BuildError(GatewayBuilderError):
    """A stage failed for a reason other than bad input (exit 1)."""

    exit_code = 1


class StaleLockError(BuildError):
    """The lock file does not match the manifests (``lock --check`` / ``build --locked``)."""
