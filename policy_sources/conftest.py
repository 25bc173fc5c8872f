"""Fixtures for the sample policies' tests (helpers live in ``policy_samples``).

Fixtures: ``policy_dir``, ``policy_module``, ``harness``, ``replay``; ``sample_path`` is
parametrized over the samples of the requesting test's own policy. ``harness`` is the policy
behind a real executor (``gateway_builder.testing``), in a venv with its pins from the default
manifests' lock (the artifacts the image installs), started once per test session.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

# Make the helper module importable whatever pytest import mode is in use.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from policy_samples import LOCK_FILE, load_policy_module

from gateway_builder.testing import Outcome, PolicyHarness


def _policy_dir_of(test_file: Path) -> Path:
    for parent in test_file.resolve().parents:
        if (parent / "policy-definition.yaml").is_file():
            return parent
    raise LookupError(f"{test_file} is not inside a policy folder")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests through the harness start processes and, on a cold cache, download the locked
    artifacts from the public index: mark them so (``-m 'not network'`` deselects them)."""
    root = Path(__file__).resolve().parent
    for item in items:
        if "harness" in getattr(item, "fixturenames", ()) and root in item.path.parents:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.network)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``sample_path`` over the samples of the test file's own policy."""
    if "sample_path" in metafunc.fixturenames:
        samples = sorted(
            (_policy_dir_of(Path(metafunc.definition.path)) / "samples").glob("*.json")
        )
        metafunc.parametrize("sample_path", samples, ids=[p.stem for p in samples])


@pytest.fixture
def policy_dir(request: pytest.FixtureRequest) -> Path:
    """The policy folder holding the requesting test file."""
    return _policy_dir_of(Path(request.path))


@pytest.fixture
def policy_module(policy_dir: Path) -> ModuleType:
    """The requesting test's ``policy.py``, imported."""
    return load_policy_module(policy_dir)


@pytest.fixture(scope="session")
def _harnesses() -> Iterator[dict[Path, PolicyHarness]]:
    started: dict[Path, PolicyHarness] = {}
    yield started
    for harness in started.values():
        harness.stop()


@pytest.fixture
def harness(policy_dir: Path, _harnesses: dict[Path, PolicyHarness]) -> PolicyHarness:
    """The requesting test's policy behind a real executor (one per policy and session)."""
    if policy_dir not in _harnesses:
        _harnesses[policy_dir] = PolicyHarness(policy_dir, lock_file=LOCK_FILE).start()
    return _harnesses[policy_dir]


@pytest.fixture
def replay(harness: PolicyHarness) -> Callable[[Path], Outcome]:
    """``replay(sample_path)`` runs a sample of this policy through the executor and checks its
    expectation, as the image smoke test does."""

    def run(sample_path: Path) -> Outcome:
        result = harness.run_sample(sample_path)
        assert result.ok, f"{sample_path.name} ({result.sample.description}): {result.problems}"
        return result.outcome

    return run
