"""Fixtures for the sample policies' tests (helpers live in ``policy_samples``).

Fixtures: ``policy_dir``, ``policy_module``, ``replay``; ``sample_path`` is parametrized over the
samples of the requesting test's own policy.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

# Make the helper module importable whatever pytest import mode is in use.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from policy_samples import Outcome, load_policy_module, replay_sample


def _policy_dir_of(test_file: Path) -> Path:
    for parent in test_file.resolve().parents:
        if (parent / "policy-definition.yaml").is_file():
            return parent
    raise LookupError(f"{test_file} is not inside a policy folder")


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


@pytest.fixture
def replay(policy_dir: Path) -> Callable[[Path], Outcome]:
    """``replay(sample_path)`` runs a sample of this policy and checks its expectation."""
    return lambda sample_path: replay_sample(policy_dir, sample_path)
