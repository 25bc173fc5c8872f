"""What a build leaves behind: only its result, tagged only once its smoke test passed.

A build removes the step images it created (the legacy builder keeps one per step of every
builder stage, its layer cache), never an image it did not create; ``--keep-stage-images`` keeps
them. An image that fails its smoke test never gets the requested tag: it is tagged
``<tag>-failed`` and the error says so.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import docker
import pytest
from docker.errors import ImageNotFound
from gwb_build_helpers import copy_workspace

from gateway_builder import cli, defaults
from gateway_builder.models import BaseImages

pytestmark = [pytest.mark.e2e, pytest.mark.network]

TAG = "gateway-builder-e2e/hygiene:latest"


@pytest.fixture(scope="module")
def context(local_bases: BaseImages, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default manifests rendered once (no image built)."""
    ws = copy_workspace(tmp_path_factory.mktemp("hygiene"))
    out = ws.root / "context"
    assert cli.main(["-q", *ws.argv("build", "--render-only", "--out", str(out))]) == 0
    return out


def step_images(log: str) -> list[str]:
    """The image ids a legacy build printed after the steps it ran (`` ---> <id>``; not a FROM
    step's base, not a step answered from the cache)."""
    ids, skip = [], False
    for line in log.splitlines():
        text = line.strip()
        if text.startswith("Step "):
            skip = " : FROM " in text.upper()
        elif text == "---> Using cache":
            skip = True
        elif (m := re.fullmatch(r"---> ([0-9a-f]{12})", text)) and not skip:
            ids.append(m.group(1))
    return ids


def touch_executor(context: Path) -> None:
    """Change the executor's code in the context (a comment): its stage must run again."""
    init = context / "executor" / "gateway_executor" / "__init__.py"
    init.write_text(init.read_text() + f"# {uuid.uuid4().hex}\n")


def exists(client: docker.DockerClient, image: str) -> bool:
    try:
        client.images.get(image)
    except ImageNotFound:
        return False
    return True


def ancestors(client: docker.DockerClient, image_id: str) -> set[str]:
    out: set[str] = set()
    current = image_id
    while current and current not in out:
        out.add(current)
        current = client.api.inspect_image(current).get("Parent") or ""
    return out


def test_a_build_removes_the_step_images_it_created_and_nothing_else(
    context: Path,
    local_bases: BaseImages,
    docker_client: docker.DockerClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # An untagged image this build did not create (another project's, a user's).
    foreign_dir = context.parent / "foreign"
    foreign_dir.mkdir(exist_ok=True)
    (foreign_dir / "Dockerfile").write_text(
        f"FROM {local_bases.runtime}\nLABEL org.example.foreign={uuid.uuid4().hex}\n"
    )
    foreign, _ = docker_client.images.build(path=str(foreign_dir), rm=True)
    # A change in the executor's code: its stage runs again and creates step images.
    touch_executor(context)
    capsys.readouterr()
    argv = ["-v", "--json", "build", "--from-context", str(context), "--no-smoke", "--tag", TAG]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    created = step_images(err)
    assert created, err  # the changed stage ran
    keep = ancestors(docker_client, result["image"])
    left = [
        i
        for i in created
        if exists(docker_client, i) and docker_client.images.get(i).id not in keep
    ]
    assert left == [], "step images this build created are still there"
    assert result["removed_images"] > 0
    assert exists(docker_client, foreign.id), "an image the build did not create was removed"
    assert docker_client.images.get(TAG).id == result["image"]
    docker_client.images.remove(foreign.id)


def test_keep_stage_images_keeps_the_layer_cache(
    context: Path, docker_client: docker.DockerClient, capsys: pytest.CaptureFixture[str]
) -> None:
    touch_executor(context)
    capsys.readouterr()
    argv = ["-v", "--json", "build", "--from-context", str(context), "--no-smoke"]
    assert cli.main([*argv, "--keep-stage-images"]) == 0
    out, err = capsys.readouterr()
    created = step_images(err)
    assert created and all(exists(docker_client, i) for i in created)
    assert json.loads(out)["removed_images"] == 0
    # The next build reuses them: every step from the cache.
    assert cli.main([*argv, "--keep-stage-images"]) == 0
    again = json.loads(capsys.readouterr().out)
    froms = (context / "Dockerfile").read_text().count("\nFROM ")
    assert again["cached_steps"] == again["steps"] - froms


def test_an_image_failing_its_smoke_test_never_gets_the_requested_tag(
    context: Path, docker_client: docker.DockerClient, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = "gateway-builder-e2e/hygiene-smoke:1.0"
    for leftover in (tag, f"{tag}-failed"):
        if exists(docker_client, leftover):
            docker_client.images.remove(leftover)
    sample = (
        context
        / "rootfs"
        / defaults.SAMPLES_DIR.lstrip("/")
        / "prompt-guard"
        / "samples"
        / "block-credit-card.json"
    )
    data = json.loads(sample.read_text())
    data["expect"]["status_code"] = 499  # the policy answers 403: the smoke test must fail
    sample.write_text(json.dumps(data))
    capsys.readouterr()
    code = cli.main(["build", "--from-context", str(context), "--tag", tag, "--keep-stage-images"])
    err = capsys.readouterr().err
    assert code == 1
    (error,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "block-credit-card" in error
    assert error.endswith(f"; the image is tagged {tag}-failed, not {tag}")
    assert not exists(docker_client, tag)
    failed = docker_client.images.get(f"{tag}-failed")
    assert failed.tags == [f"{tag}-failed"]
    docker_client.images.remove(failed.id)
