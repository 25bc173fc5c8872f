"""Operating the built image: ``docker stop`` with a call in flight ends cleanly inside Docker's
10 s, and the image's HEALTHCHECK turns unhealthy when the executor stops answering.

The default image plus one layer (``fixtures/ops``) that adds ``ops-policy`` (a call that sleeps
and ignores cancellation) to the registry, run in an existing policy's venv.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container
from gwb_build_helpers import build_default

from gateway_builder import defaults
from gateway_builder.models import BaseImages

pytestmark = [pytest.mark.e2e, pytest.mark.network]

HERE = Path(__file__).resolve().parent
OPS_POLICY = HERE.parent / "fixtures" / "executor_policies" / "ops-policy" / "ops_policy"
TAG = "gateway-builder-e2e/ops"
#: In the image: make one call that sleeps ``SECONDS`` on a stream that stays open.
LONG_CALL = """
import sys
sys.path.insert(0, {executor_dir!r})
from gateway_executor.client import ExecutorClient, build_request
client = ExecutorClient({socket!r}, timeout=120)
iid = client.init_policy("e2e-ops", "v1.0.0").instance_id
print("calling", flush=True)
client.execute(build_request("request_headers", instance_id=iid, request={{"path": "/sleep/60"}}), 120)
"""


@pytest.fixture(scope="module")
def image(
    docker_client: docker.DockerClient,
    local_bases: BaseImages,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """The default image with ops-policy added (the default build is cached by the layer cache)."""
    _, _, data = build_default(tmp_path_factory.mktemp("ws"))
    base = docker_client.images.get(str(data["image"]))
    context = tmp_path_factory.mktemp("ops-context")
    shutil.copytree(HERE / "fixtures" / "ops", context, dirs_exist_ok=True)
    shutil.copytree(
        OPS_POLICY, context / "ops_policy", ignore=shutil.ignore_patterns("__pycache__")
    )
    tag = f"{TAG}:{base.id.split(':')[-1][:16]}"
    docker_client.images.build(
        path=str(context),
        tag=tag,
        rm=True,
        forcerm=True,
        pull=False,
        buildargs={
            "BASE": base.id,
            "RUNTIME_USER": base.attrs["Config"].get("User") or "0",
            "EXECUTOR_PYTHON": f"{defaults.EXECUTOR_VENV}/bin/python",
            "REGISTRY": defaults.REGISTRY_PATH,
            "LIKE": "prompt-guard",
            "TARGET": f"{defaults.POLICIES_DIR}/e2e-ops",
        },
    )
    return tag


@pytest.fixture
def containers(docker_client: docker.DockerClient) -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for container in started:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def logs(container: Container) -> str:
    return container.logs().decode(errors="replace")


def wait_for_log(container: Container, text: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = logs(container)
        if text in out:
            return out
        container.reload()
        if container.status == "exited":
            break
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in the container log:\n{logs(container)}")


def health(container: Container) -> tuple[str, str]:
    """(status, output of the last check)."""
    container.reload()
    state = container.attrs["State"].get("Health") or {}
    checks = state.get("Log") or [{}]
    return state.get("Status", ""), str(checks[-1].get("Output", "")).strip()


def wait_health(container: Container, status: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen = ("", "")
    while time.monotonic() < deadline:
        seen = health(container)
        if seen[0] == status:
            return seen[1]
        time.sleep(0.5)
    raise AssertionError(f"not {status} within {timeout}s: {seen}\n{logs(container)}")


def executor_pid(container: Container) -> str:
    found = re.search(r"started executor \(pid (\d+)\)", logs(container))
    assert found is not None, logs(container)
    return found.group(1)


def test_docker_stop_with_a_long_call_in_flight_exits_0_within_its_10_s(
    docker_client: docker.DockerClient, image: str, containers: list[Container]
) -> None:
    c = docker_client.containers.run(image, detach=True, network_disabled=True)
    containers.append(c)
    wait_for_log(c, "all processes started")
    script = LONG_CALL.format(
        executor_dir=defaults.EXECUTOR_DIR, socket=defaults.PYTHON_EXECUTOR_SOCKET
    )
    c.exec_run([f"{defaults.EXECUTOR_VENV}/bin/python", "-c", script], detach=True)
    wait_for_log(c, "ops-policy: sleeping /sleep/60", timeout=60)
    t0 = time.monotonic()
    c.stop(timeout=10)  # docker stop: SIGTERM, SIGKILL after 10 s
    took = time.monotonic() - t0
    code = int(c.wait(timeout=30)["StatusCode"])
    out = logs(c)
    assert code == 0, f"exit {code} after {took:.1f}s:\n{out}"
    assert "shutdown complete" in out
    assert "in-flight calls still running after" in out  # the executor gave up on the call
    assert "sending SIGKILL" not in out
    assert took < 10, took


def test_healthcheck_asks_the_executor_and_a_stopped_one_is_unhealthy(
    docker_client: docker.DockerClient, image: str, containers: list[Container]
) -> None:
    config = docker_client.images.get(image).attrs["Config"]["Healthcheck"]
    assert config["Test"] == ["CMD", defaults.HEALTH_CHECK_PATH]
    assert config["Interval"] == defaults.HEALTHCHECK_INTERVAL_S * 10**9
    # The image's check, run every second here (Docker merges these with the image's config).
    c = docker_client.containers.run(
        image,
        detach=True,
        network_disabled=True,
        healthcheck={"interval": 10**9, "retries": 2, "start_period": 0},
    )
    containers.append(c)
    wait_for_log(c, "all processes started")
    out = wait_health(c, "healthy", 120)
    assert out.startswith("healthy: executor: ready: 4 policies"), out
    pid = executor_pid(c)
    code, output = c.exec_run(["bash", "-c", f"kill -STOP {pid}"], user="0")
    assert code == 0, output
    out = wait_health(c, "unhealthy", 120)
    assert out == f"unhealthy: executor: no answer within {defaults.HEALTH_PROBE_TIMEOUT_S}s"
    code, output = c.exec_run(["bash", "-c", f"kill -CONT {pid}"], user="0")
    assert code == 0, output
    wait_health(c, "healthy", 120)
