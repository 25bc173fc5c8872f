"""What the commands print about a fetched source: the tag a ref resolved to, next to the
definition's version (a ``v1`` ref that became ``v1.2.0`` says so)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from gwb_factories import GitRepo, write_policy

from gateway_builder.cli import main

pytestmark = pytest.mark.integration


def test_fetch_shows_the_tag_a_ref_resolved_to(
    tmp_path: Path,
    git_repo_factory: Callable[[str], GitRepo],
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = git_repo_factory("remote")
    write_policy(repo.path / "pol", "gitpol", version="v1.0.0")
    repo.commit("first")
    repo.tag("v1.0.0")
    repo.commit("a fix, the definition unchanged")
    repo.tag("v1.0.1")
    manifest = tmp_path / "python-build.yaml"
    manifest.write_text(
        f"version: v1\npolicies:\n  - name: gitpol\n    source:\n      git:\n        url: "
        f"{repo.url}\n        ref: v1\n        subdirectory: pol\n"
    )
    argv = ["fetch", "--python-build-file", str(manifest), "--cache-dir", str(tmp_path / "c")]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "fetched gitpol v1.0.0 (tag v1.0.1, simple, Python 3.11)" in err
    (line,) = out.splitlines()
    assert line.startswith("gitpol") and " v1.0.0 " in line and line.endswith("(tag v1.0.1)")
    assert main(["--json", *argv]) == 0
    (policy,) = json.loads(capsys.readouterr().out)["policies"]
    assert (policy["version"], policy["tag"]) == ("v1.0.0", "v1.0.1")
