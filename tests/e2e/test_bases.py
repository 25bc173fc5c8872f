"""The local base images, checked in real containers (needs a Docker engine)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tarfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from gateway_builder import defaults
from gateway_builder.bases import KIND_LABEL, build_local_bases
from gateway_builder.dockerd import stream_build
from gateway_builder.errors import BuildError
from gateway_builder.models import BaseImages
from gateway_builder.options import LocalBasesOptions

pytestmark = pytest.mark.e2e
_log = logging.getLogger("gateway_builder.e2e")

EXECUTOR_SOCKET = defaults.PYTHON_EXECUTOR_SOCKET
ENGINE_SOCKET = defaults.POLICY_ENGINE_SOCKET

# A stand-in Python executor: accepts connections on the executor socket and closes them.
FAKE_EXECUTOR = f"""
import os, socket
path = {EXECUTOR_SOCKET!r}
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(8)
while True:
    conn, _ = s.accept()
    conn.close()
"""

BUILD_YAML = """\
version: v1
gateway:
  version: 1.2.0
policies:
  - name: header-guard
    gomodule: example.com/policies/header-guard@v1.4.2
  - name: go-local
    filePath: ./go-local
  - name: prompt-guard   # a Python policy, as the derived build file lists them
    filePath: ./prompt-guard
