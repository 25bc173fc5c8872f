"""``memory_mb``: python-build.yaml (per policy and in defaults) -> spec -> registry -> executor."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway_builder import defaults
from gateway_builder.cli import main
from gateway_builder.manifest import load_manifests
from gateway_executor.registry import (
    PolicyEntry,
    RegistryError,
    parse_registry,
    registry_document,
)

MANIFEST = """
version: v1
defaults: {memory_mb: 512}
policies:
  - name: plain
    source: {path: ./pol}
  - name: big
    source: {path: ./pol}
    memory_mb: 4096
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pol").mkdir(exist_ok=True)
    (tmp_path / "pol" / "policy.py").write_text("def get_policy(m, p):\n    return None\n")
    path = tmp_path / "python-build.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_memory_mb_per_policy_and_in_defaults(tmp_path: Path) -> None:
    specs = load_manifests(None, write(tmp_path, MANIFEST)).python_policies()
    assert {s.name: s.memory_mb for s in specs} == {"plain": 512, "big": 4096}
    plain = MANIFEST.replace("defaults: {memory_mb: 512}", "defaults: {}")
    specs = load_manifests(None, write(tmp_path, plain)).python_policies()
    assert {s.name: s.memory_mb for s in specs} == {
        "plain": defaults.DEFAULT_MEMORY_MB,
        "big": 4096,
    }


@pytest.mark.parametrize("value", ["0", "32", "big", "2000000"])
def test_a_bad_memory_mb_is_one_located_error(
    tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, MANIFEST.replace("4096", value))
    assert main(["validate", "--python-build-file", str(path)]) == 2
    [err] = capsys.readouterr().err.strip().splitlines()
    assert "python-build.yaml:8:16: policies[1].memory_mb: expected" in err, err


def test_the_registry_carries_memory_mb_and_the_executor_checks_it() -> None:
    entry = PolicyEntry("p", "v1.0.0", "p.policy", "/venv/bin/python", memory_mb=300)
    doc = registry_document([entry])
    assert doc["policies"][0]["memory_mb"] == 300
    [back] = parse_registry(doc)
    assert back.memory_mb == 300
    del doc["policies"][0]["memory_mb"]  # older registries: the default
    assert parse_registry(doc)[0].memory_mb == defaults.DEFAULT_MEMORY_MB
    for bad in (0, 8, "512", True, None):
        doc["policies"][0]["memory_mb"] = bad
        with pytest.raises(RegistryError, match=r"policies\[0\]\.memory_mb"):
            parse_registry(doc)
