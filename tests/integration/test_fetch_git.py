"""Git sources against real repositories in temp dirs (no mocks)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gwb_factories import GitRepo, write_packaged_policy, write_policy

from gateway_builder.cache import Cache
from gateway_builder.errors import BuildError, InputError
from gateway_builder.fetch import fetch_policy
from gateway_builder.fetch.git import GitCheckout, fetch_git
from gateway_builder.manifest import GitSource, PythonPolicySpec

pytestmark = pytest.mark.integration


def definition_version(root: Path) -> str:
    text = (root / "policy-definition.yaml").read_text()
    return next(ln.split(": ")[1] for ln in text.splitlines() if ln.startswith("version:"))


def fetch(
    repo: GitRepo, ref: str, fetch_cache: Cache, sub: str | None = "policies/hello", **kw: Any
) -> GitCheckout:
    return fetch_git(
        repo.url, ref, sub, fetch_cache, what="policy 'hello'", base_dir=repo.path, **kw
    )


def spec(
    url: str, ref: str, sub: str | None = "policies/hello", name: str = "hello"
) -> PythonPolicySpec:
    return PythonPolicySpec(
        name=name,
        source=GitSource(url, ref, sub),
        python=None,
        failure_mode="fail",
        timeout_ms=1000,
        isolation="worker",
        workers=1,
        origin="python-build.yaml:3:5",
    )


@pytest.mark.parametrize(
    ("ref", "tag", "version"),
    [
        ("v1", "v1.2.0", "v1.2.0"),  # major-only: highest v1.x.y, the rc excluded
        ("v1.2", "v1.2.0", "v1.2.0"),  # minor-only: v1.2.1-rc1 is a pre-release
        ("v2", "v2.0.0", "v2.0.0"),
        ("v1.0.0", "v1.0.0", "v1.0.0"),  # exact tag
        ("v1.2.1-rc1", "v1.2.1-rc1", "v1.2.1"),  # a pre-release tag named exactly still works
        ("policies/hello/v1", "policies/hello/v1.3.0", "v1.3.0"),  # monorepo form
    ],
)
def test_version_refs_resolve_like_upstream(
    versioned_repo: GitRepo, fetch_cache: Cache, ref: str, tag: str, version: str
) -> None:
    checkout = fetch(versioned_repo, ref, fetch_cache)
    assert checkout.tag == tag
    assert checkout.commit == versioned_repo.git("rev-parse", f"{tag}^{{commit}}")
    assert len(checkout.commit) == 40
    assert definition_version(checkout.root) == version


def test_branch_head_and_commit_refs(versioned_repo: GitRepo, fetch_cache: Cache) -> None:
    dev = fetch(versioned_repo, "dev", fetch_cache)
    assert dev.ref_kind == "branch" and dev.tag is None
    assert definition_version(dev.root) == "v3.0.0"
    head = fetch(versioned_repo, "HEAD", fetch_cache)
    assert head.commit == versioned_repo.git("rev-parse", "main")
    sha = versioned_repo.git("rev-parse", "v1.0.0^{commit}")
    for ref in (sha, sha[:10]):
        checkout = fetch(versioned_repo, ref, fetch_cache)
        assert checkout.commit == sha and checkout.ref_kind == "commit"
        assert definition_version(checkout.root) == "v1.0.0"


def test_commit_time_is_recorded(versioned_repo: GitRepo, fetch_cache: Cache) -> None:
    checkout = fetch(versioned_repo, "v1.0.0", fetch_cache)
    assert checkout.commit_time == int(
        versioned_repo.git("show", "-s", "--format=%ct", "v1.0.0^{commit}")
    )


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("v9", 'no tags found matching "v9"'),
        ("v1.7", 'no tags found matching "v1.7"'),
        ("nope", "ref 'nope' not found"),
        ("deadbeefdeadbeef", "not found"),
    ],
)
def test_missing_refs_fail_clearly(
    versioned_repo: GitRepo, fetch_cache: Cache, ref: str, message: str
) -> None:
    with pytest.raises(InputError, match=message) as info:
        fetch(versioned_repo, ref, fetch_cache)
    assert "policy 'hello'" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_subdirectory(versioned_repo: GitRepo, fetch_cache: Cache) -> None:
    with pytest.raises(InputError, match="subdirectory 'policies/absent' not found"):
        fetch(versioned_repo, "v1", fetch_cache, sub="policies/absent")


def test_subdirectory_escaping_the_repo(versioned_repo: GitRepo, fetch_cache: Cache) -> None:
    with pytest.raises(InputError, match="escapes its root"):
        fetch(versioned_repo, "v1", fetch_cache, sub="../outside")
    with pytest.raises(InputError, match="escapes its root"):
        fetch(versioned_repo, "v1", fetch_cache, sub="/etc")


def test_subdirectory_that_is_a_symlink_is_refused(
    git_repo_factory: Callable[[str], GitRepo], fetch_cache: Cache, tmp_path: Path
) -> None:
    repo = git_repo_factory("links")
    write_policy(repo.path / "real", "hello")
    os.symlink("/etc", repo.path / "escape")
    os.symlink("real", repo.path / "alias")
    repo.commit("links")
    with pytest.raises(InputError, match="is a symlink"):
        fetch(repo, "main", fetch_cache, sub="escape")
    with pytest.raises(InputError, match="is a symlink"):
        fetch(repo, "main", fetch_cache, sub="alias")


def test_symlink_inside_the_policy_pointing_outside_is_refused(
    git_repo_factory: Callable[[str], GitRepo], fetch_cache: Cache
) -> None:
    repo = git_repo_factory("inner-link")
    folder = write_policy(repo.path / "pol", "hello")
    os.symlink("../../secret.txt", folder / "data.txt")
    (repo.path / "secret.txt").write_text("x")
    repo.commit("link")
    with pytest.raises(InputError, match=r"symlink data\.txt points outside"):
        fetch(repo, "main", fetch_cache, sub="pol")
    # A link that stays inside the policy is fine.
    (folder / "data.txt").unlink()
    (folder / "real.txt").write_text("ok")
    os.symlink("real.txt", folder / "data.txt")
    repo.commit("inner link")
    checkout = fetch(repo, "main", fetch_cache, sub="pol")
    assert (checkout.root / "data.txt").read_text() == "ok"


def test_repository_root_as_policy_and_local_path_url(
    git_repo_factory: Callable[[str], GitRepo], fetch_cache: Cache
) -> None:
    repo = git_repo_factory("rootpol")
    write_policy(repo.path, "hello")
    repo.commit("root")
    repo.tag("v0.1.0")
    by_path = fetch_git(str(repo.path), "v0", None, fetch_cache, what="t", base_dir=Path("/"))
    relative = fetch_git("rootpol", "v0.1", None, fetch_cache, what="t", base_dir=repo.path.parent)
    assert by_path.commit == relative.commit == repo.git("rev-parse", "HEAD")
    assert (by_path.root / "policy.py").is_file()


def test_unsupported_transports_are_refused(fetch_cache: Cache) -> None:
    for url in ("ext::sh -c touch% /tmp/pwned", "-uhelp", "fd::3"):
        with pytest.raises(InputError, match=r"refusing|unsupported"):
            fetch_git(url, "v1", None, fetch_cache, what="t", base_dir=Path("/"))


def test_floating_ref_stays_on_the_pin_and_a_moved_tag_is_reported(
    versioned_repo: GitRepo, fetch_cache: Cache
) -> None:
    first = fetch(versioned_repo, "v1", fetch_cache)
    # A newer v1 release appears: the pinned fetch stays, an unpinned one moves.
    write_policy(versioned_repo.path / "policies" / "hello", "hello", version="v1.4.0")
    versioned_repo.commit("v1.4.0")
    versioned_repo.tag("v1.4.0")
    pinned = fetch(versioned_repo, "v1", fetch_cache, pin=first.commit, pin_tag=first.tag)
    assert (pinned.commit, pinned.tag) == (first.commit, "v1.2.0")
    assert fetch(versioned_repo, "v1", fetch_cache).tag == "v1.4.0"
    # Moving an exact tag is reported.
    old = fetch(versioned_repo, "v1.0.0", fetch_cache).commit
    versioned_repo.tag("v1.0.0", force=True)
    moved = fetch(versioned_repo, "v1.0.0", fetch_cache, pin=old)
    assert moved.moved_from == old
    assert moved.commit == versioned_repo.git("rev-parse", "HEAD")


def test_second_fetch_is_served_by_the_cache(
    versioned_repo: GitRepo, fetch_cache: Cache, tmp_path: Path
) -> None:
    first = fetch(versioned_repo, "v1", fetch_cache)
    url = versioned_repo.url
    shutil.rmtree(versioned_repo.path)  # the remote is gone
    again = fetch_git(
        url, "v1", "policies/hello", fetch_cache, what="t", base_dir=tmp_path, pin=first.commit
    )
    assert again.commit == first.commit and again.root == first.root
    offline = Cache.open(fetch_cache.root, offline=True)
    assert fetch_git(url, "v1", "policies/hello", offline, what="t", base_dir=tmp_path).tag == (
        "v1.2.0"
    )


def test_offline_miss_is_a_clear_error(versioned_repo: GitRepo, tmp_path: Path) -> None:
    offline = Cache.open(tmp_path / "empty-cache", offline=True)
    with pytest.raises(InputError, match="offline"):
        fetch(versioned_repo, "v1.0.0", offline)


def test_a_missing_repository_is_bad_input(fetch_cache: Cache, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot read .*does not appear to be a git repository"):
        fetch_git(
            (tmp_path / "no-such-repo").as_uri(),
            "v1",
            None,
            fetch_cache,
            what="t",
            base_dir=tmp_path,
        )


def test_an_unreachable_server_is_a_failure_not_bad_input(
    fetch_cache: Cache, tmp_path: Path
) -> None:
    with pytest.raises(BuildError, match="cannot read") as info:
        fetch_git(
            "http://127.0.0.1:1/repo.git", "v1", None, fetch_cache, what="t", base_dir=tmp_path
        )
    assert not isinstance(info.value, InputError)


def test_fetch_policy_from_git_simple_and_packaged(
    git_repo_factory: Callable[[str], GitRepo], fetch_cache: Cache, tmp_path: Path
) -> None:
    repo = git_repo_factory("both")
    write_policy(repo.path / "simple", "simple-one", requirements=["tinydep==1.0.0"])
    write_packaged_policy(repo.path / "packaged", "packed", requires=["tinydep>=1"])
    (repo.path / "packaged" / "python_version.txt").write_text("3.12\n")
    repo.commit("two policies")
    repo.tag("v1.0.0")
    simple = fetch_policy(spec(repo.url, "v1", "simple", "simple-one"), fetch_cache, base=tmp_path)
    assert simple.kind == "simple" and simple.artifact is None
    assert simple.module == "simple_one.policy"
    assert simple.requirements == ("tinydep==1.0.0",)
    assert simple.resolved == repo.git("rev-parse", "HEAD")
    assert simple.display == f"git+{repo.url}@{simple.resolved}#subdirectory=simple"
    assert simple.python_version == "3.11"
    # The test backend is this repository's code: built on the host (the sandbox needs Docker).
    packed = fetch_policy(
        spec(repo.url, "v1.0.0", "packaged", "packed"), fetch_cache, base=tmp_path, host_builds=True
    )
    assert packed.kind == "packaged" and packed.source_dir is None
    assert packed.artifact is not None
    assert packed.artifact.filename == "gwbtest_packed-1.0.0-py3-none-any.whl"
    assert packed.module == "packed_pkg.policy"
    assert packed.requirements == ("tinydep>=1",)
    assert packed.python_version == "3.12"  # from python_version.txt
    # The wheel build is cached by source content: a second fetch reuses the same bytes.
    again = fetch_policy(spec(repo.url, "v1.0.0", "packaged", "packed"), fetch_cache, base=tmp_path)
    assert again.artifact == packed.artifact


def test_credentials_never_appear_in_errors_or_provenance(
    versioned_repo: GitRepo, fetch_cache: Cache, tmp_path: Path
) -> None:
    secret_url = "https://user:hunter2@127.0.0.1:9/org/repo.git"
    with pytest.raises(BuildError) as info:
        fetch_git(secret_url, "v1", None, fetch_cache, what="policy 'p'", base_dir=tmp_path)
    assert "hunter2" not in str(info.value) and "hunter2" not in (info.value.details or "")
    assert "user:****@127.0.0.1" in str(info.value)
    fetched = fetch_policy(spec(versioned_repo.url, "v1"), fetch_cache, base=tmp_path)
    assert fetched.display.startswith("git+file://")
    assert not list(fetch_cache.root.glob("git/*/config")) or all(
        "url" not in p.read_text() for p in fetch_cache.root.glob("git/*/config")
    )
