"""Fixtures of the executor tests (helpers in ``executor_harness``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from executor_harness import VENV_SPECS, RunningExecutor, alive, make_venv


@pytest.fixture(scope="session")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"py310": <python>, "py312": <python>}``, created once per test session."""
    base = tmp_path_factory.mktemp("venvs")
    return {name: make_venv(base / name, ver, deps) for name, (ver, deps) in VENV_SPECS.items()}


@pytest.fixture
def start_executor(tmp_path: Path) -> Iterator[Callable[..., RunningExecutor]]:
    """Start executors for one test; all are stopped (and checked for leftovers) afterwards."""
    started: list[RunningExecutor] = []

    def start(
        policies: list[dict[str, Any]],
        *extra: str,
        name: str = "ex",
        env: dict[str, str] | None = None,
    ) -> RunningExecutor:
        ex = RunningExecutor(tmp_path / name, policies, *extra, env=env)
        started.append(ex)
        return ex

    yield start
    for ex in started:
        kids = ex.workers()
        ex.stop()
        time.sleep(0.2)
        assert not [p for p in kids if alive(p)], f"orphans left:\n{ex.logs()}"
