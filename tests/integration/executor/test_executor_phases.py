"""Every phase through a real executor, real worker processes, real venvs, a real socket."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from executor_harness import (
    RunningExecutor,
    alive,
    cancel_then_call,
    echo_load,
    headers_set,
    policy_entry,
)

from gateway_executor import translate
from gateway_executor.client import build_request
from gateway_executor.proto import python_executor_pb2 as pb

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ex(
    tmp_path_factory: pytest.TempPathFactory, venvs: dict[str, Path]
) -> Iterator[RunningExecutor]:
    p310, p312 = venvs["py310"], venvs["py312"]
    policies = [
        policy_entry(
            "header-312",
            "header-policy",
            p312,
            workers=2,
            params={"header": "x-tenant", "value": "registry"},
        ),
        policy_entry("header-310", "header-policy", p310),
        policy_entry("body", "body-policy", p310),
        policy_entry("stream", "stream-policy", p312),
        policy_entry("chaos-fail", "chaos-policy", p312, workers=2, timeout_ms=400),
        policy_entry("chaos-skip", "chaos-policy", p310, failure_mode="skip", timeout_ms=400),
        policy_entry("slow", "chaos-policy", p312, timeout_ms=20000),
        policy_entry("echo", "chaos-policy", p312, workers=2),
        policy_entry("crash", "chaos-policy", p312, timeout_ms=15000),
        policy_entry("header-per-call", "header-policy", p312, isolation="per-call", workers=2),
    ]
    running = RunningExecutor(tmp_path_factory.mktemp("phases"), policies).wait_ready()
    try:
        yield running
    finally:
        kids = running.workers()
        assert running.stop() == 0
        time.sleep(0.2)
        assert not [p for p in kids if alive(p)], running.logs()
        assert not running.socket.exists() and not running.ready.exists()


def init(ex: RunningExecutor, name: str, **params: object) -> str:
    resp = ex.client.init_policy(name, "v1.0.0", params, route_name=f"route-{name}")
    assert resp.success, resp.error_message
    return resp.instance_id


def test_health_reports_each_policy(ex: RunningExecutor) -> None:
    health = ex.client.health()
    assert health.ready and health.loaded_policies == 10 and health.reason == ""
    by = {p.name: p for p in health.policies}
    assert by["header-310"].python_version.startswith("3.10.")
    assert by["header-312"].python_version.startswith("3.12.")
    assert by["header-310"].distributions["packaging"] == "21.3"
    assert by["header-312"].distributions["packaging"] == "24.2"
    assert by["header-312"].distributions["apip-sdk-core"] == "0.2.3"
    assert (by["header-per-call"].isolation, by["header-per-call"].workers) == ("per-call", 2)
    assert all(p.ready and not p.quarantined for p in health.policies)
    assert "executor ready: 10 policies" in ex.logs()


def test_conflicting_dependencies_on_two_pythons_both_answer(ex: RunningExecutor) -> None:
    for name, dep in (("header-310", "21.3"), ("header-312", "24.2")):
        iid = init(ex, name, value="v")
        resp = ex.client.execute(
            build_request("request_headers", instance_id=iid, request={"path": "/a"})
        )
        assert headers_set(resp)["x-dep-version"] == dep


def test_header_policy_request_and_response(ex: RunningExecutor) -> None:
    iid = init(ex, "header-312", header="x-org", value="acme")
    req = build_request(
        "request_headers",
        instance_id=iid,
        route_name="r-9",
        request={"path": "/reroute", "headers": {"x-trace": ["1", "2"]}},
        metadata={"count": 41},
        params={"header": "x-org", "value": "acme"},
    )
    resp = ex.client.execute(req)
    assert resp.request_id == req.request_id
    hs = headers_set(resp)
    assert hs["x-org"] == "acme" and hs["x-trace"] == "1,2"
    mods = resp.request_header_action.upstream_request_header_modifications
    assert mods.path.value == "/rewritten" and mods.upstream_name.value == "backend-2"
    meta = translate.struct_to_dict(resp.updated_metadata)
    assert (
        meta["count"] == 42 and meta["route"] == "r-9" and meta["init_route"] == "route-header-312"
    )
    blocked = ex.client.execute(
        build_request("request_headers", instance_id=iid, request={"headers": {"x-block": "y"}})
    )
    imm = blocked.request_header_action.immediate_response
    assert imm.status_code == 403 and imm.body.value == b"blocked \xff"
    out = ex.client.execute(
        build_request(
            "response_headers", instance_id=iid, request={"path": "/p"}, response={"status": 200}
        )
    )
    rmods = out.response_header_action.downstream_response_header_modifications
    assert rmods.headers_to_set["x-response-policy"] == "yes"


def test_buffered_body_policy(ex: RunningExecutor) -> None:
    iid = init(ex, "body")
    resp = ex.client.execute(
        build_request(
            "request_body",
            instance_id=iid,
            request={"method": "POST", "body": {"text": "write to a@b.com"}},
        )
    )
    assert (
        resp.request_action.upstream_request_modifications.body.value
        == b'{"text":"write to [EMAIL]"}'
    )
    resp = ex.client.execute(
        build_request(
            "response_body", instance_id=iid, response={"status": 200, "body": "from c@d.io"}
        )
    )
    mods = resp.response_action.downstream_response_modifications
    assert mods.body.value == b"from [EMAIL]" and mods.status_code.value == 201
    big = b"lorem ipsum " * (256 * 1024) + b" e@f.gh"
    resp = ex.client.execute(build_request("request_body", instance_id=iid, request={"body": big}))
    assert resp.request_action.upstream_request_modifications.body.value.endswith(b" [EMAIL]")


def test_streaming_policy(ex: RunningExecutor) -> None:
    iid = init(ex, "stream")
    call = ex.client.execute
    assert call(
        build_request("needs_more_request_data", instance_id=iid, accumulated=b"a")
    ).needs_more_decision.needs_more
    chunk = call(build_request("request_chunk", instance_id=iid, chunk=b"abc", chunk_index=2))
    assert chunk.streaming_request_action.forward_request_chunk.body.value == b"ABC"
    assert not call(
        build_request("needs_more_response_data", instance_id=iid, accumulated=b"line\n")
    ).needs_more_decision.needs_more
    rc = call(build_request("response_chunk", instance_id=iid, chunk=b"xyz"))
    assert rc.streaming_response_action.forward_response_chunk.body.value == b"zyx"
    stop = call(build_request("response_chunk", instance_id=iid, chunk=b"STOP"))
    assert stop.streaming_response_action.terminate_response_chunk.body.value == b"[terminated]"


def test_policy_raising_fail_and_skip(ex: RunningExecutor) -> None:
    fail = ex.client.execute(
        build_request(
            "request_headers", instance_id=init(ex, "chaos-fail"), request={"path": "/raise"}
        )
    )
    assert fail.error.error_type == "execution_error"
    assert "RuntimeError: policy exploded" in fail.error.message
    assert fail.error.policy_name == "chaos-fail"
    skip = ex.client.execute(
        build_request(
            "request_headers", instance_id=init(ex, "chaos-skip"), request={"path": "/raise"}
        )
    )
    assert skip.WhichOneof("payload") == "request_header_action"
    assert skip.request_header_action.WhichOneof("action") is None


@pytest.mark.parametrize("path", ["/exit", "/segv"])
def test_worker_crash_fails_only_that_call_and_is_replaced(ex: RunningExecutor, path: str) -> None:
    iid = init(ex, "crash")  # one worker, so the replacement is observable
    before = ex.client.execute(
        build_request("request_headers", instance_id=iid, request={"path": "/ok"})
    )
    old_pid = headers_set(before)["x-pid"]
    crashed = ex.client.execute(
        build_request("request_headers", instance_id=iid, request={"path": path})
    )
    assert crashed.error.error_type == "worker_crashed", crashed
    assert "crashed" in crashed.error.message
    # The next calls wait for the replacement (backoff) and are served by a new process.
    for i in range(5):
        ok = ex.client.execute(
            build_request("request_headers", instance_id=iid, request={"path": f"/ok/{i}"})
        )
        assert ok.WhichOneof("payload") == "request_header_action", ok
        assert headers_set(ok)["x-pid"] != old_pid
    assert ex.client.health().ready
    skip = ex.client.execute(
        build_request("request_headers", instance_id=init(ex, "chaos-skip"), request={"path": path})
    )
    assert skip.WhichOneof("payload") == "request_header_action"


def test_timeout_kills_and_replaces_the_worker(ex: RunningExecutor) -> None:
    iid = init(ex, "chaos-fail")
    t0 = time.monotonic()
    resp = ex.client.execute(
        build_request("request_headers", instance_id=iid, request={"path": "/sleep/30"})
    )
    assert resp.error.error_type == "timeout"
    assert time.monotonic() - t0 < 5
    assert "replaced: call timed out" in ex.logs()
    ok = ex.client.execute(
        build_request("request_headers", instance_id=iid, request={"path": "/ok"})
    )
    assert ok.WhichOneof("payload") == "request_header_action"


def test_deadline_in_execution_metadata_caps_the_timeout(ex: RunningExecutor) -> None:
    iid = init(ex, "slow")
    req = build_request("request_headers", instance_id=iid, request={"path": "/sleep/10"})
    req.execution_metadata.deadline.FromNanoseconds(time.time_ns() + 300_000_000)
    t0 = time.monotonic()
    resp = ex.client.execute(req)
    assert resp.error.error_type == "timeout" and time.monotonic() - t0 < 5
    past = build_request("request_headers", instance_id=iid, request={"path": "/ok"})
    past.execution_metadata.deadline.FromSeconds(int(time.time()) - 5)
    assert ex.client.execute(past).error.error_type == "timeout"


def test_cancellation_drops_the_response_and_tells_the_policy(ex: RunningExecutor) -> None:
    iid = init(ex, "slow")  # one worker: the next call waits for the cancelled one to stop
    stream = ex.client.stream()
    req = build_request("request_headers", instance_id=iid, request={"path": "/sleep/8"})
    fut, follow, elapsed = cancel_then_call(stream, req, 0.5, "client went away", "/ok", 20)
    # The policy saw is_cancelled() and returned early, freeing its only worker quickly.
    assert follow.WhichOneof("payload") == "request_header_action"
    assert elapsed < 3
    time.sleep(0.3)
    assert not fut.done(), "a cancelled call must not be answered"
    stream.forget(req.request_id)


def test_protocol_errors(ex: RunningExecutor) -> None:
    iid = init(ex, "echo")
    bad_phase = build_request("request_headers", instance_id=iid)
    bad_phase.execution_metadata.phase = pb.PHASE_RESPONSE_BODY
    resp = ex.client.execute(bad_phase)
    assert resp.error.error_type == "protocol_error" and "does not match" in resp.error.message
    unknown = ex.client.execute(build_request("request_headers", instance_id="nope"))
    assert unknown.error.error_type == "execution_error" and "InitPolicy" in unknown.error.message
    stream = ex.client.stream()
    slow = init(ex, "slow")
    first = build_request("request_headers", instance_id=slow, request={"path": "/sleep/0.5"})
    f1 = stream.submit(first)
    dup = pb.StreamRequest()
    dup.CopyFrom(first)
    time.sleep(0.1)
    # The same request_id while the first is in flight: the client cannot tell the two
    # answers apart, so only inspect what the server sent.
    with stream._lock:
        stream._pending.pop(first.request_id, None)
    stream._send.put(dup)
    time.sleep(1.0)
    got = [r for r in stream.unmatched if r.request_id == first.request_id]
    assert any(r.error.error_type == "protocol_error" for r in got), got
    assert f1 is not None


def test_init_destroy_lifecycle(ex: RunningExecutor) -> None:
    bad = ex.client.init_policy("no-such-policy", "v1.0.0")
    assert not bad.success and "unknown policy" in bad.error_message
    major = ex.client.init_policy("echo", "v1")  # upstream falls back to name:vMAJOR
    assert major.success
    iid = major.instance_id
    ok = ex.client.execute(build_request("request_headers", instance_id=iid))
    assert ok.WhichOneof("payload") == "request_header_action"
    assert ex.client.destroy_policy(iid).success
    assert ex.client.destroy_policy(iid).success  # idempotent
    gone = ex.client.execute(build_request("request_headers", instance_id=iid))
    assert gone.error.error_type == "execution_error"


def test_per_call_isolation_uses_a_fresh_process_each_time(ex: RunningExecutor) -> None:
    iid = init(ex, "header-per-call", value="pc")
    seen = set()
    for _ in range(3):
        resp = ex.client.execute(
            build_request(
                "request_headers", instance_id=iid, request={"path": "/x"}, params={"value": "pc"}
            )
        )
        assert headers_set(resp)["x-tenant"] == "pc"
        seen.add(resp.request_id)
    assert len(seen) == 3


def test_32_concurrent_callers_no_lost_or_mismatched_responses(ex: RunningExecutor) -> None:
    iid = init(ex, "echo")
    stream = ex.client.stream()
    unmatched_before = len(stream.unmatched)
    callers, per_caller = 32, 2000
    answered, problems = echo_load(stream, iid, callers, per_caller, budget_s=240.0)
    assert not problems, problems[:5]
    assert answered == callers * per_caller
    assert len(stream.unmatched) == unmatched_before
