"""A running container of the image under test, and waiting for its processes to be ready.

The container is started with testcontainers, the executor's socket directory bind-mounted to a
host temporary directory so that the smoke test can talk to the executor as the Go engine does.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import suppress
from pathlib import Path, PurePosixPath

from docker.errors import DockerException
from docker.models.containers import Container

from gateway_builder import defaults
from gateway_builder.smoke import checks
from gateway_builder.smoke.report import StepFailed
from gateway_executor.registry import PolicyEntry

#: The TCP transport: the executor's own debug listener (``--py.debug-listen``, forwarded by
#: the entrypoint as ``--debug-listen``), published on 127.0.0.1 only.
DEBUG_LISTEN_ARGS = ("--py.debug-listen", f"0.0.0.0:{defaults.EXECUTOR_DEBUG_PORT}")
TCP_PORT = f"{defaults.EXECUTOR_DEBUG_PORT}/tcp"
#: Seconds between two looks at a container (or an executor) that is not there yet.
POLL_S = 0.2


def _socket_dir() -> Path:
    """A host directory for the executor's socket, writable by the runtime user."""
    path = Path(tempfile.mkdtemp(prefix="gwb-smoke-"))
    if os.geteuid() == 0:
        os.chown(path, defaults.RUNTIME_UID, defaults.RUNTIME_UID)
        path.chmod(0o750)
    else:
        path.chmod(0o777)  # a private temp dir the container's user must write to
    return path


class RunningContainer:
    """One started container of the image with its socket directory."""

    def __init__(self, image: str, timeout: float, *, publish_tcp: bool = False) -> None:
        from testcontainers.core.config import testcontainers_config
        from testcontainers.core.container import DockerContainer

        if "TESTCONTAINERS_RYUK_DISABLED" not in os.environ:
            testcontainers_config.ryuk_disabled = True  # the smoke test removes its containers
        self.sock_dir = _socket_dir()
        self.started = time.monotonic()
        self._tc = (
            DockerContainer(image)
            .with_volume_mapping(str(self.sock_dir), defaults.SOCKET_DIR, "rw")
            .with_env(defaults.EXECUTOR_READY_TIMEOUT_ENV, str(max(1, int(timeout))))
        )
        if publish_tcp:
            # A random host port on 127.0.0.1 only (testcontainers' own helper binds 0.0.0.0).
            self._tc.ports[TCP_PORT] = ("127.0.0.1", None)  # type: ignore[assignment]
            self._tc.with_command(list(DEBUG_LISTEN_ARGS))
        try:
            self._tc.start()
        except BaseException:
            self.remove()  # the container may exist even though it did not start
            raise
        self.container: Container = self._tc.get_wrapped_container()

    @property
    def executor_socket(self) -> Path:
        """The executor's socket as seen from the host."""
        return self.sock_dir / PurePosixPath(defaults.PYTHON_EXECUTOR_SOCKET).name

    def tcp_address(self) -> str:
        """``127.0.0.1:PORT``: the host side of the executor's published debug listener."""
        self.container.reload()
        bound = (self.container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(TCP_PORT)
        host = next((b for b in bound or [] if b.get("HostIp") == "127.0.0.1"), None)
        if host is None:
            raise StepFailed(f"port {TCP_PORT} is not published on 127.0.0.1")
        return f"127.0.0.1:{host['HostPort']}"

    def logs(self) -> str:
        """stdout and stderr so far, decoded."""
        try:
            return self.container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        except DockerException:
            return ""

    def state(self) -> tuple[str, int]:
        """``(status, exit code)``."""
        self.container.reload()
        st = self.container.attrs.get("State", {})
        return str(st.get("Status", "")), int(st.get("ExitCode", 0))

    def exec(self, script: str) -> tuple[int, bytes]:
        """Run a POSIX sh script inside the container (as the image's user)."""
        result = self.container.exec_run(["sh", "-c", script], stdout=True, stderr=True)
        return int(result.exit_code or 0), bytes(result.output or b"")

    def processes(self) -> list[checks.Proc]:
        """The container's process table (``docker exec`` sessions excluded by the checks)."""
        code, out = self.exec(checks.PROC_DUMP_SCRIPT)
        if code != 0 and b"@@end" not in out:
            raise StepFailed(f"cannot read /proc in the container (exit {code}): {out[:200]!r}")
        return checks.parse_proc_dump(out)

    def wait_exit(self, deadline_s: float) -> tuple[int, float] | None:
        """Wait until the container exits: ``(exit code, seconds)``, or None after the deadline."""
        start = time.monotonic()
        while time.monotonic() - start < deadline_s:
            status, code = self.state()
            if status in ("exited", "dead"):
                return code, time.monotonic() - start
            time.sleep(POLL_S / 2)
        return None

    def remove(self) -> None:
        """Remove the container and its socket directory."""
        with suppress(DockerException):
            self._tc.stop()
        shutil.rmtree(self.sock_dir, ignore_errors=True)


def wait_ready(
    run: RunningContainer, entries: list[PolicyEntry], timeout: float
) -> checks.Readiness:
    """Poll the logs until the three processes report ready; StepFailed names what went wrong."""
    expect_executor = bool(entries)
    names = [e.name for e in entries]
    deadline = run.started + timeout
    while True:
        lines = checks.parse_log(run.logs())
        ready = checks.readiness(lines)
        if ready.complete(expect_executor=expect_executor):
            return ready
        _raise_policy_failure(lines, names)
        status, code = run.state()
        if status in ("exited", "dead"):
            # The logs may have grown between the two reads: judge the final ones.
            lines = checks.parse_log(run.logs())
            _raise_policy_failure(lines, names)
            raise StepFailed(_exit_cause(lines, code))
        if time.monotonic() >= deadline:
            missing = ", ".join(ready.missing(expect_executor=expect_executor))
            hint = checks.last_error_line(lines)
            raise StepFailed(
                f"not ready within {timeout:g}s: no sign of {missing}"
                + (f" (last error: {hint})" if hint else "")
            )
        time.sleep(POLL_S)


def _raise_policy_failure(lines: list[checks.LogLine], names: list[str]) -> None:
    """A policy the executor could not start fails the step with its cause (first by name)."""
    failures = checks.policy_failures(lines, names)
    if failures:
        name = sorted(failures)[0]
        raise StepFailed(f"policy {name} not ready: {failures[name]}")


def _exit_cause(lines: list[checks.LogLine], code: int) -> str:
    exited = checks.exited_process(lines)
    if exited is not None:
        name, status = exited
        last = checks.last_line(lines, checks.TAG_OF.get(name, ""))
        return (
            f"container exited with status {code} before ready: the {name} exited with "
            f"status {status}" + (f": {last}" if last else "")
        )
    last = checks.last_line(lines, checks.TAG_ENTRYPOINT) or checks.last_error_line(lines)
    return f"container exited with status {code} before ready" + (f": {last}" if last else "")
