"""``--executor-cpus``: parsing, configuration and the decision to move off a busy CPU."""

from __future__ import annotations

import pytest

from gateway_executor import defaults
from gateway_executor.affinity import (
    MOVE_MARGIN,
    AffinityError,
    CpuPolicy,
    parse_cpus,
    pick_cpu,
)
from gateway_executor.config import ConfigError, parse_config


@pytest.mark.parametrize(
    ("raw", "policy"),
    [
        ("auto", CpuPolicy("auto")),
        (" OFF ", CpuPolicy("off")),
        ("3", CpuPolicy("fixed", frozenset({3}))),
        ("0,2-4", CpuPolicy("fixed", frozenset({0, 2, 3, 4}))),
        ("1-1, 5", CpuPolicy("fixed", frozenset({1, 5}))),
    ],
)
def test_parse_cpus(raw: str, policy: CpuPolicy) -> None:
    assert parse_cpus(raw) == policy


@pytest.mark.parametrize("raw", ["", "all", "-1", "1-", "a-3", "1,,2", "0.5"])
def test_parse_cpus_rejects_garbage(raw: str) -> None:
    with pytest.raises(AffinityError, match="expected auto, off or a CPU list"):
        parse_cpus(raw)


def test_parse_cpus_rejects_backwards_range() -> None:
    with pytest.raises(AffinityError, match="runs backwards"):
        parse_cpus("4-2")


def test_config_default_env_and_flag() -> None:
    env_name = defaults.ENV_EXECUTOR_CPUS
    assert env_name == "PYTHON_EXECUTOR_CPUS"
    assert parse_config([], env={}).executor_cpus == CpuPolicy("auto")
    assert parse_config([], env={env_name: "off"}).executor_cpus == CpuPolicy("off")
    assert parse_config([], env={env_name: ""}).executor_cpus == CpuPolicy("auto")
    flagged = parse_config(["--executor-cpus", "0-1"], env={env_name: "bogus"})
    assert flagged.executor_cpus == CpuPolicy("fixed", frozenset({0, 1}))


@pytest.mark.parametrize("source", ["flag", "env"])
def test_config_invalid_value_names_its_source(source: str) -> None:
    if source == "flag":
        argv, env, name = ["--executor-cpus", "two"], {}, "--executor-cpus"
    else:
        argv, env, name = [], {defaults.ENV_EXECUTOR_CPUS: "two"}, defaults.ENV_EXECUTOR_CPUS
    with pytest.raises(ConfigError) as info:
        parse_config(argv, env=env)
    message = str(info.value)
    assert message.startswith(f"{name}: expected auto, off or a CPU list"), message
    assert "'two'" in message and "\n" not in message


def snapshots(busy: dict[int, int], span: int = 100) -> tuple[dict[int, tuple[int, int]], ...]:
    """Two /proc/stat-like snapshots ``span`` jiffies apart with ``busy`` jiffies per CPU."""
    before = {cpu: (1000, 5000) for cpu in busy}
    now = {cpu: (1000 + b, 5000 + span) for cpu, b in busy.items()}
    return before, now


def test_moves_when_others_keep_our_cpu_busy_and_another_is_idle() -> None:
    before, now = snapshots({0: 100, 1: 10})  # CPU 0 saturated, we use 20% of it
    assert pick_cpu(before, now, 20, frozenset({0}), frozenset({0, 1})) == 1


def test_stays_when_the_load_is_our_own() -> None:
    before, now = snapshots({0: 90, 1: 10})  # 90% busy, all of it the executor itself
    assert pick_cpu(before, now, 90, frozenset({0}), frozenset({0, 1})) is None


def test_stays_within_the_margin() -> None:
    # Moving would leave the other CPU just short of MOVE_MARGIN less busy: not worth a move.
    other = 100 - int(MOVE_MARGIN * 100) - 20 + 1
    before, now = snapshots({0: 100, 1: other})
    assert pick_cpu(before, now, 20, frozenset({0}), frozenset({0, 1})) is None


def test_picks_the_least_busy_of_several() -> None:
    before, now = snapshots({0: 100, 1: 60, 2: 5, 3: 30})
    assert pick_cpu(before, now, 10, frozenset({0}), frozenset({0, 1, 2, 3})) == 2


def test_never_moves_a_fixed_set_or_outside_the_allowed_cpus() -> None:
    before, now = snapshots({0: 100, 1: 100, 2: 0})
    assert pick_cpu(before, now, 10, frozenset({0, 1}), frozenset({0, 1, 2})) is None
    assert pick_cpu(before, now, 10, frozenset({0}), frozenset({0, 1})) is None
