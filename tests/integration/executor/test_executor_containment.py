"""Containment of hostile policies by a real executor process (``hostile-policy`` fixture):
processes a policy starts die with its worker, a worker's death is seen by pid, forged reply
frames are never delivered.

Every process the policy starts records its pid; after each event (a worker's death, a
timeout kill, the executor's exit) the test counts which of them are still alive in ``/proc``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from executor_harness import RunningExecutor, alive, headers_set, policy_entry

from gateway_executor.client import build_request
from gateway_executor.procs import read_stat
from gateway_executor.proto import python_executor_pb2 as pb

pytestmark = pytest.mark.integration

Start = Callable[..., RunningExecutor]


def recorded(pidfile: Path) -> list[int]:
    """The pids the policy's processes wrote."""
    try:
        return [int(x) for x in pidfile.read_text().split()]
    except FileNotFoundError:
        return []


def wait_recorded(pidfile: Path, count: int, within: float = 15) -> list[int]:
    """The recorded pids, once ``count`` processes wrote theirs (a child writes after the call
    that forked it may have returned)."""
    end = time.monotonic() + within
    while len(recorded(pidfile)) < count:
        assert time.monotonic() < end, f"only {recorded(pidfile)} recorded, wanted {count}"
        time.sleep(0.02)
    return recorded(pidfile)


def survivors(pidfile: Path, within: float) -> list[int]:
    """The recorded processes still alive after waiting up to ``within`` seconds for none."""
    end = time.monotonic() + within
    while True:
        left = [p for p in recorded(pidfile) if alive(p)]
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.05)


def gone(pids: set[int], within: float) -> list[int]:
    """Those of ``pids`` still alive after waiting up to ``within`` seconds for none (a process
    SIGKILLed just before the executor exited may still be ending)."""
    end = time.monotonic() + within
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < end:
        time.sleep(0.05)
    return left


def call(ex: RunningExecutor, iid: str, path: str, timeout: float = 60) -> pb.StreamResponse:
    req = build_request("request_headers", instance_id=iid, request={"path": path})
    return ex.client.execute(req, timeout=timeout)


def hostile(ex_start: Start, py: Path, **over: object) -> tuple[RunningExecutor, str]:
    ex = ex_start([policy_entry("hostile", "hostile-policy", py, **over)]).wait_ready()
    return ex, ex.client.init_policy("hostile", "v1.0.0").instance_id


def test_fork_then_exit_is_a_crash_at_once_and_counts_toward_quarantine(
    start_executor: Start, venvs: dict[str, Path], tmp_path: Path
) -> None:
    """The worker forks and exits; its child holds the socket. The call fails as a crash long
    before its 30 s timeout, the child is killed, and five of them quarantine the policy."""
    ex, iid = hostile(start_executor, venvs["py312"], timeout_ms=30000)
    pidfile = tmp_path / "pids"
    t0 = time.monotonic()
    resp = call(ex, iid, f"/fork-exit|{pidfile}")
    took = time.monotonic() - t0
    assert resp.WhichOneof("payload") == "error", resp
    assert resp.error.error_type == "worker_crashed", resp
    assert "worker process ended (exit code 0)" in resp.error.message
    assert took < 15, f"the crash took {took:.1f}s to be seen (timeout is 30 s)"
    wait_recorded(pidfile, 1)
    assert survivors(pidfile, 10) == []
    for _ in range(4):
        ex.wait_for(lambda: ex.client.health().policies[0].ready, 30, "the replacement worker")
        resp = call(ex, iid, f"/fork-exit|{pidfile}")
        assert resp.error.error_type in ("worker_crashed", "quarantined"), resp
    ex.wait_for(lambda: ex.client.health().policies[0].quarantined, 30, "quarantine")
    assert "quarantined after 5 worker crashes" in ex.client.health().policies[0].reason
    assert survivors(pidfile, 10) == []


def test_a_setsid_grandchild_whose_parent_exits_is_killed(
    start_executor: Start, venvs: dict[str, Path], tmp_path: Path
) -> None:
    """A double fork with ``setsid`` (the daemon pattern) while the worker lives on: the
    grandchild is re-parented to the executor (its subreaper), which kills it."""
    ex, iid = hostile(start_executor, venvs["py312"])
    pidfile = tmp_path / "pids"
    resp = call(ex, iid, f"/double-fork|{pidfile}")
    assert resp.WhichOneof("payload") == "request_header_action", resp
    wait_recorded(pidfile, 1)
    assert survivors(pidfile, 10) == []
    assert "orphaned policy process" in ex.logs()
    # The worker itself was not harmed.
    assert call(ex, iid, "/ok").WhichOneof("payload") == "request_header_action"


