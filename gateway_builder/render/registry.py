"""The policy registry: the one data file the executor reads (format in docs/DESIGN.md).

Written from the BuildPlan: keys sorted, 2-space indent, trailing newline, no timestamps.
"""

from __future__ import annotations

import json
from typing import Any

from gateway_builder.plan import BuildPlan, PythonPolicyPlan
from gateway_builder.redact import redact_text
from gateway_executor.paths import policy_dir, venv_dir

REGISTRY_FORMAT = "gateway-builder/policy-registry"
REGISTRY_FORMAT_VERSION = 1


def registry_entry(policy: PythonPolicyPlan) -> dict[str, Any]:
    """One ``policies[]`` entry."""
    return {
        "name": policy.name,
        "version": policy.version,
        "module": policy.module,
        "sys_path": [policy_dir(policy.name)] if policy.source_dir is not None else [],
        "python": f"{venv_dir(policy.name)}/bin/python",
        "python_version": policy.python_version,
        "failure_mode": policy.failure_mode,
        "timeout_ms": policy.timeout_ms,
        "isolation": policy.isolation,
        "workers": policy.workers,
        "params": policy.params,
        "source": redact_text(policy.source_label),
    }


def registry_document(plan: BuildPlan) -> dict[str, Any]:
    """The whole registry as a JSON-able dict (policies sorted by name)."""
    return {
        "format": REGISTRY_FORMAT,
        "format_version": REGISTRY_FORMAT_VERSION,
        "policies": [registry_entry(p) for p in sorted(plan.python_policies, key=lambda p: p.name)],
    }


def registry_json(plan: BuildPlan) -> str:
    """The registry file's exact text."""
    return json.dumps(registry_document(plan), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
