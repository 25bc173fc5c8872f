"""The stand-ins shipped in the local bases, run on the host: router script and Go sources."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest

from gateway_builder.bases import ASSETS_DIR

ROUTER = ASSETS_DIR / "runtime" / "envoy-standin.py"


def _router_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("envoy_standin", ROUTER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_router_parses_envoy_arguments() -> None:
    router = _router_module()
    known, ignored = router.parse_args(
        [
            "-c",
            "/etc/envoy/envoy.yaml",
            "--config-yaml",
            "admin: {}",
            "--log-level=debug",
            "--concurrency",
            "2",
            "--drain-time-s",
            "15",
            "--disable-hot-restart",
        ]
    )
    assert known == {
        "config": "/etc/envoy/envoy.yaml",
        "config_yaml": "admin: {}",
        "log_level": "debug",
        "concurrency": "2",
    }
    assert ignored == ["--drain-time-s 15", "--disable-hot-restart"]
    with pytest.raises(SystemExit):
        router.parse_args(["-c"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
def test_router_serves_and_stops_on_sigterm() -> None:
    port = _free_port()
    env = {**os.environ, "ROUTER_HTTP_HOST": "127.0.0.1", "ROUTER_HTTP_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-I", str(ROUTER), "-c", "/nonexistent.yaml", "--unknown", "x"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        body = b""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/anything", timeout=2) as r:
                    assert r.status == 200
                    assert r.headers["X-Gateway-Builder-Standin"] == "router"
                    body = r.read()
                break
            except OSError:
                time.sleep(0.1)
        assert b"stand-in" in body
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "config=/nonexistent.yaml" in out
    assert "ignored arguments: --unknown x" in out
    assert "received SIGTERM" in out and "stopped" in out


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("go") is None, reason="Go is not installed on this host")
def test_go_builder_and_engine_unit_tests(tmp_path: Path) -> None:
    """go vet + go test of the stand-in builder (which compiles and runs an engine)."""
    builder = ASSETS_DIR / "engine-builder" / "builder"
    env = {
        **os.environ,
        "CGO_ENABLED": "0",
        "GOPROXY": "off",
        "GOFLAGS": "-mod=mod",
        "GOTOOLCHAIN": "local",
    }
    env.setdefault("GOCACHE", str(tmp_path / "gocache"))
    for cmd in (["go", "vet", "./..."], ["go", "test", "-count=1", "./..."]):
        done = subprocess.run(
            cmd, cwd=builder, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run(
        ["go", "vet", "./..."],
        cwd=builder.parent / "policy-engine",
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
