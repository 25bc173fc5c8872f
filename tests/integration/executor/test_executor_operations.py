"""Operational limits of a real executor: oversized replies, many streams, InitPolicy bounds,
start-up parameter shapes, quarantine probation and a stale ready file.

Real executor processes on sockets in temp dirs, real worker processes in real venvs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import pytest
from executor_harness import RunningExecutor, headers_set, policy_entry

from gateway_executor import defaults
from gateway_executor.client import CallStream, ExecutorClient, build_request
from gateway_executor.proto import python_executor_pb2 as pb

pytestmark = pytest.mark.integration

Start = Callable[..., RunningExecutor]


def call(stream: CallStream, iid: str, path: str) -> Future[pb.StreamResponse]:
    return stream.submit(build_request("request_headers", instance_id=iid, request={"path": path}))


def init(client: ExecutorClient, name: str, **params: object) -> str:
    resp = client.init_policy(name, "v1.0.0", params)
    assert resp.success, resp.error_message
    return resp.instance_id


# ---- oversized replies ---------------------------------------------------------------------
def test_an_oversized_reply_fails_only_its_call_and_the_stream_survives(
    start_executor: Start, venvs: dict[str, Path]
) -> None:
    """A reply over the default (upstream's 50 MiB) limit, while another policy's calls are in
    flight on the same stream: only that call fails, with an ``execution_error``."""
    py = venvs["py312"]
    ex = start_executor(
        [
            policy_entry("big", "ops-policy", py),
            policy_entry("other", "chaos-policy", py, workers=2),
        ]
    ).wait_ready()
    big, other = init(ex.client, "big"), init(ex.client, "other")
    stream = ex.client.stream()
    slow = [call(stream, other, "/sleep/1.5") for _ in range(2)]
    time.sleep(0.3)  # both running in the other policy's workers
    size = defaults.MAX_MESSAGE_BYTES + 1
    oversized = call(stream, big, f"/big/{size}").result(60)
    assert oversized.error.error_type == "execution_error", oversized
    assert oversized.error.message.startswith("response too large: "), oversized.error.message
    assert f"bytes > {defaults.MAX_MESSAGE_BYTES}" in oversized.error.message
    for fut in slow:
        assert headers_set(fut.result(30)).get("x-slept") == "1"
    # The same stream still carries calls of both policies.
    assert headers_set(call(stream, big, "/after").result(30))["x-echo"] == "/after"
    assert headers_set(call(stream, other, "/after").result(30))["x-echo"] == "/after"
    assert stream.error is None
    assert ex.client.health().ready
    assert "WARNING" in next(
        line for line in ex.logs().splitlines() if "response too large" in line
    )


def test_max_message_bytes_sets_the_limit(start_executor: Start, venvs: dict[str, Path]) -> None:
    ex = start_executor(
        [
            policy_entry("big", "ops-policy", venvs["py312"]),
            policy_entry("big-skip", "ops-policy", venvs["py312"], failure_mode="skip"),
        ],
        "--max-message-bytes",
        "65536",
    ).wait_ready()
    big, skip = init(ex.client, "big"), init(ex.client, "big-skip")
    stream = ex.client.stream()
    assert len(headers_set(call(stream, big, "/big/30000").result(30))["x-big"]) == 30000
    over = call(stream, big, "/big/70000").result(30)
    assert over.error.error_type == "execution_error"
    assert "bytes > 65536" in over.error.message
    # failure_mode skip: the request passes unchanged.
    passed = call(stream, skip, "/big/70000").result(30)
    assert passed.WhichOneof("payload") == "request_header_action" and not headers_set(passed)


# ---- many streams --------------------------------------------------------------------------
def test_64_idle_streams_leave_control_rpcs_and_new_streams_answering(
    start_executor: Start, venvs: dict[str, Path]
) -> None:
    ex = start_executor([policy_entry("echo", "ops-policy", venvs["py312"])]).wait_ready()
    iid = init(ex.client, "echo")
    clients = [ExecutorClient(str(ex.socket), timeout=20) for _ in range(4)]
    streams: list[CallStream] = []
    try:
        for n in range(64):
            stream = CallStream(clients[n % 4].stub)
            # One answered call: the stream is open on the server, then it stays idle.
            assert headers_set(call(stream, iid, f"/s{n}").result(30))["x-echo"] == f"/s{n}"
            streams.append(stream)
        fresh = ExecutorClient(str(ex.socket), timeout=20)
        clients.append(fresh)
        assert fresh.health().ready
        second = init(fresh, "echo")
        assert fresh.destroy_policy(second).success
        assert headers_set(call(fresh.stream(), iid, "/new").result(20))["x-echo"] == "/new"
        # The idle streams still work too.
        assert headers_set(call(streams[0], iid, "/again").result(20))["x-echo"] == "/again"
    finally:
        for stream in streams:
            stream.close()
        for client in clients:
            client.close()


# ---- InitPolicy ----------------------------------------------------------------------------
def test_init_policy_is_bounded_by_init_timeout_ms(
    start_executor: Start, venvs: dict[str, Path]
) -> None:
    py = venvs["py312"]
    ex = start_executor(
        [
            # init_timeout_ms defaults to timeout_ms.
            policy_entry("quick", "ops-policy", py, timeout_ms=1000, workers=2),
            policy_entry("patient", "ops-policy", py, timeout_ms=1000, init_timeout_ms=8000),
        ]
    ).wait_ready()
    client = ExecutorClient(str(ex.socket), timeout=60)
    try:
        t0 = time.monotonic()
        hung = client.init_policy("quick", "v1.0.0", {"init_sleep": 60})
        took = time.monotonic() - t0
        assert not hung.success, hung
        assert hung.error_message == (
            "timeout: get_policy did not finish within init_timeout_ms (1s)"
        )
        assert took < 20, f"InitPolicy took {took:.1f}s with a 1 s init timeout"
        # The worker stuck in get_policy was killed; the other one serves meanwhile.
        iid = init(client, "quick")
        resp = client.execute(
            build_request("request_headers", instance_id=iid, request={"path": "/ok"})
        )
        assert headers_set(resp)["x-echo"] == "/ok"
        # A slow get_policy within init_timeout_ms (though over timeout_ms) is fine.
        assert init(client, "patient", init_sleep=2)
    finally:
        client.close()


def test_the_start_up_check_sees_params_as_init_policy_delivers_them(
    start_executor: Start, venvs: dict[str, Path]
) -> None:
    """InitPolicy's params are a protobuf Struct (every number a float): a policy that needs an
    int fails at start-up already, not at every InitPolicy."""
    ex = start_executor(
        [
            policy_entry("needs-int", "ops-policy", venvs["py312"], params={"count": 3}),
            policy_entry("fine", "ops-policy", venvs["py312"], params={"label": "x"}),
        ]
    ).wait_started()
    health = ex.client.health()
    by = {p.name: p for p in health.policies}
    assert not health.ready
    assert not by["needs-int"].ready
    assert "parameter 'count' must be an integer, got 3.0" in by["needs-int"].reason
    assert by["fine"].ready
    assert not ex.ready.exists()


# ---- quarantine probation ------------------------------------------------------------------
def test_quarantine_is_released_on_probation_and_the_next_crash_quarantines_again(
    start_executor: Start, venvs: dict[str, Path]
) -> None:
    ex = start_executor(
        [policy_entry("flaky", "chaos-policy", venvs["py312"], workers=2, timeout_ms=20000)],
        "--quarantine-cooldown",
        "2",
    ).wait_ready()
    iid = init(ex.client, "flaky")

    def exit_call() -> str:
        resp = ex.client.execute(
            build_request("request_headers", instance_id=iid, request={"path": "/exit"})
        )
        return resp.error.error_type

    kinds = [exit_call() for _ in range(5)]
    assert kinds == ["worker_crashed"] * 5, kinds
    [status] = ex.client.health().policies
    assert status.quarantined and status.quarantines == 1 and not status.probation

    def released() -> bool:
        [s] = ex.client.health().policies
        return s.probation and s.ready

    ex.wait_for(released, 30, "the release from quarantine")
    health = ex.client.health()
    assert health.ready
    assert "probation" in health.policies[0].reason
    resp = ex.client.execute(
        build_request("request_headers", instance_id=iid, request={"path": "/fine"})
    )
    assert headers_set(resp)["x-echo"] == "/fine"
    # One crash on probation is enough.
    assert exit_call() == "worker_crashed"
    [status] = ex.client.health().policies
    assert status.quarantined and status.quarantines == 2 and not status.ready
    assert exit_call() == "quarantined"
    assert "released from quarantine" in ex.logs()


# ---- ready file ----------------------------------------------------------------------------
def test_a_stale_ready_file_is_removed_at_start(
    start_executor: Start, venvs: dict[str, Path], tmp_path: Path
) -> None:
    """A ready file left by a SIGKILLed executor must not announce the next one as ready."""
    work = tmp_path / "ex"
    work.mkdir()
    (work / "executor.ready").write_text("12345\n")
    ex = start_executor(
        [policy_entry("never", "broken-import", venvs["py312"])], name="ex"
    ).wait_started()
    assert not ex.client.health().ready
    assert not ex.ready.exists()
