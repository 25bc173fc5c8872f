"""The executor's gRPC protocol, spoken as the Go policy engine speaks it.

``HealthCheck`` (every policy ready with its Python version), then per sample ``InitPolicy`` +
``ExecuteStream`` + ``DestroyPolicy``; each call is bounded, and a transport error, timeout or
unexpected answer becomes a :class:`StepFailed` naming the call.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import grpc

from gateway_builder import defaults
from gateway_builder.smoke import samples as samples_mod
from gateway_builder.smoke.container import POLL_S
from gateway_builder.smoke.inputs import Inputs
from gateway_builder.smoke.report import PolicyResult, StepFailed
from gateway_executor.client import ExecutorClient
from gateway_executor.proto import python_executor_pb2 as pb
from gateway_executor.registry import PolicyEntry

#: How the smoke test reaches the executor: the bind-mounted Unix socket, TCP on 127.0.0.1,
#: or (auto) the socket when it answers from the host, else TCP.
TRANSPORTS = ("auto", "unix", "tcp")
T = TypeVar("T")


def _rpc_text(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if hasattr(exc, "code") else None
        details = exc.details() if hasattr(exc, "details") else ""
        return f"{code.name if code else 'error'}: {details}"
    return f"{type(exc).__name__}: {exc}"


def call(what: str, fn: Callable[[], T]) -> T:
    """One call to the executor; a transport error or timeout becomes a failure naming it."""
    try:
        return fn()
    except grpc.RpcError as exc:
        raise StepFailed(f"{what} failed: {_rpc_text(exc)}") from None
    except (TimeoutError, FutureTimeout):
        raise StepFailed(f"{what}: no answer within {defaults.SMOKE_CALL_TIMEOUT_S:g}s") from None
    except ConnectionError as exc:
        raise StepFailed(f"{what} failed: {exc}") from None


def _python_matches(reported: str, wanted: str) -> bool:
    if not wanted:
        return bool(reported)
    return reported.split(".")[:2] == wanted.split(".")[:2]


def unix_problem(sock: Path) -> str | None:
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


def wait_answering(address: str, timeout: float) -> None:
    """Until a HealthCheck through ``address`` answers (the port mapping may lag a moment)."""
    deadline = time.monotonic() + timeout
    with ExecutorClient(address, timeout=2.0) as client:
        while True:
            try:
                client.health()
                return
            except grpc.RpcError as exc:
                if time.monotonic() >= deadline:
                    raise StepFailed(f"no answer on {address}: {_rpc_text(exc)}") from None
            time.sleep(POLL_S)


def check_health(
    health: pb.HealthCheckResponse, entries: list[PolicyEntry], results: dict[str, PolicyResult]
) -> None:
    """Every registry policy ready with its Python version; fills ``results``."""
    statuses = {p.name: p for p in health.policies}
    for entry in entries:
        st = statuses.get(entry.name)
        if st is None:
            raise StepFailed(f"policy {entry.name} is missing from HealthCheck")
        res = results[entry.name]
        res.python_version, res.ready = st.python_version, st.ready
        res.distributions = dict(st.distributions)
        if not st.ready:
            why = "quarantined" if st.quarantined else (st.reason or "no reason given")
            raise StepFailed(f"policy {entry.name} not ready: {why}")
        if not _python_matches(st.python_version, entry.python_version):
            raise StepFailed(
                f"policy {entry.name} runs Python {st.python_version or '(unknown)'}, "
                f"the registry says {entry.python_version}"
            )
    extra = sorted(set(statuses) - {e.name for e in entries})
    if extra:
        raise StepFailed(f"HealthCheck lists policies not in the registry: {', '.join(extra)}")
    if not health.ready:
        raise StepFailed(f"executor not ready: {health.reason or 'no reason given'}")


def _init(client: ExecutorClient, entry: PolicyEntry, params: dict[str, Any], what: str) -> str:
    """``InitPolicy``; the instance id."""
    init = call(
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
        raise StepFailed(
            f"policy {entry.name}: InitPolicy with the params of {what} failed: "
            f"{init.error_message or 'no message'}"
        )
    return str(init.instance_id)


def _destroy(client: ExecutorClient, instance_id: str, what: str) -> None:
    done = call(f"DestroyPolicy {what}", lambda: client.destroy_policy(instance_id))
    if not done.success:
        raise StepFailed(f"DestroyPolicy {what} failed: {done.error_message or 'no message'}")


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
            response = call(f"ExecuteStream {sample.file}", partial(client.execute, request))
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
