"""Smoke test of a built gateway-runtime image (``gateway-builder smoke-test IMAGE``).

Starts the image with testcontainers, the executor's socket directory bind-mounted to a host
temporary directory, and acts as the Go policy engine over the executor's gRPC protocol. Steps,
each timed: ``inputs`` (registry and samples), ``start`` (three processes ready under tini, none
root), ``protocol`` (HealthCheck, InitPolicy, every sample through ExecuteStream), ``isolation``
(each policy's own dependency versions), ``fail-fast`` (a second container whose executor is
killed must exit non-zero) and ``shutdown`` (SIGTERM: exit 0 with the ordered stop lines).
The first failing step stops the run; :class:`SmokeTestError` (exit 1) names the cause and
carries the step table and the container's (redacted) logs.

The pure rules live in :mod:`gateway_builder.smoke_checks` and :mod:`gateway_builder.smoke_samples`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import grpc
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from gateway_builder import defaults
from gateway_builder import smoke_checks as checks
from gateway_builder import smoke_samples as samples_mod
from gateway_builder.dockerd import docker_client, docker_host
from gateway_builder.errors import BuildError, InputError
from gateway_builder.redact import redact_text, redact_url
from gateway_builder.smoke_checks import StepResult
from gateway_builder.smoke_samples import Sample
from gateway_builder.ui import UI
from gateway_executor.client import ExecutorClient
from gateway_executor.proto import python_executor_pb2 as pb
from gateway_executor.registry import PolicyEntry, RegistryError, parse_registry

STEPS = ("inputs", "start", "protocol", "isolation", "fail-fast", "shutdown")
#: How the smoke test reaches the executor: the bind-mounted Unix socket, TCP on 127.0.0.1,
#: or (auto) the socket when it answers from the host, else TCP.
TRANSPORTS = ("auto", "unix", "tcp")
#: The TCP transport: the executor's own debug listener (``--py.debug-listen``, forwarded by
#: the entrypoint as ``--debug-listen``), published on 127.0.0.1 only.
_DEBUG_LISTEN_ARGS = ("--py.debug-listen", f"0.0.0.0:{defaults.EXECUTOR_DEBUG_PORT}")
_POLL_S = 0.2
T = TypeVar("T")


class SmokeTestError(BuildError):
    """The image failed its smoke test; ``report`` holds every step run so far."""

    def __init__(self, message: str, report: SmokeReport, *, details: str | None = None) -> None:
        super().__init__(message, details=details)
        self.report = report


class _StepFailed(Exception):
    """A step's check failed; the message names the cause."""


@dataclass
class PolicyResult:
    """What the smoke test saw of one policy."""

    name: str
    version: str
    python_version: str = ""
    ready: bool = False
    distributions: dict[str, str] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "version": self.version,
            "python_version": self.python_version,
            "ready": self.ready,
            "distributions": dict(sorted(self.distributions.items())),
            "samples": self.samples,
        }


