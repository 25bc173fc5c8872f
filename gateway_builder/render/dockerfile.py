"""The Dockerfile's view model: stage names, the commands each builder stage runs, the venvs.

``Dockerfile.j2`` only lays these values out; every decision about what the image holds is made
here, from the plan, so the template stays free of logic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from gateway_builder import defaults
from gateway_builder.errors import InputError
from gateway_builder.plan import BuildPlan
from gateway_builder.render.users import USERS_SPEC
from gateway_builder.render.wheelhouse import policy_pins
from gateway_executor.paths import policy_dir, venv_dir

#: Where the builder stages mount their part of the context.
IN_STAGE = "/gateway-builder"
_STAGE_NAME = re.compile(r"[^a-z0-9_.-]+")


def stage_name(prefix: str, name: str) -> str:
    """A valid Dockerfile stage name (lower case, ``[a-z0-9_.-]``)."""
    return f"{prefix}-{_STAGE_NAME.sub('-', name.lower()).strip('-.') or 'x'}"


def _stage_cmd(executable: str, *args: str) -> list[str]:
    """A ``stage_tool.py`` invocation, isolated (``-I``) from the base image's environment."""
    return [executable, "-I", f"{IN_STAGE}/stage_tool.py", *args]


def dockerfile_values(
    plan: BuildPlan, labels: Sequence[tuple[str, str]], installer: str
) -> dict[str, Any]:
    """Everything ``Dockerfile.j2`` needs, computed from the plan."""
    epoch = str(plan.stage_epoch())  # stages without a time of their own
    engine = _engine_values(plan)
    cpythons: list[dict[str, Any]] = []
    venvs: list[dict[str, Any]] = []
    users = None
    if plan.python_policies:
        cpythons = _cpython_values(plan, epoch)
        venvs = _venv_values(plan, installer)
        users = _users_values(plan, epoch)
    return {
        "builder_version": plan.builder_version,
        "gateway_version": plan.gateway_version,
        "platform": plan.platform,
        "lock_digest": plan.lock_digest,
        "epoch": epoch,
        "image_epoch": str(plan.source_date_epoch),
        "policies": plan.python_policies,
        "go_policy_count": len(plan.go_policies),
        "engine": engine,
        "cpythons": cpythons,
        "venvs": venvs,
        "users": users,
        "runtime": {
            "image": plan.bases.runtime,
            "uid": defaults.RUNTIME_UID,
            "ports": [str(p) for p in defaults.EXPOSED_PORTS],
            "entrypoint": [plan.bases.tini, "--", defaults.ENTRYPOINT_PATH],
            "healthcheck": {
                "options": (
                    f"--interval={defaults.HEALTHCHECK_INTERVAL_S}s "
                    f"--timeout={defaults.HEALTHCHECK_TIMEOUT_S}s "
                    f"--start-period={defaults.HEALTHCHECK_START_PERIOD_S}s "
                    f"--retries={defaults.HEALTHCHECK_RETRIES}"
                ),
                "command": [defaults.HEALTH_CHECK_PATH],
            },
        },
        "labels": list(labels),
    }


def _engine_values(plan: BuildPlan) -> dict[str, Any] | None:
    """The engine builder stage, or None when a prebuilt engine binary is copied instead."""
    if plan.policy_engine_binary is not None:
        return None
    if not plan.bases.engine_builder:
        raise InputError(
            "no engine builder image and no --policy-engine: nothing builds the engine"
        )
    out = f"{IN_STAGE}/out"
    return {
        "image": plan.bases.engine_builder,
        "command": [
            *plan.bases.engine_builder_command,
            "-build-file",
            f"{IN_STAGE}/engine/build.yaml",
            "-out-dir",
            out,
        ],
        "output": f"{out}/{defaults.ENGINE_BUILDER_OUTPUT}",
        "epoch": str(plan.stage_epoch()),
    }


def _users_values(plan: BuildPlan, epoch: str) -> dict[str, Any]:
    """The ``users`` stage: runs on the executor's Python base with the runtime's user files."""
    base = plan.bases.python(plan.executor_python)
    runtime = f"{IN_STAGE}/runtime"
    command = _stage_cmd(
        base.executable,
        "users",
        "--spec", f"{IN_STAGE}/{USERS_SPEC}",
        "--runtime", runtime,
        "--epoch", epoch,
    )  # fmt: skip
    return {
        "image": base.image,
        "from_runtime": ["/etc/passwd", "/etc/group", defaults.RUNTIME_SETPRIV, f"{runtime}/"],
        "spec": USERS_SPEC,
        "command": command,
    }


def _cpython_values(plan: BuildPlan, epoch: str) -> list[dict[str, Any]]:
    """Stages exporting a CPython runtime, for the bases whose Python the runtime lacks."""
    cpythons = []
    for version in plan.python_versions:
        base = plan.bases.python(version)
        if base.runtime_copy:
            cpythons.append(
                {
                    "version": version,
                    "image": base.image,
                    "stage": stage_name("cpython", version),
                    "export": _stage_cmd(
                        base.executable,
                        "export",
                        "--epoch",
                        epoch,
                        "--strip-python",
                        *base.runtime_copy,
                    ),
                }
            )
    return cpythons


def _venv_values(plan: BuildPlan, installer: str) -> list[dict[str, Any]]:
    """The venv stages with their install (and, for code they hold, compile) commands; each
    exports with the time of its own source."""
    venvs = []
    for venv in venv_specs(plan):
        epoch = str(venv["epoch"])
        base = plan.bases.python(venv["python_version"])
        venv["image"] = base.image
        venv["install"] = _stage_cmd(
            base.executable,
            "install",
            "--venv", venv["venv"],
            "--python-version", venv["python_version"],
            "--lock", f"{IN_STAGE}/locks/{venv['name']}.txt",
            "--wheelhouse", f"{IN_STAGE}/wheelhouse/{venv['name']}",
            "--installer", f"{IN_STAGE}/installer/{installer}",
            "--epoch", epoch,
        )  # fmt: skip
        if venv["code"]:
            venv["code"]["compile"] = _stage_cmd(
                base.executable, "compile", "--epoch", epoch, venv["code"]["target"]
            )
        venvs.append(venv)
    return venvs


def venv_specs(plan: BuildPlan) -> list[dict[str, Any]]:
    """One entry per venv: the executor's first, then the policies in name order."""
    specs: list[dict[str, Any]] = [
        {
            "name": defaults.EXECUTOR_VENV_NAME,
            "title": "policy executor",
            "stage": "executor",
            "venv": defaults.EXECUTOR_VENV,
            "python_version": plan.executor_python,
            "count": len(plan.executor_requirements),
            "code": {"context": "executor", "target": defaults.EXECUTOR_DIR},
            "epoch": plan.stage_epoch(),
        }
    ]
    for p in plan.python_policies:
        specs.append(
            {
                "name": p.name,
                "title": f"policy {p.name} {p.version}",
                "stage": stage_name("policy", p.name),
                "venv": venv_dir(p.name),
                "python_version": p.python_version,
                "count": len(policy_pins(p)),
                "code": (
                    {"context": f"policies/{p.name}", "target": policy_dir(p.name)}
                    if p.source_dir is not None
                    else None
                ),
                "epoch": plan.stage_epoch(p.source_time),
            }
        )
    return specs
