"""The policy engine's inputs: a derived build file with its policy trees, or a prebuilt binary.

The engine registers every policy, Python ones included; for those it needs only the
definition, so each gets a placeholder module while the code runs in the Python executor.
"""

from __future__ import annotations

import json
from pathlib import Path

from gateway_builder import defaults
from gateway_builder.errors import BuildError, InputError
from gateway_builder.plan import BuildPlan
from gateway_builder.render.writer import ContextWriter

_ENGINE_STUB = (
    '"""Placeholder: the engine registers this Python policy from policy-definition.yaml\n'
    'only; the policy runs in the Python executor."""\n'
)


def derived_build_yaml(plan: BuildPlan) -> str:
    """The engine builder's build file: Go entries unchanged, Python policies as filePath."""
    lines = [
        "# Derived by gateway-builder from build.yaml and python-build.yaml; do not edit.",
        "version: v1",
        "gateway:",
        f"  version: {json.dumps(plan.gateway_version)}",
        "policies:",
    ]
    for g in plan.go_policies:
        lines.append(f"  - name: {json.dumps(g.name)}")
        if g.gomodule:
            lines.append(f"    gomodule: {json.dumps(g.gomodule)}")
        else:
            lines.append(f"    filePath: {json.dumps(f'./go/{g.name}')}")
    for p in plan.python_policies:
        lines.append(f"  - name: {json.dumps(p.name)}")
        lines.append(f"    filePath: {json.dumps(f'./python/{p.name}')}")
    return "\n".join(lines) + "\n"


def write_engine_inputs(w: ContextWriter, plan: BuildPlan) -> None:
    """``engine/``: the prebuilt binary, or the build file plus the Go and Python policy trees."""
    if plan.policy_engine_binary is not None:
        binary = Path(plan.policy_engine_binary)
        if not binary.is_file():
            raise InputError(f"--policy-engine {binary}: no such file")
        w.copy(binary, "engine/prebuilt/app/policy-engine", executable=True)
        return
    w.text("engine/build.yaml", derived_build_yaml(plan))
    for g in plan.go_policies:
        if g.file_path is not None:
            w.tree(Path(g.file_path), f"engine/go/{g.name}", f"Go policy '{g.name}'")
    for p in plan.python_policies:
        definition = p.definition_dir / defaults.POLICY_DEFINITION_FILE
        if not definition.is_file():
            raise BuildError(f"policy {p.name}: {definition} is missing")
        w.copy(definition, f"engine/python/{p.name}/{defaults.POLICY_DEFINITION_FILE}")
        w.text(f"engine/python/{p.name}/policy.py", _ENGINE_STUB)
