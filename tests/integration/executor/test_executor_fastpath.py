"""The executor's fast path, run for real in this process.

An :class:`Engine` with real worker processes (this test run's interpreter, the ``chaos-policy``
fixture) behind a real in-process gRPC server on a Unix socket. With no other call in flight on
an idle stream, the thread that read the request (the gRPC stream reader) waits for the worker's
reply itself (the pool's ``stats().fast_path_calls`` counts those); a slower reply is handed to
the worker's driver thread. Idle workers' drivers park on a pidfd and a wake pipe.

Unless a test is about the default, the fast path waits ``MAX_SYNC_WAIT_US`` (the largest
configurable value) so that "the reply came in time" does not depend on this shared VM's load.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from executor_harness import alive, echo_load, headers_set, policy_entry

from gateway_executor import defaults
from gateway_executor.client import CallStream, ExecutorClient, build_request
from gateway_executor.config import MAX_SYNC_WAIT_US
from gateway_executor.engine import Engine, Settings
from gateway_executor.pool import WorkerPool
from gateway_executor.proto import python_executor_pb2 as pb
from gateway_executor.proto import python_executor_pb2_grpc as pb_grpc
from gateway_executor.registry import load_registry
from gateway_executor.service import ExecutorService
from gateway_executor.worker import WorkerProcess

pytestmark = pytest.mark.integration

POLICY = "chaos"
VERSION = "v1.0.0"
#: The longest fast-path wait the flag accepts.
LONG_WAIT = Settings(sync_wait_s=MAX_SYNC_WAIT_US / 1e6)
#: Pause between sequential calls, so every request finds the stream idle (>> SYNC_IDLE_GAP_US).
#: Generous: the reader measures the gap after it handled the previous request, and on a loaded
#: machine it may be preempted for milliseconds right then (the request then looks queued).
GAP_S = 0.02


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``cond`` every 20 ms for at most ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


def process_group(pgid: int) -> set[int]:
    """Processes (zombies included) in process group ``pgid``."""
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[2]) == pgid:
                found.add(int(entry))
    return found


def shim_children() -> set[int]:
    """Live worker processes started by this test process (children running the shim)."""
    me = str(os.getpid())
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2 :].split()
        if rest[0] != "Z" and rest[1] == me and b"worker_shim.py" in cmdline:
            found.add(int(entry))
    return found


@dataclass
class Served:
    """An engine with one chaos-policy pool behind an in-process gRPC server."""

    engine: Engine
    server: grpc.Server
    client: ExecutorClient
    iid: str = ""
    #: Every worker pid seen (checked to be gone after :meth:`close`).
    seen: set[int] = field(default_factory=set)
    closed: bool = False

    @property
    def pool(self) -> WorkerPool:
        rt = self.engine.runtimes[f"{POLICY}:{VERSION}"]
        assert isinstance(rt, WorkerPool)
        return rt

    def fast_path_calls(self) -> int:
        """Calls the pool answered on the fast path so far."""
        return self.pool.stats().fast_path_calls

    @property
    def stream(self) -> CallStream:
        return self.client.stream()

    def workers(self) -> list[WorkerProcess]:
        """The pool's current worker processes (white box: the pool's own set)."""
        with self.pool._lock:
            return list(self.pool._all)

    def pids(self) -> list[int]:
        pids = self.pool.live_pids()
        self.seen.update(pids)
        return pids

    def submit(self, path: str) -> futures.Future[pb.StreamResponse]:
        req = build_request("request_headers", instance_id=self.iid, request={"path": path})
        return self.stream.submit(req)

    def call(self, path: str, timeout: float = 15.0) -> pb.StreamResponse:
        return self.submit(path).result(timeout)

    def echo(self, path: str) -> dict[str, str]:
        """A call that must succeed; returns the headers it set (``x-echo`` == ``path``)."""
        resp = self.call(path)
        assert resp.WhichOneof("payload") == "request_header_action", resp
        got = headers_set(resp)
        assert got.get("x-echo") == path, resp
        return got

    def make_idle(self) -> None:
        """Sequential calls with pauses: the stream now counts as idle (the next call may go
        the fast path). With a policy timeout of a few ms a warm-up call on a busy machine may
        time out (its worker is replaced): only a streak of answered calls counts."""
        streak = 0
        for attempt in range(50):
            if streak > defaults.SYNC_IDLE_STREAK:
                break
            time.sleep(GAP_S)
            resp = self.call(f"/warm/{attempt}")
            if resp.WhichOneof("payload") == "error" and resp.error.error_type == "timeout":
                streak = 0
                continue
            assert resp.WhichOneof("payload") == "request_header_action", resp
            assert headers_set(resp).get("x-echo") == f"/warm/{attempt}", resp
            streak += 1
        assert streak > defaults.SYNC_IDLE_STREAK, "no streak of answered warm-up calls in 50"
        time.sleep(GAP_S)

    def wait_parked(self, timeout: float = 10.0) -> None:
        """Until every worker is idle (pool back at full size) and the pool parked again.

        A worker parks when its reply leaves the whole pool idle; one that went idle while
        another was busy keeps its driver reading until its next call. So at least the worker
        that finished last is parked, and no idle worker is left with a "sync" reader.
        """

        def parked() -> bool:
            ws = self.workers()
            return (
                len(ws) == self.pool.size
                and all(w.job is None and w.reader in ("parked", "driver") for w in ws)
                and any(w.reader == "parked" for w in ws)
            )

        wait_until(parked, timeout, "every worker idle and the pool parked")
        self.pids()

    def close(self) -> None:
        """Stop like the server does; then nothing of this engine may be left running."""
        if self.closed:
            return
        self.closed = True
        self.pids()
        self.client.close()
        self.server.stop(5).wait(10)
        self.engine.wait_idle(5)
        self.engine.stop(5)
        assert self.engine.live_pids() == []
        wait_until(lambda: not [p for p in self.seen if alive(p)], 10, "worker processes to end")
        assert not shim_children()
        # Every driver thread ended, parked ones included (they are woken by ``stop``).
        drivers = {f"worker-{POLICY}-{pid}" for pid in self.seen}
        wait_until(
            lambda: not [t for t in threading.enumerate() if t.name in drivers],
            10,
            "the workers' driver threads to end",
        )


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """``serve(settings, **registry_entry_fields)``: a ready engine, served, with one instance."""
    made: list[Served] = []

    def start(settings: Settings, **over: Any) -> Served:
        n = len(made)
        registry = tmp_path / f"policy-registry-{n}.json"
        entry = policy_entry(POLICY, "chaos-policy", Path(sys.executable), **over)
        registry.write_text(
            json.dumps(
                {
                    "format": defaults.REGISTRY_FORMAT,
                    "format_version": defaults.REGISTRY_FORMAT_VERSION,
                    "policies": [entry],
                }
            )
        )
        engine = Engine(load_registry(registry), settings)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="grpc"),
            options=[("grpc.so_reuseport", 0)],
        )
        pb_grpc.add_PythonExecutorServiceServicer_to_server(ExecutorService(engine), server)
        sock = tmp_path / f"executor-{n}.sock"
        server.add_insecure_port(f"unix:{sock}")
        server.start()
        served = Served(engine, server, ExecutorClient(str(sock), timeout=30))
        made.append(served)
        assert engine.start(), engine.not_ready_reason()
        served.pids()
        init = served.client.init_policy(POLICY, VERSION)
        assert init.success, init.error_message
        served.iid = init.instance_id
        return served

    yield start
    for served in made:
        served.close()


def test_sequential_calls_on_an_idle_stream_take_the_fast_path(
    serve: Callable[..., Served],
) -> None:
    s = serve(LONG_WAIT, workers=2)
    assert s.pool.sync_wait_s == LONG_WAIT.sync_wait_s
    n = 50
    for i in range(n):
        time.sleep(GAP_S)
        s.echo(f"/seq/{i}")
    # The first SYNC_IDLE_STREAK - 1 requests cannot find a streak yet; allow a few more misses
    # (a reply later than the wait goes to the driver).
    print(f"fast path: {s.fast_path_calls()}/{n} calls")
    assert s.fast_path_calls() >= n - defaults.SYNC_IDLE_STREAK - 3
    assert s.fast_path_calls() <= n
    s.wait_parked()


def test_without_a_sync_wait_no_call_takes_the_fast_path_and_drivers_never_park(
    serve: Callable[..., Served],
) -> None:
    s = serve(Settings(sync_wait_s=0), workers=2)
    for i in range(50):
        time.sleep(GAP_S)
        s.echo(f"/seq/{i}")
        assert all(w.reader == "driver" and not w.parks for w in s.workers())
    assert s.fast_path_calls() == 0


def test_a_slow_fast_path_call_is_handed_to_the_driver_and_does_not_hold_the_reader(
    serve: Callable[..., Served],
) -> None:
    s = serve(LONG_WAIT, workers=2)
    s.make_idle()
    before = s.fast_path_calls()
    assert before >= 1  # the stream is idle: calls go the fast path now
    slow = s.submit("/sleep/1")
    # Well past the fast-path wait: the slow reply is the driver's now and the reader is free.
    time.sleep(LONG_WAIT.sync_wait_s + 0.1)
    assert not slow.done()
    quick = s.submit("/ok")
    resp = quick.result(15)
    assert not slow.done(), "the quick call was only answered after the slow one"
    assert headers_set(resp).get("x-echo") == "/ok"
    assert headers_set(slow.result(15)).get("x-slept") == "1"
    # Neither call was answered by the reader: the slow one outlasted the wait, the quick one
    # was not alone in flight.
    assert s.fast_path_calls() == before
    s.wait_parked()


def test_a_worker_killed_while_parked_is_replaced_without_any_call(
    serve: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    s = serve(Settings(), workers=2)  # the default wait: parking does not depend on its length
    s.make_idle()
    s.wait_parked()
    victim = next(w.pid for w in s.workers() if w.reader == "parked")
    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:
        ws = s.workers()
        return (
            len(ws) == s.pool.size
            and victim not in {w.pid for w in ws}
            and len(s.pids()) == s.pool.size
        )

    wait_until(replaced, 10, f"worker {victim} to be noticed and replaced")
    assert victim not in s.pool.live_pids()
    assert any(f"worker pid {victim} crashed: died while idle" in r.message for r in caplog.records)
    s.wait_parked()  # the replacement's driver parks too
    for i in range(4):
        assert int(s.echo(f"/after/{i}")["x-pid"]) != victim


def test_a_fast_path_call_whose_worker_exits_fails_as_worker_crashed(
    serve: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    s = serve(LONG_WAIT, workers=1)
    s.make_idle()
    [old] = s.pids()
    resp = s.call("/exit")
    assert resp.WhichOneof("payload") == "error", resp
    assert resp.error.error_type == "worker_crashed", resp
    assert resp.error.policy_name == POLICY
    # The crash was seen by the thread that read the request (the fast path), not the driver.
    [record] = [r for r in caplog.records if f"worker pid {old} crashed" in r.message]
    assert (record.threadName or "").startswith("grpc"), record.threadName
    assert s.echo("/next")["x-pid"] != str(old)
    wait_until(lambda: old not in s.pids() and len(s.pids()) == 1, 10, "the replacement")
    s.wait_parked()


@pytest.mark.parametrize(
    ("timeout_ms", "settings"),
    [(300, LONG_WAIT), (20, LONG_WAIT)],
    ids=["timeout-after-the-wait", "timeout-within-the-wait"],
)
def test_a_fast_path_call_over_its_timeout_gets_timeout_and_a_new_worker(
    serve: Callable[..., Served], timeout_ms: int, settings: Settings
) -> None:
    """300 ms: the reply is handed to the driver first; 20 ms: the watchdog kills the worker
    while the reader still polls its socket."""
    s = serve(settings, workers=1, timeout_ms=timeout_ms)
    s.make_idle()
    [old] = s.pids()
    started = time.monotonic()
    resp = s.call("/sleep/2", timeout=10)
    took = time.monotonic() - started
    print(f"timeout {timeout_ms} ms answered after {took * 1000:.0f} ms")
    assert resp.error.error_type == "timeout", resp
    assert took < 2.0  # at the deadline, not when the policy would have finished
    wait_until(lambda: old not in s.pids() and len(s.pids()) == 1, 10, "the replacement")
    # With a 20 ms timeout even an echo may time out on a busy machine: retry those.
    for _ in range(50):
        nxt = s.call("/next")
        if not (nxt.WhichOneof("payload") == "error" and nxt.error.error_type == "timeout"):
            break
    assert headers_set(nxt)["x-pid"] != str(old), nxt
    s.wait_parked()


def test_concurrent_callers_on_one_stream_mostly_bypass_the_fast_path(
    serve: Callable[..., Served],
) -> None:
    s = serve(Settings(), workers=2)
    callers, per_caller = 8, 300
    answered, problems = echo_load(s.stream, s.iid, callers, per_caller, budget_s=60)
    assert not problems, problems[:3]
    total = callers * per_caller
    assert answered == total
    assert not s.stream.unmatched and s.stream.error is None
    fraction = s.fast_path_calls() / total
    print(
        f"fast path with {callers} concurrent callers: {s.fast_path_calls()}/{total} = {fraction:.1%}"
    )
    assert s.fast_path_calls() < total / 2


def test_destroy_and_stop_wake_parked_drivers(serve: Callable[..., Served]) -> None:
    s = serve(Settings(), workers=2)
    # Two calls at once, so both workers create the instance.
    both = [s.submit("/sleep/0.2"), s.submit("/sleep/0.2")]
    assert all(headers_set(f.result(15)).get("x-slept") == "1" for f in both)
    s.wait_parked()
    workers = s.workers()
    assert all(s.iid in w.known for w in workers)
    assert s.client.destroy_policy(s.iid).success
    # Each worker got a ``destroy`` frame; its parked driver must wake to read the answer and
    # park again. Unread, the frame would keep the worker busy until the watchdog kills it at
    # the frame's deadline (5 s): the same workers must be back, parked, well before that.
    s.wait_parked(timeout=3)
    assert set(s.workers()) == set(workers)
    assert all(s.iid not in w.known and not w.pending_drop for w in workers)
    assert s.engine.stats()[f"{POLICY}:{VERSION}"].instances == 0
    s.close()  # stop while parked: no process and no driver thread may be left (checked there)


#: A policy whose worker process ends while the fast path waits for its reply, and whose reply
#: still arrives complete (written by a forked child, which then exits too). For the executor
#: this is the interleaving of a worker that dies right after writing its reply (OOM kill, a
#: crash in a policy thread) when its driver notices the death before the fast-path thread
#: took the reply: the pidfd fires while ``reader == "sync"``, then a valid reply comes.
HANDOFF_POLICY = """
import os, sys, threading, time
from apip_sdk_core import (
    HeaderProcessingMode, ProcessingMode, RequestHeaderPolicy, UpstreamRequestHeaderModifications,
)


