"""The policy registry as the builder writes it: one entry per Python policy of the BuildPlan.

The document format (and its reader) is :mod:`gateway_executor.registry`; this module only says
where each policy lives in the image and what the executor runs it with.
"""

from __future__ import annotations

from gateway_builder.plan import BuildPlan, PythonPolicyPlan
from gateway_builder.redact import redact_text
from gateway_executor.paths import policy_dir, policy_home, venv_dir
from gateway_executor.registry import PolicyEntry, registry_text


def registry_entry(policy: PythonPolicyPlan) -> PolicyEntry:
    """The executor's entry for one policy of the plan."""
    return PolicyEntry(
        name=policy.name,
        version=policy.version,
        module=policy.module,
        sys_path=(policy_dir(policy.name),) if policy.source_dir is not None else (),
        python=f"{venv_dir(policy.name)}/bin/python",
        python_version=policy.python_version,
        failure_mode=policy.failure_mode,
        timeout_ms=policy.timeout_ms,
        init_timeout_ms=policy.init_timeout_ms or policy.timeout_ms,
        isolation=policy.isolation,
        workers=policy.workers,
        memory_mb=policy.memory_mb,
        params=policy.params,
        source=redact_text(policy.source_label),
        uid=policy.uid,
        gid=policy.gid,
        env=policy.env,
        home=policy_home(policy.name),
    )


def registry_json(plan: BuildPlan) -> str:
    """The registry file's exact text."""
    return registry_text(registry_entry(p) for p in plan.python_policies)
