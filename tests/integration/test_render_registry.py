"""The committed registry (registry/policy-registry.json) is what the default manifests render."""

from __future__ import annotations

import pytest

from gateway_builder import defaults
from gateway_builder.options import BaseImageOptions, LockOptions, RenderOptions, SessionOptions
from gateway_builder.pipeline import Session
from gateway_builder.render.registry import registry_json
from gateway_builder.ui import UI

pytestmark = pytest.mark.integration


def test_committed_registry_is_current() -> None:
    repo = defaults.REPO_DIR
    session = SessionOptions(
        build_file=repo / defaults.DEFAULT_BUILD_FILE,
        python_build_file=repo / defaults.DEFAULT_PYTHON_BUILD_FILE,
        # The sample policies are this repository's code; this suite runs without Docker.
        allow_host_builds=True,
    )
    plan = Session.open(session).plan(
        LockOptions(resolve=False), RenderOptions(), BaseImageOptions(), UI(verbosity=-1)
    )
    committed = repo / defaults.COMMITTED_REGISTRY_DIR / defaults.REGISTRY_FILE_NAME
    assert committed.read_text(encoding="utf-8") == registry_json(plan), (
        "registry/policy-registry.json is stale: run `nox -s registry` and commit the file"
    )
