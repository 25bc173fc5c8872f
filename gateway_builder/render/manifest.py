"""The build manifest: what is in the image (policies, pins, bases, labels) as JSON.

The same text is written at the context root, where it marks the directory as a rendered
context, and into the image, where the smoke test and operators read it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from packaging.utils import canonicalize_name

from gateway_builder import defaults
from gateway_builder.plan import BuildPlan
from gateway_builder.redact import redact_text
from gateway_builder.render.labels import bases_dict
from gateway_builder.render.wheelhouse import policy_pins
from gateway_executor.paths import venv_dir

MANIFEST_FORMAT = "gateway-builder/build-manifest"
#: File name of the build manifest; its presence marks a rendered context.
MARKER = "build-manifest.json"


def build_manifest(plan: BuildPlan, labels: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The build manifest's content."""
    return {
        "format": MANIFEST_FORMAT,
        "format_version": 1,
        "builder_version": plan.builder_version,
        "gateway_version": plan.gateway_version,
        "platform": plan.platform,
        "lock_digest": plan.lock_digest,
        "source_date_epoch": plan.source_date_epoch,
        "standin": plan.bases.standin,
        "bases": bases_dict(plan),
        "python_policies": [
            {
                "name": p.name,
                "version": p.version,
                "python_version": p.python_version,
                "venv": venv_dir(p.name),
                "source": redact_text(p.source_label),
                "resolved": p.resolved,
                "distributions": {canonicalize_name(r.name): r.version for r in policy_pins(p)},
            }
            for p in plan.python_policies
        ],
        "executor": {
            "venv": defaults.EXECUTOR_VENV,
            "python_version": plan.executor_python,
            "distributions": {
                canonicalize_name(r.name): r.version for r in plan.executor_requirements
            },
        },
        "go_policies": [
            {"name": g.name, "gomodule": g.gomodule, "filePath": g.file_path is not None}
            for g in plan.go_policies
        ],
        "labels": dict(labels),
    }


def manifest_text(plan: BuildPlan, labels: Sequence[tuple[str, str]]) -> str:
    """The build manifest as written: sorted keys, two-space indent, trailing newline."""
    body = json.dumps(build_manifest(plan, labels), indent=2, sort_keys=True, ensure_ascii=False)
    return body + "\n"
