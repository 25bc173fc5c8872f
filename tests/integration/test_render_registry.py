"""The committed registry (registry/policy-registry.json) is what the default manifests render."""

from __future__ import annotations

import pytest

from gateway_builder import cli, defaults
from gateway_builder.baseopts import bases_chooser
from gateway_builder.pipeline import prepare_plan
from gateway_builder.policy_registry import registry_json
from gateway_builder.ui import UI

pytestmark = pytest.mark.integration


def test_committed_registry_is_current() -> None:
    repo = defaults.REPO_DIR
    args = cli.build_parser().parse_args(
        [
            "render",
            "--locked",
            "--build-file",
            str(repo / defaults.DEFAULT_BUILD_FILE),
            "--python-build-file",
            str(repo / defaults.DEFAULT_PYTHON_BUILD_FILE),
            "--out",
            "unused",
        ]
    )
    ui = UI(verbosity=-1)
    plan = prepare_plan(args, ui, bases=bases_chooser(args, ui))
    committed = repo / defaults.COMMITTED_REGISTRY_DIR / defaults.REGISTRY_FILE_NAME
    assert committed.read_text(encoding="utf-8") == registry_json(plan), (
        "registry/policy-registry.json is stale: run `gateway-builder render --out DIR` "
        "with the default manifests and commit the file"
    )