def _exit_once_replied(main):
    # The shim's main thread is back in FrameReader.read once the reply was sent.
    end = time.monotonic() + 10
    while time.monotonic() < end:
        frame = sys._current_frames().get(main)
        if frame is not None and frame.f_code.co_name == "read":
            break
        time.sleep(0.001)
    os._exit(0)


class Handoff(RequestHeaderPolicy):
    def mode(self):
        return ProcessingMode(request_header_mode=HeaderProcessingMode.PROCESS)

    def on_request_headers(self, execution_ctx, ctx, params):
        if ctx.path == "/die-then-reply":
            if os.fork():
                os._exit(0)  # the worker process (the pid the executor knows) ends now
            time.sleep(0.3)  # its driver notices; then the child's reply arrives
            main = threading.get_ident()
            threading.Thread(target=_exit_once_replied, args=(main,), daemon=True).start()
        return UpstreamRequestHeaderModifications(
            headers_to_set={"x-pid": str(os.getpid()), "x-echo": ctx.path}
        )


def get_policy(metadata, params):
    return Handoff()
"""


def test_a_worker_that_forks_and_exits_during_a_fast_path_call_is_a_crash(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    """The worker process ends while the reader polls for its reply and a forked child still
    holds the socket (it would reply 0.3 s later): the end is seen by pid, the child is killed
    with the worker's process group, the call fails as a crash (counted) instead of getting
    the child's reply, and the worker is replaced."""
    src = tmp_path / "handoff-policy"
    src.mkdir()
    (src / "handoff_policy.py").write_text(HANDOFF_POLICY)
    # A fast-path wait longer than the child's 0.3 s, so the reader would get its late reply.
    s = serve(Settings(sync_wait_s=2.0), workers=1, module="handoff_policy", sys_path=[str(src)])
    s.make_idle()
    s.wait_parked()
    [victim] = s.pids()
    crashes = s.pool.stats().crashes
    resp = s.call("/die-then-reply")
    assert resp.WhichOneof("payload") == "error", resp
    assert resp.error.error_type == "worker_crashed", resp
    assert "worker process ended" in resp.error.message, resp
    assert s.pool.stats().crashes == crashes + 1

    def replaced() -> bool:
        pids = s.pids()
        return victim not in {x.pid for x in s.workers()} and len(pids) == s.pool.size

    wait_until(replaced, 10, f"worker {victim}, dead since the call, to be replaced")
    assert int(s.echo("/next")["x-pid"]) != victim
    # The forked child died with its worker's process group: nothing of the victim is left.
    assert not [p for p in process_group(victim) if alive(p)]
