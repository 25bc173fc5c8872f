"""A plain install is the product: ``pip install gateway-builder`` without extras builds and
smoke-tests an image.

The package is built into a wheel from this checkout and installed, without extras, into a fresh
virtualenv that sees nothing of the development one. uv installs it (its cache makes a rerun work
offline; the first run fetches the dependencies from the index). Then the installed console script
builds the default manifests with the local bases, smoke test included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import docker
import pytest
from gwb_build_helpers import REPO, copy_workspace

from gateway_builder.models import BaseImages
from gateway_builder.toolenv import isolated_env, uv_binary

pytestmark = [pytest.mark.e2e, pytest.mark.network]

TAG = "gateway-builder-e2e/plain-install:latest"


def _uv(args: list[str | Path], env: dict[str, str]) -> None:
    """Run uv offline (its cache) first, then online; fail with uv's output."""
    cmd = [uv_binary(), *map(str, args)]
    if subprocess.run([*cmd, "--offline"], env=env, capture_output=True).returncode == 0:
        return
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel of this checkout installed without extras; its bin/."""
    root = tmp_path_factory.mktemp("plain-install")
    env = isolated_env()  # PIP_CONFIG_FILE=/dev/null, UV_NO_CONFIG: nothing of this machine's
    _uv(["build", "--wheel", "--out-dir", root / "dist", REPO], env)
    (wheel,) = (root / "dist").glob("gateway_builder-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    _uv(["pip", "install", "--python", venv / "bin" / "python", wheel], env)
    return venv / "bin"


def test_every_module_imports_from_a_plain_install(plain: Path) -> None:
    probe = (
        "import importlib, pkgutil, gateway_builder, gateway_executor\n"
        "for pkg in (gateway_builder, gateway_executor):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if '.tests' not in m.name and not m.name.endswith(('.generate', '__main__')):\n"
        "            importlib.import_module(m.name)\n"
        "print(gateway_builder.__file__)\n"
    )
    done = subprocess.run(
        [plain / "python", "-I", "-c", probe], capture_output=True, text=True, cwd=plain
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(plain.parent)), done.stdout  # not the checkout


def test_a_plain_install_builds_and_smoke_tests_the_default_image(
    plain: Path,
    local_bases: BaseImages,
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    ws = copy_workspace(tmp_path / "ws")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{plain}{os.pathsep}{env.get('PATH', '')}"
    env["PIP_CONFIG_FILE"] = os.devnull
    done = subprocess.run(
        [plain / "gateway-builder", "--json", *ws.argv("build", "--tag", TAG)],
        capture_output=True,
        text=True,
        cwd=ws.root,
        env=env,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert result["smoke"]["ok"] is True, result["smoke"]
    assert [s["status"] for s in result["smoke"]["steps"]] == ["pass"] * len(
        result["smoke"]["steps"]
    )
    assert "ModuleNotFoundError" not in done.stderr and "skipping the smoke test" not in done.stderr
    assert docker_client.images.get(TAG).id == result["image"]
