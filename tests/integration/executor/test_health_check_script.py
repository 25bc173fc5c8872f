"""The image's HEALTHCHECK script (rendered ``health-check.sh``) against a real executor and
small HTTP servers standing in for the policy engine's admin port and the router."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from executor_harness import REPO, RunningExecutor, policy_entry

from gateway_builder.render.templating import HealthCheckValues, render_health_check
from gateway_executor.probe import verdict
from gateway_executor.proto import python_executor_pb2 as pb

pytestmark = pytest.mark.integration

Start = Callable[..., RunningExecutor]
TIMEOUT_S = 2


class Answer(BaseHTTPRequestHandler):
    """200 on every path."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def http_port() -> Iterator[Callable[[], int]]:
    servers: list[ThreadingHTTPServer] = []

    def serve() -> int:
        server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return int(server.server_address[1])

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def script(tmp_path: Path, ex: RunningExecutor) -> Path:
    path = tmp_path / "health-check.sh"
    path.write_text(
        render_health_check(
            HealthCheckValues(
                has_python_policies=True,
                executor_python=sys.executable,
                executor_dir=str(REPO),
                executor_socket=str(ex.socket),
                probe_timeout=TIMEOUT_S,
            )
        )
    )
    path.chmod(0o755)
    return path


def check(path: Path, **env: str) -> tuple[int, str]:
    proc = subprocess.run(
        [str(path)],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def test_health_check_asks_all_three_and_a_stopped_process_is_unhealthy(
    start_executor: Start, venvs: dict[str, Path], tmp_path: Path, http_port: Callable[[], int]
) -> None:
    ex = start_executor([policy_entry("echo", "ops-policy", venvs["py312"])]).wait_ready()
    path = script(tmp_path, ex)
    env = {"POLICY_ENGINE_ADMIN_PORT": str(http_port()), "ROUTER_HTTP_PORT": str(http_port())}
    code, out = check(path, **env)
    # (plus the protections that are off on this machine, if any)
    assert code == 0 and out.startswith("healthy: executor: ready: 1 policies"), out
    assert out.endswith("; engine and router answer")

    ex.proc.send_signal(signal.SIGSTOP)
    try:
        code, out = check(path, **env)
    finally:
        ex.proc.send_signal(signal.SIGCONT)
    assert code == 1 and out == f"unhealthy: executor: no answer within {TIMEOUT_S}s", out
    assert check(path, **env)[0] == 0

    # An engine that accepts connections but never answers (hung or stopped).
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    port = hung.getsockname()[1]
    try:
        code, out = check(path, **{**env, "POLICY_ENGINE_ADMIN_PORT": str(port)})
    finally:
        hung.close()
    assert code == 1
    assert out == f"unhealthy: engine: GET /health on port {port}: no answer within {TIMEOUT_S}s"

    # A router that is gone; and the admin /ready check when the admin interface is on.
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    closed = free.getsockname()[1]
    free.close()
    code, out = check(path, **{**env, "ROUTER_HTTP_PORT": str(closed)})
    assert (code, out) == (
        1,
        f"unhealthy: router: no HTTP answer on port {closed} within {TIMEOUT_S}s",
    )
    admin = {**env, "ROUTER_ADMIN_ENABLED": "true", "ROUTER_ADMIN_PORT": str(http_port())}
    assert check(path, **admin)[0] == 0
    code, out = check(path, **{**admin, "ROUTER_ADMIN_PORT": str(closed)})
    assert code == 1 and out.startswith("unhealthy: router: GET /ready"), out
    code, out = check(path, **{**env, "HEALTH_CHECK_TIMEOUT_SECONDS": "soon"})
    assert code == 1 and "HEALTH_CHECK_TIMEOUT_SECONDS must be" in out


def test_the_probe_counts_a_quarantined_policy_as_healthy_and_a_failed_one_not() -> None:
    resp = pb.HealthCheckResponse(ready=False, reason="b:v1: quarantined after 5 worker crashes")
    resp.policies.add(name="a", ready=True)
    resp.policies.add(name="b", ready=False, quarantined=True)
    assert verdict(resp) == (True, "ready: 2 policies (b quarantined)")
    resp.protections_off.add(name="per-policy uids", detail="no CAP_SETUID")
    assert verdict(resp)[1].endswith("; protections off: per-policy uids")
    resp.policies.add(name="c", ready=False, reason="import failed")
    assert verdict(resp)[0] is False
    starting = pb.HealthCheckResponse(reason="policies are starting")
    starting.policies.add(name="a", ready=False)
    assert verdict(starting) == (False, "not ready: policies are starting")


@pytest.mark.parametrize("has_python", [True, False])
def test_rendered_health_check_is_shellcheck_clean(tmp_path: Path, has_python: bool) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    path = tmp_path / "health-check.sh"
    path.write_text(render_health_check(HealthCheckValues(has_python_policies=has_python)))
    subprocess.run([shellcheck, str(path)], check=True)