"""


def _tar(files: Mapping[str, bytes | str], *, mode: int = 0o644) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _read_file(container: Container, path: str) -> bytes:
    stream, _ = container.get_archive(path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.next()
        assert member is not None
        handle = tar.extractfile(member)
        assert handle is not None
        return handle.read()


def _run(
    client: docker.DockerClient,
    image: str,
    command: Sequence[str],
    *,
    user: str | None = None,
    entrypoint: Sequence[str] | None = None,
    environment: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """Run ``command`` to completion (no network); exit code and combined output."""
    container = client.containers.create(
        image,
        list(command),
        user=user,
        entrypoint=list(entrypoint) if entrypoint is not None else None,
        environment=dict(environment or {}),
        network_disabled=True,
    )
    try:
        container.start()
        status = container.wait(timeout=300)
        return int(status["StatusCode"]), container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def _wait_for_log(container: Container, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = container.logs().decode(errors="replace")
        if text in logs:
            return logs
        container.reload()
        if container.status == "exited":
            break
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not logged within {timeout}s:\n{container.logs().decode()}")


@pytest.fixture
def started() -> Iterator[list[Container]]:
    """Containers a test starts; removed at the end whatever happens."""
    containers: list[Container] = []
    yield containers
    for container in containers:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def test_bases_are_tagged_labelled_and_described(
    docker_client: docker.DockerClient, local_bases: BaseImages
) -> None:
    assert local_bases.standin is True
    assert local_bases.engine_builder is not None
    assert [p.version for p in local_bases.pythons] == ["3.11", "3.12"]
    images = [
        local_bases.runtime,
        local_bases.engine_builder,
        *(p.image for p in local_bases.pythons),
    ]
    for tag in images:
        assert tag.startswith(f"{defaults.LOCAL_BASE_REPO}/")
        labels = docker_client.images.get(tag).labels
        assert labels[KIND_LABEL] == tag.split("/", 1)[1].split(":", 1)[0]
    for tag in (local_bases.runtime, local_bases.engine_builder):
        assert docker_client.images.get(tag).labels[defaults.STANDIN_LABEL] == "true"
    py311, py312 = local_bases.python("3.11"), local_bases.python("3.12")
    assert py311.executable == "/usr/bin/python3.11" and py311.runtime_copy == ()
    assert py312.executable == "/opt/python/3.12/bin/python3.12"
    assert py312.runtime_copy == ("/opt/python/3.12",)
    assert local_bases.tini == defaults.TINI_PATH


def test_second_run_reuses_every_base(
    docker_client: docker.DockerClient, local_bases: BaseImages, e2e_pythons: tuple[str, ...]
) -> None:
    start = time.monotonic()
    report = build_local_bases(
        LocalBasesOptions(pythons=e2e_pythons), client=docker_client, log=_log.info
    )
    seconds = time.monotonic() - start
    _log.info("warm (cached) local bases: %.2fs", seconds)
    assert report.bases == local_bases
    assert [e.cached for e in report.events] == [True] * len(report.events)
    assert {e.kind for e in report.events} == {
        "debian",
        "runtime",
        "engine-builder",
        *(f"python{v}" for v in e2e_pythons),
    }


@pytest.mark.parametrize("version", ["3.11", "3.12"])
def test_python_base_runs_its_version_and_makes_venvs_as_non_root(
    docker_client: docker.DockerClient, local_bases: BaseImages, version: str
) -> None:
    base = local_bases.python(version)
    script = (
        f"set -e; {base.executable} -m venv /tmp/venv; "
        "/tmp/venv/bin/python -c 'import os, sys, ssl, sqlite3, ctypes, json; "
        'print(os.getuid(), "%d.%d" % sys.version_info[:2], sys.prefix)\'; '
        "/tmp/venv/bin/python -m pip --version"
    )
    code, out = _run(
        docker_client, base.image, ["sh", "-c", script], user=str(defaults.RUNTIME_UID)
    )
    assert code == 0, out
    assert f"{defaults.RUNTIME_UID} {version} /tmp/venv" in out
    assert f"(python {version})" in out  # pip runs on the venv's Python


def test_runtime_base_contents(docker_client: docker.DockerClient, local_bases: BaseImages) -> None:
    script = (
        "set -e; id -u; id -un; stat -c '%u %a' " + defaults.SOCKET_DIR + "; "
        f"{defaults.TINI_PATH} --version; bash --version | head -n1; python3.11 -c 'print(42)'; "
        f"test -x {defaults.ENVOY_BINARY}; test -f {defaults.ENVOY_CONFIG}; "
        'if [ -e /etc/ssl/certs ] && [ -n "$(ls -A /etc/ssl/certs)" ]; then echo CA-BUNDLE; fi; '
        "for tool in gcc cc go; do command -v $tool && echo FOUND-$tool; done; true"
    )
    code, out = _run(docker_client, local_bases.runtime, ["bash", "-c", script])
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == str(defaults.RUNTIME_UID) and lines[1] == defaults.RUNTIME_USER
    assert lines[2].startswith(f"{defaults.RUNTIME_UID} ")
    assert "tini version" in out and "GNU bash" in out and "42" in lines
    assert "CA-BUNDLE" not in out
    assert "FOUND-" not in out


def test_venvs_built_in_python_bases_run_in_the_runtime_as_non_root(
    docker_client: docker.DockerClient, local_bases: BaseImages, tmp_path: Path
) -> None:
    """The render stage's contract: venvs from the Python bases + runtime_copy, in the runtime."""
    stages, copies = [], []
    for base in local_bases.pythons:
        name = f"py{base.version.replace('.', '')}"
        stages.append(
            f"FROM {base.image} AS {name}\n"
            f"RUN {base.executable} -m venv /opt/venvs/{name} && "
            f"/opt/venvs/{name}/bin/python -m compileall -q /opt/venvs/{name} >/dev/null\n"
        )
        copies += [f"COPY --from={name} {path} {path}\n" for path in base.runtime_copy]
        copies.append(f"COPY --from={name} /opt/venvs/{name} /opt/venvs/{name}\n")
    (tmp_path / "Dockerfile").write_text(
        "".join(stages) + f"FROM {local_bases.runtime}\n" + "".join(copies)
    )
    tag = f"gateway-builder-e2e/bases-venvs:{uuid.uuid4().hex[:12]}"
    lines: list[str] = []
    stream_build(docker_client, log=lines.append, path=str(tmp_path), tag=tag)
    try:
        checks = " && ".join(
            f"/opt/venvs/py{p.version.replace('.', '')}/bin/python -c "
            f'\'import os, sys, ssl, sqlite3; assert "%d.%d" % sys.version_info[:2] == "{p.version}"; '
            f'print("ok", os.getuid(), sys.version.split()[0])\''
            for p in local_bases.pythons
        )
        code, out = _run(docker_client, tag, ["bash", "-c", checks])
        assert code == 0, out
        assert out.count(f"ok {defaults.RUNTIME_UID} ") == len(local_bases.pythons), out
    finally:
        docker_client.images.remove(tag, force=True)


