"""Picking the artifact for a target, and reading resolver output (no network)."""

from __future__ import annotations

import pytest

from gateway_builder.errors import BuildError, InputError
from gateway_builder.fetch.index import (
    best_wheel,
    file_project,
    file_version,
    platform_tags,
    target_tags,
)
from gateway_builder.lock.resolve import (
    ResolveRequest,
    _from_pylock,
    dedupe,
    parse_hashed_requirements,
)

WHEELS = [
    "pkg-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "pkg-1.0-cp312-cp312-manylinux_2_28_x86_64.whl",
    "pkg-1.0-cp312-cp312-manylinux_2_34_x86_64.whl",  # needs a newer glibc than the target
    "pkg-1.0-cp312-cp312-musllinux_1_2_x86_64.whl",
    "pkg-1.0-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
    "pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "pkg-1.0-cp310-abi3-manylinux_2_17_x86_64.whl",
    "pkg-1.0-cp312-cp312-win_amd64.whl",
    "pkg-1.0-py3-none-any.whl",
]


@pytest.mark.parametrize(
    ("python", "platform", "expected"),
    [
        ("3.12", "x86_64", "pkg-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"),
        ("3.12", "aarch64", "pkg-1.0-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"),
        ("3.11", "x86_64", "pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
        ("3.13", "x86_64", "pkg-1.0-cp310-abi3-manylinux_2_17_x86_64.whl"),
        ("3.10", "aarch64", "pkg-1.0-py3-none-any.whl"),
    ],
)
def test_best_wheel(python: str, platform: str, expected: str) -> None:
    assert best_wheel(WHEELS, python, platform) == expected


def test_no_compatible_wheel() -> None:
    assert (
        best_wheel(["pkg-1.0-cp312-cp312-win_amd64.whl", "pkg-1.0.tar.gz"], "3.12", "x86_64")
        is None
    )


def test_target_tags_order_and_platforms() -> None:
    tags = [str(t) for t in target_tags("3.12", "x86_64")]
    assert tags[0] == "cp312-cp312-manylinux_2_28_x86_64"
    assert tags.index("cp312-abi3-manylinux_2_28_x86_64") > tags.index(
        "cp312-cp312-manylinux_2_5_x86_64"
    )
    assert tags[-1] == "py30-none-any"
    assert "manylinux2014_x86_64" in platform_tags("x86_64")
    assert "manylinux_2_34_x86_64" not in platform_tags("x86_64")
    assert "manylinux2014_aarch64" in platform_tags("aarch64")


def test_file_name_parsing() -> None:
    assert str(file_version("Jinja2-3.1.4-py3-none-any.whl")) == "3.1.4"
    assert str(file_version("MarkupSafe-2.1.5.tar.gz")) == "2.1.5"
    assert file_version("thing.exe") is None and file_version("bad-name.whl") is None
    assert file_project("MarkupSafe-2.1.5.tar.gz") == "markupsafe"


def test_parse_hashed_requirements() -> None:
    text = (
        "jinja2==3.1.4 \\\n"
        "    --hash=sha256:" + "a" * 64 + " \\\n"
        "    --hash=sha256:" + "b" * 64 + "\n"
        "MarkupSafe[extra]==2.1.5 --hash=sha256:" + "c" * 64 + "  # via jinja2\n"
        "# comment\n"
    )
    assert parse_hashed_requirements(text) == [
        ("jinja2", "3.1.4", {"a" * 64, "b" * 64}),
        ("markupsafe", "2.1.5", {"c" * 64}),
    ]
    with pytest.raises(BuildError):
        parse_hashed_requirements("git+https://x/y.git\n")


def test_from_pylock_picks_the_target_wheel_and_refuses_an_sdist() -> None:
    request = ResolveRequest("policy 'p'", (), "3.12", "x86_64")
    data = {
        "packages": [
            {
                "name": "Pkg",
                "version": "1.0",
                "wheels": [
                    {"url": f"https://files/x/{w}", "hashes": {"sha256": f"{i:064x}"}}
                    for i, w in enumerate(WHEELS)
                ],
                "sdist": {"url": "https://files/pkg-1.0.tar.gz", "hashes": {"sha256": "f" * 64}},
            },
            {
                "name": "only_sdist",
                "version": "2.0",
                "sdist": {"name": "only_sdist-2.0.tar.gz", "hashes": {"sha256": "e" * 64}},
            },
        ]
    }
    (pkg,) = _from_pylock({"packages": data["packages"][:1]}, request)
    assert pkg.name == "pkg" and pkg.files == ("pkg-1.0-cp312-cp312-manylinux_2_28_x86_64.whl",)
    assert pkg.hashes == (f"sha256:{1:064x}",)
    # Only source: locking it would run its build code here, so it is refused by name.
    with pytest.raises(InputError, match=r"only-sdist has no wheel for that target"):
        _from_pylock(data, request)
    with pytest.raises(BuildError, match="direct references cannot be locked"):
        _from_pylock({"packages": [{"name": "vcs", "version": "1", "vcs": {}}]}, request)


def test_dedupe_normalizes_requirements() -> None:
    assert dedupe(
        ["apip-sdk-core>=0.2.3,<0.3", "apip-sdk-core<0.3,>=0.2.3", "Zed", "alpha==1"]
    ) == (
        "alpha==1",
        "apip-sdk-core<0.3,>=0.2.3",
        "Zed",
    )
