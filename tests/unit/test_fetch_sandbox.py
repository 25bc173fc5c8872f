"""What a sandboxed wheel build is given: the build requirements read from pyproject.toml (no
code runs to find them), refused when they cannot be fetched as wheels by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_builder.errors import InputError
from gateway_builder.fetch.sandbox import LEGACY_BUILD_REQUIRES, build_requirements, host_platform


def test_build_requirements_come_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling>=1.21", "Cython ; python_version<\'4\'"]\n'
    )
    assert build_requirements(tmp_path, "t") == (
        "hatchling>=1.21",
        'Cython; python_version < "4"',
    )


def test_a_tree_without_build_system_gets_pep_517_defaults(tmp_path: Path) -> None:
    assert build_requirements(tmp_path, "t") == LEGACY_BUILD_REQUIRES
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert build_requirements(tmp_path, "t") == LEGACY_BUILD_REQUIRES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[build-system]\nrequires = ["x @ https://h/x.whl"]\n', "direct references"),
        ('[build-system]\nrequires = "hatchling"\n', "list of strings"),
        ('[build-system]\nrequires = ["not a requirement!"]\n', "build-system.requires"),
        ("[build-system\n", "not valid TOML"),
        ("#" * (2 << 20), "larger than"),
    ],
)
def test_bad_build_requirements_are_one_error(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(InputError, match=expected):
        build_requirements(tmp_path, "policy 'p'")


def test_host_platform_is_a_lock_platform() -> None:
    assert host_platform() in ("x86_64", "aarch64")
