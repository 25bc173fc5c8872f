"""Path sources (simple-directory policies): snapshot by content hash, validation, digests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway_builder.cache import Cache
from gateway_builder.errors import InputError
from gateway_builder.fetch import fetch_policies, fetch_policy, spec_digest
from gateway_builder.manifest import GitSource, PathSource, PipSource, PythonPolicySpec


def write_simple(folder: Path, name: str = "my-policy", requirements: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy-definition.yaml").write_text(f"name: {name}\nversion: v0.3.0\n")
    (folder / "policy.py").write_text("def get_policy(metadata, params):\n    return None\n")
    if requirements:
        (folder / "requirements.txt").write_text(requirements)
    return folder


def spec(path: Path, name: str = "my-policy", python: str | None = None) -> PythonPolicySpec:
    return PythonPolicySpec(
        name=name,
        source=PathSource(path),
        python=python,
        failure_mode="fail",
        timeout_ms=1000,
        isolation="worker",
        workers=1,
        origin="m/python-build.yaml:2:3",
    )


def test_simple_path_policy(tmp_path: Path) -> None:
    folder = write_simple(tmp_path / "src" / "my-policy", requirements="tinydep==1.0\n")
    cache = Cache.open(tmp_path / "cache")
    fetched = fetch_policy(spec(folder), cache, base=tmp_path / "manifests")
    assert fetched.kind == "simple" and fetched.source_type == "path"
    assert fetched.module == "my_policy.policy" and fetched.package_dir_name == "my_policy"
    assert fetched.requirements == ("tinydep==1.0",)
    assert fetched.python_version == "3.11"  # the spec's default
    assert fetched.resolved.startswith("sha256:")
    assert fetched.display == "path:../src/my-policy"
    assert fetched.artifact is None
    # The policy is used from a snapshot in the cache, not from the working tree.
    assert fetched.source_dir is not None and cache.root in fetched.source_dir.parents
    assert (fetched.source_dir / "policy.py").is_file()
    assert fetched.definition.version == "v0.3.0"
    # Editing the source gives a new snapshot and a new resolved hash.
    (folder / "policy.py").write_text("def get_policy(m, p):\n    return 1\n")
    edited = fetch_policy(spec(folder), cache, base=tmp_path / "manifests")
    assert edited.resolved != fetched.resolved and edited.source_dir != fetched.source_dir
    assert (fetched.source_dir / "policy.py").read_text().endswith("return None\n")


def test_python_version_precedence(tmp_path: Path) -> None:
    folder = write_simple(tmp_path / "p")
    (folder / "python_version.txt").write_text("3.12\n")
    cache = Cache.open(tmp_path / "cache")
    assert fetch_policy(spec(folder), cache, base=tmp_path).python_version == "3.12"
    assert fetch_policy(spec(folder, python="3.10"), cache, base=tmp_path).python_version == "3.10"


def test_symlink_escaping_a_path_source_is_refused(tmp_path: Path) -> None:
    folder = write_simple(tmp_path / "p")
    os.symlink("/etc/passwd", folder / "passwd")
    with pytest.raises(InputError, match=r"policy 'my-policy': symlink passwd points outside"):
        fetch_policy(spec(folder), Cache.open(tmp_path / "c"), base=tmp_path)


def test_validation_errors_name_the_policy(tmp_path: Path) -> None:
    folder = write_simple(tmp_path / "p", name="someone-else")
    with pytest.raises(
        InputError, match=r"^m/python-build.yaml:2:3: policy 'my-policy': policy name mismatch"
    ):
        fetch_policy(spec(folder), Cache.open(tmp_path / "c"), base=tmp_path)


def test_fetch_policies_keeps_order_and_runs_in_parallel(tmp_path: Path) -> None:
    specs = [spec(write_simple(tmp_path / n, name=n), name=n) for n in ("c-pol", "a-pol", "b-pol")]
    fetched = fetch_policies(specs, Cache.open(tmp_path / "c"), base=tmp_path, jobs=3)
    assert [f.name for f in fetched] == ["c-pol", "a-pol", "b-pol"]


def test_spec_digest_is_portable_and_credential_free(tmp_path: Path) -> None:
    one = spec(tmp_path / "a" / "policies" / "x")
    two = spec(tmp_path / "b" / "policies" / "x")
    assert spec_digest(one, tmp_path / "a" / "manifests") == spec_digest(
        two, tmp_path / "b" / "manifests"
    )
    assert spec_digest(one, tmp_path / "a" / "manifests") != spec_digest(
        spec(tmp_path / "a" / "policies" / "y"), tmp_path / "a" / "manifests"
    )
    base = dict(one.__dict__)
    g1 = PythonPolicySpec(**{**base, "source": GitSource("https://u:tok1@h/r.git", "v1", None)})
    g2 = PythonPolicySpec(**{**base, "source": GitSource("https://u:tok2@h/r.git", "v1", None)})
    assert spec_digest(g1, tmp_path) == spec_digest(g2, tmp_path)  # a rotated token changes nothing
    p1 = PythonPolicySpec(**{**base, "source": PipSource("Pkg_A", "~=1.0", None)})
    p2 = PythonPolicySpec(**{**base, "source": PipSource("pkg-a", "~=1.0", None)})
    assert spec_digest(p1, tmp_path) == spec_digest(p2, tmp_path)
    p3 = PythonPolicySpec(**{**base, "source": PipSource("pkg-a", "~=1.0", None), "python": "3.12"})
    assert spec_digest(p3, tmp_path) != spec_digest(p2, tmp_path)
