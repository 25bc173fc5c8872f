"""Against the real public index (skip offline with -m 'not network')."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest
from gwb_factories import write_policy
from packaging.version import Version

from gateway_builder.cache import Cache
from gateway_builder.cli import main
from gateway_builder.errors import BuildError
from gateway_builder.fetch import download_artifacts
from gateway_builder.lock.file import read_lock
from gateway_builder.lock.resolve import PipToolsResolver

pytestmark = [pytest.mark.integration, pytest.mark.network]


def project(root: Path, policies: dict[str, tuple[str, list[str]]]) -> Path:
    """manifests/python-build.yaml with one simple path policy per entry (name -> python, reqs)."""
    entries = ""
    for name, (python, reqs) in policies.items():
        write_policy(root / "policies" / name, name, requirements=reqs)
        entries += f'  - name: {name}\n    python: "{python}"\n    source:\n      path: ../policies/{name}\n'
    manifest = root / "manifests" / "python-build.yaml"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("version: v1\npolicies:\n" + entries)
    return manifest


def run(manifest: Path, cache: Path, *args: str) -> int:
    return main(["lock", "--python-build-file", str(manifest), "--cache-dir", str(cache), *args])


def test_numpy_pinned_per_python_version(tmp_path: Path) -> None:
    # numpy 2.2.x is the last series for Python 3.10; newer releases need 3.11+.
    manifest = project(tmp_path, {"np-old": ("3.10", ["numpy"]), "np-new": ("3.12", ["numpy"])})
    assert run(manifest, tmp_path / "cache") == 0
    lock = read_lock(manifest.parent / "python-build.lock")
    versions = {}
    for name in ("np-old", "np-new"):
        entry = lock.policy(name)
        assert entry is not None
        (numpy,) = [p for p in entry.env.packages["x86_64"] if p.name == "numpy"]
        versions[name] = Version(numpy.version)
        py = entry.env.python.replace(".", "")
        assert numpy.files[0].startswith(f"numpy-{numpy.version}-cp{py}-cp{py}-manylinux")
        assert {p.name for p in entry.env.packages["x86_64"]} == {"numpy", "apip-sdk-core"}
    assert versions["np-old"].release[:2] == (2, 2)
    assert versions["np-new"] > versions["np-old"]
    # The wheelhouse gets exactly the locked wheel for 3.12, hash-checked.
    entry = lock.policy("np-new")
    assert entry is not None
    out = download_artifacts(
        entry.env.requirements("x86_64"),
        "3.12",
        "x86_64",
        tmp_path / "wh",
        cache=Cache.open(tmp_path / "cache"),
    )
    numpy_wheel = next(p for p in out if p.name.startswith("numpy-"))
    digest = hashlib.sha256(numpy_wheel.read_bytes()).hexdigest()
    assert (
        f"sha256:{digest}"
        in next(p for p in entry.env.packages["x86_64"] if p.name == "numpy").hashes
    )


def test_uv_and_pip_tools_give_equivalent_locks(tmp_path: Path) -> None:
    reqs = ["Jinja2==3.1.4"]
    manifest = project(tmp_path / "a", {"tmpl": ("3.12", reqs), "tmpl-old": ("3.10", reqs)})
    other = project(tmp_path / "b", {"tmpl": ("3.12", reqs), "tmpl-old": ("3.10", reqs)})
    assert run(manifest, tmp_path / "cache") == 0
    assert run(other, tmp_path / "cache", "--resolver", "pip-tools") == 0
    uv_text = (manifest.parent / "python-build.lock").read_text().splitlines()
    pt_text = (other.parent / "python-build.lock").read_text().splitlines()
    differing = [(a, b) for a, b in zip(uv_text, pt_text, strict=True) if a != b]
    # Only the [resolver] name and version differ.
    assert differing == [
        ('name = "uv"', 'name = "pip-tools"'),
        (
            f'version = "{read_lock(manifest.parent / "python-build.lock").resolver_version}"',
            f'version = "{PipToolsResolver(Cache.open(tmp_path / "cache")).version}"',
        ),
    ]
    lock = read_lock(other.parent / "python-build.lock")
    assert lock.resolver == "pip-tools"
    # pip-tools also locks from a check: the lock is up to date for either resolver.
    assert run(other, tmp_path / "cache", "--check") == 0


def test_pip_tools_lock_is_portable(tmp_path: Path) -> None:
    # The machine's pip configuration adds find-links and extra indexes: nothing of it leaks.
    manifest = project(tmp_path, {"tmpl": ("3.11", ["MarkupSafe==3.0.2"])})
    assert run(manifest, tmp_path / "cache", "--resolver", "pip-tools") == 0
    text = (manifest.parent / "python-build.lock").read_text()
    for leak in ("file://", "/opt/", "--index-url", "--find-links", "extra-index"):
        assert leak not in text


def test_pip_tools_needs_a_matching_interpreter(tmp_path: Path) -> None:
    resolver = PipToolsResolver(Cache.open(tmp_path / "cache"))
    with pytest.raises(BuildError, match=r"needs a Python 3\.99 interpreter: none found"):
        resolver._venv("3.99")


def test_default_manifests_lock_is_up_to_date() -> None:
    """The committed manifests/python-build.lock matches the default manifests."""
    root = Path(__file__).resolve().parents[2]
    lock = root / "manifests" / "python-build.lock"
    if not lock.is_file():
        pytest.skip("manifests/python-build.lock not generated yet")
    code = main(
        [
            "lock",
            "--check",
            "--python-build-file",
            str(root / "manifests" / "python-build.yaml"),
        ]
    )
    assert code == 0, textwrap.dedent(
        "run `gateway-builder lock` and commit manifests/python-build.lock"
    )
