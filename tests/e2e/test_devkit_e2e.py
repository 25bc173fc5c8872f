"""A new user's way from ``new-policy`` to a built image, with the commands of the README's
"Write a policy" section, run in that order in a fresh workspace (local bases, one build whose
smoke test sends the new policy's samples through the image)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import docker
import pytest

from gateway_builder import cli, defaults
from gateway_builder.models import BaseImages

pytestmark = [pytest.mark.e2e, pytest.mark.network]

REPO = defaults.REPO_DIR
TAG = "gateway-builder-e2e/devkit:latest"
MANIFEST = """\
version: v1
policies:
  - name: my-policy
    source:
      path: ../my-policy
    params:
      message: hello from the image
"""


def gwb(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    """``gateway-builder --json ARGV``; its JSON result (the command must succeed)."""
    code = cli.main(["--json", *argv])
    out, err = capsys.readouterr()
    assert code == 0, f"gateway-builder {' '.join(argv)} exited {code}:\n{err[-3000:]}"
    result: dict[str, object] = json.loads(out)
    return result


def test_new_policy_to_a_built_image(
    local_bases: BaseImages,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "manifests").mkdir()
    shutil.copyfile(REPO / defaults.DEFAULT_BUILD_FILE, tmp_path / defaults.DEFAULT_BUILD_FILE)
    monkeypatch.chdir(tmp_path)

    created = gwb(capsys, "new-policy", "my-policy", "--phase", "request_headers", "response_body")
    assert created["path"] == "my-policy"
    tested = gwb(capsys, "test-policy", "my-policy")
    assert tested["ok"] is True and len(tested["samples"]) == 2  # type: ignore[arg-type]
    described = gwb(capsys, "describe-policy", "my-policy")
    assert described["phases"] == ["request_headers", "response_body"]

    Path(defaults.DEFAULT_PYTHON_BUILD_FILE).write_text(MANIFEST)
    gwb(capsys, "validate")
    gwb(capsys, "lock")
    lock = f"manifests/{defaults.LOCK_FILE_NAME}"
    from_lock = gwb(capsys, "test-policy", "my-policy", "--lock-file", lock)
    assert from_lock["ok"] is True
    assert from_lock["venv"]["origin"] == f"lock {lock}"  # type: ignore[index]

    built = gwb(capsys, "build", "--bases", "local", "--tag", TAG)
    assert built["python_policies"] == ["my-policy"]
    smoke = built["smoke"]
    assert isinstance(smoke, dict) and smoke["ok"] is True
    (policy,) = [p for p in smoke["policies"] if p["name"] == "my-policy"]
    assert policy["ready"] is True
    assert sorted(Path(s["sample"]).name for s in policy["samples"]) == [
        "request-headers.json",
        "response-body.json",
    ]
    assert all(s["ok"] for s in policy["samples"])

    registry = docker_client.containers.run(
        TAG,
        ["-c", f"cat {defaults.REGISTRY_PATH}"],
        entrypoint="/bin/sh",
        remove=True,
        network_disabled=True,
    )
    (entry,) = json.loads(registry)["policies"]
    assert (entry["name"], entry["version"], entry["module"]) == (
        "my-policy",
        "v0.1.0",
        "my_policy.policy",
    )
    assert entry["params"] == {"message": "hello from the image"}
