"""Start-up failures, quarantine, shutdown, orphans, transports, configuration errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from executor_harness import REPO, RunningExecutor, alive, policy_entry

from gateway_executor.client import ExecutorClient, build_request

pytestmark = pytest.mark.integration

Start = Callable[..., RunningExecutor]


def test_import_and_factory_failures_make_the_executor_not_ready(
    start_executor: Start, venvs: dict[str, Path]
) -> None:
    py = venvs["py312"]
    ex = start_executor(
        [
            policy_entry("good", "header-policy", py),
            policy_entry("no-import", "broken-import", py),
            policy_entry("bad-params", "broken-factory", py),
            policy_entry("mismatch", "mode-mismatch", py),
            policy_entry("no-python", "header-policy", Path("/nonexistent/venv/bin/python")),
        ]
    ).wait_started()
    health = ex.client.health()
    assert not health.ready and health.loaded_policies == 1
    by = {p.name: p for p in health.policies}
    assert by["good"].ready
    assert "ModuleNotFoundError" in by["no-import"].reason
    assert "this_module_does_not_exist_anywhere" in by["no-import"].reason
    assert "parameter 'required' is missing" in by["bad-params"].reason
    assert "request_body_mode=STREAM" in by["mismatch"].reason
    assert "does not exist" in by["no-python"].reason
    assert "no-import" in health.reason
    assert not ex.ready.exists()
    logs = ex.logs()
    assert (
        "policy no-import:v1.0.0 failed: import broken_import.policy: ModuleNotFoundError" in logs
    )
    assert "executor not ready" in logs
    init = ex.client.init_policy("no-import", "v1.0.0")
    assert not init.success and "not ready" in init.error_message
    # The healthy policy still serves.
    iid = ex.client.init_policy("good", "v1.0.0").instance_id
    resp = ex.client.execute(build_request("request_headers", instance_id=iid))
    assert resp.WhichOneof("payload") == "request_header_action"
    # With params that satisfy it, the factory policy's InitPolicy would work: the registry
    # params are what the start-up check used.


def test_repeated_crashes_quarantine_the_policy(
    start_executor: Start, venvs: dict[str, Path]
) -> None:
    ex = start_executor(
        [policy_entry("flaky", "chaos-policy", venvs["py310"], workers=2, timeout_ms=20000)]
    ).wait_ready()
    iid = ex.client.init_policy("flaky", "v1.0.0").instance_id
    kinds = []
    for _ in range(8):
        resp = ex.client.execute(
            build_request("request_headers", instance_id=iid, request={"path": "/exit"})
        )
        kinds.append(resp.error.error_type)
        if resp.error.error_type == "quarantined":
            break
    assert kinds[0] == "worker_crashed" and kinds[-1] == "quarantined", kinds
    health = ex.client.health()
    [status] = health.policies
    assert status.quarantined and not status.ready and not health.ready
    assert "quarantined after 5 worker crashes" in status.reason
    assert "quarantined" in health.reason
    assert not ex.workers(), "a quarantined policy keeps no processes"


def test_sigterm_finishes_in_flight_calls_then_leaves_nothing(
    start_executor: Start, venvs: dict[str, Path]
) -> None:
    ex = start_executor(
        [policy_entry("slow", "chaos-policy", venvs["py312"], workers=2)], "--shutdown-grace", "10"
    ).wait_ready()
    iid = ex.client.init_policy("slow", "v1.0.0").instance_id
    workers = ex.workers()
    assert len(workers) == 2
    client = ExecutorClient(str(ex.socket))
    result: list[object] = []
    req = build_request("request_headers", instance_id=iid, request={"path": "/sleep/1.5"})
    t = threading.Thread(target=lambda: result.append(client.execute(req, 30)))
    t.start()
    time.sleep(0.5)
    ex.proc.send_signal(signal.SIGTERM)
    t.join(20)
    assert (
        result
        and result[0].request_header_action.upstream_request_header_modifications.headers_to_set[
            "x-slept"
        ]
        == "1"
    ), result  # type: ignore[attr-defined]
    assert ex.proc.wait(20) == 0
    client.close()
    time.sleep(0.2)
    assert not [p for p in workers if alive(p)]
    assert not ex.socket.exists() and not ex.ready.exists()
    assert "executor stopped" in ex.logs()


def test_killed_executor_leaves_no_orphans(start_executor: Start, venvs: dict[str, Path]) -> None:
    ex = start_executor(
        [
            policy_entry("a", "header-policy", venvs["py310"], workers=2),
            policy_entry("b", "header-policy", venvs["py312"], workers=2),
        ]
    ).wait_ready()
    workers = ex.workers()
    assert len(workers) == 4
    ex.proc.kill()
    ex.proc.wait(10)
    end = time.monotonic() + 5
    while [p for p in workers if alive(p)] and time.monotonic() < end:
        time.sleep(0.05)
    assert not [p for p in workers if alive(p)], "workers outlived a SIGKILLed executor"


def test_tcp_listen_for_debugging(
    start_executor: Start, venvs: dict[str, Path], tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    registry = tmp_path / "r.json"
    registry.write_text(
        json.dumps(
            {
                "format": "gateway-builder/policy-registry",
                "format_version": 1,
                "policies": [policy_entry("h", "header-policy", venvs["py312"])],
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway_executor",
            "--registry",
            str(registry),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        client = ExecutorClient(f"127.0.0.1:{port}")
        client.wait_for_channel(20)
        end = time.monotonic() + 30
        while not client.health().ready:
            assert time.monotonic() < end
            time.sleep(0.05)
        iid = client.init_policy("h", "v1.0.0").instance_id
        resp = client.execute(build_request("request_headers", instance_id=iid))
        assert resp.WhichOneof("payload") == "request_header_action"
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert f"listening on 127.0.0.1:{port}" in out.decode()


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway_executor", *args],
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_invalid_environment_is_an_error(tmp_path: Path) -> None:
    res = _run(
        ["--registry", str(tmp_path / "r.json"), "--listen", str(tmp_path / "s")],
        env={"PYTHON_POLICY_WORKERS": "many"},
    )
    assert res.returncode == 2
    assert "PYTHON_POLICY_WORKERS: expected a positive integer, got 'many'" in res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_registry_version_is_refused(tmp_path: Path) -> None:
    registry = tmp_path / "r.json"
    registry.write_text(
        json.dumps(
            {"format": "gateway-builder/policy-registry", "format_version": 7, "policies": []}
        )
    )
    res = _run(["--registry", str(registry), "--listen", str(tmp_path / "s.sock")])
    assert res.returncode == 2
    assert "format_version 7 is not supported" in res.stdout + res.stderr
    assert not (tmp_path / "s.sock").exists()


def test_stale_socket_is_replaced_and_a_regular_file_is_not(
    start_executor: Start, venvs: dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "ex" / "executor.sock"
    path.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    ex = start_executor([policy_entry("h", "header-policy", venvs["py312"])]).wait_ready()
    assert ex.client.health().ready
    other = tmp_path / "not-a-socket"
    other.write_text("keep me")
    registry = ex.registry
    res = _run(["--registry", str(registry), "--listen", str(other)])
    assert res.returncode == 2 and "is not a socket" in res.stdout + res.stderr
    assert other.read_text() == "keep me"


def test_debug_tcp_listener_next_to_the_unix_socket(
    start_executor: Start, venvs: dict[str, Path]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ex = start_executor(
        [policy_entry("h", "header-policy", venvs["py312"])], "--debug-listen", f"127.0.0.1:{port}"
    ).wait_started()
    tcp = ExecutorClient(f"127.0.0.1:{port}")
    try:
        tcp.wait_for_channel(20)
        # Both transports reach the same executor: an instance made on one serves the other.
        iid = ex.client.init_policy("h", "v1.0.0").instance_id
        resp = tcp.execute(build_request("request_headers", instance_id=iid))
        assert resp.WhichOneof("payload") == "request_header_action"
        assert [p.name for p in tcp.health().policies] == ["h"]
    finally:
        tcp.close()
