"""What ``HealthCheck`` reports beyond readiness: protections that are off, quarantine and
probation; and the parameter shapes of the start-up check. No worker processes."""

from __future__ import annotations

import logging
import time
from typing import Any, cast

import pytest

from gateway_executor import defaults, translate
from gateway_executor.engine import Engine
from gateway_executor.registry import PolicyEntry
from gateway_executor.runtime import PolicyRuntime
from gateway_executor.worker import Spawner


def test_protections_that_are_off_are_listed_in_health(caplog: pytest.LogCaptureFixture) -> None:
    engine = Engine([])
    engine.started = True
    assert list(engine.health().protections_off) == []
    with caplog.at_level(logging.WARNING, logger="gateway_executor.protections"):
        engine.protections.off("per-policy uids", "no CAP_SETUID: workers run as the executor")
        engine.protections.off("memory limit", "no cgroup delegation", policy="p:v1.0.0")
        engine.protections.off("memory limit", "RLIMIT_AS refused", policy="p:v1.0.0")
    notes = [(n.name, n.policy, n.detail) for n in engine.health().protections_off]
    assert notes == [
        ("memory limit", "p:v1.0.0", "RLIMIT_AS refused"),
        ("per-policy uids", "", "no CAP_SETUID: workers run as the executor"),
    ]
    # One warning per protection (and policy), not one per report.
    assert [r.getMessage() for r in caplog.records] == [
        "protection off: per-policy uids: no CAP_SETUID: workers run as the executor",
        "protection off for policy p:v1.0.0: memory limit: no cgroup delegation",
    ]
    engine.protections.restored("per-policy uids")
    assert [n.name for n in engine.health().protections_off] == ["memory limit"]
    assert engine.health().ready  # a protection that is off does not make it unready


def test_start_up_params_take_the_shapes_init_policy_delivers() -> None:
    params: dict[str, Any] = {"count": 3, "ratio": 0.5, "on": True, "list": [1, "a", None]}
    shaped = translate.as_init_params(params)
    assert shaped == {"count": 3.0, "ratio": 0.5, "on": True, "list": [1.0, "a", None]}
    assert type(shaped["count"]) is float and type(shaped["list"][0]) is float
    entry = PolicyEntry(name="p", version="v1.0.0", module="m", python="/x", params=params)
    engine = Engine([entry])
    [rt] = engine.runtimes.values()
    assert type(rt.entry.params["count"]) is float
    assert entry.params["count"] == 3 and type(entry.params["count"]) is int


def test_init_timeout_comes_from_the_entry_and_defaults_to_the_call_timeout() -> None:
    entries = [
        PolicyEntry(name="a", version="v1.0.0", module="m", python="/x", timeout_ms=2000),
        PolicyEntry(
            name="b",
            version="v1.0.0",
            module="m",
            python="/x",
            timeout_ms=2000,
            init_timeout_ms=9000,
        ),
    ]
    engine = Engine(entries)
    assert engine.runtimes["a:v1.0.0"].init_timeout_s == 2.0
    assert engine.runtimes["b:v1.0.0"].init_timeout_s == 9.0


def wait_until(rt: PolicyRuntime, cond: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not getattr(rt, cond):
        assert time.monotonic() < end, f"{cond} not reached within {timeout}s"
        time.sleep(0.01)


def test_quarantine_probation_and_back() -> None:
    entry = PolicyEntry(name="p", version="v1.0.0", module="m", python="/x")
    rt = PolicyRuntime(entry, cast(Spawner, None), 1, 1.0, 1.0, quarantine_cooldown_s=0.2)
    rt.ready = True
    delays = [rt._record_crash(f"crash {i}") for i in range(defaults.QUARANTINE_CRASHES)]
    assert all(d is not None for d in delays[:-1]) and delays[-1] is None
    assert rt.quarantined and not rt.ready and rt.quarantines == 1 and not rt.probation
    assert "quarantined after 5 worker crashes" in rt.status_reason()
    assert "released on probation after 0.2s" in rt.status_reason()
    wait_until(rt, "probation")
    assert rt.ready and not rt.quarantined
    assert "on probation" in rt.status_reason()
    # One crash on probation quarantines it again.
    assert rt._record_crash("again") is None
    assert rt.quarantined and rt.quarantines == 2 and not rt.probation
    assert "crashed on probation (again)" in rt.status_reason()
    rt.cancel_release()
    time.sleep(0.4)
    assert rt.quarantined, "a cancelled release (shutdown) never happens"


def test_cooldown_zero_keeps_the_quarantine() -> None:
    entry = PolicyEntry(name="p", version="v1.0.0", module="m", python="/x")
    rt = PolicyRuntime(entry, cast(Spawner, None), 1, 1.0, 1.0, quarantine_cooldown_s=0)
    for i in range(defaults.QUARANTINE_CRASHES):
        rt._record_crash(f"crash {i}")
    assert rt.quarantined and "probation" not in rt.status_reason()
    assert rt._release_timer is None
