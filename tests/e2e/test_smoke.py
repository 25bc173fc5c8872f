"""Smoke test of the default image, and small derived images that must fail it.

The default image is built once per session from (a copy of) the default manifests with the
local bases (``gateway-builder build --bases local --no-smoke``). Each negative case adds one layer
on top of it (``fixtures/smoke/Dockerfile`` + ``patch.py``), tagged by the base image's id and
the case, so a rerun with an unchanged default image reuses it.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from gateway_builder import cli, defaults
from gateway_builder.models import BaseImages
from gateway_builder.options import SmokeOptions
from gateway_builder.smoke import STEPS, smoke_test
from gateway_builder.smoke.container import RunningContainer
from gateway_builder.ui import UI

pytestmark = [pytest.mark.e2e, pytest.mark.network]

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "smoke"
DEFAULT_TAG = "gateway-builder-e2e/smoke-default:latest"
FIXTURE_REPO = "gateway-builder-e2e/smoke-fixture"
#: The keys of a smoke-test --json result, passing or failing.
REPORT_KEYS = {"ok", "image", "seconds", "error", "steps", "policies", "warnings"}


@dataclass(frozen=True)
class Built:
    """The default image and the context it was built from."""

    tag: str
    image_id: str
    context: Path


@pytest.fixture(scope="session")
def default_image(
    docker_client: docker.DockerClient,
    local_bases: BaseImages,
    tmp_path_factory: pytest.TempPathFactory,
) -> Built:
    """The default manifests built into an image (layer cache makes a rebuild cheap).

    Like tests/e2e/test_build.py, the manifests and policy folders are copied to a temp
    directory and locked there, so the repository is never written to.
    """
    ws = tmp_path_factory.mktemp("smoke-ws")
    ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.pyc", "*.lock")
    for folder in ("manifests", "policy_sources"):
        shutil.copytree(REPO / folder, ws / folder, ignore=ignore)
    context = ws / "context"
    code = cli.main(
        [
            "-q",
            "build",
            "--bases",
            "local",
            "--no-smoke",
            "--keep-stage-images",
            "--build-file",
            str(ws / defaults.DEFAULT_BUILD_FILE),
            "--python-build-file",
            str(ws / defaults.DEFAULT_PYTHON_BUILD_FILE),
            "--out",
            str(context),
            "--tag",
            DEFAULT_TAG,
        ]
    )
    assert code == 0, "building the default image failed (see the log above)"
    return Built(DEFAULT_TAG, docker_client.images.get(DEFAULT_TAG).id, context)


def test_the_default_image_passes(default_image: Built) -> None:
    report = smoke_test(
        default_image.tag,
        SmokeOptions(timeout=120),
        context_dir=default_image.context,
        ui=UI(verbosity=-1),
    )
    assert report.ok, report.table()
    assert [s.name for s in report.steps] == list(STEPS)
    assert all(s.status == "pass" for s in report.steps)
    policies = {p.name: p for p in report.policies}
    assert sorted(policies) == ["prompt-enrichment", "prompt-guard", "token-scorer"]
    assert policies["token-scorer"].python_version.startswith("3.12")
    assert policies["prompt-guard"].python_version.startswith("3.11")
    for policy in policies.values():
        assert policy.ready and policy.samples, policy.name
        assert all(s["ok"] for s in policy.samples), policy.samples
    dists = {n: {k.lower(): v for k, v in p.distributions.items()} for n, p in policies.items()}
    assert dists["prompt-enrichment"]["markupsafe"] == "2.1.5"
    assert dists["prompt-guard"]["markupsafe"] == "3.0.2"
    isolation = next(s for s in report.steps if s.name == "isolation")
    assert "markupsafe" in isolation.detail
    assert report.warnings == []


def test_the_cli_without_a_context_reads_the_image(
    default_image: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["smoke-test", default_image.tag, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(out)
    assert set(result) == REPORT_KEYS
    assert result["ok"] is True and result["error"] is None
    assert [s["step"] for s in result["steps"]] == list(STEPS)
    assert all(s["status"] == "pass" for s in result["steps"])
    # The samples ship in the image, so the image alone gives the full protocol check.
    assert result["warnings"] == []
    assert result["steps"][0]["detail"].endswith("(from the image)")
    # The image's build manifest holds each venv's lock: the isolation step checks it exactly.
    assert "locked versions match" in result["steps"][3]["detail"]
    assert len(result["policies"]) == 3
    assert all(p["ready"] for p in result["policies"])


def test_the_tcp_transport_is_published_on_loopback_only(
    default_image: Built, docker_client: docker.DockerClient
) -> None:
    run = RunningContainer(default_image.tag, 60, publish_tcp=True)
    try:
        bindings = docker_client.api.inspect_container(run.container.id)["HostConfig"][
            "PortBindings"
        ]
        assert bindings == {
            f"{defaults.EXECUTOR_DEBUG_PORT}/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]
        }
    finally:
        run.remove()
    report = smoke_test(
        default_image.tag,
        SmokeOptions(timeout=120, transport="tcp"),
        context_dir=default_image.context,
        ui=UI(verbosity=-1),
    )
    protocol = next(s for s in report.steps if s.name == "protocol")
    assert re.search(r"\d+ samples as expected; .*via TCP 127\.0\.0\.1:\d+$", protocol.detail)
    assert report.ok


# ---- images that must fail -----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A way to break the image, the step that must fail, and what its message must say."""

    mode: str
    policy: str
    timeout: int
    step: str
    message: str  # regex, searched in the error message