@dataclass
class SmokeReport:
    """The outcome of one smoke test."""

    image: str
    steps: list[StepResult] = field(default_factory=list)
    policies: list[PolicyResult] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every step passed."""
        return self.error is None and all(s.status == "pass" for s in self.steps)

    def table(self) -> str:
        """The human step table."""
        return checks.format_table(self.steps)

    def as_dict(self) -> dict[str, Any]:
        """JSON form (the ``--json`` result)."""
        return {
            "ok": self.ok,
            "image": self.image,
            "seconds": round(self.seconds, 2),
            "error": self.error,
            "steps": [s.as_dict() for s in self.steps],
            "policies": [p.as_dict() for p in self.policies],
            "warnings": self.warnings,
        }


# --------------------------------------------------------------------------------------------
# Inputs: the registry and the samples
# --------------------------------------------------------------------------------------------


@dataclass
class Inputs:
    """The registry entries and, per policy, its samples and dependency pins."""

    entries: list[PolicyEntry]
    samples: dict[str, list[Sample]]
    pins: dict[str, dict[str, str]]
    origin: str  # "context DIR" or "image IMAGE"
    #: Policies whose pins are their venv's whole lock (from the build manifest).
    complete_pins: set[str] = field(default_factory=set)


def _read_json(path: Path, label: str, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{label}: cannot read the {what}: {exc}") from None


def load_inputs(root: Path, origin: str, *, registry_required: bool) -> Inputs:
    """Registry, samples and pins found under ``root`` (a rendered context or an image tree).

    Pins come from the build manifest (each venv's complete lock) when there is one, else from
    ``requirements.txt`` next to a policy's samples.
    """
    registry = checks.find_registry(root)
    if registry is None:
        if registry_required:
            raise InputError(
                f"{origin}: no {defaults.REGISTRY_FILE_NAME} found (is this a rendered context?)"
            )
        return Inputs(entries=[], samples={}, pins={}, origin=origin)
    label = f"{origin}: {registry.relative_to(root)}"
    try:
        entries = parse_registry(_read_json(registry, label, "policy registry"), label)
    except RegistryError as exc:
        raise InputError(str(exc)) from None
    inputs = Inputs(entries=entries, samples={}, pins={}, origin=origin)
    manifest = checks.find_build_manifest(root)
    if manifest is not None:
        mlabel = f"{origin}: {manifest.relative_to(root)}"
        locked = checks.manifest_distributions(_read_json(manifest, mlabel, "build manifest"))
        inputs.pins.update(locked)
        inputs.complete_pins.update(locked)
    dirs = checks.find_policy_dirs(root, [e.name for e in entries])
    for entry in entries:
        folder = dirs.get(entry.name)
        if folder is None:
            continue
        inputs.samples[entry.name] = samples_mod.load_samples(
            entry.name, folder / "samples", label_root=root
        )
        req = folder / "requirements.txt"
        if entry.name not in inputs.pins and req.is_file():
            inputs.pins[entry.name] = checks.parse_pins(req.read_text(encoding="utf-8"))
    return inputs


def _safe_extract(data: bytes, dest: Path) -> None:
    """Extract a ``get_archive`` tar: regular files and directories only, nothing outside dest."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            path = PurePosixPath(member.name)
            if path.is_absolute() or ".." in path.parts:
                continue
            target = dest.joinpath(*path.parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                if src is not None:
                    target.write_bytes(src.read())


def _copy_out(container: Container, path: str, root: Path) -> bool:
    """Copy ``path`` out of a (created or stopped) container to the same place under ``root``."""
    try:
        stream, _ = container.get_archive(path)
    except NotFound:
        return False
    dest = root / PurePosixPath(path).parent.relative_to("/")
    dest.mkdir(parents=True, exist_ok=True)
    _safe_extract(b"".join(stream), dest)
    return True


#: What the smoke test reads out of an image when no context is given.
IMAGE_INPUTS = (defaults.REGISTRY_PATH, checks.BUILD_MANIFEST_PATH, defaults.SAMPLES_DIR)


def image_inputs(client: Any, image: str, work: Path) -> Inputs:
    """Registry, build manifest and policy folders read out of the image (never started)."""
    container = client.containers.create(image)
    root = work / "image"
    try:
        for path in IMAGE_INPUTS:
            _copy_out(container, path, root)
    finally:
        with suppress(DockerException):
            container.remove(force=True)
    return load_inputs(root, f"image {image}", registry_required=False)


# --------------------------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------------------------


def _socket_dir() -> Path:
    """A host directory for the executor's socket, writable by the runtime user."""
    path = Path(tempfile.mkdtemp(prefix="gwb-smoke-"))
    if os.geteuid() == 0:
        os.chown(path, defaults.RUNTIME_UID, defaults.RUNTIME_UID)
        path.chmod(0o750)
    else:
        path.chmod(0o777)  # a private temp dir the container's user must write to
    return path


class _Run:
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
            self._tc.ports[_TCP_PORT] = ("127.0.0.1", None)  # type: ignore[assignment]
            self._tc.with_command(list(_DEBUG_LISTEN_ARGS))
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
        bound = (self.container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(_TCP_PORT)
        host = next((b for b in bound or [] if b.get("HostIp") == "127.0.0.1"), None)
        if host is None:
            raise _StepFailed(f"port {_TCP_PORT} is not published on 127.0.0.1")
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
            raise _StepFailed(f"cannot read /proc in the container (exit {code}): {out[:200]!r}")
        return checks.parse_proc_dump(out)

    def wait_exit(self, deadline_s: float) -> tuple[int, float] | None:
        """Wait until the container exits: ``(exit code, seconds)``, or None after the deadline."""
        start = time.monotonic()
        while time.monotonic() - start < deadline_s:
            status, code = self.state()
            if status in ("exited", "dead"):
                return code, time.monotonic() - start
            time.sleep(_POLL_S / 2)
        return None

    def remove(self) -> None:
        """Remove the container and its socket directory."""
        with suppress(DockerException):
            self._tc.stop()
        shutil.rmtree(self.sock_dir, ignore_errors=True)


_TCP_PORT = f"{defaults.EXECUTOR_DEBUG_PORT}/tcp"


def log_tail(log: str, lines: int = defaults.SMOKE_LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of container output, credentials redacted."""
    return redact_text("\n".join(log.splitlines()[-lines:]))


def failure_details(table: str, log: str | None) -> str:
    """What a failed smoke test prints after its one-line error: the steps and the logs."""
    if not log:
        return table
    shown = log_tail(log)
    count = len(shown.splitlines())
    return f"{table}\n--- container logs (last {count} lines) ---\n{shown}"


def wait_ready(run: _Run, entries: list[PolicyEntry], timeout: float) -> checks.Readiness:
    """Poll the logs until the three processes report ready; _StepFailed names what went wrong."""
    expect_executor = bool(entries)
    names = [e.name for e in entries]
    deadline = run.started + timeout
    while True:
        lines = checks.parse_log(run.logs())
        ready = checks.readiness(lines)
        if ready.complete(expect_executor=expect_executor):
            return ready
        failures = checks.policy_failures(lines, names)
        if failures:
            name = sorted(failures)[0]
            raise _StepFailed(f"policy {name} not ready: {failures[name]}")
        status, code = run.state()
        if status in ("exited", "dead"):
            # The logs may have grown between the two reads: judge the final ones.
            lines = checks.parse_log(run.logs())
            failures = checks.policy_failures(lines, names)
            if failures:
                name = sorted(failures)[0]
                raise _StepFailed(f"policy {name} not ready: {failures[name]}")
            raise _StepFailed(_exit_cause(lines, code))
        if time.monotonic() >= deadline:
            missing = ", ".join(ready.missing(expect_executor=expect_executor))
            hint = checks.last_error_line(lines)
            raise _StepFailed(
                f"not ready within {timeout:g}s: no sign of {missing}"
                + (f" (last error: {hint})" if hint else "")
            )
        time.sleep(_POLL_S)


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


# --------------------------------------------------------------------------------------------
# The executor protocol (acting as the Go engine)
# --------------------------------------------------------------------------------------------


def _rpc_text(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if hasattr(exc, "code") else None
        details = exc.details() if hasattr(exc, "details") else ""
        return f"{code.name if code else 'error'}: {details}"
    return f"{type(exc).__name__}: {exc}"


def _call(what: str, fn: Callable[[], T]) -> T:
    """One call to the executor; a transport error or timeout becomes a failure naming it."""
    try:
        return fn()
    except grpc.RpcError as exc:
        raise _StepFailed(f"{what} failed: {_rpc_text(exc)}") from None
    except (TimeoutError, FutureTimeout):
        raise _StepFailed(f"{what}: no answer within {defaults.SMOKE_CALL_TIMEOUT_S:g}s") from None
    except ConnectionError as exc:
        raise _StepFailed(f"{what} failed: {exc}") from None


def _python_matches(reported: str, wanted: str) -> bool:
    if not wanted:
        return bool(reported)
    return reported.split(".")[:2] == wanted.split(".")[:2]


def _unix_problem(sock: Path) -> str | None:
    """Why the executor cannot be reached on its bind-mounted socket from here (None: it can)."""
    if not sock.exists():
        return f"the executor socket {defaults.PYTHON_EXECUTOR_SOCKET} is not visible on the host"
    if not os.access(sock, os.R_OK | os.W_OK):
        return (
            f"cannot connect to the executor socket as uid {os.geteuid()} "
            f"(it belongs to uid {sock.stat().st_uid})"
        )
    try:
        with ExecutorClient(str(sock), timeout=defaults.SMOKE_CALL_TIMEOUT_S) as client:
            client.wait_for_channel(timeout=defaults.SMOKE_SOCKET_PROBE_S)
    except FutureTimeout:
        return "the executor socket does not answer from the host"
    return None


def _wait_answering(address: str, timeout: float) -> None:
    """Until a HealthCheck through ``address`` answers (the port mapping may lag a moment)."""
    deadline = time.monotonic() + timeout
    with ExecutorClient(address, timeout=2.0) as client:
        while True:
            try:
                client.health()
                return
            except grpc.RpcError as exc:
                if time.monotonic() >= deadline:
                    raise _StepFailed(f"no answer on {address}: {_rpc_text(exc)}") from None
            time.sleep(_POLL_S)


def check_health(
    health: pb.HealthCheckResponse, entries: list[PolicyEntry], results: dict[str, PolicyResult]
) -> None:
    """Every registry policy ready with its Python version; fills ``results``."""
    statuses = {p.name: p for p in health.policies}
    for entry in entries:
        st = statuses.get(entry.name)
        if st is None:
            raise _StepFailed(f"policy {entry.name} is missing from HealthCheck")
        res = results[entry.name]
        res.python_version, res.ready = st.python_version, st.ready
        res.distributions = dict(st.distributions)
        if not st.ready:
            why = "quarantined" if st.quarantined else (st.reason or "no reason given")
            raise _StepFailed(f"policy {entry.name} not ready: {why}")
        if not _python_matches(st.python_version, entry.python_version):
            raise _StepFailed(
                f"policy {entry.name} runs Python {st.python_version or '(unknown)'}, "
                f"the registry says {entry.python_version}"
            )
    extra = sorted(set(statuses) - {e.name for e in entries})
    if extra:
        raise _StepFailed(f"HealthCheck lists policies not in the registry: {', '.join(extra)}")
    if not health.ready:
        raise _StepFailed(f"executor not ready: {health.reason or 'no reason given'}")


def _init(client: ExecutorClient, entry: PolicyEntry, params: dict[str, Any], what: str) -> str:
    """``InitPolicy``; the instance id."""
    init = _call(
        f"InitPolicy {what}",
        lambda: client.init_policy(
            entry.name,
            entry.version,
            params,
            route_name=samples_mod.SMOKE_METADATA["route_name"],
            api_name=samples_mod.SMOKE_METADATA["api_name"],
            api_id=samples_mod.SMOKE_METADATA["api_id"],
            api_version=samples_mod.SMOKE_METADATA["api_version"],
        ),
    )
    if not init.success:
        raise _StepFailed(
            f"policy {entry.name}: InitPolicy with the params of {what} failed: "
            f"{init.error_message or 'no message'}"
        )
    return str(init.instance_id)


def _destroy(client: ExecutorClient, instance_id: str, what: str) -> None:
    done = _call(f"DestroyPolicy {what}", lambda: client.destroy_policy(instance_id))
    if not done.success:
        raise _StepFailed(f"DestroyPolicy {what} failed: {done.error_message or 'no message'}")


def run_samples(
    client: ExecutorClient, inputs: Inputs, results: dict[str, PolicyResult]
) -> tuple[int, list[float], list[str]]:
    """InitPolicy + ExecuteStream + DestroyPolicy per sample: (count, call ms, mismatches).

    A policy without samples gets InitPolicy/DestroyPolicy with its registry params only.
    """
    latencies: list[float] = []
    mismatches: list[str] = []
    count = 0
    for entry in inputs.entries:
        policy_samples = inputs.samples.get(entry.name, [])
        if not policy_samples:
            iid = _init(client, entry, entry.params, "its registry entry")
            _destroy(client, iid, entry.name)
            continue
        for sample in policy_samples:
            count += 1
            iid = _init(client, entry, sample.params, sample.file)
            request = samples_mod.stream_request(
                sample, request_id=f"smoke-{count}", instance_id=iid, policy_version=entry.version
            )
            t0 = time.perf_counter()
            response = _call(f"ExecuteStream {sample.file}", partial(client.execute, request))
            latencies.append((time.perf_counter() - t0) * 1000)
            outcome = samples_mod.outcome_of(response, sample)
            problems = samples_mod.check_expectation(outcome, sample.expect)
            results[entry.name].samples.append(
                {
                    "sample": sample.file,
                    "ok": not problems,
                    "outcome": outcome.summary(),
                    "problems": problems,
                    "ms": round(latencies[-1], 2),
                }
            )
            if problems:
                mismatches.append(
                    f"policy {entry.name} sample {sample.file} ({sample.description}): "
                    + "; ".join(problems)
                )
            _destroy(client, iid, sample.file)
    return count, latencies, mismatches


# --------------------------------------------------------------------------------------------
# The steps
# --------------------------------------------------------------------------------------------


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
        self.main: _Run | None = None
        self.second: _Run | None = None
        self.failed_run: _Run | None = None
        self.health: pb.HealthCheckResponse | None = None
        self.work = Path(tempfile.mkdtemp(prefix="gwb-smoke-inputs-"))
        self._logs: str | None = None

    # -- step runner ---------------------------------------------------------------------------
    def step(self, name: str, fn: Callable[[], str], run: Callable[[], _Run | None]) -> None:
        self.ui.info(f"==> smoke: {name}")
        start = time.monotonic()
        result = StepResult(name=name, status="fail")
        try:
            result.detail = fn()
            result.status = "pass"
        except (_StepFailed, DockerException) as exc:
            cause = str(exc) if isinstance(exc, _StepFailed) else f"container engine: {_short(exc)}"
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
        self.main = _Run(self.image, self.timeout, publish_tcp=self.transport != "unix")
        ready = wait_ready(self.main, self.inputs.entries, self.timeout)
        seconds = time.monotonic() - self.main.started
        problems = self._check_ready_count(ready)
        procs = self.main.processes()
        problems += checks.process_problems(procs, expect_executor=bool(self.inputs.entries))
        if problems:
            raise _StepFailed("; ".join(problems))
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
            self.health = _call("HealthCheck", client.health)
            check_health(self.health, self.inputs.entries, self.results)
            count, latencies, mismatches = run_samples(client, self.inputs, self.results)
        if mismatches:
            more = f" (and {len(mismatches) - 1} more)" if len(mismatches) > 1 else ""
            raise _StepFailed(mismatches[0] + more)
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
            problem = _unix_problem(sock)
            if problem is None:
                return str(sock), "the bind-mounted Unix socket"
            if self.transport == "unix":
                raise _StepFailed(problem)
            self.ui.info(f"    {problem}: using TCP on 127.0.0.1 instead")
        address = self.main.tcp_address()
        _wait_answering(address, defaults.SMOKE_CALL_TIMEOUT_S)
        return address, f"TCP {address}"

    def do_isolation(self) -> str:
        if not self.inputs.entries or self.health is None:
            return "no Python policies"
        reported = {p.name: dict(p.distributions) for p in self.health.policies}
        result = checks.check_isolation(
            reported, self.inputs.pins, complete=self.inputs.complete_pins
        )
        if result.problems:
            raise _StepFailed("; ".join(result.problems))
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
        self.second = _Run(self.image, self.timeout)
        wait_ready(self.second, self.inputs.entries, self.timeout)
        roles = checks.classify(checks.without_exec_sessions(self.second.processes()))
        name = "executor" if self.inputs.entries else "engine"
        victim = roles.executor if self.inputs.entries else roles.engine
        if victim is None:
            raise _StepFailed(f"no {name} process to kill")
        self.second.exec(f"kill -KILL {victim.pid}")
        done = self.second.wait_exit(defaults.SMOKE_FAIL_FAST_DEADLINE_S)
        if done is None:
            raise _StepFailed(
                f"the {name} was killed but the container still runs after "
                f"{defaults.SMOKE_FAIL_FAST_DEADLINE_S:g}s"
            )
        code, seconds = done
        if code == 0:
            raise _StepFailed(f"the {name} was killed but the container exited with status 0")
        exited = checks.exited_process(checks.parse_log(self.second.logs()))
        if exited is None or exited[0] != name:
            raise _StepFailed(
                f"container exited with status {code}, but the entrypoint did not report "
                f"that the {name} exited"
            )
        return f"{name} (pid {victim.pid}) killed: container exited {code} after {seconds:.1f}s"

    def do_shutdown(self) -> str:
        assert self.main is not None
        status, _ = self.main.state()
        if status != "running":
            raise _StepFailed(f"the container is {status} before SIGTERM")
        self.main.container.kill(signal="SIGTERM")
        deadline = defaults.SMOKE_SHUTDOWN_DEADLINE_S
        done = self.main.wait_exit(deadline)
        if done is None:
            raise _StepFailed(f"still running {deadline:g}s after SIGTERM")
        code, seconds = done
        lines = checks.parse_log(self.main.logs())
        problems = checks.shutdown_problems(lines, expect_executor=bool(self.inputs.entries))
        if code != 0:
            problems.insert(0, f"exit status {code} after SIGTERM")
        if self.inputs.entries and self.main.executor_socket.exists():
            problems.append("the executor left its socket behind")
        if problems:
            raise _StepFailed("; ".join(problems))
        return f"SIGTERM: exit 0 after {seconds:.1f}s; stopped router, engine, executor in order"

    # -- driver --------------------------------------------------------------------------------
    def run(self) -> SmokeReport:
        start = time.monotonic()
        plan: list[tuple[str, Callable[[], str], Callable[[], _Run | None]]] = [
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
    image: str,
    *,
    context_dir: Path | None = None,
    timeout: float = defaults.SMOKE_READY_TIMEOUT_S,
    transport: str = "auto",
    ui: UI,
) -> SmokeReport:
    """Smoke-test ``image``; returns the report, or raises :class:`SmokeTestError` (exit 1).

    ``context_dir``: the rendered build context holding the registry and each policy's samples
    (default: read both out of the image). ``timeout``: seconds the processes get to be ready.
    ``transport``: one of :data:`TRANSPORTS`.
    """
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


def command(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    """``gateway-builder smoke-test IMAGE [--context DIR] [--timeout S]``."""
    report = smoke_test(
        args.image,
        context_dir=args.context,
        timeout=args.timeout,
        transport=getattr(args, "transport", "auto"),
        ui=ui,
    )
    data = report.as_dict()
    human = f"{report.table()}\n\nsmoke test passed: {args.image} in {report.seconds:.1f}s"
    ui.result(data, human)
    return data
