"""The smoke test's steps, run in order against the image; the first failure stops the run.

Steps, each timed: ``inputs`` (registry and samples), ``start`` (three processes ready under
tini, none root), ``protocol`` (HealthCheck, InitPolicy, every sample through ExecuteStream),
``isolation`` (each policy's own dependency versions), ``fail-fast`` (a second container whose
executor is killed must exit non-zero) and ``shutdown`` (SIGTERM: exit 0 with the ordered stop
lines). Later steps are reported as skipped, and the failing step's container logs kept for the
error's details.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from docker.errors import APIError, DockerException, ImageNotFound

from gateway_builder import defaults
from gateway_builder.dockerd import docker_client, docker_host
from gateway_builder.errors import BuildError, InputError
from gateway_builder.options import SmokeOptions
from gateway_builder.redact import redact_text, redact_url
from gateway_builder.smoke import checks
from gateway_builder.smoke.container import RunningContainer, wait_ready
from gateway_builder.smoke.inputs import Inputs, image_inputs, load_inputs
from gateway_builder.smoke.protocol import (
    TRANSPORTS,
    call,
    check_health,
    run_samples,
    unix_problem,
    wait_answering,
)
from gateway_builder.smoke.report import (
    PolicyResult,
    SmokeReport,
    SmokeTestError,
    StepFailed,
    StepResult,
    failure_details,
)
from gateway_builder.ui import UI
from gateway_executor.client import ExecutorClient
from gateway_executor.proto import python_executor_pb2 as pb

STEPS = ("inputs", "start", "protocol", "isolation", "fail-fast", "shutdown")


class _Smoke:
    """State shared by the steps of one smoke test."""

    def __init__(
        self, image: str, context_dir: Path | None, timeout: float, transport: str, ui: UI
    ) -> None:
        self.image, self.context_dir, self.timeout, self.ui = image, context_dir, timeout, ui
        self.transport = transport
        self.report = SmokeReport(image=image)
        self.client: Any = None
        self.inputs = Inputs(entries=[], samples={}, pins={}, origin="")
        self.results: dict[str, PolicyResult] = {}
        self.main: RunningContainer | None = None
        self.second: RunningContainer | None = None
        self.failed_run: RunningContainer | None = None
        self.health: pb.HealthCheckResponse | None = None
        self.work = Path(tempfile.mkdtemp(prefix="gwb-smoke-inputs-"))
        self._logs: str | None = None

    # -- step runner ---------------------------------------------------------------------------
    def step(
        self, name: str, fn: Callable[[], str], run: Callable[[], RunningContainer | None]
    ) -> None:
        self.ui.info(f"==> smoke: {name}")
        start = time.monotonic()
        result = StepResult(name=name, status="fail")
        try:
            result.detail = fn()
            result.status = "pass"
        except (StepFailed, DockerException) as exc:
            cause = str(exc) if isinstance(exc, StepFailed) else f"container engine: {_short(exc)}"
            result.detail = cause
            self.report.error = f"smoke test of {self.image}: {name}: {cause}"
            self.failed_run = run()
        finally:
            result.seconds = time.monotonic() - start
            self.report.steps.append(result)
            self.ui.steps.append({**result.as_dict(), "step": f"smoke: {name}"})
            self.ui.debug(f"    {name}: {result.status} in {result.seconds:.2f}s: {result.detail}")

    # -- steps ---------------------------------------------------------------------------------
    def do_inputs(self) -> str:
        if self.context_dir is not None:
            if not self.context_dir.is_dir():
                raise InputError(f"--context {self.context_dir}: not a directory")
            self.inputs = load_inputs(
                self.context_dir, f"context {self.context_dir}", registry_required=True
            )
        else:
            self.inputs = image_inputs(self.client, self.image, self.work)
        for entry in self.inputs.entries:
            self.results[entry.name] = PolicyResult(name=entry.name, version=entry.version)
            if not self.inputs.samples.get(entry.name):
                self.report.warnings.append(
                    f"policy {entry.name} ships no samples in the {self.inputs.origin}: "
                    "only InitPolicy is checked"
                )
        self.report.policies = list(self.results.values())
        n = sum(len(v) for v in self.inputs.samples.values())
        where = "context" if self.context_dir else "image"
        return f"{len(self.inputs.entries)} policies, {n} samples (from the {where})"

    def do_start(self) -> str:
        self.main = RunningContainer(self.image, self.timeout, publish_tcp=self.transport != "unix")
        ready = wait_ready(self.main, self.inputs.entries, self.timeout)
        seconds = time.monotonic() - self.main.started
        problems = self._check_ready_count(ready)
        procs = self.main.processes()
        problems += checks.process_problems(procs, expect_executor=bool(self.inputs.entries))
        if problems:
            raise StepFailed("; ".join(problems))
        live = checks.without_exec_sessions(procs)
        uids = sorted({p.uids[1] for p in live if len(p.uids) > 1})
        return (
            f"ready in {seconds:.1f}s; PID 1 tini; {len(live)} processes "
            f"(uid {', '.join(map(str, uids))})"
        )

    def _check_ready_count(self, ready: checks.Readiness) -> list[str]:
        n = len(self.inputs.entries)
        if n and ready.executor_policies is not None and ready.executor_policies != n:
            return [f"executor reports {ready.executor_policies} policies, the registry has {n}"]
        return []

    def do_protocol(self) -> str:
        assert self.main is not None
        if not self.inputs.entries:
            return "no Python policies: executor not expected"
        target, via = self._executor_address()
        with ExecutorClient(target, timeout=defaults.SMOKE_CALL_TIMEOUT_S) as client:
            self.health = call("HealthCheck", client.health)
            check_health(self.health, self.inputs.entries, self.results)
            count, latencies, mismatches = run_samples(client, self.inputs, self.results)
        if mismatches:
            more = f" (and {len(mismatches) - 1} more)" if len(mismatches) > 1 else ""
            raise StepFailed(mismatches[0] + more)
        pythons = ", ".join(sorted({r.python_version for r in self.results.values()}))
        median = f"; median call {statistics.median(latencies):.1f} ms" if latencies else ""
        return (
            f"{len(self.inputs.entries)} policies ready (Python {pythons}); "
            f"{count} samples as expected{median}; via {via}"
        )

    def _executor_address(self) -> tuple[str, str]:
        """Where to reach the executor (per ``transport``), and a label for the step detail."""
        assert self.main is not None
        sock = self.main.executor_socket
        if self.transport in ("auto", "unix"):
            problem = unix_problem(sock)
            if problem is None:
                return str(sock), "the bind-mounted Unix socket"
            if self.transport == "unix":
                raise StepFailed(problem)
            self.ui.info(f"    {problem}: using TCP on 127.0.0.1 instead")
        address = self.main.tcp_address()
        wait_answering(address, defaults.SMOKE_CALL_TIMEOUT_S)
        return address, f"TCP {address}"

    def do_isolation(self) -> str:
        if not self.inputs.entries or self.health is None:
            return "no Python policies"
        reported = {p.name: dict(p.distributions) for p in self.health.policies}
        result = checks.check_isolation(
            reported, self.inputs.pins, complete=self.inputs.complete_pins
        )
        if result.problems:
            raise StepFailed("; ".join(result.problems))
        pinned = sum(result.pins_checked.values())
        source = "locked" if self.inputs.complete_pins else "pinned"
        if result.differing:
            shown = [
                f"{dist} " + " / ".join(f"{p} {v}" for p, v in versions.items())
                for dist, versions in list(result.differing.items())[:3]
            ]
            diff = "; ".join(shown)
        else:
            diff = "no distribution differs between policies"
        return f"{pinned} {source} versions match; {diff}"

    def do_fail_fast(self) -> str:
        self.second = RunningContainer(self.image, self.timeout)
        wait_ready(self.second, self.inputs.entries, self.timeout)
        roles = checks.classify(checks.without_exec_sessions(self.second.processes()))
        name = "executor" if self.inputs.entries else "engine"
        victim = roles.executor if self.inputs.entries else roles.engine
        if victim is None:
            raise StepFailed(f"no {name} process to kill")
        self.second.exec(f"kill -KILL {victim.pid}")
        done = self.second.wait_exit(defaults.SMOKE_FAIL_FAST_DEADLINE_S)
        if done is None:
            raise StepFailed(
                f"the {name} was killed but the container still runs after "
                f"{defaults.SMOKE_FAIL_FAST_DEADLINE_S:g}s"
            )
        code, seconds = done
        if code == 0:
            raise StepFailed(f"the {name} was killed but the container exited with status 0")
        exited = checks.exited_process(checks.parse_log(self.second.logs()))
        if exited is None or exited[0] != name:
            raise StepFailed(
                f"container exited with status {code}, but the entrypoint did not report "
                f"that the {name} exited"
            )
        return f"{name} (pid {victim.pid}) killed: container exited {code} after {seconds:.1f}s"

    def do_shutdown(self) -> str:
        assert self.main is not None
        status, _ = self.main.state()
        if status != "running":
            raise StepFailed(f"the container is {status} before SIGTERM")
        self.main.container.kill(signal="SIGTERM")
        deadline = defaults.SMOKE_SHUTDOWN_DEADLINE_S
        done = self.main.wait_exit(deadline)
        if done is None:
            raise StepFailed(f"still running {deadline:g}s after SIGTERM")
        code, seconds = done
        lines = checks.parse_log(self.main.logs())
        problems = checks.shutdown_problems(lines, expect_executor=bool(self.inputs.entries))
        if code != 0:
            problems.insert(0, f"exit status {code} after SIGTERM")
        if self.inputs.entries and self.main.executor_socket.exists():
            problems.append("the executor left its socket behind")
        if problems:
            raise StepFailed("; ".join(problems))
        return f"SIGTERM: exit 0 after {seconds:.1f}s; stopped router, engine, executor in order"

    # -- driver --------------------------------------------------------------------------------
    def run(self) -> SmokeReport:
        start = time.monotonic()
        plan: list[tuple[str, Callable[[], str], Callable[[], RunningContainer | None]]] = [
            ("inputs", self.do_inputs, lambda: None),
            ("start", self.do_start, lambda: self.main),
            ("protocol", self.do_protocol, lambda: self.main),
            ("isolation", self.do_isolation, lambda: self.main),
            ("fail-fast", self.do_fail_fast, lambda: self.second),
            ("shutdown", self.do_shutdown, lambda: self.main),
        ]
        try:
            self.client = docker_client()
            self._check_image()
            for name, fn, run in plan:
                if self.report.error is not None:
                    skipped = StepResult(name=name, status="skipped")
                    self.report.steps.append(skipped)
                    self.ui.steps.append({**skipped.as_dict(), "step": f"smoke: {name}"})
                    continue
                self.step(name, fn, run)
        except (DockerException, APIError) as exc:
            self.report.error = f"smoke test of {self.image}: container engine error: {_short(exc)}"
        finally:
            logs = self.failed_run.logs() if self.report.error and self.failed_run else None
            for r in (self.main, self.second):
                if r is not None:
                    r.remove()
            shutil.rmtree(self.work, ignore_errors=True)
            if self.client is not None:
                self.client.close()
            self.report.seconds = time.monotonic() - start
            self._logs = logs
        return self.report

    def _check_image(self) -> None:
        host = docker_host()
        if not host.startswith("unix://"):
            raise BuildError(
                f"smoke-test needs a local container engine (it bind-mounts the executor's socket "
                f"directory); DOCKER_HOST is {redact_url(host)}"
            )
        try:
            self.client.images.get(self.image)
        except ImageNotFound:
            raise InputError(
                f"image {self.image} not found in the local container engine"
            ) from None

    def failure(self) -> SmokeTestError:
        message = self.report.error or "smoke test failed"
        return SmokeTestError(
            message, self.report, details=failure_details(self.report.table(), self._logs)
        )


def _short(exc: BaseException) -> str:
    text = redact_text(str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def smoke_test(
    image: str, options: SmokeOptions, *, context_dir: Path | None = None, ui: UI
) -> SmokeReport:
    """Smoke-test ``image``; returns the report, or raises :class:`SmokeTestError` (exit 1).

    ``context_dir``: the rendered build context holding the registry and each policy's samples
    (default: read both out of the image). ``options.timeout``: seconds the processes get to be
    ready; ``options.transport``: one of :data:`TRANSPORTS`.
    """
    timeout, transport = options.timeout, options.transport
    if not timeout > 0:
        raise InputError(f"--timeout: expected a positive number of seconds, got {timeout:g}")
    if transport not in TRANSPORTS:
        raise InputError(f"--transport: expected one of {', '.join(TRANSPORTS)}, got {transport!r}")
    smoke = _Smoke(image, context_dir, timeout, transport, ui)
    report = smoke.run()
    if not report.ok:
        raise smoke.failure()
    for warning in report.warnings:
        ui.warn(warning)
    return report