CASES = [
    Case(
        "import-error",
        "prompt-guard",
        60,
        "start",
        r"start: policy prompt-guard not ready: (?!\d{4}-).*"
        r"ModuleNotFoundError: No module named 'gwb_smoke_missing_module'$",
    ),
    Case(
        "passthrough",
        "prompt-guard",
        60,
        "protocol",
        r"protocol: policy prompt-guard sample \S*block-credit-card\.json \(.*\): "
        r"expected immediate_response, got passthrough",
    ),
    Case(
        "executor-dies",
        "",
        60,
        "start",
        r"start: container exited with status 3 before ready: the executor exited with "
        r"status 3: smoke fixture: executor dies at start",
    ),
    Case(
        "engine-hangs",
        "",
        10,
        "start",
        r"start: not ready within 10s: no sign of policy engine ready, router serving",
    ),
]


def _base_key(base: Built) -> str:
    return base.image_id.split(":")[-1][:16]


@pytest.fixture(scope="session")
def stale_fixtures_removed(docker_client: docker.DockerClient, default_image: Built) -> None:
    """Untag fixture images built on an older default image (they would pile up otherwise)."""
    key = _base_key(default_image)
    for img in docker_client.images.list(name=FIXTURE_REPO):
        for tag in img.tags:
            if tag.startswith(f"{FIXTURE_REPO}:") and not tag.endswith(f"-{key}"):
                docker_client.images.remove(tag, noprune=False)


def derived_image(client: docker.DockerClient, base: Built, case: Case) -> str:
    """Build (or reuse) the broken image of ``case`` on top of the default image."""
    tag = f"{FIXTURE_REPO}:{case.mode}-{_base_key(base)}"
    user = client.images.get(base.image_id).attrs["Config"].get("User") or "0"
    client.images.build(
        path=str(FIXTURES),
        dockerfile="Dockerfile",
        tag=tag,
        rm=True,
        forcerm=True,
        pull=False,
        buildargs={
            "BASE": base.image_id,
            "MODE": case.mode,
            "POLICY": case.policy,
            "RUNTIME_USER": user,
            "EXECUTOR_PYTHON": f"{defaults.EXECUTOR_VENV}/bin/python",
            "REGISTRY": defaults.REGISTRY_PATH,
            "EXECUTOR_DIR": defaults.EXECUTOR_DIR,
            "ENGINE_BINARY": defaults.ENGINE_BINARY,
        },
    )
    return tag


@pytest.mark.usefixtures("stale_fixtures_removed")
@pytest.mark.parametrize("case", CASES, ids=[c.mode for c in CASES])
def test_a_broken_image_fails_with_its_cause(
    case: Case,
    default_image: Built,
    docker_client: docker.DockerClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = derived_image(docker_client, default_image, case)
    code = cli.main(
        [
            "smoke-test",
            image,
            "--context",
            str(default_image.context),
            "--timeout",
            str(case.timeout),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1, captured.err
    result = json.loads(captured.out)
    assert result["ok"] is False and result["exit_code"] == 1
    assert set(result) == REPORT_KEYS | {"exit_code"}  # the passing report's shape, kept
    assert re.search(case.message, result["error"]), result["error"]
    statuses = {s["step"].removeprefix("smoke: "): s["status"] for s in result["steps"]}
    assert statuses[case.step] == "fail"
    failed_at = list(STEPS).index(case.step)
    assert all(statuses[s] == "pass" for s in STEPS[:failed_at])
    assert all(statuses[s] == "skipped" for s in STEPS[failed_at + 1 :])
    # stderr: the one-line error, the step table and the container's logs.
    assert "error: smoke test of " in captured.err
    assert "--- container logs" in captured.err
    assert "[ent]" in captured.err
    leftover = docker_client.containers.list(all=True, filters={"ancestor": image})
    assert leftover == [], "the smoke test must remove its containers"


def test_an_unknown_image_is_bad_input(
    docker_client: docker.DockerClient, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["smoke-test", "gateway-builder-e2e/does-not-exist:nope"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [
        "error: image gateway-builder-e2e/does-not-exist:nope not found in the local container engine"
    ]
    assert cli.main(["smoke-test", "--json", "gateway-builder-e2e/does-not-exist:nope"]) == 2
    result = json.loads(capsys.readouterr().out)
    assert set(result) == REPORT_KEYS | {"exit_code"}
    assert result["ok"] is False and result["steps"] == [] and "not found" in result["error"]
