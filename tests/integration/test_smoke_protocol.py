"""The smoke test's protocol checks against a real executor process on a real Unix socket.

No Docker: the repository's sample policies are laid out like a rendered context (registry +
``policies/<name>/<pkg>/samples``), every policy runs on this interpreter (the dev venv has their
dependencies), and the smoke test acts as the Go engine exactly as it does against an image.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway_builder import smoke
from gateway_builder.smoke.checks import canonical_distributions, check_isolation
from gateway_executor.client import ExecutorClient

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
POLICIES = ("prompt-enrichment", "prompt-guard", "token-scorer")


def make_context(root: Path, policies: tuple[str, ...] = POLICIES) -> Path:
    """A context-like tree: the registry and each policy folder with its samples."""
    entries = []
    for name in policies:
        pkg = name.replace("-", "_")
        shutil.copytree(
            REPO / "policy_sources" / name,
            root / "policies" / name / pkg,
            ignore=shutil.ignore_patterns("tests", "__pycache__"),
        )
        entries.append(
            {
                "name": name,
                "version": "v1.0.0",
                "module": f"{pkg}.policy",
                "sys_path": [str(root / "policies" / name)],
                "python": sys.executable,
                "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
                "failure_mode": "fail",
                "timeout_ms": 10000,
                "isolation": "worker",
                "workers": 1,
                "params": {},
                "source": f"path:{name}",
            }
        )
    registry = root / "python-executor" / "policy-registry.json"
    registry.parent.mkdir(parents=True)
    registry.write_text(
        json.dumps(
            {"format": "gateway-builder/policy-registry", "format_version": 1, "policies": entries}
        )
    )
    return registry


class Executor:
    """``python -m gateway_executor`` on a socket in a temp dir; stopped with SIGTERM."""

    def __init__(self, registry: Path, work: Path) -> None:
        self.socket = work / "ex.sock"
        self.ready = work / "ex.ready"
        self.log = work / "executor.log"
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway_executor",
                    "--registry",
                    str(registry),
                    "--listen",
                    str(self.socket),
                    "--ready-file",
                    str(self.ready),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_socket(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "executor socket did not appear"
            time.sleep(0.05)

    def wait_started(self, client: ExecutorClient, timeout: float = 60) -> None:
        """Until HealthCheck no longer says the policies are starting."""
        deadline = time.monotonic() + timeout
        while client.health().reason == "policies are starting":
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Executor]]:
    root = tmp_path_factory.mktemp("ctx")
    registry = make_context(root)
    ex = Executor(registry, tmp_path_factory.mktemp("run"))
    try:
        ex.wait_socket()
        yield root, ex
    finally:
        ex.stop()


def _results(inputs: smoke.Inputs) -> dict[str, smoke.PolicyResult]:
    return {e.name: smoke.PolicyResult(e.name, e.version) for e in inputs.entries}


def test_every_shipped_sample_gives_its_expected_outcome(running: tuple[Path, Executor]) -> None:
    root, ex = running
    inputs = smoke.load_inputs(root, "test context", registry_required=True)
    assert sorted(inputs.samples) == sorted(POLICIES)
    results = _results(inputs)
    with ExecutorClient(str(ex.socket), timeout=20) as client:
        ex.wait_started(client)
        smoke.check_health(client.health(), inputs.entries, results)
        count, latencies, mismatches = smoke.run_samples(client, inputs, results)
    assert mismatches == []
    assert count == sum(len(v) for v in inputs.samples.values()) >= 9
    assert len(latencies) == count
    for result in results.values():
        assert result.ready and result.python_version.startswith("3.")
        assert result.distributions  # the executor reports each venv's distributions
        assert all(s["ok"] for s in result.samples)
        kinds = {s["outcome"].split(",")[0] for s in result.samples}
        assert kinds <= {"modify", "immediate_response", "passthrough"}
    assert ex.ready.exists()


def test_a_shared_environment_fails_the_isolation_check(running: tuple[Path, Executor]) -> None:
    """All three policies run on one interpreter here: the pins cannot all hold."""
    root, ex = running
    inputs = smoke.load_inputs(root, "test context", registry_required=True)
    with ExecutorClient(str(ex.socket), timeout=20) as client:
        ex.wait_started(client)
        health = client.health()
    reported = {p.name: dict(p.distributions) for p in health.policies}
    result = check_isolation(reported, inputs.pins)
    assert result.differing == {}  # one environment: nothing differs between policies
    version = canonical_distributions(reported["prompt-guard"])["markupsafe"]
    # prompt-enrichment pins 2.1.5 and prompt-guard 3.0.2: one environment satisfies one at most.
    expected = {
        name
        for name, pin in (("prompt-enrichment", "2.1.5"), ("prompt-guard", "3.0.2"))
        if pin != version
    }
    flagged = {
        p.split(":")[0].removeprefix("policy ") for p in result.problems if "markupsafe" in p
    }
    assert expected and flagged == expected, result.problems


def test_a_changed_expectation_is_reported_with_policy_and_sample(
    running: tuple[Path, Executor],
) -> None:
    root, ex = running
    sample = root / "policies/prompt-guard/prompt_guard/samples/block-credit-card.json"
    original = sample.read_text()
    data = json.loads(original)
    assert data["expect"]["kind"] == "immediate_response"
    data["expect"]["status_code"] = 418
    sample.write_text(json.dumps(data))
    try:
        inputs = smoke.load_inputs(root, "test context", registry_required=True)
        with ExecutorClient(str(ex.socket), timeout=20) as client:
            ex.wait_started(client)
            _, _, mismatches = smoke.run_samples(client, inputs, _results(inputs))
    finally:
        sample.write_text(original)
    assert mismatches == [
        "policy prompt-guard sample policies/prompt-guard/prompt_guard/samples/block-credit-card.json "
        f"({data['description']}): status_code: expected 418, got 403"
    ]


def test_a_policy_that_fails_to_import_is_named_with_its_cause(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    registry = make_context(root, ("prompt-guard", "prompt-enrichment"))
    policy = root / "policies/prompt-guard/prompt_guard/policy.py"
    policy.write_text("import gwb_smoke_missing_module\n")
    ex = Executor(registry, tmp_path)
    try:
        ex.wait_socket()
        inputs = smoke.load_inputs(root, "test context", registry_required=True)
        with ExecutorClient(str(ex.socket), timeout=20) as client:
            ex.wait_started(client)
            with pytest.raises(smoke.StepFailed) as err:
                smoke.check_health(client.health(), inputs.entries, _results(inputs))
    finally:
        ex.stop()
    message = str(err.value)
    assert message.startswith("policy prompt-guard not ready: ")
    assert "gwb_smoke_missing_module" in message
    assert not ex.ready.exists()