def test_router_standin_listens_and_stops_on_sigterm(
    docker_client: docker.DockerClient, local_bases: BaseImages, started: list[Container]
) -> None:
    container = docker_client.containers.create(
        local_bases.runtime,
        [
            defaults.ENVOY_BINARY,
            "-c",
            defaults.ENVOY_CONFIG,
            "--log-level",
            "info",
            "--drain-time-s",
            "5",
        ],
        network_disabled=True,
    )
    started.append(container)
    container.start()
    _wait_for_log(container, "listening on 0.0.0.0:8080")
    probe = (
        "import urllib.request as u; r = u.urlopen('http://127.0.0.1:8080/v1/x', timeout=5); "
        "print(r.status, r.headers['X-Gateway-Builder-Standin'], r.read().decode().strip())"
    )
    result = container.exec_run(["python3.11", "-c", probe])
    assert result.exit_code == 0, result.output
    assert result.output.decode().startswith("200 router gateway-builder router stand-in")
    container.stop(timeout=10)
    status = container.wait(timeout=30)
    logs = container.logs().decode()
    assert status["StatusCode"] == 0, logs
    assert "received SIGTERM" in logs and "router stand-in: stopped" in logs
    assert "ignored arguments: --drain-time-s 5" in logs


def _compile_engine(
    client: docker.DockerClient, bases: BaseImages, started: list[Container]
) -> tuple[bytes, dict[str, object], str]:
    """Run the engine builder on BUILD_YAML; the engine binary, build-info.json, builder log."""
    assert bases.engine_builder is not None
    workspace = {
        "workspace/build.yaml": BUILD_YAML,
        "workspace/go-local/go.mod": "module example.com/go-local\n\ngo 1.19\n",
        "workspace/go-local/policy.go": "package golocal\n",
        "workspace/go-local/policy-definition.yaml": "name: go-local\nversion: v0.1.0\n",
        "workspace/prompt-guard/policy-definition.yaml": "name: prompt-guard\nversion: v1.0.0\n",
        "workspace/prompt-guard/policy.py": "def get_policy(metadata, params):\n    return None\n",
    }
    container = client.containers.create(
        bases.engine_builder,
        [
            "-build-file",
            "/workspace/build.yaml",
            "-out-dir",
            "/workspace/out",
            "-log-level",
            "info",
        ],
        entrypoint=list(bases.engine_builder_command),
        network_disabled=True,
    )
    started.append(container)
    container.put_archive("/", _tar(workspace))
    container.start()
    status = container.wait(timeout=300)
    logs = container.logs().decode(errors="replace")
    assert status["StatusCode"] == 0, logs
    engine = _read_file(container, f"/workspace/out/{defaults.ENGINE_BUILDER_OUTPUT}")
    info = json.loads(_read_file(container, "/workspace/out/build-info.json"))
    return engine, info, logs


