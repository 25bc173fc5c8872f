"""Run one policy folder through the real executor, as the gateway image runs it, without Docker.

:class:`PolicyHarness` puts the policy into its own venv (:mod:`.venv`), writes a one-policy
registry, starts ``python -m gateway_executor`` on a Unix socket in a temporary directory (the
same executor, worker shim and frame protocol as in the image: the policy's workers run its
venv's interpreter) and talks to it over the executor protocol with
:class:`~gateway_executor.client.ExecutorClient`, as the Go policy engine does. Each call returns
the decoded :class:`~gateway_builder.devkit.actions.Action`.

The folder is linked into the registry's ``sys_path`` as the package it becomes in the image, so
``<package>.policy`` is imported exactly as there; an edit takes effect on the next start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from gateway_builder import defaults
from gateway_builder.devkit.actions import Action, decode_response, message_fields
from gateway_builder.devkit.policydir import LocalPolicy, load_policy_samples, read_policy_dir
from gateway_builder.devkit.venv import PolicyEnv, ensure_policy_env
from gateway_builder.errors import BuildError, InputError
from gateway_builder.fetch.definition import check_params
from gateway_builder.options import PolicyEnvOptions
from gateway_builder.toolenv import isolated_env
from gateway_executor import samples as samples_mod
from gateway_executor.registry import PolicyEntry, registry_text
from gateway_executor.samples import Outcome, Sample

#: The route and API the harness attaches the policy to (``InitPolicy``'s metadata).
HARNESS_METADATA: dict[str, str] = {
    "route_name": "test-route",
    "api_id": "test-api-id",
    "api_name": "test-api",
    "api_version": "v1.0",
}
_STARTING = "policies are starting"
T = TypeVar("T")
_LOG_TAIL = 40


class ParamsError(InputError):
    """``init`` params that the policy's parameters schema refuses."""


@dataclass(frozen=True)
class InitResult:
    """What ``InitPolicy`` answered: the instance and the policy's declared processing."""

    instance_id: str
    #: ``ProcessingMode`` as ``{"request_header_mode": "PROCESS", ...}``.
    mode: dict[str, str]
    #: ``PolicyCapabilities``: which interfaces the policy implements.
    capabilities: dict[str, bool]


@dataclass(frozen=True)
class SampleResult:
    """One sample run through the executor."""

    sample: Sample
    outcome: Outcome
    #: How the outcome differs from the sample's ``expect`` (empty: it matches).
    problems: list[str] = field(default_factory=list)
    #: The ``ExecuteStream`` round trip.
    ms: float = 0.0

    @property
    def ok(self) -> bool:
        """The sample's expectation holds."""
        return not self.problems


def _executor_root() -> Path:
    """The directory holding the ``gateway_executor`` package (the executor's PYTHONPATH)."""
    import gateway_executor

    return Path(gateway_executor.__file__).resolve().parent.parent


