"""``--executor-cpus`` on real executor processes: where its threads and its workers may run.

Read from ``/proc/<pid>/task/<tid>/status`` (``Cpus_allowed_list``), so these tests need Linux
and at least two CPUs available to this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from executor_harness import RunningExecutor, policy_entry

from gateway_executor.affinity import CHECK_INTERVAL_S, MOVE_MARGIN, _cpu_times
from gateway_executor.client import build_request

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
        reason="needs Linux and at least two CPUs",
    ),
]

Start = Callable[..., RunningExecutor]
ALLOWED = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()


def cpus_of(path: Path) -> frozenset[int]:
    """Parse ``Cpus_allowed_list`` (``0-1,3``) of a /proc status file."""
    for line in path.read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            out: set[int] = set()
            for part in line.split(":", 1)[1].strip().split(","):
                lo, _, hi = part.partition("-")
                out.update(range(int(lo), int(hi or lo) + 1))
            return frozenset(out)
    raise AssertionError(f"no Cpus_allowed_list in {path}")


def thread_cpus(pid: int) -> dict[int, frozenset[int]]:
    """CPU set of every thread of ``pid``."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = cpus_of(task / "status")
        except (OSError, AssertionError):
            continue  # the thread ended meanwhile
    return out


def answer_one_call(ex: RunningExecutor) -> None:
    iid = ex.client.init_policy("p", "v1.0.0").instance_id
    resp = ex.client.execute(
        build_request("request_headers", instance_id=iid, request={"path": "/x"})
    )
    assert resp.WhichOneof("payload") == "request_header_action", resp


def test_auto_puts_every_executor_thread_on_one_cpu_and_workers_on_all(
    start_executor: Start, venvs: dict[str, Path]
) -> None:
    ex = start_executor([policy_entry("p", "header-policy", venvs["py312"], workers=2)])
    ex.wait_ready()
    answer_one_call(ex)
    threads = thread_cpus(ex.proc.pid)
    assert len(threads) > 3  # gRPC's threads, the drivers, the watchdog, the placement check
    sets = set(threads.values())
    assert len(sets) == 1, sets
    (only,) = sets
    assert len(only) == 1 and only <= ALLOWED, only
    workers = ex.workers()
    assert len(workers) == 2
    for pid in workers:
        assert cpus_of(Path(f"/proc/{pid}/status")) == ALLOWED
    assert "executor threads on CPU" in ex.logs()


def test_off_leaves_placement_to_the_kernel(start_executor: Start, venvs: dict[str, Path]) -> None:
    ex = start_executor(
        [policy_entry("p", "header-policy", venvs["py312"])], env={"PYTHON_EXECUTOR_CPUS": "off"}
    ).wait_ready()
    answer_one_call(ex)
    assert set(thread_cpus(ex.proc.pid).values()) == {ALLOWED}
    for pid in ex.workers():
        assert cpus_of(Path(f"/proc/{pid}/status")) == ALLOWED


def test_fixed_list_confines_the_executor_not_its_workers(
    start_executor: Start, venvs: dict[str, Path]
) -> None:
    cpu = max(ALLOWED)
    ex = start_executor(
        [policy_entry("p", "header-policy", venvs["py312"])], "--executor-cpus", str(cpu)
    ).wait_ready()
    answer_one_call(ex)
    assert set(thread_cpus(ex.proc.pid).values()) == {frozenset({cpu})}
    for pid in ex.workers():
        assert cpus_of(Path(f"/proc/{pid}/status")) == ALLOWED


def test_unavailable_cpu_is_a_one_line_start_error(
    start_executor: Start, venvs: dict[str, Path]
) -> None:
    bad = max(ALLOWED) + 1000
    ex = start_executor(
        [policy_entry("p", "header-policy", venvs["py312"])], "--executor-cpus", str(bad)
    )
    assert ex.proc.wait(60) == 2
    lines = [line for line in ex.logs().splitlines() if "--executor-cpus" in line]
    assert lines and f"CPU(s) {bad} are not available" in lines[0], ex.logs()
    assert "Traceback" not in ex.logs()


HOG = "import os, sys, time\nos.sched_setaffinity(0, {int(sys.argv[1])})\nend = time.monotonic() + float(sys.argv[2])\nwhile time.monotonic() < end:\n    pass\n"
#: Seconds in a row another CPU must have clearly more room before the executor must have moved
#: (it re-checks every CHECK_INTERVAL_S; twice its margin absorbs the offset between our samples
#: and its own).
ROOM_SECONDS = 5


def busy_fractions(
    before: dict[int, tuple[int, int]], now: dict[int, tuple[int, int]]
) -> dict[int, float]:
    """Per CPU, the busy share of the time between two ``/proc/stat`` snapshots."""
    out = {}
    for cpu in ALLOWED:
        busy = now[cpu][0] - before[cpu][0]
        total = now[cpu][1] - before[cpu][1]
        out[cpu] = busy / total if total > 0 else 0.0
    return out


def test_auto_moves_off_a_cpu_that_other_work_keeps_busy(
    start_executor: Start, venvs: dict[str, Path]
) -> None:
    """The executor moves when another CPU has clearly more room, and only then.

    Two busy loops pinned to the executor's CPU saturate it. On a quiet machine the other CPU
    then has room and the executor must move; on a machine whose every CPU is busy with other
    work (a shared CI runner) no CPU has room and the executor must stay. Which case holds is
    measured here from ``/proc/stat``, the executor's own source, second by second.
    """
    ex = start_executor([policy_entry("p", "header-policy", venvs["py312"])]).wait_ready()
    (start,) = set(thread_cpus(ex.proc.pid).values())
    (cpu,) = start
    others = ALLOWED - start
    hogs = [subprocess.Popen([sys.executable, "-c", HOG, str(cpu), "120"]) for _ in range(2)]
    try:
        room_seconds = 0
        now: set[frozenset[int]] = {start}
        before = _cpu_times()
        end = time.monotonic() + 30  # bounds the run; the assertions are not timed
        while time.monotonic() < end and room_seconds < ROOM_SECONDS:
            time.sleep(CHECK_INTERVAL_S)
            now = set(thread_cpus(ex.proc.pid).values())
            if now != {start}:
                break
            sample = _cpu_times()
            share = busy_fractions(before, sample)
            before = sample
            room = min(share[c] for c in others) <= share[cpu] - 2 * MOVE_MARGIN
            room_seconds = room_seconds + 1 if room else 0
        assert len(now) == 1, now
        (moved,) = now
        if moved == start:
            # Another CPU had clearly more room for ROOM_SECONDS checks: it must have moved.
            assert room_seconds < ROOM_SECONDS, f"stayed on CPU {cpu} with room elsewhere"
            # Else no CPU had room for that long (every CPU busy): staying was right.
        else:
            assert len(moved) == 1 and moved <= ALLOWED, (start, moved)
            assert "is busy with other work: moving the executor" in ex.logs()
        answer_one_call(ex)  # still serving, moved or not
    finally:
        for hog in hogs:
            hog.send_signal(signal.SIGKILL)
            hog.wait()
