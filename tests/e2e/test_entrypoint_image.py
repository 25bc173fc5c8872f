"""The generated entrypoint inside the built default image: start order, prefixes, argument
forwarding, fail-fast and the ordered shutdown under tini."""

from __future__ import annotations

import contextlib
import re
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


@pytest.fixture(scope="module")
def image_id(local_bases: BaseImages, tmp_path_factory: pytest.TempPathFactory) -> str:
    _, _, data = build_default(tmp_path_factory.mktemp("ws"))
    return str(data["image"])


@pytest.fixture
def containers(docker_client: docker.DockerClient) -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for container in started:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def start(
    client: docker.DockerClient,
    image_id: str,
    started: list[Container],
    command: list[str] | None = None,
    **env: str,
) -> Container:
    container = client.containers.run(
        image_id, command or [], detach=True, environment=env, network_disabled=True
    )
    started.append(container)
    return container


def logs(container: Container) -> str:
    return container.logs().decode(errors="replace")


def wait_for(container: Container, text: str, timeout: float = 90.0) -> str:
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


def wait_exit(container: Container, timeout: float = 60.0) -> int:
    result = container.wait(timeout=timeout)
    return int(result["StatusCode"])


def order(out: str, *needles: str) -> list[int]:
    return [out.index(n) for n in needles]


def test_ordered_start_prefixes_and_clean_shutdown(
    docker_client: docker.DockerClient, image_id: str, containers: list[Container]
) -> None:
    c = start(
        docker_client,
        image_id,
        containers,
        ["--rtr.log-level", "debug", "--py.log-level=debug", "--pol.config", "/tmp/none.toml"],
    )
    out = wait_for(c, "all processes started")
    wait_for(c, "[rtr] router stand-in: listening")
    out = logs(c)
    steps = order(
        out,
        "started executor",
        "executor is ready",
        "started engine",
        "engine is ready",
        "started router",
        "all processes started",
    )
    assert steps == sorted(steps)
    assert "[py-pol] " in out and "executor ready: 3 policies" in out
    assert "[pol] " in out and "[rtr] " in out
    assert "log-level=debug" in out  # --rtr.log-level reached the router
    rows = c.top(ps_args="-eo pid,user,args")["Processes"]
    commands = [row[2] for row in rows]
    executor = next(a for a in commands if "-m gateway_executor" in a)
    assert (
        "--log-level=debug" in executor
        and f"--listen {defaults.PYTHON_EXECUTOR_SOCKET}" in executor
    )
    engine = next(a for a in commands if a.startswith(defaults.ENGINE_BINARY))
    assert "--config /tmp/none.toml" in engine
    pid1 = next(row for row in rows if row[0] == "1" or row[2].startswith("/usr/bin/tini"))
    assert "tini" in pid1[2]
    assert not [row for row in rows if row[1] in ("root", "0")], rows
    c.kill(signal="SIGTERM")
    assert wait_exit(c) == 0
    out = logs(c)
    stops = order(
        out,
        "received SIGTERM",
        "router stopped",
        "engine stopped",
        "executor stopped",
        "shutdown complete",
    )
    assert stops == sorted(stops)


def test_a_dying_executor_stops_the_container_non_zero(
    docker_client: docker.DockerClient, image_id: str, containers: list[Container]
) -> None:
    c = start(docker_client, image_id, containers)
    out = wait_for(c, "all processes started")
    pid = re.search(r"started executor \(pid (\d+)\)", out)
    assert pid is not None
    code, output = c.exec_run(["bash", "-c", f"kill -KILL {pid.group(1)}"])
    assert code == 0, output
    assert wait_exit(c) == 137
    out = logs(c)
    assert "executor exited with status 137; stopping the others" in out
    assert order(out, "router stopped", "engine stopped") == sorted(
        order(out, "router stopped", "engine stopped")
    )


@pytest.mark.parametrize(
    ("command", "env", "message"),
    [
        (["serve"], {}, "unexpected argument 'serve'"),
        (["--py.listen", "/tmp/x.sock"], {}, "--py.listen is not allowed"),
        ([], {defaults.SHUTDOWN_GRACE_ENV: "soon"}, "must be a whole number of seconds"),
    ],
)
def test_bad_arguments_exit_1(
    docker_client: docker.DockerClient,
    image_id: str,
    containers: list[Container],
    command: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    c = start(docker_client, image_id, containers, command, **env)
    assert wait_exit(c) == 1
    out = logs(c)
    assert message in out and "started" not in out


def test_entrypoint_in_the_image_is_the_rendered_one(
    docker_client: docker.DockerClient, image_id: str, tmp_path: Path
) -> None:
    script = docker_client.containers.run(
        image_id, ["/app/entrypoint.sh"], entrypoint="cat", remove=True, network_disabled=True
    )
    text = script.decode()
    assert text.startswith("#!/usr/bin/env bash")
    assert "readonly HAS_PYTHON_POLICIES=1" in text
    assert f"readonly ENGINE_SOCKET={defaults.POLICY_ENGINE_SOCKET}" in text
