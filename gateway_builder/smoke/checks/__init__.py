"""The smoke test's pure rules: nothing here talks to Docker or a socket.

The step runner collects the raw data (log text, a dump of ``/proc``, ``HealthCheck`` answers,
files copied out of an image) and these functions judge it, so every rule is unit-tested on fixed
inputs: :mod:`.logs` (start-up, failure causes, shutdown), :mod:`.processes` (the process tree),
:mod:`.isolation` (each policy's own dependency versions) and :mod:`.layout` (where the inputs are).
The step table's row and format are re-exported from :mod:`gateway_builder.smoke.report` so that
everything pure is reachable from one namespace.
"""

from __future__ import annotations

from gateway_builder.smoke.checks.isolation import (
    IsolationResult,
    canonical_distributions,
    check_isolation,
    manifest_distributions,
    parse_pins,
)
from gateway_builder.smoke.checks.layout import (
    BUILD_MANIFEST_NAME,
    BUILD_MANIFEST_PATH,
    SEARCH_DEPTH,
    find_build_manifest,
    find_policy_dirs,
    find_registry,
)
from gateway_builder.smoke.checks.logs import (
    STOP_ORDER,
    TAG_ENGINE,
    TAG_ENTRYPOINT,
    TAG_EXECUTOR,
    TAG_OF,
    TAG_ROUTER,
    LogLine,
    Readiness,
    exited_process,
    last_error_line,
    last_line,
    parse_log,
    policy_failures,
    readiness,
    shutdown_problems,
    strip_log_prefix,
)
from gateway_builder.smoke.checks.processes import (
    PROC_DUMP_SCRIPT,
    Proc,
    ProcessRoles,
    classify,
    is_descendant,
    parse_proc_dump,
    process_problems,
    without_exec_sessions,
)
from gateway_builder.smoke.report import StepResult, format_table

__all__ = [
    "BUILD_MANIFEST_NAME",
    "BUILD_MANIFEST_PATH",
    "PROC_DUMP_SCRIPT",
    "SEARCH_DEPTH",
    "STOP_ORDER",
    "TAG_ENGINE",
    "TAG_ENTRYPOINT",
    "TAG_EXECUTOR",
    "TAG_OF",
    "TAG_ROUTER",
    "IsolationResult",
    "LogLine",
    "Proc",
    "ProcessRoles",
    "Readiness",
    "StepResult",
    "canonical_distributions",
    "check_isolation",
    "classify",
    "exited_process",
    "find_build_manifest",
    "find_policy_dirs",
    "find_registry",
    "format_table",
    "is_descendant",
    "last_error_line",
    "last_line",
    "manifest_distributions",
    "parse_log",
    "parse_pins",
    "parse_proc_dump",
    "policy_failures",
    "process_problems",
    "readiness",
    "shutdown_problems",
    "strip_log_prefix",
    "without_exec_sessions",
]