def test_engine_builder_compiles_an_engine_that_registers_and_serves(
    docker_client: docker.DockerClient, local_bases: BaseImages, started: list[Container]
) -> None:
    engine, info, build_log = _compile_engine(docker_client, local_bases, started)
    assert engine[:4] == b"\x7fELF"
    assert {p["name"]: p["runtime"] for p in info["policies"]} == {  # type: ignore[attr-defined]
        "go-local": "go",
        "header-guard": "go",
        "prompt-guard": "python",
    }
    assert "prompt-guard v1.0.0: python, registered through the Python bridge" in build_log

    container = docker_client.containers.create(
        local_bases.runtime,
        [
            "bash",
            "-c",
            "python3.11 /tmp/fake_executor.py & "
            f"for i in $(seq 100); do [ -S {EXECUTOR_SOCKET} ] && break; sleep 0.1; done; "
            "exec /tmp/policy-engine -config /etc/policy-engine/config.toml "
            "--xds-server gateway-controller:18001 --metrics-port 9003",
        ],
        network_disabled=True,
    )
    started.append(container)
    container.put_archive("/tmp", _tar({"policy-engine": engine}, mode=0o755))
    container.put_archive("/tmp", _tar({"fake_executor.py": FAKE_EXECUTOR}))
    container.start()
    logs = _wait_for_log(container, "ready: listening on")
    assert "registered policy prompt-guard v1.0.0 (python, through the Python bridge" in logs
    assert "registered policy header-guard v1.4.2 (go" in logs
    assert "registered policy go-local v0.1.0 (go" in logs
    assert f"python executor reachable at {EXECUTOR_SOCKET}" in logs
    assert "ignored arguments: --metrics-port 9003" in logs
    assert container.exec_run(["test", "-S", ENGINE_SOCKET]).exit_code == 0
    health = container.exec_run(
        [
            "python3.11",
            "-c",
            "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9002/health').read().decode())",
        ]
    )
    assert health.exit_code == 0 and b'"status":"healthy"' in health.output, health.output
    container.stop(timeout=10)
    status = container.wait(timeout=30)
    logs = container.logs().decode()
    assert status["StatusCode"] == 0, logs
    assert "policy-engine (stand-in): stopped" in logs
    with pytest.raises(docker.errors.NotFound):
        container.get_archive(ENGINE_SOCKET)


def test_engine_fails_without_a_python_executor(
    docker_client: docker.DockerClient, local_bases: BaseImages, started: list[Container]
) -> None:
    engine, _, _ = _compile_engine(docker_client, local_bases, started)
    container = docker_client.containers.create(
        local_bases.runtime,
        ["/tmp/policy-engine"],
        environment={"PYTHON_EXECUTOR_CONNECT_TIMEOUT": "1s"},
        network_disabled=True,
    )
    started.append(container)
    container.put_archive("/tmp", _tar({"policy-engine": engine}, mode=0o755))
    container.start()
    status = container.wait(timeout=60)
    logs = container.logs().decode()
    assert status["StatusCode"] == 1, logs
    assert f"python executor at {EXECUTOR_SOCKET} does not accept connections" in logs


def test_engine_builder_rejects_a_bad_build_file(
    docker_client: docker.DockerClient, local_bases: BaseImages, started: list[Container]
) -> None:
    assert local_bases.engine_builder is not None
    container = docker_client.containers.create(
        local_bases.engine_builder,
        ["-build-file", "/workspace/build.yaml", "-out-dir", "/workspace/out"],
        entrypoint=list(local_bases.engine_builder_command),
        network_disabled=True,
    )
    started.append(container)
    bad = "version: v1\npolicies:\n  - name: x\n    gomodule: a@v1\n    filePath: ./x\n"
    container.put_archive("/", _tar({"workspace/build.yaml": bad}))
    container.start()
    status = container.wait(timeout=120)
    logs = container.logs().decode()
    assert status["StatusCode"] == 1
    assert "only one of filePath, gomodule, or pipPackage may be provided" in logs


def test_stream_build_names_the_failing_step(
    docker_client: docker.DockerClient, local_bases: BaseImages, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM {local_bases.runtime}\nRUN echo about to fail && exit 3\n"
    )
    lines: list[str] = []
    with pytest.raises(BuildError) as err:
        stream_build(docker_client, log=lines.append, path=str(tmp_path))
    assert "Step 2/2 : RUN echo about to fail" in err.value.message
    assert "returned a non-zero code: 3" in err.value.message
    assert err.value.details and "about to fail" in err.value.details
    assert any(line.startswith("Step 1/2") for line in lines)
