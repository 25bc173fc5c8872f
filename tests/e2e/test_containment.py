"""A hostile policy inside the built image: every attack of a policy on the container must fail.

One image is built per session from ``tests/fixtures/containment`` (a hostile ``attacker`` policy
and a harmless ``neighbour`` with two workers; the default ``build.yaml``), with the local bases.
The test acts as the Go engine on the executor's socket (bind-mounted from the host) and sends
the attacker one request per attack; the attacker reports what the kernel let it do.

Then the same image runs with ``--cap-drop ALL`` and with ``no-new-privileges``: it must still
serve, log a warning and say in ``HealthCheck`` which protection is off.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.models.containers import Container
from gwb_build_helpers import Workspace

from gateway_builder import defaults
from gateway_builder.models import BaseImages
from gateway_executor.client import ExecutorClient, build_request
from gateway_executor.samples import outcome_of, parse_sample

pytestmark = [pytest.mark.e2e, pytest.mark.network]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "containment"
TAG = "gateway-builder-e2e/containment:latest"
SECRET = f"s3cr3t-{uuid.uuid4().hex}"
ALLOWED = "the-one-variable-the-attacker-may-see"
#: What the container's environment holds besides the usual: a secret no policy may read, and
#: the one variable the attacker's manifest entry allows.
CONTAINER_ENV = {
    "CONTAINMENT_SECRET": SECRET,
    "AWS_SECRET_ACCESS_KEY": SECRET,
    "CONTAINMENT_ALLOWED": ALLOWED,
}
READY_S = 120.0


@pytest.fixture(scope="session")
def containment_image(local_bases: BaseImages, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The attacker and its neighbour built into an image (the layer cache keeps it cheap)."""
    root = tmp_path_factory.mktemp("containment-ws")
    (root / "manifests").mkdir()
    shutil.copy(defaults.REPO_DIR / "manifests" / "build.yaml", root / "manifests")
    shutil.copy(FIXTURES / "python-build.yaml", root / "manifests")
    for name in ("attacker", "neighbour"):
        shutil.copytree(FIXTURES / name, root / "containment" / name)
    data = Workspace(root).build("--out", str(root / "context"), "--tag", TAG)
    return str(data["image"])


@dataclass
class Box:
    """A running container of the image, and a client on its executor's socket."""

    container: Container
    sock_dir: Path
    client: ExecutorClient
    instances: dict[str, str] = field(default_factory=dict)

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace")

    def exec(self, script: str) -> str:
        """Run a sh script in the container as the image's user; its output."""
        result = self.container.exec_run(["sh", "-c", script])
        return bytes(result.output or b"").decode(errors="replace")

    def call(self, policy: str, path: str) -> Any:
        """One request-header call of ``policy`` with ``path``; the attacker's JSON answer, or
        the outcome for another policy."""
        sample = parse_sample(
            policy,
            {
                "description": path,
                "phase": "request_headers",
                "request": {"method": "GET", "path": path, "headers": {}},
                "expect": {"kind": "immediate_response"},
            },
            path,
        )
        request = build_request(
            "request_headers",
            instance_id=self.instances[policy],
            policy_name=policy,
            policy_version="v1.0.0",
            request=sample.request,
        )
        outcome = outcome_of(self.client.execute(request, timeout=60), sample)
        if policy != "attacker":
            return outcome
        assert outcome.kind == "immediate_response", outcome.summary()
        return json.loads(outcome.body or b"{}")

    def pids(self) -> dict[str, int]:
        """tini, the executor, the engine and the router, by name (read from /proc as root)."""
        table = self.exec(
            "for d in /proc/[0-9]*; do printf '%s ' \"${d#/proc/}\"; "
            "tr '\\0' ' ' < $d/cmdline 2>/dev/null; echo; done"
        )
        found: dict[str, int] = {}
        for line in table.splitlines():
            pid, _, cmd = line.partition(" ")
            if cmd.startswith(defaults.TINI_PATH):
                found["tini"] = int(pid)
            elif cmd.startswith(defaults.ENGINE_BINARY):
                found["engine"] = int(pid)
            elif defaults.ENVOY_BINARY in cmd.split()[:3]:
                found["router"] = int(pid)
            elif "-m gateway_executor" in cmd:
                found["executor"] = int(pid)
        return found


def _socket_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="gwb-containment-"))
    os.chown(path, defaults.RUNTIME_UID, defaults.RUNTIME_UID)
    path.chmod(0o750)
    return path


