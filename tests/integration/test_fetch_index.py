"""Index sources and the wheelhouse download, against a real local index served over http."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from gwb_factories import LocalIndex, make_wheel, policy_wheel

from gateway_builder.cache import Cache
from gateway_builder.errors import BuildError, InputError
from gateway_builder.fetch import SourcePin, download_artifacts, fetch_policy, spec_digest
from gateway_builder.fetch.index import IndexClient
from gateway_builder.manifest import PipSource, PythonPolicySpec
from gateway_builder.models import LockedRequirement

pytestmark = pytest.mark.integration


def pip_spec(
    index: str, package: str = "gwbtest-index-policy", version: str = "", name: str = "index-policy"
) -> PythonPolicySpec:
    return PythonPolicySpec(
        name=name,
        source=PipSource(package, version, index),
        python=None,
        failure_mode="fail",
        timeout_ms=1000,
        isolation="worker",
        workers=1,
        params={"greeting": "hello"},
        origin="python-build.yaml:7:5",
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("==1.0.0", "1.0.0"),
        ("~=1.0", "1.1.0"),
        ("", "1.1.0"),
        ("<2", "1.1.0"),
        (">=2.0.0b1", "2.0.0b1"),
    ],
)
def test_index_policy_versions(
    local_index: LocalIndex, fetch_cache: Cache, tmp_path: Path, version: str, expected: str
) -> None:
    fetched = fetch_policy(
        pip_spec(local_index.http_url, version=version), fetch_cache, base=tmp_path
    )
    assert fetched.kind == "packaged"
    assert fetched.artifact is not None
    assert fetched.artifact.filename == f"gwbtest_index_policy-{expected}-py3-none-any.whl"
    served = local_index.files / fetched.artifact.filename
    assert fetched.artifact.sha256 == sha256(served)
    assert fetched.resolved == f"sha256:{sha256(served)}"
    assert fetched.module == "index_policy_pkg.policy"
    assert fetched.requirements == ("tinydep<2",)
    assert fetched.definition.name == "index-policy"
    assert fetched.display.startswith(f"gwbtest-index-policy=={expected} (http://127.0.0.1:")


def test_file_url_index(local_index: LocalIndex, fetch_cache: Cache, tmp_path: Path) -> None:
    fetched = fetch_policy(
        pip_spec(local_index.file_url, version="==1.0.0"), fetch_cache, base=tmp_path
    )
    assert fetched.artifact is not None and fetched.artifact.filename.endswith(
        "1.0.0-py3-none-any.whl"
    )


def test_sdist_only_policy_is_built_into_a_wheel(
    local_index: LocalIndex, fetch_cache: Cache, tmp_path: Path
) -> None:
    spec = pip_spec(local_index.http_url, "gwbtest-sdist-policy", "==1.0.0", name="sdist-policy")
    # The sdist's backend is the test factory's: built on the host (the sandbox needs Docker).
    fetched = fetch_policy(spec, fetch_cache, base=tmp_path, host_builds=True)
    sdist = local_index.files / "gwbtest_sdist_policy-1.0.0.tar.gz"
    assert fetched.resolved == f"sha256:{sha256(sdist)}"  # the downloaded artifact
    assert fetched.source_file == sdist.name
    assert fetched.artifact is not None
    assert fetched.artifact.filename == "gwbtest_sdist_policy-1.0.0-py3-none-any.whl"
    assert fetched.module == "sdist_policy_pkg.policy"
    assert fetched.requirements == ("tinydep",)
    again = fetch_policy(spec, fetch_cache, base=tmp_path)
    assert again.artifact == fetched.artifact  # built once, then cached (no build runs again)


def test_pinned_artifact_and_offline(
    local_index: LocalIndex, fetch_cache: Cache, tmp_path: Path
) -> None:
    spec = pip_spec(local_index.http_url, version="~=1.0")
    first = fetch_policy(spec, fetch_cache, base=tmp_path)
    offline = Cache.open(fetch_cache.root, offline=True)
    again = fetch_policy(spec, offline, base=tmp_path)
    assert again.resolved == first.resolved
    pin = SourcePin(spec_digest(spec, tmp_path), first.resolved, filename=first.source_file)
    pinned = fetch_policy(spec, offline, base=tmp_path, pin=pin)
    assert pinned.resolved == first.resolved
    cold = Cache.open(tmp_path / "cold", offline=True)
    with pytest.raises(InputError, match=r"policy 'index-policy'.*not in the cache \(--offline\)"):
        fetch_policy(spec, cold, base=tmp_path)


def test_tampered_artifact_is_rejected(tmp_path: Path, fetch_cache: Cache) -> None:
    index = LocalIndex(tmp_path / "idx")
    build = tmp_path / "build"
    good = policy_wheel(build, "index-policy", "gwbtest-index-policy", "1.0.0")
    index.add(good)
    # Replace the served bytes after the page (with its sha256) was written.
    other = policy_wheel(
        build / "other", "index-policy", "gwbtest-index-policy", "1.0.0", version="v9.9.9"
    )
    shutil.copyfile(other, index.files / good.name)
    url = index.serve()
    try:
        with pytest.raises(BuildError, match="sha256 mismatch"):
            fetch_policy(pip_spec(url, version="==1.0.0"), fetch_cache, base=tmp_path)
    finally:
        index.stop()


def test_missing_package_and_no_match(
    local_index: LocalIndex, fetch_cache: Cache, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="package 'no-such-policy' not found"):
        fetch_policy(
            pip_spec(local_index.http_url, "no-such-policy", "==1.0"), fetch_cache, base=tmp_path
        )
    with pytest.raises(InputError, match=r"no release matching '==7\.0'"):
        fetch_policy(pip_spec(local_index.http_url, version="==7.0"), fetch_cache, base=tmp_path)


def test_metadata_name_mismatch_and_definition_mismatch(
    local_index: LocalIndex, fetch_cache: Cache, tmp_path: Path
) -> None:
    # Definition says index-policy, manifest says another name.
    spec = pip_spec(local_index.http_url, version="==1.0.0", name="other-name")
    with pytest.raises(InputError, match="policy name mismatch"):
        fetch_policy(spec, fetch_cache, base=tmp_path)


def test_params_are_validated_against_the_definition(
    local_index: LocalIndex, fetch_cache: Cache, tmp_path: Path
) -> None:
    spec = pip_spec(local_index.http_url, version="==1.0.0")
    bad = PythonPolicySpec(**{**spec.__dict__, "params": {"greeting": 5}})
    with pytest.raises(
        InputError,
        match=r"python-build.yaml:7:5: policy 'index-policy': params.greeting: 5 is not of type 'string'",
    ):
        fetch_policy(bad, fetch_cache, base=tmp_path)


def test_index_client_lists_json_fields_from_html(local_index: LocalIndex) -> None:
    files = IndexClient(local_index.http_url).project_files("TinyDep")
    by_name = {f.filename: f for f in files}
    assert by_name["tinydep-2.0.0-py3-none-any.whl"].requires_python == ">=3.11"
    assert all(f.sha256 and len(f.sha256) == 64 for f in files)
    assert IndexClient(local_index.http_url).project_files("does-not-exist") == []


def test_credentials_in_index_url_are_redacted(
    local_index: LocalIndex, fetch_cache: Cache, tmp_path: Path
) -> None:
    url = local_index.http_url.replace("http://", "http://user:s3cret@")
    fetched = fetch_policy(pip_spec(url, version="==1.0.0"), fetch_cache, base=tmp_path)
    assert "s3cret" not in fetched.display
    assert "s3cret" not in fetched.spec_digest
    assert "user:****@" in fetched.display


# --------------------------------------------------------------------------------------------
# download_artifacts
# --------------------------------------------------------------------------------------------


def _req(index: LocalIndex, name: str, version: str, *files: str) -> LockedRequirement:
    hashes = tuple(sorted(f"sha256:{sha256(index.files / f)}" for f in files))
    return LockedRequirement(name, version, hashes)


def test_download_artifacts_picks_the_target_wheel(
    local_index: LocalIndex, fetch_cache: Cache, tmp_path: Path
) -> None:
    all_plat = [f.name for f in local_index.files.glob("tinyplat-1.0.0*")]
    req = _req(local_index, "tinyplat", "1.0.0", *all_plat)
    pure = _req(local_index, "tinydep", "1.1.0", "tinydep-1.1.0-py3-none-any.whl")
    out312 = download_artifacts(
        [req, pure],
        "3.12",
        "x86_64",
        tmp_path / "wh312",
        cache=fetch_cache,
        index_url=local_index.http_url,
    )
    assert [p.name for p in out312] == [
        "tinyplat-1.0.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "tinydep-1.1.0-py3-none-any.whl",
    ]
    for p in out312:
        assert sha256(p) == sha256(local_index.files / p.name)
    out_arm = download_artifacts(
        [req],
        "3.12",
        "aarch64",
        tmp_path / "wharm",
        cache=fetch_cache,
        index_url=local_index.http_url,
    )
    assert out_arm[0].name.endswith("manylinux2014_aarch64.whl")
    # The fetch_cache serves a second wheelhouse without the network.
    offline = Cache.open(fetch_cache.root, offline=True)
    again = download_artifacts([req, pure], "3.12", "x86_64", tmp_path / "again", cache=offline)
    assert [p.name for p in again] == [p.name for p in out312]


def test_download_artifacts_refuses_unlocked_or_incompatible(
    local_index: LocalIndex, fetch_cache: Cache, tmp_path: Path
) -> None:
    # Only the cp310 wheel is locked: nothing installs on 3.12.
    req = _req(
        local_index,
        "tinyplat",
        "1.0.0",
        "tinyplat-1.0.0-cp310-cp310-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    )
    with pytest.raises(BuildError, match=r"tinyplat==1.0.0: the lock has no wheel .* 3.12"):
        download_artifacts(
            [req],
            "3.12",
            "x86_64",
            tmp_path / "wh",
            cache=fetch_cache,
            index_url=local_index.http_url,
        )
    # A hash that matches no file on the index.
    wrong = LockedRequirement("tinydep", "1.1.0", ("sha256:" + "0" * 64,))
    with pytest.raises(BuildError):
        download_artifacts(
            [wrong],
            "3.12",
            "x86_64",
            tmp_path / "wh2",
            cache=fetch_cache,
            index_url=local_index.http_url,
        )


def test_download_verifies_files_without_index_hashes(tmp_path: Path, fetch_cache: Cache) -> None:
    # A flat file:// directory lists no hashes: the lock's hash is checked after download.
    flat = tmp_path / "flat"
    wheel = make_wheel(flat, "flatpkg", "1.0")
    good = LockedRequirement("flatpkg", "1.0", (f"sha256:{sha256(wheel)}",))
    out = download_artifacts(
        [good], "3.11", "x86_64", tmp_path / "wh", cache=fetch_cache, index_url=flat.as_uri()
    )
    assert out[0].name == wheel.name
    bad = LockedRequirement("flatpkg", "1.0", ("sha256:" + "1" * 64,))
    with pytest.raises(BuildError, match="sha256 mismatch"):
        download_artifacts(
            [bad],
            "3.11",
            "x86_64",
            tmp_path / "wh2",
            cache=Cache.open(tmp_path / "c2"),
            index_url=flat.as_uri(),
        )
