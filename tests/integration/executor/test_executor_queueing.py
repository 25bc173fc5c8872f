"""Calls that wait: for a busy worker (pool queue) or for a ``max_concurrent`` slot (backlog)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from executor_harness import RunningExecutor, cancel_then_call, policy_entry

from gateway_executor.client import build_request, cancel_request
from gateway_executor.proto import python_executor_pb2 as pb

pytestmark = pytest.mark.integration

Start = Callable[..., RunningExecutor]


def slept(resp: pb.StreamResponse) -> bool:
    mods = resp.request_header_action.upstream_request_header_modifications
    return mods.headers_to_set.get("x-slept") == "1"


def busy_single_worker(
    start_executor: Start, venvs: dict[str, Path], sleep_s: float
) -> tuple[Any, str, Any, Any]:
    """A one-worker policy whose worker is busy with a ``sleep_s`` call: (executor, iid, stream, busy)."""
    ex = start_executor(
        [policy_entry("one", "chaos-policy", venvs["py312"], workers=1, timeout_ms=20000)]
    ).wait_ready()
    iid = ex.client.init_policy("one", "v1.0.0").instance_id
    stream = ex.client.stream()
    busy = stream.submit(
        build_request("request_headers", instance_id=iid, request={"path": f"/sleep/{sleep_s:g}"})
    )
    time.sleep(0.2)
    return ex, iid, stream, busy


def test_a_queued_call_expires_at_its_deadline_while_the_worker_is_busy(
    start_executor: Start, venvs: dict[str, Path]
) -> None:
    ex, iid, stream, busy = busy_single_worker(start_executor, venvs, 1.5)
    queued = build_request("request_headers", instance_id=iid, request={"path": "/ok"})
    queued.execution_metadata.deadline.FromNanoseconds(time.time_ns() + 300_000_000)
    t0 = time.monotonic()
    resp = stream.call(queued, 10)
    waited = time.monotonic() - t0
    # It expired while waiting for the worker, not when the busy call ended.
    assert resp.error.error_type == "timeout", resp
    assert 0.2 < waited < 1.0, waited
    assert slept(busy.result(10))
    assert "replaced" not in ex.logs()  # the busy worker was left alone


def test_a_cancelled_queued_call_is_never_answered_and_the_queue_moves_on(
    start_executor: Start, venvs: dict[str, Path]
) -> None:
    _ex, iid, stream, busy = busy_single_worker(start_executor, venvs, 1)
    queued = build_request("request_headers", instance_id=iid, request={"path": "/sleep/5"})
    waiting, follow, elapsed = cancel_then_call(stream, queued, 0.1, "client left", "/after", 10)
    # Served right after the busy call: the cancelled one (5 s) never ran in between.
    assert follow.WhichOneof("payload") == "request_header_action", follow
    assert elapsed < 2.5
    assert slept(busy.result(10))
    time.sleep(0.3)
    assert not waiting.done(), "a cancelled call must not be answered"
    stream.forget(queued.request_id)


def test_max_concurrent_makes_calls_wait_their_turn(
    start_executor: Start, venvs: dict[str, Path]
) -> None:
    ex = start_executor(
        [policy_entry("two", "chaos-policy", venvs["py312"], workers=2, timeout_ms=20000)],
        "--max-concurrent",
        "1",
    ).wait_ready()
    iid = ex.client.init_policy("two", "v1.0.0").instance_id
    stream = ex.client.stream()
    t0 = time.monotonic()
    first = stream.submit(
        build_request("request_headers", instance_id=iid, request={"path": "/sleep/0.6"})
    )
    second = stream.submit(
        build_request("request_headers", instance_id=iid, request={"path": "/sleep/0.6"})
    )
    third = build_request("request_headers", instance_id=iid, request={"path": "/sleep/5"})
    dropped = stream.submit(third)
    time.sleep(0.1)
    stream.submit(cancel_request(third.request_id, pb.PHASE_REQUEST_HEADERS, "client left"))
    assert slept(first.result(10)) and slept(second.result(10))
    # Two free workers, but one slot: the calls ran one after the other.
    assert time.monotonic() - t0 >= 1.1
    after = stream.call(
        build_request("request_headers", instance_id=iid, request={"path": "/after"}), 10
    )
    assert after.WhichOneof("payload") == "request_header_action", after
    assert time.monotonic() - t0 < 4.0  # the cancelled 5 s call did not hold the slot
    assert not dropped.done()
    stream.forget(third.request_id)
