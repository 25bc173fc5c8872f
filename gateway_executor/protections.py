"""Protections the executor could not apply, reported in ``HealthCheck``.

Protections degrade loudly: where the container denies what one needs (no capabilities, no
``no_new_privs``, no cgroup delegation, ...), the executor still runs, logs a warning once and
lists the protection in ``HealthCheckResponse.protections_off`` until it exits.

Whoever applies a protection calls :meth:`Protections.off` when it cannot; the engine owns one
:class:`Protections` (``Engine.protections``) and ``HealthCheck`` reports its :meth:`list`.
Stdlib only, no executor imports: any module may use it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

log = logging.getLogger("gateway_executor.protections")


@dataclass(frozen=True)
class ProtectionOff:
    """One protection that is not in force."""

    #: Short stable name, e.g. ``per-policy uids``, ``memory limit``, ``no_new_privs``.
    name: str
    #: One line: why it is off (what the container denies) and what that means.
    detail: str
    #: The policy (``name:version``) it applies to; empty: the whole executor.
    policy: str = ""


class Protections:
    """The protections found off so far (thread-safe; one entry per name and policy)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._off: dict[tuple[str, str], ProtectionOff] = {}

    def off(self, name: str, detail: str, policy: str = "") -> None:
        """Record that protection ``name`` is off (a WARNING the first time, then silent; a
        later call with a new ``detail`` replaces the old one)."""
        note = ProtectionOff(name, detail, policy)
        with self._lock:
            old = self._off.get((name, policy))
            self._off[(name, policy)] = note
        if old is None:
            where = f" for policy {policy}" if policy else ""
            log.warning("protection off%s: %s: %s", where, name, detail)

    def restored(self, name: str, policy: str = "") -> None:
        """Protection ``name`` is in force again (e.g. after a retry)."""
        with self._lock:
            self._off.pop((name, policy), None)

    def list(self) -> list[ProtectionOff]:
        """Every protection that is off, by name, then policy."""
        with self._lock:
            return sorted(self._off.values(), key=lambda n: (n.name, n.policy))