@contextlib.contextmanager
def running(client: docker.DockerClient, image: str, **options: Any) -> Iterator[Box]:
    """Start the image (with ``options`` for ``containers.run``), wait until the executor is
    ready, open an instance of each policy; remove everything afterwards."""
    sock_dir = _socket_dir()
    container = client.containers.run(
        image,
        [],
        detach=True,
        environment=CONTAINER_ENV,
        volumes={str(sock_dir): {"bind": defaults.SOCKET_DIR, "mode": "rw"}},
        network_disabled=True,
        **options,
    )
    executor = ExecutorClient(str(sock_dir / Path(defaults.PYTHON_EXECUTOR_SOCKET).name))
    try:
        box = Box(container, sock_dir, executor)
        deadline = time.monotonic() + READY_S
        while not (sock_dir / Path(defaults.PYTHON_EXECUTOR_READY_FILE).name).exists():
            container.reload()
            assert container.status == "running", box.logs()
            assert time.monotonic() < deadline, f"executor not ready:\n{box.logs()}"
            time.sleep(0.2)
        for policy in ("attacker", "neighbour"):
            init = executor.init_policy(policy, "v1.0.0")
            assert init.success, init.error_message
            box.instances[policy] = init.instance_id
        yield box
    finally:
        executor.close()
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
        shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def box(docker_client: docker.DockerClient, containment_image: str) -> Iterator[Box]:
    """One container with every protection (Docker's default capabilities)."""
    with running(docker_client, containment_image) as started:
        yield started


def cpu_list(text: str) -> list[int]:
    """``0-2,4`` -> ``[0, 1, 2, 4]``."""
    cpus: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus += range(int(first), int(last or first) + 1)
    return cpus


def env_names(me: dict[str, Any]) -> set[str]:
    """The worker's environment variables, without the one CPython adds itself (PEP 538 sets
    LC_CTYPE when it starts in the C locale)."""
    return {k for k, v in me["environ"].items() if (k, v) != ("LC_CTYPE", "C.UTF-8")}


def registry_entry(box: Box, name: str) -> dict[str, Any]:
    registry = json.loads(box.exec(f"cat {defaults.REGISTRY_PATH}"))
    entry: dict[str, Any] = next(p for p in registry["policies"] if p["name"] == name)
    return entry


def refused(results: dict[str, Any]) -> list[str]:
    """The attacks the kernel let through (empty when every one was refused)."""
    return [
        f"{target}: {outcome}"
        for target, outcome in results.items()
        if not str(outcome).startswith("PermissionError")
    ]


def assert_all_alive(box: Box, before: dict[str, int]) -> None:
    """tini, the executor, the engine and the router are the same processes and serve."""
    box.container.reload()
    assert box.container.status == "running", box.logs()
    assert box.pids() == before
    assert box.client.health().ready


# ---- every protection on -----------------------------------------------------------------------


def test_a_policy_runs_under_its_own_uid_with_nothing_to_gain(box: Box) -> None:
    me = box.call("attacker", "/whoami")
    entry = registry_entry(box, "attacker")
    # Its own uid and gid, recorded in the registry and known to the image.
    assert me["uid"] == me["gid"] == entry["uid"] == entry["gid"]
    assert me["uid"] != defaults.RUNTIME_UID and me["uid"] >= defaults.POLICY_UID_FIRST
    assert box.exec(f"getent passwd {me['uid']}").startswith("pol-attacker:")
    assert me["groups"] == []
    # No capability in any set; no_new_privs.
    caps = {k: int(v, 16) for k, v in me["status"].items() if k in ("CapInh", "CapPrm", "CapEff")}
    caps["CapAmb"] = int(me["status"].get("CapAmb", "0"), 16)
    assert caps == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapAmb": 0}
    assert me["status"]["NoNewPrivs"] == "1"
    # A private home and temp dir: its own, closed to others, writable.
    assert me["environ"]["HOME"] == me["environ"]["TMPDIR"] == entry["home"]
    assert me["home"] == {"uid": me["uid"], "mode": "0o700", "writable": True}
    # The neighbour runs under another uid of its own.
    neighbour = registry_entry(box, "neighbour")
    assert neighbour["uid"] not in (me["uid"], defaults.RUNTIME_UID)
    uids = box.exec(
        "for d in /proc/[0-9]*; do case $(tr '\\0' ' ' < $d/cmdline 2>/dev/null) in "
        "/opt/venvs/neighbour/*) awk '/^Uid:/ {print $2}' $d/status;; esac; done"
    ).split()
    assert uids and set(uids) == {str(neighbour["uid"])}
    # Under another uid it still got every CPU (the executor keeps its own threads on one).
    allowed = box.exec("awk '/^Cpus_allowed_list:/ {print $2}' /proc/1/status").strip()
    assert me["cpus"] == cpu_list(allowed)
    # And it cannot become the runtime user or root again.
    assert refused(box.call("attacker", "/setuid")) == []


