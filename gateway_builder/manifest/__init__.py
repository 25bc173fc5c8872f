"""The two manifests: ``build.yaml`` (upstream schema) and ``python-build.yaml``.

Strict models (:mod:`.schema`), the normalized specs later stages consume (:mod:`.specs`), and
a loader (:mod:`.load`) that turns every problem into one
:class:`~gateway_builder.errors.ManifestError` naming file, line, column and field
(:mod:`.validation`, positions from :mod:`.yamlpos`).
"""

from __future__ import annotations

from gateway_builder.manifest.load import (
    json_schemas,
    load_build_manifest,
    load_manifests,
    load_python_manifest,
)
from gateway_builder.manifest.specs import (
    GitSource,
    GoPolicySpec,
    Manifests,
    PathSource,
    PipSource,
    PolicySource,
    PythonPolicySpec,
)

__all__ = [
    "GitSource",
    "GoPolicySpec",
    "Manifests",
    "PathSource",
    "PipSource",
    "PolicySource",
    "PythonPolicySpec",
    "json_schemas",
    "load_build_manifest",
    "load_manifests",
    "load_python_manifest",
]
