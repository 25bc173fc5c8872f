"""The lock file format: deterministic TOML, a faithful round trip, clear errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gateway_builder.errors import InputError
from gateway_builder.lock.file import (
    LOCK_FORMAT_VERSION,
    Lock,
    LockedEnv,
    LockedPackage,
    LockedPolicy,
    parse_lock,
    read_lock,
    render_lock,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

H = "sha256:" + "ab" * 32


def env(python: str, *names: str, platforms: tuple[str, ...] = ("x86_64",)) -> LockedEnv:
    pkgs = tuple(LockedPackage(n, "1.0", (f"{n}-1.0-py3-none-any.whl",), (H,)) for n in names)
    return LockedEnv(
        python, "sha256:" + "00" * 32, tuple(f"{n}>=1" for n in names), {p: pkgs for p in platforms}
    )


def sample(**overrides: object) -> Lock:
    values: dict[str, object] = {
        "builder_version": "0.1.0",
        "resolver": "uv",
        "resolver_version": "0.13.9",
        "manifest_digest": "sha256:" + "11" * 32,
        "platforms": ("x86_64", "aarch64"),
        "sdk_requirement": "apip-sdk-core>=0.2.3,<0.3",
        "installer": env("3.10", "pip"),
        "executor": env("3.11", "protobuf", "grpcio"),
        "policies": (
            LockedPolicy(
                name="zeta",
                version="v1.0.0",
                kind="simple",
                module="zeta.policy",
                source_type="git",
                source='git+https://h/r.git@abc#subdirectory=weird "name"',
                resolved="a" * 40,
                spec_digest="sha256:" + "22" * 32,
                env=env("3.12", "numpy", "apip-sdk-core", platforms=("x86_64", "aarch64")),
                tag="v1.2.0",
                commit_time=1_700_000_000,
            ),
            LockedPolicy(
                name="alpha",
                version="v2.0.0",
                kind="packaged",
                module="alpha_pkg.policy",
                source_type="pip",
                source="alpha==2.0.0",
                resolved="sha256:" + "cd" * 32,
                spec_digest="sha256:" + "33" * 32,
                env=env("3.11", "apip-sdk-core"),
                artifact="alpha-2.0.0-py3-none-any.whl",
                artifact_sha256="cd" * 32,
                source_file="alpha-2.0.0-py3-none-any.whl",
            ),
        ),
    }
    values.update(overrides)
    return Lock(**values)  # type: ignore[arg-type]


def test_round_trip(tmp_path: Path) -> None:
    lock = sample()
    text = render_lock(lock)
    parsed = parse_lock(text, tmp_path / "x.lock")
    assert render_lock(parsed) == text
    assert [p.name for p in parsed.policies] == ["alpha", "zeta"]  # sorted on write
    zeta = parsed.policy("zeta")
    assert zeta is not None and zeta.source == lock.policies[0].source
    assert zeta.commit_time == 1_700_000_000 and zeta.tag == "v1.2.0"
    assert (
        zeta.env.requirements("aarch64")[0].requirement_line() == f"apip-sdk-core==1.0 --hash={H}"
    )
    assert parsed.policy("nope") is None


def test_rendering_is_deterministic_and_sorted() -> None:
    a = sample()
    b = sample(policies=tuple(reversed(sample().policies)))
    assert render_lock(a) == render_lock(b)
    assert a.digest == b.digest and a.digest.startswith("sha256:")
    text = render_lock(a)
    assert text.index('name = "grpcio"') < text.index('name = "protobuf"')
    assert "[[policies.packages.aarch64]]" in text
    assert text.endswith("\n") and "\r" not in text
    data = tomllib.loads(text)  # valid TOML for any reader
    assert data["format_version"] == LOCK_FORMAT_VERSION
    assert data["platforms"] == ["aarch64", "x86_64"]


def test_one_entry_per_line_for_diffs() -> None:
    text = render_lock(sample())
    assert 'requirements_in = [\n  "protobuf>=1",\n  "grpcio>=1",\n]\n' in text
    assert f'hashes = ["{H}"]\n' in text


def test_strings_are_escaped() -> None:
    lock = sample(sdk_requirement='tricky "quote" \\ back\nslash\ttab\x01')
    parsed = parse_lock(render_lock(lock), Path("x"))
    assert parsed.sdk_requirement == lock.sdk_requirement


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not toml = [", "not a valid lock file"),
        ('format = "other"\n', "format: expected"),
        (
            'format = "gateway-builder/python-build-lock"\nformat_version = 99\n',
            "format version 99 is not supported",
        ),
        (
            'format = "gateway-builder/python-build-lock"\nformat_version = 1\n',
            "builder_version: expected a string",
        ),
    ],
)
def test_parse_errors(text: str, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        parse_lock(text, Path("manifests/python-build.lock"))


def test_parse_error_in_a_nested_entry() -> None:
    text = render_lock(sample()).replace('version = "1.0"', "version = 1", 1)
    with pytest.raises(
        InputError, match=r"installer.packages.x86_64\[0\].version: expected a string"
    ):
        parse_lock(text, Path("l"))


def test_read_lock_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="lock file not found"):
        read_lock(tmp_path / "absent.lock")


def test_with_header_changes_only_the_header() -> None:
    lock = sample()
    other = lock.with_header(builder_version="9.9", resolver="pip-tools", resolver_version="7.6.2")
    old, new = render_lock(lock).splitlines(), render_lock(other).splitlines()
    changed = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
    assert len(changed) == 3
