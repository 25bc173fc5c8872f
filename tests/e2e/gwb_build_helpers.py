"""Helpers shared by the build and entrypoint end-to-end tests."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway_builder import cli, defaults
from gateway_builder.commands import build as build_command
from gateway_builder.ui import UI

REPO = defaults.REPO_DIR
DEFAULT_TAG = "gateway-builder-e2e/build-default:latest"
#: A credential passed in a label: it must come out redacted and never reach a layer.
SECRET = "tok3n-e2e-never-in-images"
LABEL_ARGS = ("--label", f"org.example.origin=https://ci:{SECRET}@git.example/x")


@dataclass
class Workspace:
    """A copy of the default manifests and policy folders, locked in place."""

    root: Path

    @property
    def build_file(self) -> Path:
        return self.root / "manifests" / "build.yaml"

    @property
    def python_build_file(self) -> Path:
        return self.root / "manifests" / "python-build.yaml"

    def argv(self, command: str, *extra: str) -> list[str]:
        return [
            command,
            "--bases",
            "local",
            "--build-file",
            str(self.build_file),
            "--python-build-file",
            str(self.python_build_file),
            *extra,
        ]

    def build(self, *extra: str) -> dict[str, Any]:
        """``gateway-builder build --bases local --no-smoke`` of this workspace; the result.

        Builds keep their stage images (the layer cache), so rebuilds here stay fast;
        test_build_hygiene checks the default clean-up."""
        argv = self.argv("build", "--no-smoke", "--keep-stage-images", *extra)
        args = cli.build_parser().parse_args(argv)
        return build_command.run(args, UI(verbosity=-1))


def copy_workspace(dest: Path) -> Workspace:
    """Copy ``manifests/`` and ``policy_sources/`` (no lock, no caches) into ``dest``."""
    ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.pyc", "*.lock")
    shutil.copytree(REPO / "manifests", dest / "manifests", ignore=ignore)
    shutil.copytree(REPO / "policy_sources", dest / "policy_sources", ignore=ignore)
    return Workspace(dest)


def build_default(dest: Path) -> tuple[Workspace, Path, dict[str, Any]]:
    """The default manifests built into DEFAULT_TAG; (workspace, context, build result)."""
    ws = copy_workspace(dest)
    context = ws.root / "context"
    data = ws.build("--out", str(context), "--tag", DEFAULT_TAG, *LABEL_ARGS)
    return ws, context, data


def changed_copies(before: list[str], after: list[str], dockerfile: Path) -> list[str]:
    """The runtime stage's COPY lines whose layers differ between two builds of one Dockerfile
    shape (``before``/``after``: RootFS diff ids; base layers first, one layer per COPY)."""
    assert len(after) == len(before), (before, after)
    lines = dockerfile.read_text().splitlines()
    runtime = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    copies = [line for line in runtime if line.startswith("COPY ")]
    first = len(before) - len(copies)
    by_layer = {first + i: line for i, line in enumerate(copies)}
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    return [by_layer.get(i, f"base layer {i}") for i in changed]