#: ``python -c`` program that starts the executor: it first asks the kernel for SIGTERM when
#: the process that started it dies (``PR_SET_PDEATHSIG``; no ``preexec_fn``, which is unsafe in
#: a process with threads), quits if that process is already gone, then runs
#: ``python -m gateway_executor`` with the remaining arguments.
_BOOTSTRAP = """\
import ctypes, os, runpy, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv.pop(1)):
    sys.exit(0)
runpy.run_module("gateway_executor", run_name="__main__", alter_sys=True)
"""
#: Temporary directories of harnesses are named so; each holds the pid of its harness.
WORK_PREFIX = "gwb-harness-"
OWNER_FILE = "harness.pid"
#: A directory of a dead harness older than this is removed by the next harness that starts.
STALE_AFTER_S = 60.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_work_dirs(root: Path | None = None) -> list[Path]:
    """Remove the temporary directories that harnesses killed before they could clean up left
    behind (this user's, whose harness process is gone, older than :data:`STALE_AFTER_S`)."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{WORK_PREFIX}*"):
        try:
            owner = int((folder / OWNER_FILE).read_text(encoding="utf-8"))
            st = folder.lstat()
        except (OSError, ValueError):
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            continue
        if time.time() - st.st_mtime < STALE_AFTER_S:
            continue
        if not _alive(owner):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _enum_names(message: Any) -> dict[str, str]:
    out = {}
    for fd, value in message.ListFields():
        name = fd.enum_type.values_by_number[value].name if fd.enum_type else str(value)
        out[fd.name] = name.rsplit("_MODE_", 1)[-1]
    return out


class _StartProbe:
    """HealthCheck during start-up on a channel of its own: a probe that finds the socket file
    before the server listens fails, and gRPC then waits out a reconnect backoff (a second or
    more) on that channel; the calls after start-up must not inherit it."""

    def __init__(self, socket: Path) -> None:
        import grpc

        from gateway_executor.proto import python_executor_pb2 as pb
        from gateway_executor.proto import python_executor_pb2_grpc as pb_grpc

        self._channel = grpc.insecure_channel(
            f"unix:{socket}",
            options=[
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.initial_reconnect_backoff_ms", 50),
                ("grpc.min_reconnect_backoff_ms", 50),
                ("grpc.max_reconnect_backoff_ms", 200),
            ],
        )
        self._stub = pb_grpc.PythonExecutorServiceStub(self._channel)
        self._request = pb.HealthCheckRequest()

    def failure(self) -> str:
        """Why start-up failed; empty while it is still going (or not answering yet)."""
        try:
            health = self._stub.HealthCheck(self._request, timeout=2.0)
        except Exception:  # not listening yet
            return ""
        if health.ready or health.reason == _STARTING:
            return ""
        return health.reason or "no reason given"

    def close(self) -> None:
        self._channel.close()


class PolicyHarness:
    """One policy folder served by a real executor process.

    ``with PolicyHarness("my-policy") as harness:`` creates (or reuses) the policy's venv, starts
    the executor and waits until the policy passed its start-up check; leaving the block stops
    it. Then ``harness.init(params)`` attaches the policy (params checked against its schema)
    and ``request_headers(...)``, ``request_body(...)``, ``response_headers(...)``,
    ``response_body(...)``, ``request_chunks(...)``, ``response_chunks(...)`` and
    ``run_sample(...)`` call it. Start it from a thread that outlives it: the executor is
    stopped when the starting thread's process dies.
    """

    def __init__(
        self,
        policy_dir: str | os.PathLike[str],
        *,
        python: str | None = None,
        lock_file: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        params: Mapping[str, Any] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.policy: LocalPolicy = read_policy_dir(Path(policy_dir))
        self.env_options = PolicyEnvOptions(
            python=python,
            lock_file=Path(lock_file) if lock_file is not None else None,
            cache_dir=Path(cache_dir) if cache_dir is not None else None,
        )
        #: Params of the executor's start-up check (default: the schema's defaults).
        self.startup_params = dict(params) if params is not None else self.schema_defaults()
        self.check_params(self.startup_params)
        self._log = log or (lambda _msg: None)
        self.env: PolicyEnv | None = None
        self._work: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: Any = None
        self._instance: str | None = None
        self._params: dict[str, Any] = {}
        self._calls = 0

    @classmethod
    def for_policy(
        cls,
        policy: LocalPolicy,
        options: PolicyEnvOptions,
        log: Callable[[str], None] | None = None,
    ) -> PolicyHarness:
        """A harness for an already read folder and typed options (the CLI's way in)."""
        return cls(
            policy.root,
            python=options.python,
            lock_file=options.lock_file,
            cache_dir=options.cache_dir,
            log=log,
        )

    # -- parameters ---------------------------------------------------------------------------

    def schema_defaults(self) -> dict[str, Any]:
        """The ``default`` of every top-level parameter that has one."""
        props = self.policy.definition.parameters.get("properties") or {}
        return {
            name: prop["default"]
            for name, prop in props.items()
            if isinstance(prop, dict) and "default" in prop
        }

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raise :class:`ParamsError` unless ``params`` satisfy the parameters schema."""
        what = self.policy.name
        try:
            check_params(self.policy.definition, dict(params), what)
        except InputError as exc:
            raise ParamsError(exc.message.removeprefix(f"{what}: ")) from None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> PolicyHarness:
        """Create or reuse the venv, start the executor, wait until the policy is ready."""
        if self._proc is not None:
            return self
        try:
            import grpc  # noqa: F401
        except ImportError:
            raise BuildError(
                "the test harness needs grpcio and protobuf next to gateway-builder "
                "(pip install 'gateway-builder[executor]')"
            ) from None
        self.env = ensure_policy_env(self.policy, self.env_options, log=self._log)
        sweep_stale_work_dirs()
        self._work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))
        (self._work / OWNER_FILE).write_text(f"{os.getpid()}\n", encoding="utf-8")
        try:
            self._launch(self._work, self.env)
            self._wait_ready(defaults.HARNESS_START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, work: Path, env: PolicyEnv) -> None:
        site = work / "policy"
        site.mkdir()
        (site / self.policy.package).symlink_to(self.policy.root, target_is_directory=True)
        definition = self.policy.definition
        entry = PolicyEntry(
            name=definition.name,
            version=definition.version,
            module=self.policy.module,
            python=str(env.python),
            sys_path=(str(site),),
            python_version=env.python_version,
            timeout_ms=defaults.HARNESS_TIMEOUT_MS,
            workers=1,
            params=self.startup_params,
            source=f"path:{self.policy.root}",
        )
        registry = work / defaults.REGISTRY_FILE_NAME
        registry.write_text(registry_text([entry]), encoding="utf-8")
        self._socket, self._ready = work / "executor.sock", work / "executor.ready"
        self._logfile = work / "executor.log"
        cmd = [
            sys.executable,
            "-c",
            _BOOTSTRAP,
            str(os.getpid()),
            "--registry",
            str(registry),
            "--listen",
            str(self._socket),
            "--ready-file",
            str(self._ready),
            "--executor-cpus",
            "off",
            "--shutdown-grace",
            "2",
        ]
        with self._logfile.open("wb") as out:
            self._proc = subprocess.Popen(
                cmd,
                env=isolated_env({"PYTHONPATH": str(_executor_root())}),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def executor_pid(self) -> int | None:
        """The executor's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def executor_log(self) -> str:
        """What the executor logged so far (its workers' output included)."""
        try:
            return self._logfile.read_text(encoding="utf-8", errors="replace")
        except (AttributeError, OSError):
            return ""

    def _fail(self, why: str) -> BuildError:
        tail = "\n".join(self.executor_log().splitlines()[-_LOG_TAIL:])
        return BuildError(f"{self.policy.name}: {why}", details=tail or None)

    def _wait_ready(self, timeout: float) -> None:
        """Until the ready file appears; a policy that fails its start-up check (HealthCheck
        says why) or an executor that exits ends the wait at once."""
        from gateway_executor.client import ExecutorClient

        assert self._proc is not None
        end = time.monotonic() + timeout
        next_look = 0.0
        probe: _StartProbe | None = None
        try:
            while not self._ready.exists():
                code = self._proc.poll()
                if code is not None:
                    raise self._fail(f"the executor exited with code {code} while starting")
                now = time.monotonic()
                if now > end:
                    raise self._fail(f"the policy was not ready after {timeout:.0f}s")
                if self._socket.exists() and now >= next_look:
                    next_look = now + 0.2
                    probe = probe or _StartProbe(self._socket)
                    reason = probe.failure()
                    if reason:
                        raise self._fail(f"the policy failed its start-up check: {reason}")
                time.sleep(0.01)
        finally:
            if probe is not None:
                probe.close()
        self._client = ExecutorClient(str(self._socket), timeout=10.0)
        self._rpc("connecting", lambda: self._client.wait_for_channel(10.0))

    def stop(self) -> None:
        """Destroy the instance, stop the executor (SIGTERM, then SIGKILL) and clean up."""
        if self._client is not None:
            if self._instance is not None:
                with contextlib.suppress(Exception):
                    self._client.destroy_policy(self._instance)
            with contextlib.suppress(Exception):
                self._client.close()
        self._client, self._instance = None, None
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(15)
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    def __enter__(self) -> PolicyHarness:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def client(self) -> Any:
        """The :class:`~gateway_executor.client.ExecutorClient` (started harness only)."""
        if self._client is None:
            raise BuildError("the harness is not started (use it in a with block, or start())")
        return self._client

    # -- executor calls -----------------------------------------------------------------------

    def _rpc(self, what: str, call: Callable[[], T]) -> T:
        """One call to the executor; a failed call is a :class:`BuildError` saying whether the
        executor is still running, with its log tail."""
        try:
            return call()
        except Exception as exc:  # grpc.RpcError, or the stream ending under a pending call
            code = self._proc.poll() if self._proc is not None else None
            state = "running" if code is None else f"exited with code {code}"
            detail = getattr(exc, "details", None)
            reason = detail() if callable(detail) else str(exc)
            raise self._fail(f"{what} failed (the executor is {state}): {reason}") from None

    def status(self) -> dict[str, Any]:
        """The policy's ``HealthCheck`` entry: ready, python_version, distributions, ..."""
        health = self._rpc("HealthCheck", lambda: self.client.health())
        for status in health.policies:
            if status.name == self.policy.name:
                fields = message_fields(status)
                fields["ready"] = status.ready
                return fields
        raise self._fail("HealthCheck does not list the policy")

    def init(self, params: Mapping[str, Any] | None = None, **metadata: str) -> InitResult:
        """Attach the policy with ``params`` (checked against its schema; default: the schema's
        defaults) as ``InitPolicy`` does; the previous instance is destroyed. ``metadata``
        overrides :data:`HARNESS_METADATA` (``route_name``, ``api_name`` ...)."""
        params = dict(params) if params is not None else self.schema_defaults()
        self.check_params(params)
        client = self.client
        if self._instance is not None:
            instance = self._instance
            self._rpc("DestroyPolicy", lambda: client.destroy_policy(instance))
            self._instance = None
        meta = {**HARNESS_METADATA, **metadata}
        definition = self.policy.definition
        answer = self._rpc(
            "InitPolicy",
            lambda: client.init_policy(definition.name, definition.version, params, **meta),
        )
        if not answer.success:
            raise self._fail(f"InitPolicy failed: {answer.error_message or 'no message'}")
        self._instance, self._params = str(answer.instance_id), params
        return InitResult(
            instance_id=self._instance,
            mode=_enum_names(answer.processing_mode),
            capabilities={fd.name: bool(v) for fd, v in answer.capabilities.ListFields()},
        )

    def _instance_id(self) -> str:
        if self._instance is None:
            self.init()
        assert self._instance is not None
        return self._instance

    def call(self, payload: str, **request: Any) -> Action:
        """Send one ``StreamRequest`` for ``payload`` (``request_headers`` ... ``response_chunk``,
        see :func:`gateway_executor.samples.build_request` for the keywords) and decode the
        answer."""
        from gateway_executor.samples import build_request

        instance_id = self._instance_id()  # attaches with the defaults if init() was not called
        self._calls += 1
        req = build_request(
            payload,
            instance_id=instance_id,
            policy_name=self.policy.name,
            policy_version=self.policy.definition.version,
            params=self._params,
            request_id=f"harness-{self._calls}",
            route_name=HARNESS_METADATA["route_name"],
            api_name=HARNESS_METADATA["api_name"],
            api_id=HARNESS_METADATA["api_id"],
            api_version=HARNESS_METADATA["api_version"],
            **request,
        )
        return decode_response(self._rpc("ExecuteStream", lambda: self.client.execute(req)))

    @staticmethod
    def _request(
        headers: Mapping[str, Any] | None,
        body: Any,
        path: str,
        method: str,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {"headers": dict(headers or {}), "body": body, "path": path, "method": method} | (
            dict(extra or {})
        )

    def request_headers(
        self,
        headers: Mapping[str, Any] | None = None,
        *,
        path: str = "/",
        method: str = "GET",
        metadata: Mapping[str, Any] | None = None,
        **request: Any,
    ) -> Action:
        """The request-header phase (``authority``, ``scheme`` may be given too)."""
        req = self._request(headers, None, path, method, request)
        return self.call("request_headers", request=req, metadata=metadata)

    def request_body(
        self,
        body: Any = None,
        *,
        headers: Mapping[str, Any] | None = None,
        path: str = "/",
        method: str = "POST",
        metadata: Mapping[str, Any] | None = None,
        **request: Any,
    ) -> Action:
        """The buffered request-body phase; ``body`` as in samples (bytes, str or JSON)."""
        req = self._request(headers, body, path, method, request)
        return self.call("request_body", request=req, metadata=metadata)

    def response_headers(
        self,
        headers: Mapping[str, Any] | None = None,
        *,
        status: int = 200,
        request: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Action:
        """The response-header phase; ``request`` is the request in the sample format."""
        response = {"headers": dict(headers or {}), "status": status}
        return self.call(
            "response_headers", request=dict(request or {}), response=response, metadata=metadata
        )

    def response_body(
        self,
        body: Any = None,
        *,
        headers: Mapping[str, Any] | None = None,
        status: int = 200,
        request: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Action:
        """The buffered response-body phase."""
        response = {"headers": dict(headers or {}), "status": status, "body": body}
        return self.call(
            "response_body", request=dict(request or {}), response=response, metadata=metadata
        )

    def needs_more_request_data(self, accumulated: bytes) -> bool:
        """A streaming policy's answer whether it needs more of the request body."""
        return bool(self.call("needs_more_request_data", accumulated=accumulated).needs_more)

    def needs_more_response_data(self, accumulated: bytes) -> bool:
        """A streaming policy's answer whether it needs more of the response body."""
        return bool(self.call("needs_more_response_data", accumulated=accumulated).needs_more)

    def request_chunks(
        self,
        chunks: Iterable[bytes],
        *,
        headers: Mapping[str, Any] | None = None,
        path: str = "/",
        method: str = "POST",
    ) -> list[Action]:
        """Stream the request body chunk by chunk (the last one ends the stream)."""
        req = self._request(headers, None, path, method)
        return self._chunks("request_chunk", list(chunks), request=req)

    def response_chunks(
        self,
        chunks: Iterable[bytes],
        *,
        headers: Mapping[str, Any] | None = None,
        status: int = 200,
        request: Mapping[str, Any] | None = None,
    ) -> list[Action]:
        """Stream the response body chunk by chunk (the last one ends the stream)."""
        response = {"headers": dict(headers or {}), "status": status}
        return self._chunks(
            "response_chunk", list(chunks), request=dict(request or {}), response=response
        )

    def _chunks(self, payload: str, chunks: list[bytes], **context: Any) -> list[Action]:
        return [
            self.call(
                payload, chunk=chunk, chunk_index=i, end_of_stream=i == len(chunks) - 1, **context
            )
            for i, chunk in enumerate(chunks)
        ]

    # -- samples ------------------------------------------------------------------------------

    def samples(self) -> list[Sample]:
        """The folder's samples (``samples/*.json``), validated."""
        return load_policy_samples(self.policy)

    def run_sample(self, sample: Sample | str | os.PathLike[str]) -> SampleResult:
        """Run one sample (a :class:`Sample` or a sample file) as the smoke test does:
        ``InitPolicy`` with its params, its request through ``ExecuteStream``, the answer
        checked against its ``expect``."""
        if not isinstance(sample, Sample):
            path = Path(sample)
            try:
                sample = samples_mod.read_sample(
                    self.policy.name,
                    path,
                    str(path.relative_to(self.policy.root.parent))
                    if path.is_absolute() and path.is_relative_to(self.policy.root.parent)
                    else str(path),
                )
            except samples_mod.SampleError as exc:
                raise InputError(str(exc)) from None
        try:
            self.init(sample.params)
        except ParamsError as exc:
            raise ParamsError(f"{sample.file}: {exc.message}") from None
        self._calls += 1
        request = samples_mod.sample_request(
            sample,
            request_id=f"harness-{self._calls}",
            instance_id=self._instance_id(),
            policy_version=self.policy.definition.version,
            **HARNESS_METADATA,
        )
        started = time.perf_counter()
        response = self._rpc("ExecuteStream", lambda: self.client.execute(request))
        ms = (time.perf_counter() - started) * 1000
        outcome = samples_mod.outcome_of(response, sample)
        problems = samples_mod.check_expectation(outcome, sample.expect)
        return SampleResult(sample=sample, outcome=outcome, problems=problems, ms=ms)

    def run_samples(self) -> list[SampleResult]:
        """Every sample of the folder, in file-name order."""
        return [self.run_sample(s) for s in self.samples()]
