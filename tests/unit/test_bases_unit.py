"""Unit tests of the pure parts of gateway_builder.bases: keys, arguments, prefixes, contexts."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from gateway_builder import bases, defaults
from gateway_builder.bases import (
    BaseEvent,
    BasesReport,
    asset_digests,
    content_key,
    discover_prefix,
    local_tag,
    prefix_entries,
    prefix_fingerprint,
    validate_prefix,
)
from gateway_builder.bases.context import build_context
from gateway_builder.bases.debian import configure_rootfs
from gateway_builder.cli import build_parser
from gateway_builder.commands import bases as bases_command
from gateway_builder.errors import InputError
from gateway_builder.models import BaseImages, PythonBase
from gateway_builder.options import check_python_version, parse_python_prefixes
from gateway_builder.ui import UI


def _touch(path: Path, text: str = "x", mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def _fake_prefix(root: Path, version: str = "3.12") -> Path:
    """A small tree shaped like a pyenv CPython prefix, with things that must be left out."""
    lib = root / "lib" / f"python{version}"
    _touch(root / "bin" / f"python{version}", "ELF", 0o755)
    (root / "bin" / "python3").symlink_to(f"python{version}")
    _touch(root / "bin" / "pip3", "#!/bin/sh", 0o755)
    _touch(root / "bin" / f"idle{version}", "#!/bin/sh", 0o755)
    _touch(root / "lib" / f"libpython{version}.so.1.0", "ELF", 0o755)
    (root / "lib" / f"libpython{version}.so").symlink_to(f"libpython{version}.so.1.0")
    _touch(root / "lib" / "pkgconfig" / f"python-{version}.pc")
    _touch(root / "include" / f"python{version}" / "Python.h")
    _touch(root / "share" / "man" / "man1" / "python.1")
    for rel in (
        "os.py",
        "venv/__init__.py",
        "ensurepip/_bundled/pip-23.2.1-py3-none-any.whl",
        "json/__init__.py",
        "lib-dynload/_ssl.cpython-312-x86_64-linux-gnu.so",
        "lib-dynload/_tkinter.cpython-312-x86_64-linux-gnu.so",
        "lib-dynload/_testcapi.cpython-312-x86_64-linux-gnu.so",
        "lib-dynload/xxlimited_35.cpython-312-x86_64-linux-gnu.so",
        "test/test_os.py",
        "unittest/test/test_case.py",
        "lib2to3/tests/data/bom.py",
        "idlelib/idle.py",
        "idlelib/idle_test/test_x.py",
        "tkinter/__init__.py",
        "turtledemo/demo.py",
        "__pycache__/os.cpython-312.pyc",
        "json/__pycache__/decoder.cpython-312.pyc",
        f"config-{version}-x86_64-linux-gnu/libpython{version}.a",
        f"config-{version}-x86_64-linux-gnu/Makefile",
        "site-packages/README.txt",
        "site-packages/_sandboxing_egress_ca.pth",
        "site-packages/pip/__init__.py",
    ):
        _touch(lib / rel)
    return root


def test_content_key_is_stable_and_sensitive() -> None:
    a = content_key({"kind": "runtime", "assets": {"a": "1", "b": "2"}})
    b = content_key({"assets": {"b": "2", "a": "1"}, "kind": "runtime"})
    assert a == b
    assert len(a) == 16 and int(a, 16) >= 0
    assert content_key({"kind": "runtime", "assets": {"a": "1", "b": "3"}}) != a
    assert local_tag("python3.12", a) == f"{defaults.LOCAL_BASE_REPO}/python3.12:{a}"


def test_asset_digests_cover_content_and_mode(tmp_path: Path) -> None:
    script = _touch(tmp_path / "sub" / "run.sh", "echo hi")
    _touch(tmp_path / "Dockerfile", "FROM x")
    first = asset_digests(tmp_path)
    assert list(first) == ["Dockerfile", "sub/run.sh"]
    script.chmod(0o755)
    second = asset_digests(tmp_path)
    assert second["sub/run.sh"] != first["sub/run.sh"]
    _touch(tmp_path / "Dockerfile", "FROM y")
    assert asset_digests(tmp_path)["Dockerfile"] != second["Dockerfile"]


def test_shipped_assets_are_complete() -> None:
    digests = asset_digests(bases.ASSETS_DIR)
    for required in (
        "python-debian/Dockerfile",
        "python-prefix/Dockerfile",
        "runtime/Dockerfile",
        "runtime/envoy-standin.py",
        "runtime/envoy.yaml",
        "engine-builder/Dockerfile",
        "engine-builder/builder/main.go",
        "engine-builder/policy-engine/main.go",
        "debian/rootfs/usr/sbin/policy-rc.d",
    ):
        assert required in digests, required
    assert digests["runtime/envoy-standin.py"].startswith("755:")
    for name, _ in digests.items():
        if name.endswith("Dockerfile"):
            text = (bases.ASSETS_DIR / name).read_text()
            assert "# syntax=" not in text  # the legacy builder is used
            assert "--platform" not in text


@pytest.mark.parametrize("version", ["3.10", "3.11", "3.12", "3.13"])
def test_check_python_version_accepts_supported(version: str) -> None:
    assert check_python_version(version) == version


@pytest.mark.parametrize("version", ["3.9", "3", "3.12.1", "python3.12", "", "4.0"])
def test_check_python_version_rejects(version: str) -> None:
    with pytest.raises(InputError, match=r"expected one of 3\.10"):
        check_python_version(version)


def test_parse_prefix_args(tmp_path: Path) -> None:
    assert parse_python_prefixes([]) == {}
    got = parse_python_prefixes([f"3.12={tmp_path}", "3.10=~/py310"])
    assert got == {"3.12": tmp_path, "3.10": Path("~/py310").expanduser()}


@pytest.mark.parametrize("value", ["3.12", "=/opt/py", "3.12=", "3.8=/opt/py"])
def test_parse_prefix_args_rejects(value: str) -> None:
    with pytest.raises(InputError) as err:
        parse_python_prefixes([value])
    assert "\n" not in str(err.value)


def test_validate_prefix(tmp_path: Path) -> None:
    prefix = _fake_prefix(tmp_path / "py")
    assert validate_prefix(prefix, "3.12") == prefix.resolve()
    with pytest.raises(InputError, match=r"expected bin/python3\.13"):
        validate_prefix(prefix, "3.13")
    with pytest.raises(InputError):
        validate_prefix(tmp_path / "missing", "3.12")


def test_prefix_entries_keep_runtime_and_drop_the_rest(tmp_path: Path) -> None:
    prefix = _fake_prefix(tmp_path / "py")
    entries = prefix_entries(prefix, "3.12")
    rels = [e.relpath for e in entries]
    assert rels == sorted(rels, key=lambda r: r.split("/"))
    kept = set(rels)
    for rel in (
        "bin/python3.12",
        "bin/python3",
        "lib/libpython3.12.so.1.0",
        "lib/libpython3.12.so",
        "lib/python3.12/os.py",
        "lib/python3.12/venv/__init__.py",
        "lib/python3.12/ensurepip/_bundled/pip-23.2.1-py3-none-any.whl",
        "lib/python3.12/lib-dynload/_ssl.cpython-312-x86_64-linux-gnu.so",
        "lib/python3.12/config-3.12-x86_64-linux-gnu/Makefile",
        "lib/python3.12/site-packages",
    ):
        assert rel in kept, rel
    for rel in kept:
        assert not rel.startswith(("include", "share", "lib/pkgconfig")), rel
        assert "/test" not in rel and "idle" not in rel and "tkinter" not in rel, rel
        assert "__pycache__" not in rel and not rel.endswith((".pyc", ".a")), rel
        assert "xxlimited" not in rel and "_testcapi" not in rel, rel
        assert not rel.startswith("lib/python3.12/site-packages/"), rel
        assert rel not in ("bin/pip3", "bin/idle3.12"), rel
    kinds = {e.relpath: e.kind for e in entries}
    assert kinds["bin/python3"] == "symlink" and kinds["lib/python3.12/venv"] == "dir"


def test_prefix_fingerprint_tracks_changes(tmp_path: Path) -> None:
    prefix = _fake_prefix(tmp_path / "py")
    first = prefix_fingerprint(prefix_entries(prefix, "3.12"))
    assert prefix_fingerprint(prefix_entries(prefix, "3.12")) == first
    _touch(prefix / "lib/python3.12/os.py", "changed content")
    second = prefix_fingerprint(prefix_entries(prefix, "3.12"))
    assert second != first
    # Files that are left out of the image do not change the key.
    _touch(prefix / "lib/python3.12/test/test_new.py")
    _touch(prefix / "lib/python3.12/site-packages/new.pth")
    assert prefix_fingerprint(prefix_entries(prefix, "3.12")) == second


def test_build_context_tar_is_normalized(tmp_path: Path) -> None:
    prefix = _fake_prefix(tmp_path / "py")
    entries = prefix_entries(prefix, "3.12")
    with (
        build_context(bases.ASSETS_DIR / "python-prefix", entries) as handle,
        tarfile.open(fileobj=handle) as tar,
    ):
        members = {m.name: m for m in tar.getmembers()}
    assert "Dockerfile" in members
    assert members["python/bin/python3"].issym()
    assert members["python/bin/python3"].linkname == "python3.12"
    exe = members["python/bin/python3.12"]
    assert exe.mode == 0o755 and exe.uid == 0 and exe.mtime == defaults.DEFAULT_SOURCE_DATE_EPOCH
    assert members["python/lib/python3.12/os.py"].mode == 0o644
    assert not any("site-packages/" in name for name in members)


def test_discover_prefix_errors_are_one_line(tmp_path: Path) -> None:
    false = shutil.which("false")
    assert false
    with pytest.raises(InputError, match=r"--python-prefix 3\.12=DIR") as err:
        discover_prefix("3.12", pyenv=false)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(shutil.which("pyenv") is None, reason="pyenv is not installed on this host")
def test_discover_prefix_with_pyenv() -> None:
    for version in ("3.12", "3.13", "3.10"):
        prefix = discover_prefix(version)
        assert (prefix / "bin" / f"python{version}").is_file()
        rels = {e.relpath for e in prefix_entries(prefix, version)}
        assert f"lib/python{version}/ensurepip/__init__.py" in rels
        assert not any(r.startswith(f"lib/python{version}/site-packages/") for r in rels)
    with pytest.raises(InputError, match=r"pyenv prefix 3\.99 failed"):
        discover_prefix("3.99")


def test_configure_rootfs(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    _touch(rootfs / "etc/apt/sources.list", "deb https://elsewhere bookworm main\n")
    _touch(rootfs / "etc/resolv.conf", "nameserver 10.0.0.1")
    _touch(rootfs / "etc/hostname", "build-host")
    _touch(rootfs / "usr/share/doc/bash/copyright")
    _touch(rootfs / "usr/share/doc/bash/README.gz")
    _touch(rootfs / "usr/share/locale/de/LC_MESSAGES/bash.mo")
    _touch(rootfs / "usr/share/locale/locale.alias")
    _touch(rootfs / "usr/share/man/man1/bash.1.gz")
    _touch(rootfs / "var/lib/apt/lists/deb.debian.org_Packages")
    _touch(rootfs / "var/cache/apt/archives/bash.deb")
    _touch(rootfs / "var/cache/apt/pkgcache.bin")
    configure_rootfs(rootfs, bases.ASSETS_DIR / "debian" / "rootfs")
    sources = (rootfs / "etc/apt/sources.list").read_text()
    assert sources.splitlines()[0] == (
        f"deb {defaults.LOCAL_DEBIAN_MIRROR} {defaults.LOCAL_DEBIAN_SUITE} main"
    )
    assert "https://" not in sources and "-security main" in sources
    assert (rootfs / "usr/share/doc/bash/copyright").exists()
    assert not (rootfs / "usr/share/doc/bash/README.gz").exists()
    assert (rootfs / "usr/share/locale/locale.alias").exists()
    assert not (rootfs / "usr/share/locale/de").exists()
    assert not any((rootfs / "usr/share/man").iterdir())
    assert not any((rootfs / "var/lib/apt/lists").iterdir())
    assert not (rootfs / "var/cache/apt/archives/bash.deb").exists()
    assert not (rootfs / "var/cache/apt/pkgcache.bin").exists()
    assert not (rootfs / "etc/resolv.conf").exists() and not (rootfs / "etc/hostname").exists()
    assert (rootfs / "etc/machine-id").read_text() == ""
    assert os.access(rootfs / "usr/sbin/policy-rc.d", os.X_OK)
    assert (rootfs / "etc/apt/apt.conf.d/90gateway-builder").exists()


def test_report_is_json_able_and_human_table() -> None:
    bases_ = BaseImages(
        engine_builder="gateway-builder-local/engine-builder:1",
        pythons=(
            PythonBase("3.12", "img:1", "/opt/python/3.12/bin/python3.12", ("/opt/python/3.12",)),
        ),
        runtime="gateway-builder-local/runtime:1",
        standin=True,
        tini=defaults.TINI_PATH,
        engine_builder_command=bases.LOCAL_ENGINE_BUILDER_COMMAND,
    )
    report = BasesReport(
        bases_,
        [BaseEvent("runtime", "gateway-builder-local/runtime:1", True, 0.1, "sha256:x", 2**20)],
    )
    data = json.loads(json.dumps(report.as_dict()))
    assert data["bases"]["pythons"][0]["runtime_copy"] == ["/opt/python/3.12"]
    assert data["bases"]["standin"] is True
    assert data["images"][0]["cached"] is True
    table = report.table()
    assert "runtime" in table and "cached" in table and defaults.STANDIN_LABEL in table


def test_command_rejects_bad_input_before_contacting_an_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No engine exists at this address: bad flags must fail first, as input errors.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    ui = UI(verbosity=-1)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bases", "list"])
    with pytest.raises(InputError, match="expected VERSION=DIR"):
        bases_command.run(
            argparse.Namespace(action="build", pythons=[], python_prefix=["3.12"], rebuild=False),
            ui,
        )
    with pytest.raises(InputError, match="expected one of"):
        bases_command.run(
            argparse.Namespace(action="build", pythons=["2.7"], python_prefix=[], rebuild=False),
            ui,
        )