def test_a_policy_sees_only_the_environment_its_manifest_allows(box: Box) -> None:
    me = box.call("attacker", "/whoami")
    assert env_names(me) == {"PATH", "HOME", "TMPDIR", "CONTAINMENT_ALLOWED"}
    assert me["environ"]["CONTAINMENT_ALLOWED"] == ALLOWED
    stolen = box.call("attacker", "/secrets")
    assert stolen["found"] == []
    # The only environments it can read are its own processes'.
    for pid in stolen["readable_environ"]:
        owner = box.exec(f"awk '/^Uid:/ {{print $2}}' /proc/{pid}/status").strip()
        assert owner in ("", str(me["uid"])), (pid, owner)


def test_a_policy_cannot_read_or_write_the_memory_of_tini_executor_engine_or_router(
    box: Box,
) -> None:
    results = box.call("attacker", "/memory")
    assert {t.split(":")[0] for t in results} == {"tini", "executor", "engine", "router"}
    flat = {f"{t} {what}": r for t, per in results.items() for what, r in per.items()}
    assert refused(flat) == []


def test_executor_engine_and_router_are_not_dumpable(box: Box) -> None:
    # Not even a process of their own uid (this exec runs as the image's user) may read them:
    # the kernel gives the private files of a non-dumpable process's /proc/<pid> to root.
    for name in ("executor", "engine", "router"):
        pid = box.pids()[name]
        assert box.exec(f"stat -c %u /proc/{pid}/environ /proc/{pid}/mem").split() == ["0", "0"]
        assert "Permission denied" in box.exec(f"cat /proc/{pid}/environ 2>&1"), name
    # tini and the entrypoint are dumpable (the kernel hands their files to their own uid).
    assert box.exec("stat -c %u /proc/1/environ").strip() == str(defaults.RUNTIME_UID)


def test_a_policy_cannot_touch_the_executor_socket(box: Box) -> None:
    assert refused(box.call("attacker", "/socket")) == []
    assert (box.sock_dir / Path(defaults.PYTHON_EXECUTOR_SOCKET).name).is_socket()
    assert not (box.sock_dir / "planted").exists()
    assert box.client.health().ready


def test_a_policy_cannot_kill_its_neighbours_workers_or_enter_its_home(box: Box) -> None:
    results = box.call("attacker", "/neighbour")
    # it found both workers and their fork server (two workers: forked by one) ...
    assert len(results["kill"]) == 3
    assert refused(results["kill"]) == []  # ... and could kill neither,
    assert refused(results["home"]) == []  # nor read or write the neighbour's home
    assert box.call("neighbour", "/").kind == "modify"
    status = {p.name: p for p in box.client.health().policies}["neighbour"]
    assert status.ready and not status.quarantined


def test_a_policy_cannot_kill_tini_executor_engine_or_router(box: Box) -> None:
    before = box.pids()
    assert set(before) == {"tini", "executor", "engine", "router"}
    results = box.call("attacker", "/kill")
    assert {t.split(":")[0] for t in results} == {"tini", "executor", "engine", "router"}
    assert refused(results) == []
    time.sleep(1.0)  # a signal that got through would have ended something by now
    assert_all_alive(box, before)
    assert box.call("neighbour", "/").kind == "modify"


def test_with_docker_defaults_no_protection_is_off(box: Box) -> None:
    assert list(box.client.health().protections_off) == []
    logs = box.logs()
    assert "protection off" not in logs and "warning" not in logs.lower()
    # Workers under other uids are forked (not vforked): gRPC's fork handlers stay quiet.
    assert "fork_posix" not in logs


# ---- protections the container denies: the image still serves, and says so ---------------------


@pytest.mark.parametrize(
    "options",
    [{"cap_drop": ["ALL"]}, {"security_opt": ["no-new-privileges"]}],
    ids=["cap-drop-all", "no-new-privileges"],
)
def test_without_the_capabilities_it_serves_and_reports_what_is_off(
    docker_client: docker.DockerClient, containment_image: str, options: dict[str, Any]
) -> None:
    with running(docker_client, containment_image, **options) as box:
        me = box.call("attacker", "/whoami")
        assert me["uid"] == defaults.RUNTIME_UID  # no uid of its own without CAP_SETUID ...
        # ... but still no capability, no_new_privs and only the allowed environment.
        assert int(me["status"]["CapEff"], 16) == 0 and me["status"]["NoNewPrivs"] == "1"
        assert env_names(me) == {"PATH", "HOME", "TMPDIR", "CONTAINMENT_ALLOWED"}
        assert box.call("neighbour", "/").kind == "modify"
        health = box.client.health()
        assert health.ready
        off = {p.name: p.detail for p in health.protections_off}
        assert "per-policy uids" in off, off
        assert "CAP_SETUID" in off["per-policy uids"]
        logs = box.logs()
        assert "[WARNING]" in logs and "protection off: per-policy uids" in logs
        assert "warning: the container denies the executor" in logs
