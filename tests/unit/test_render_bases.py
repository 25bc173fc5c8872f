"""Base image selection (bases.choose) and the in-stage helper (templates/stage_tool.py)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path, PurePosixPath
from types import ModuleType

import pytest

from gateway_builder import defaults
from gateway_builder.bases import apply_overrides, official_python_base, upstream_bases
from gateway_builder.errors import InputError
from gateway_builder.models import BaseImages, PythonBase
from gateway_builder.options import parse_python_images


def load_stage_tool() -> ModuleType:
    path = defaults.REPO_DIR / "templates" / "stage_tool.py"
    spec = importlib.util.spec_from_file_location("stage_tool", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stage_tool = load_stage_tool()


# --------------------------------------------------------------------------------------------
# bases.choose
# --------------------------------------------------------------------------------------------


def test_upstream_defaults() -> None:
    b = upstream_bases(["3.12", "3.11", "3.12"], "1.2.0")
    assert b.engine_builder == "ghcr.io/wso2/api-platform/gateway-builder:1.2.0"
    assert b.runtime == "ghcr.io/wso2/api-platform/gateway-runtime:1.2.0"
    assert [(p.version, p.image) for p in b.pythons] == [
        ("3.11", "python:3.11-slim-bookworm"),
        ("3.12", "python:3.12-slim-bookworm"),
    ]
    assert b.pythons[1].executable == "/usr/local/bin/python3.12"
    assert "/usr/local/lib/python3.12" in b.pythons[1].runtime_copy
    assert b.engine_builder_command == defaults.UPSTREAM_ENGINE_BUILDER_COMMAND
    assert b.tini == "/usr/bin/tini" and not b.standin


def test_mirror_rewrites_every_default_but_not_explicit_images() -> None:
    b = upstream_bases(
        ["3.11", "3.12"],
        "1.2.0",
        mirror="mirror.example:5000/cache/",
        runtime_image="registry.corp/runtime:7",
        python_images={"3.12": "registry.corp/py:3.12"},
    )
    assert b.engine_builder == "mirror.example:5000/cache/wso2/api-platform/gateway-builder:1.2.0"
    assert b.runtime == "registry.corp/runtime:7"
    assert [p.image for p in b.pythons] == [
        "mirror.example:5000/cache/library/python:3.11-slim-bookworm",
        "registry.corp/py:3.12",
    ]


def test_prebuilt_engine_needs_no_builder_image() -> None:
    assert upstream_bases(["3.11"], "1.2.0", prebuilt_engine=True).engine_builder is None


def test_python_image_flags() -> None:
    assert parse_python_images(["3.12=python:3.12-slim", " 3.10 = img "]) == {
        "3.12": "python:3.12-slim",
        "3.10": "img",
    }
    for bad in ["python:3.12", "3.12=", "3=img", "3.9=img", "latest=img"]:
        with pytest.raises(InputError, match="--python-image"):
            parse_python_images([bad])
    with pytest.raises(InputError, match="two images"):
        parse_python_images(["3.12=a", "3.12=b"])


def test_overrides_on_local_bases() -> None:
    local = BaseImages(
        engine_builder="gateway-builder-local/engine-builder:k",
        pythons=(PythonBase("3.11", "gateway-builder-local/python3.11:k", "/usr/bin/python3.11"),),
        runtime="gateway-builder-local/runtime:k",
        standin=True,
        engine_builder_command=("/usr/local/bin/gateway-builder",),
    )
    out = apply_overrides(local, runtime_image="corp/runtime:1", python_images={"3.11": "corp/py"})
    assert out.runtime == "corp/runtime:1"
    assert out.pythons == (official_python_base("3.11", "corp/py"),)
    assert out.engine_builder == local.engine_builder
    assert out.engine_builder_command == ("/usr/local/bin/gateway-builder",)
    swapped = apply_overrides(local, builder_image="corp/builder:1")
    assert swapped.engine_builder == "corp/builder:1"
    assert swapped.engine_builder_command == defaults.UPSTREAM_ENGINE_BUILDER_COMMAND
    assert apply_overrides(local) == local


# --------------------------------------------------------------------------------------------
# stage_tool
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "dropped"),
    [
        ("/usr/local/lib/python3.12/os.py", False),
        ("/usr/local/lib/python3.12/json/__init__.py", False),
        ("/usr/local/lib/python3.12/site-packages", False),
        ("/usr/local/lib/python3.12/site-packages/pip/__init__.py", True),
        ("/usr/local/lib/python3.12/ensurepip/_bundled/pip-24.0-py3-none-any.whl", True),
        ("/usr/local/lib/python3.12/test/test_os.py", True),
        ("/usr/local/lib/python3.12/unittest/test/test_case.py", True),
        ("/usr/local/lib/python3.12/idlelib/idle.py", True),
        ("/usr/local/lib/python3.12/config-3.12-x86_64-linux-gnu/Makefile", True),
        ("/usr/local/lib/python3.12/lib-dynload/_ssl.cpython-312-x86_64-linux-gnu.so", False),
        ("/opt/python/3.12/bin/python3.12", False),
        ("/opt/python/3.12/bin/pip3", True),
        ("/opt/python/3.12/bin/python3.12-config", True),
        ("/opt/python/3.12/include/python3.12/Python.h", True),
        ("/opt/python/3.12/lib/libpython3.12.a", True),
        ("/opt/python/3.12/lib/libpython3.12.so.1.0", False),
        ("/opt/python/3.12/lib/pkgconfig/python3.pc", True),
        ("/opt/python/3.12/share/man/man1/python3.1", True),
    ],
)
def test_strip_rules(path: str, dropped: bool) -> None:
    assert stage_tool.stripped(PurePosixPath(path)) is dropped


def test_read_lock(tmp_path: Path) -> None:
    lock = tmp_path / "x.txt"
    lock.write_text(
        "# comment\nMarkupSafe==3.0.2 --hash=sha256:ab\n\napip_sdk_core==0.2.3 --hash=sha256:cd\n"
    )
    assert stage_tool.read_lock(lock) == {"markupsafe": "3.0.2", "apip-sdk-core": "0.2.3"}
    lock.write_text("markupsafe>=3\n")
    with pytest.raises(SystemExit):
        stage_tool.read_lock(lock)


def test_installed_reads_dist_info(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    for name, version in (("MarkupSafe", "3.0.2"), ("apip_sdk_core", "0.2.3")):
        info = site / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nbody\n"
        )
    assert stage_tool.installed(site) == {"markupsafe": "3.0.2", "apip-sdk-core": "0.2.3"}


def test_copy_with_strip_keeps_symlinks_and_sets_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = tmp_path / "opt" / "python" / "3.12"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python3.12").write_text("#!binary\n")
    (prefix / "bin" / "python3.12").chmod(0o755)
    os.symlink("python3.12", prefix / "bin" / "python3")
    (prefix / "bin" / "pip3").write_text("pip\n")
    std = prefix / "lib" / "python3.12"
    (std / "site-packages" / "pip").mkdir(parents=True)
    (std / "site-packages" / "pip" / "__init__.py").write_text("")
    (std / "json").mkdir(parents=True)
    (std / "json" / "__init__.py").write_text("")
    (std / "test").mkdir()
    (std / "test" / "t.py").write_text("")
    export = tmp_path / "export"
    monkeypatch.setattr(stage_tool, "EXPORT_ROOT", export)
    dst = export / prefix.relative_to("/")
    dst.parent.mkdir(parents=True)
    stage_tool.copy_into(prefix, dst, True)
    stage_tool.set_times(export, 1234)
    rel = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*"))
    assert rel == [
        "bin",
        "bin/python3",
        "bin/python3.12",
        "lib",
        "lib/python3.12",
        "lib/python3.12/json",
        "lib/python3.12/json/__init__.py",
        "lib/python3.12/site-packages",
    ]
    assert os.readlink(dst / "bin" / "python3") == "python3.12"
    assert os.access(dst / "bin" / "python3.12", os.X_OK)
    assert {int(p.lstat().st_mtime) for p in [export, *export.rglob("*")]} == {1234}


def test_stage_tool_runs_standalone_on_every_supported_python() -> None:
    """The helper must import on the oldest supported Python (it runs in the builder stages)."""
    script = defaults.REPO_DIR / "templates" / "stage_tool.py"
    done = subprocess.run(
        [sys.executable, "-I", str(script), "--help"], capture_output=True, text=True, check=True
    )
    assert "install" in done.stdout and "export" in done.stdout
    compiled = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import ast,sys; ast.parse(open({str(script)!r}).read(), feature_version=(3, 10))",
        ],
        capture_output=True,
        text=True,
    )
    assert compiled.returncode == 0, compiled.stderr
