"""Helpers for testing the sample policies: find them, load one's ``policy.py`` by path.

Each policy folder's name has dashes, so its ``policy.py`` is loaded by path under a unique
module name for the tests that call the policy's objects directly. Sample files
(``samples/*.json``, format in docs/DESIGN.md "Sample requests") are replayed through the real
executor by ``gateway_builder.testing`` (the ``replay`` fixture in ``conftest.py``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from apip_sdk_core.policy.v1alpha2 import PolicyMetadata

from gateway_executor import samples

POLICY_SOURCES = Path(__file__).resolve().parent
#: The default manifests' lock: the pins the image installs for each sample policy.
LOCK_FILE = POLICY_SOURCES.parent / "manifests" / "python-build.lock"
TEST_METADATA = PolicyMetadata(
    route_name="sample-route", api_id="api-1", api_name="sample-api", api_version="v1.0"
)


def policy_folders() -> list[Path]:
    """Every sample policy folder (a directory holding a policy-definition.yaml)."""
    return sorted(p.parent for p in POLICY_SOURCES.glob("*/policy-definition.yaml"))


def load_policy_module(policy_dir: Path) -> ModuleType:
    """Import ``policy_dir/policy.py`` under a module name unique to the folder."""
    module_name = "_sample_policy_" + policy_dir.name.replace("-", "_")
    cached = sys.modules.get(module_name)
    if cached is not None:
        return cached
    spec = importlib.util.spec_from_file_location(module_name, policy_dir / "policy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def validate_sample_shape(sample: Any) -> list[str]:
    """Structural problems of a decoded sample file (empty when it follows the format)."""
    try:
        samples.parse_sample("policy", sample, "sample")
    except samples.SampleError as exc:
        return [str(exc)]
    return []


__all__ = [
    "LOCK_FILE",
    "POLICY_SOURCES",
    "TEST_METADATA",
    "load_policy_module",
    "policy_folders",
    "validate_sample_shape",
]
