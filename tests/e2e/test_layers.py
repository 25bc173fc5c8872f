"""A git tag bump of one policy changes only that policy's layers and the small last layer.

Each builder stage sets its files' times from its own inputs (a git policy: its commit time;
the executor, CPython and engine stages: the fixed 1980 epoch), and only the last layer (registry,
build manifest) carries the image-wide time, so a newer commit of one policy leaves every other
layer byte-identical: an image pull after the bump fetches that policy's layer and a few KB.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import docker
import pytest
from gwb_build_helpers import REPO, changed_copies, copy_workspace

from gateway_builder import cli
from gateway_builder.commands import lock as lock_command
from gateway_builder.models import BaseImages
from gateway_builder.ui import UI

pytestmark = [pytest.mark.e2e, pytest.mark.network]

POLICY = "prompt-guard"


class PolicyRepo:
    """The prompt-guard sample as a git repository, committed at chosen times."""

    def __init__(self, path: Path) -> None:
        self.path = path
        shutil.copytree(
            REPO / "policy_sources" / POLICY,
            path,
            ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.pyc"),
        )
        self.git("init", "--quiet", "--initial-branch=main")

    def git(self, *args: str, when: int = 0) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.invalid",
            "GIT_AUTHOR_DATE": f"@{when} +0000",
            "GIT_COMMITTER_DATE": f"@{when} +0000",
        }
        done = subprocess.run(
            ["git", *args], cwd=self.path, env=env, check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    def release(self, tag: str, when: int) -> None:
        self.git("add", "-A", when=when)
        self.git("commit", "--quiet", "--allow-empty", "-m", tag, when=when)
        self.git("tag", tag, when=when)


def test_a_tag_bump_of_one_git_policy_changes_only_its_layers(
    local_bases: BaseImages, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    ws = copy_workspace(tmp_path / "ws")
    repo = PolicyRepo(tmp_path / "prompt-guard.git")
    repo.release("v1.0.0", when=1_700_000_000)
    text = ws.python_build_file.read_text()
    old = f"    source:\n      path: ../policy_sources/{POLICY}\n"
    assert old in text
    ws.python_build_file.write_text(
        text.replace(
            old, f"    source:\n      git:\n        url: {repo.path.as_uri()}\n        ref: v1\n"
        )
    )
    context = ws.root / "context"
    first = ws.build("--out", str(context))
    layers = docker_client.images.get(first["image"]).attrs["RootFS"]["Layers"]

    def bump(tag: str, when: int) -> list[str]:
        """Release ``tag``, move the lock to it, rebuild; the COPY lines whose layer changed."""
        nonlocal layers
        repo.release(tag, when=when)
        args = cli.build_parser().parse_args(
            ["lock", "--upgrade-policy", POLICY, "--python-build-file", str(ws.python_build_file)]
        )
        locked = lock_command.run(args, UI(verbosity=-1))
        assert next(p for p in locked["policies"] if p["name"] == POLICY)["resolved"] == repo.git(
            "rev-parse", "HEAD"
        )
        again = ws.build("--out", str(context))
        after = docker_client.images.get(again["image"]).attrs["RootFS"]["Layers"]
        changed = changed_copies(layers, after, context / "Dockerfile")
        print(f"tag bump to {tag}: {len(changed)} of {len(after)} layers changed: {changed}")
        layers = after
        return changed

    # A code fix released as v1.0.1 a day later: its layer and the last one, nothing else.
    policy_py = repo.path / "policy.py"
    policy_py.write_text(policy_py.read_text() + "\n# a fix released in v1.0.1\n")
    assert bump("v1.0.1", when=1_700_086_400) == [
        f"COPY --from=policy-{POLICY} /export/ /",
        "COPY rootfs/ /",
    ]
    # A release whose policy-definition.yaml says a new version: the engine registers every
    # policy by name and version, so its layer changes too; still nothing of anyone else.
    definition = repo.path / "policy-definition.yaml"
    definition.write_text(definition.read_text().replace("version: v1.0.0", "version: v1.1.0"))
    assert bump("v1.1.0", when=1_700_172_800) == [
        "COPY --from=engine /export/ /",
        f"COPY --from=policy-{POLICY} /export/ /",
        "COPY rootfs/ /",
    ]