def test_a_timeout_kill_takes_a_bounded_fork_bomb_with_it(
    start_executor: Start, venvs: dict[str, Path], tmp_path: Path
) -> None:
    """62 processes in a tree, half of them in sessions of their own, then the call runs past
    its timeout: the worker is killed with every one of them."""
    ex, iid = hostile(start_executor, venvs["py312"], timeout_ms=3000)
    pidfile = tmp_path / "pids"
    resp = call(ex, iid, f"/bomb/5|{pidfile}")
    assert resp.error.error_type == "timeout", resp
    wait_recorded(pidfile, 62)
    assert survivors(pidfile, 15) == []
    health = ex.client.health().policies[0]
    assert health.ready and not health.quarantined  # a timeout is no crash
    assert call(ex, iid, "/ok").WhichOneof("payload") == "request_header_action"


def test_the_executor_leaves_no_process_of_a_policy_behind(
    start_executor: Start, venvs: dict[str, Path], tmp_path: Path
) -> None:
    """Children (in sessions of their own) of live workers, then SIGTERM: none survives."""
    ex, iid = hostile(start_executor, venvs["py312"], workers=2)
    pidfile = tmp_path / "pids"
    for _ in range(3):
        assert call(ex, iid, f"/child|{pidfile}").WhichOneof("payload") == "request_header_action"
    children = wait_recorded(pidfile, 3)
    assert all(alive(p) for p in children)  # a live worker's children live on
    workers = ex.workers()
    assert ex.stop() == 0
    assert survivors(pidfile, 10) == []
    assert gone(workers, 10) == []


def test_a_forged_reply_frame_is_never_delivered(
    start_executor: Start, venvs: dict[str, Path], tmp_path: Path
) -> None:
    """The policy writes a reply frame of its own on the worker socket, for the next request
    (offset 1) or its own (offset 0, the real reply then follows as an extra frame): the
    worker is killed as a protocol violation, the call errors, and no later call ever gets a
    reply meant for another request."""
    ex, iid = hostile(start_executor, venvs["py312"])
    for offset in (1, 0):
        resp = call(ex, iid, f"/forge/{offset}")
        if offset == 1:  # answers another request: never delivered
            assert resp.WhichOneof("payload") == "error", resp
            assert resp.error.error_type == "worker_crashed", resp
            # Read apart: a reply for another request; read together: bytes after a frame.
            assert "reply for request" in resp.error.message or "trailing" in resp.error.message
        elif resp.WhichOneof("payload") == "error":  # both frames read at once
            assert "trailing" in resp.error.message, resp
        else:  # the policy answers its own call as it likes; the real reply is left over
            assert headers_set(resp)["x-echo"] == "forged", resp
        for i in range(5):
            ex.wait_for(lambda: ex.client.health().policies[0].ready, 30, "a replacement")
            path = f"/after/{offset}/{i}"
            resp = call(ex, iid, path)
            if resp.WhichOneof("payload") == "error":
                # The extra frame is found when the next request's reply is read.
                assert resp.error.error_type == "worker_crashed", resp
                assert "reply for request" in resp.error.message or "trailing" in resp.error.message
                continue
            assert headers_set(resp)["x-echo"] == path, resp
    assert "worker_crashed" in ex.logs()


def test_a_worker_over_memory_mb_ends_as_a_crash(
    start_executor: Start, venvs: dict[str, Path]
) -> None:
    """``memory_mb: 128``: touching 64 MiB is fine, 512 MiB ends the worker; the call fails as
    a crash that says so (counted toward quarantine), and a replacement serves the next call."""
    ex, iid = hostile(start_executor, venvs["py312"], memory_mb=128)
    assert call(ex, iid, "/alloc/64").WhichOneof("payload") == "request_header_action"
    crashes_before = ex.logs().count("crashed")
    resp = call(ex, iid, "/alloc/512")
    assert resp.WhichOneof("payload") == "error", resp
    assert resp.error.error_type == "worker_crashed", resp
    assert "over its memory limit of 128 MiB" in resp.error.message, resp
    assert ex.logs().count("crashed") > crashes_before
    ex.wait_for(lambda: ex.client.health().policies[0].ready, 30, "the replacement worker")
    assert call(ex, iid, "/ok").WhichOneof("payload") == "request_header_action"


def test_a_pool_forks_its_workers_from_its_fork_server(
    start_executor: Start, venvs: dict[str, Path], tmp_path: Path
) -> None:
    """Three workers: one fork server imported the policy and forked them; each is the
    executor's own child (adopted) in a session of its own, and so is a crashed one's
    replacement. After the executor's exit none of them, nor the fork server, is left."""
    ex, iid = hostile(start_executor, venvs["py312"], workers=3)
    [server] = ex.fork_servers()
    workers = ex.workers()
    assert len(workers) == 3
    for pid in workers:
        info = read_stat(pid)
        assert info is not None and info.ppid == ex.proc.pid and info.sid == pid, info
    resp = call(ex, iid, f"/fork-exit|{tmp_path / 'pids'}")
    assert resp.error.error_type == "worker_crashed", resp
    ex.wait_for(lambda: len(ex.workers()) == 3 and ex.workers() != workers, 30, "a replacement")
    [new] = ex.workers() - workers
    info = read_stat(new)
    assert info is not None and info.ppid == ex.proc.pid and info.sid == new
    assert ex.fork_servers() == {server}
    everything = ex.workers() | {server}
    assert ex.stop() == 0
    assert gone(everything, 10) == []
