"""Helpers of the executor tests: real venvs (Python 3.10 and 3.12), real executor processes,
registry entries of the fixture policies and call patterns.

Fixtures are in ``conftest.py``; the helpers live in this uniquely named module so that test
files import them without depending on which ``conftest`` module pytest loaded last.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from gateway_executor.client import CallStream, ExecutorClient, build_request, cancel_request
from gateway_executor.proto import python_executor_pb2 as pb

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "executor_policies"
SDK = "apip-sdk-core==0.2.3"
#: Two venvs with conflicting versions of the same dependency.
VENV_SPECS = {
    "py310": ("3.10", ["packaging==21.3"]),
    "py312": ("3.12", ["packaging==24.2"]),
}


def headers_set(resp: pb.StreamResponse) -> dict[str, str]:
    """The headers a request-header action sets (empty for an error)."""
    return dict(resp.request_header_action.upstream_request_header_modifications.headers_to_set)


def echo_load(
    stream: CallStream, iid: str, callers: int, per_caller: int, budget_s: float
) -> tuple[int, list[str]]:
    """``callers`` threads share ``stream``, each making ``per_caller`` calls to an echoing
    header policy (path ``/c<caller>/<i>``) within ``budget_s``; returns (calls answered
    correctly, problems: lost, mismatched or wrong answers, running out of time)."""
    end = time.monotonic() + budget_s
    problems: list[str] = []
    done = [0] * callers

    def caller(n: int) -> None:
        for i in range(per_caller):
            if time.monotonic() > end:
                problems.append(f"caller {n} ran out of time after {i} calls")
                return
            path = f"/c{n}/{i}"
            req = build_request(
                "request_headers",
                instance_id=iid,
                request={"path": path},
                request_id=f"load-{n}-{i}",
            )
            try:
                resp = stream.call(req, 60)
            except Exception as exc:
                problems.append(f"{req.request_id}: {exc!r}")
                return
            if resp.request_id != req.request_id or headers_set(resp).get("x-echo") != path:
                problems.append(f"{req.request_id}: mismatched {resp}")
                return
            done[n] += 1

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(budget_s + 60)
    if any(t.is_alive() for t in threads):
        problems.append("a caller thread did not finish")
    return sum(done), problems


def cancel_then_call(
    stream: CallStream,
    req: pb.StreamRequest,
    pause_s: float,
    reason: str,
    follow_path: str,
    timeout: float,
) -> tuple[Future[pb.StreamResponse], pb.StreamResponse, float]:
    """Submit header call ``req``, cancel it after ``pause_s``, then make a follow-up call on the
    same instance (path ``follow_path``); returns (the cancelled call's future, the follow-up's
    response, seconds from the cancel to that response)."""
    fut = stream.submit(req)
    time.sleep(pause_s)
    stream.submit(cancel_request(req.request_id, pb.PHASE_REQUEST_HEADERS, reason))
    t0 = time.monotonic()
    follow = stream.call(
        build_request(
            "request_headers", instance_id=req.instance_id, request={"path": follow_path}
        ),
        timeout,
    )
    return fut, follow, time.monotonic() - t0


def find_python(version: str) -> str | None:
    """An interpreter for ``version``: a pyenv install, else one on PATH (not a pyenv shim)."""
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    hits = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"))
    if hits:
        return hits[-1]
    found = shutil.which(f"python{version}")
    return found if found and "/shims/" not in found else None


def _uv() -> str:
    local = Path(sys.executable).parent / "uv"
    return str(local) if local.exists() else (shutil.which("uv") or "uv")


def make_venv(where: Path, version: str, deps: list[str]) -> Path:
    """``python -m venv`` with the given interpreter, then install the SDK and ``deps``."""
    python = find_python(version)
    if python is None:
        pytest.skip(f"no Python {version} interpreter on this machine")
    subprocess.run([python, "-m", "venv", "--without-pip", str(where)], check=True)
    target = where / "bin" / "python"
    env = {
        **os.environ,
        "UV_NO_CONFIG": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "SSL_CERT_FILE": os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"),
    }
    errors = []
    for extra in (["--offline"], []):  # the uv cache first, then the index
        proc = subprocess.run(
            [_uv(), "pip", "install", "--python", str(target), *extra, SDK, *deps],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode == 0:
            return target
        errors.append(proc.stderr.strip().splitlines()[-1:] if proc.stderr else "")
    pytest.skip(f"cannot install {SDK} {deps} into a venv: {errors}")


def policy_entry(name: str, fixture: str, python: Path, **over: Any) -> dict[str, Any]:
    """A registry entry for one of the fixture policies."""
    pkg = fixture.replace("-", "_")
    entry: dict[str, Any] = {
        "name": name,
        "version": "v1.0.0",
        "module": f"{pkg}.policy",
        "sys_path": [str(FIXTURES / fixture)],
        "python": str(python),
        "python_version": "",
        "failure_mode": "fail",
        "timeout_ms": 10000,
        "isolation": "worker",
        "workers": 1,
        "params": {},
        "source": f"path:{fixture}",
    }
    entry.update(over)
    return entry


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        rest = text[text.rindex(")") + 2 :].split()
        if rest[0] == "Z":
            continue
        children.setdefault(int(rest[1]), []).append(int(text.split(" ", 1)[0]))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def comm(pid: int) -> str:
    """The process's name (``/proc/<pid>/comm``), "" once gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


class RunningExecutor:
    """``python -m gateway_executor`` in a subprocess on a socket in a temp dir."""

    def __init__(
        self,
        work: Path,
        policies: list[dict[str, Any]],
        *extra: str,
        env: dict[str, str] | None = None,
    ) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.work = work
        self.registry = work / "policy-registry.json"
        self.registry.write_text(
            json.dumps(
                {
                    "format": "gateway-builder/policy-registry",
                    "format_version": 1,
                    "policies": sorted(policies, key=lambda p: p["name"]),
                },
                indent=2,
            )
        )
        self.socket = work / "executor.sock"
        self.ready = work / "executor.ready"
        self.log = work / "executor.log"
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway_executor",
                    "--registry",
                    str(self.registry),
                    "--listen",
                    str(self.socket),
                    "--ready-file",
                    str(self.ready),
                    "--log-level",
                    "debug",
                    *extra,
                ],
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._client: ExecutorClient | None = None

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not cond():
            assert self.proc.poll() is None, f"executor exited ({what}):\n{self.logs()}"
            assert time.monotonic() < end, f"timed out waiting for {what}:\n{self.logs()}"
            time.sleep(0.05)

    def wait_ready(self, timeout: float = 90) -> RunningExecutor:
        self.wait_for(self.ready.exists, timeout, "the ready file")
        return self

    def wait_started(self, timeout: float = 90) -> RunningExecutor:
        """Until start-up finished (ready or not)."""
        self.wait_for(self.socket.exists, timeout, "the socket")
        self.wait_for(
            lambda: self.client.health().reason != "policies are starting",
            timeout,
            "start-up to finish",
        )
        return self

    @property
    def client(self) -> ExecutorClient:
        if self._client is None:
            self._client = ExecutorClient(str(self.socket), timeout=30)
        return self._client

    def workers(self) -> set[int]:
        """The executor's policy processes, its policies' fork servers left out."""
        return {p for p in descendants(self.proc.pid) if comm(p) != "policy-forks"}

    def fork_servers(self) -> set[int]:
        return {p for p in descendants(self.proc.pid) if comm(p) == "policy-forks"}

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"executor ignored signal {sig}:\n{self.logs()}") from None
