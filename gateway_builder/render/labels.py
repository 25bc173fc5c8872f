"""The image labels: OCI metadata plus what the image holds (policies, pins, bases).

They are computed from the plan alone so the Dockerfile and the build manifest carry the same
values and identical plans label identically.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from gateway_builder import defaults
from gateway_builder.digest import canonical_json
from gateway_builder.plan import BuildPlan
from gateway_builder.redact import redact_text


def rfc3339(epoch: int) -> str:
    """``2024-01-02T03:04:05Z`` for the OCI ``created`` label."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def bases_dict(plan: BuildPlan) -> dict[str, Any]:
    """The base images the context really uses (shared by the label and the build manifest)."""
    return {
        "engine_builder": plan.bases.engine_builder if plan.policy_engine_binary is None else None,
        "pythons": {b.version: b.image for b in plan.bases.pythons if b.version in _versions(plan)},
        "runtime": plan.bases.runtime,
    }


def _versions(plan: BuildPlan) -> tuple[str, ...]:
    """Python versions with a venv; none when there are no Python policies (no executor)."""
    return plan.python_versions if plan.python_policies else ()


def _policy_summaries(plan: BuildPlan) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(Python, Go) policy entries of the labels, secrets redacted from sources."""
    python = [
        {
            "name": p.name,
            "version": p.version,
            "python": p.python_version,
            "source": redact_text(p.source_label),
            "resolved": p.resolved,
        }
        for p in plan.python_policies
    ]
    go = [
        {
            "name": g.name,
            "source": g.gomodule or f"filePath:{g.file_path.name if g.file_path else ''}",
        }
        for g in plan.go_policies
    ]
    return python, go


def labels_for(
    plan: BuildPlan, *, revision: str | None = None, source: str | None = None
) -> tuple[tuple[str, str], ...]:
    """Every image label, sorted by key (user labels may override the generated ones)."""
    policies, go = _policy_summaries(plan)
    labels = {
        "org.opencontainers.image.title": "gateway-runtime",
        "org.opencontainers.image.description": (
            f"gateway-runtime {plan.gateway_version} with {len(plan.python_policies)} Python and "
            f"{len(plan.go_policies)} Go policies, built by gateway-builder"
        ),
        "org.opencontainers.image.version": plan.gateway_version,
        "org.opencontainers.image.revision": revision or plan.lock_digest,
        "org.opencontainers.image.created": rfc3339(plan.source_date_epoch),
        "io.gateway-builder.builder-version": plan.builder_version,
        "io.gateway-builder.lock-digest": plan.lock_digest,
        "io.gateway-builder.platform": plan.platform,
        "io.gateway-builder.python-policies": canonical_json(policies),
        "io.gateway-builder.go-policies": canonical_json(go),
        "io.gateway-builder.base-images": canonical_json(bases_dict(plan)),
    }
    if source:
        labels["org.opencontainers.image.source"] = redact_text(source)
    if plan.bases.standin:
        labels[defaults.STANDIN_LABEL] = "true"
        labels[f"{defaults.STANDIN_LABEL}.note"] = defaults.STANDIN_NOTE
    for key, value in plan.labels:
        labels[key] = redact_text(value)
    return tuple(sorted(labels.items()))
