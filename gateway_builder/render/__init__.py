"""The render stage: write a complete, self-contained, deterministic build context.

Layout of a rendered context (every path below is relative to ``--out``)::

    Dockerfile                  from templates/Dockerfile.j2
    build-manifest.json         what is in the image: policies, pins, bases, labels
    build/stage_tool.py         helper run inside the builder stages (venvs, export)
    build/installer/pip-*.whl   the locked pip wheel, run from the wheel (never installed)
    locks/<venv>.txt            per venv: ``name==version --hash=sha256:...`` lines
    wheelhouse/<venv>/*.whl     per venv: exactly the locked artifacts, hash-checked
    policies/<name>/<pkg>/      simple-directory policy sources
    executor/gateway_executor/  the executor package (runtime code)
    engine/build.yaml           derived build file for the engine builder (Go entries, and the
    engine/python/<name>/       Python policies as filePath entries: definition + stub)
    engine/go/<name>/           Go filePath policies
    engine/prebuilt/app/        --policy-engine: the prebuilt engine binary
    rootfs/app/...              the last layer: entrypoint.sh, policy registry, build manifest
    rootfs/app/policy-samples/<name>/samples/   each policy's sample requests (smoke test)

Identical inputs give byte-identical files, modes and times (SOURCE_DATE_EPOCH). The context is
rendered into a temporary directory next to ``--out`` and then renamed into place.

Modules: :mod:`.labels` (image labels), :mod:`.dockerfile` (the Dockerfile's values),
:mod:`.engine` (the policy engine's inputs), :mod:`.wheelhouse` (locks and wheelhouses),
:mod:`.manifest` (``build-manifest.json``), :mod:`.writer` (file writing with normalized modes)
and :mod:`.context` (the whole context, written and swapped into place).
"""

from __future__ import annotations

from gateway_builder.render.context import (
    RenderResult,
    fetch_downloader,
    normalize_tree,
    render,
    vcs_provenance,
    write_context,
)
from gateway_builder.render.dockerfile import IN_STAGE, dockerfile_values, stage_name, venv_specs
from gateway_builder.render.engine import derived_build_yaml
from gateway_builder.render.labels import labels_for, rfc3339
from gateway_builder.render.manifest import MANIFEST_FORMAT, MARKER, build_manifest
from gateway_builder.render.wheelhouse import (
    Downloader,
    lock_lines,
    policy_pins,
    wheel_name_version,
)

__all__ = [
    "IN_STAGE",
    "MANIFEST_FORMAT",
    "MARKER",
    "Downloader",
    "RenderResult",
    "build_manifest",
    "derived_build_yaml",
    "dockerfile_values",
    "fetch_downloader",
    "labels_for",
    "lock_lines",
    "normalize_tree",
    "policy_pins",
    "render",
    "rfc3339",
    "stage_name",
    "vcs_provenance",
    "venv_specs",
    "wheel_name_version",
    "write_context",
]
