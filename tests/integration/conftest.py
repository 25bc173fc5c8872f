"""Shared fixtures for fetch/lock integration tests: git repo factory, local package index."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gwb_factories import (
    GitRepo,
    LocalIndex,
    make_wheel,
    policy_sdist,
    policy_wheel,
    sdk_wheel,
    write_policy,
)

from gateway_builder.cache import Cache

#: Tags of the versioned test repository (pre-release included on purpose).
REPO_TAGS = ("v1.0.0", "v1.2.0", "v1.2.1-rc1", "v2.0.0")


@pytest.fixture
def fetch_cache(tmp_path: Path) -> Cache:
    """A fresh fetch cache in a temp dir."""
    return Cache.open(tmp_path / "cache")


@pytest.fixture
def git_repo_factory(tmp_path: Path) -> Callable[[str], GitRepo]:
    """Make empty git repositories under the test's temp dir."""

    def make(name: str = "repo") -> GitRepo:
        return GitRepo(tmp_path / name)

    return make


@pytest.fixture
def versioned_repo(git_repo_factory: Callable[[str], GitRepo]) -> GitRepo:
    """A repo with policy ``hello`` in ``policies/hello`` and tags v1.0.0 v1.2.0 v1.2.1-rc1 v2.0.0.

    Each tagged commit carries the tag's version in policy-definition.yaml (the rc carries
    v1.2.1); monorepo tags ``policies/hello/v1.0.0`` and ``policies/hello/v1.3.0`` exist too, and a
    branch ``dev`` is one commit ahead of ``main``.
    """
    repo = git_repo_factory("versioned")
    folder = repo.path / "policies" / "hello"
    for tag in REPO_TAGS:
        version = tag.split("-")[0]
        write_policy(folder, "hello", version=version)
        repo.commit(f"release {tag}")
        repo.tag(tag, annotated=tag == "v1.2.0")
    repo.git("tag", "policies/hello/v1.0.0", "v1.0.0")
    write_policy(folder, "hello", version="v1.3.0")
    repo.commit("monorepo release")
    repo.tag("policies/hello/v1.3.0")
    repo.git("checkout", "--quiet", "-b", "dev")
    write_policy(folder, "hello", version="v3.0.0")
    repo.commit("dev work")
    repo.git("checkout", "--quiet", "main")
    return repo


@pytest.fixture(scope="session")
def local_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIndex]:
    """A PEP 503 index served on 127.0.0.1 with real wheels of tiny packages.

    - apip-sdk-core 0.2.3 (stand-in SDK); grpcio, protobuf, pip stand-ins (executor, installer)
    - tinydep 1.0.0, 1.1.0, 2.0.0 (Requires-Python >=3.11), 2.1.0rc1 (pre-release)
    - tinyplat 1.0.0: cp310/cp312 manylinux x86_64 wheels, a cp312 aarch64 wheel, an sdist
    - tinytop 1.0.0 depending on tinydep>=1
    - gwbtest-index-policy 1.0.0, 1.1.0, 2.0.0b1 (policy wheels of policy ``index-policy``)
    - gwbtest-sdist-policy 1.0.0 (sdist only, in-tree backend)
    """
    root = tmp_path_factory.mktemp("index")
    build = tmp_path_factory.mktemp("dists")
    index = LocalIndex(root)
    index.add(sdk_wheel(build))
    # Stand-ins named like the executor's and installer's requirements.
    index.add(make_wheel(build, "grpcio", "1.85.1"))
    index.add(make_wheel(build, "protobuf", "7.35.1"))
    index.add(make_wheel(build, "pip", "25.0"))
    for version in ("1.0.0", "1.1.0"):
        index.add(make_wheel(build, "tinydep", version))
    index.add(make_wheel(build, "tinydep", "2.0.0"), requires_python=">=3.11")
    index.add(make_wheel(build, "tinydep", "2.1.0rc1"), requires_python=">=3.11")
    for tag in (
        "cp310-cp310-manylinux_2_17_x86_64.manylinux2014_x86_64",
        "cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64",
        "cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64",
        "cp312-cp312-musllinux_1_1_x86_64",
    ):
        index.add(make_wheel(build, "tinyplat", "1.0.0", tag=tag))
    sdist_dir = build / "tinyplat-sdist"
    sdist_dir.mkdir()
    (sdist_dir / "tinyplat-1.0.0.tar.gz").write_bytes(b"not really an sdist")
    index.add(sdist_dir / "tinyplat-1.0.0.tar.gz")
    index.add(make_wheel(build, "tinytop", "1.0.0", requires=["tinydep>=1"]))
    for version in ("1.0.0", "1.1.0", "2.0.0b1"):
        index.add(
            policy_wheel(
                build, "index-policy", "gwbtest-index-policy", version, requires=["tinydep<2"]
            )
        )
    index.add(
        policy_sdist(build, "sdist-policy", "gwbtest-sdist-policy", "1.0.0", requires=["tinydep"])
    )
    index.serve()
    yield index
    index.stop()


def write_manifest(folder: Path, body: str) -> Path:
    """Write python-build.yaml into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "python-build.yaml"
    path.write_text(textwrap.dedent(body).lstrip("\n"))
    return path


@pytest.fixture
def manifest_writer() -> Callable[[Path, str], Path]:
    """``write(folder, yaml_text) -> path`` for python-build.yaml."""
    return write_manifest


@pytest.fixture
def executor_in(tmp_path: Path) -> Path:
    """An executor requirements file served by the local index (tinydep only)."""
    path = tmp_path / "executor-requirements.in"
    path.write_text("tinydep>=1\n")
    return path
