"""Policy output through the executor's own pipes: prefixed, escaped, bounded, never blocking.

Real executor processes, the ``hostile-policy`` fixture printing forged log lines and flooding
its stdout while nobody reads the executor's stdout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from executor_harness import REPO, RunningExecutor, headers_set, policy_entry

from gateway_executor.client import ExecutorClient, build_request

pytestmark = pytest.mark.integration

Start = Callable[..., RunningExecutor]


def test_policy_output_is_prefixed_and_cannot_forge_executor_lines(
    start_executor: Start, venvs: dict[str, Path]
) -> None:
    ex = start_executor([policy_entry("hostile", "hostile-policy", venvs["py312"])]).wait_ready()
    iid = ex.client.init_policy("hostile", "v1.0.0").instance_id
    [pid] = ex.workers()
    forged = "2030-01-01 00:00:00,000 [INFO] gateway_executor: executor ready: 99 policies"
    path = "/print/" + forged.replace(" ", " ") + "~\rsecond"
    resp = ex.client.execute(
        build_request("request_headers", instance_id=iid, request={"path": path})
    )
    assert resp.WhichOneof("payload") == "request_header_action", resp
    prefix = f"[policy hostile pid {pid} out] "
    ex.wait_for(lambda: "forged\\x1b[2J" in ex.logs(), 10, "the policy's lines")
    assert ex.stop() == 0
    lines = ex.logs().splitlines()
    assert prefix + forged in lines
    assert prefix + "\\x0dsecond" in lines  # a carriage return cannot overwrite a line
    assert prefix + "2030-01-01 00:00:00,000 [ERROR] gateway_executor: forged\\x1b[2J" in lines
    # Written without a final newline: printed when the worker ended.
    assert f"[policy hostile pid {pid} err] a line without a newline at the end" in lines
    # Every line is the executor's own (timestamp first) or a policy's (its prefix first).
    own = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[[A-Z]+\] ")
    assert [x for x in lines if not (own.match(x) or x.startswith("[policy "))] == []
    assert not [x for x in lines if x.startswith("2030-")]


def test_a_policy_flooding_stdout_blocks_nothing_while_nobody_reads_the_executor(
    venvs: dict[str, Path], tmp_path: Path
) -> None:
    """The executor's stdout is a pipe nobody reads. A policy writes 32 MiB to its stdout:
    its call and the next ones are answered, and once stdout is read again the executor says
    how many lines it dropped."""
    registry = tmp_path / "registry.json"
    entry = policy_entry("hostile", "hostile-policy", venvs["py312"], timeout_ms=30000)
    registry.write_text(
        json.dumps(
            {"format": "gateway-builder/policy-registry", "format_version": 1, "policies": [entry]}
        )
    )
    sock, ready = tmp_path / "ex.sock", tmp_path / "ready"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway_executor",
            "--registry",
            str(registry),
            "--listen",
            str(sock),
            "--ready-file",
            str(ready),
            "--log-level",
            "debug",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    client = None
    try:
        end = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < end, "executor did not start"
            time.sleep(0.05)
        client = ExecutorClient(str(sock), timeout=60)
        iid = client.init_policy("hostile", "v1.0.0").instance_id
        for i, path in enumerate(["/flood/32", "/ok/1", "/flood/8", "/ok/2"]):
            t0 = time.monotonic()
            resp = client.execute(
                build_request("request_headers", instance_id=iid, request={"path": path}),
                timeout=60,
            )
            assert headers_set(resp).get("x-echo") == path, (i, resp)
            assert time.monotonic() - t0 < 25, f"{path} took {time.monotonic() - t0:.1f}s"
        assert client.health().ready
        # Now read stdout: the writer catches up and reports what it dropped.
        assert proc.stdout is not None
        seen = bytearray()
        out = proc.stdout.fileno()

        def read() -> None:
            while chunk := os.read(out, 1 << 20):
                seen.extend(chunk)

        threading.Thread(target=read, daemon=True).start()
        end = time.monotonic() + 30
        while b"dropped" not in seen and time.monotonic() < end:
            time.sleep(0.1)
        text = bytes(seen).decode("utf-8", "replace")
        assert re.search(r"dropped \d+ lines of policy output", text), text[-2000:]
        assert "executor ready: 1 policies" in text
    finally:
        if client is not None:
            client.close()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
