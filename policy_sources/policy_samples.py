"""Helpers for testing the sample policies: load one by path and replay its sample files.

Each policy folder is a simple-directory policy whose name has dashes, so its ``policy.py`` is
loaded by path under a unique module name. A sample file (``samples/*.json``, format in
docs/DESIGN.md "Sample requests") is replayed the way the gateway runs it, minus the processes,
sockets and protobuf: :mod:`gateway_executor.samples` reads it and says what the phase's context
holds, the worker shim (in this process) calls the policy through its frame protocol, and the
action is checked against ``expect`` exactly as the image smoke test checks it.

These helpers also run in each policy's own venv (its pins, the SDK and pytest): they use only
the parts of ``gateway_executor`` that need nothing but the standard library.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from apip_sdk_core.policy.v1alpha2 import PolicyMetadata

from gateway_executor import framing, samples, worker_shim
from gateway_executor.phases import PHASES
from gateway_executor.samples import Outcome, Sample

POLICY_SOURCES = Path(__file__).resolve().parent
TEST_METADATA = PolicyMetadata(
    route_name="sample-route", api_id="api-1", api_name="sample-api", api_version="v1.0"
)


def policy_folders() -> list[Path]:
    """Every sample policy folder (a directory holding a policy-definition.yaml)."""
    return sorted(p.parent for p in POLICY_SOURCES.glob("*/policy-definition.yaml"))


def load_policy_module(policy_dir: Path) -> ModuleType:
    """Import ``policy_dir/policy.py`` under a module name unique to the folder."""
    module_name = "_sample_policy_" + policy_dir.name.replace("-", "_")
    cached = sys.modules.get(module_name)
    if cached is not None:
        return cached
    spec = importlib.util.spec_from_file_location(module_name, policy_dir / "policy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def validate_sample_shape(sample: Any) -> list[str]:
    """Structural problems of a decoded sample file (empty when it follows the format)."""
    try:
        samples.parse_sample("policy", sample, "sample")
    except samples.SampleError as exc:
        return [str(exc)]
    return []


def wire_params(value: Any) -> Any:
    """``value`` as the executor hands it over: params cross a protobuf ``Struct``, so every
    number (bools excepted) arrives as a float."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, list):
        return [wire_params(v) for v in value]
    if isinstance(value, dict):
        return {k: wire_params(v) for k, v in value.items()}
    return value


def _through_socket(obj: Any) -> Any:
    """``obj`` as the other end of a worker socket decodes it."""
    return framing.decode(framing.encode(obj)[framing.HEADER.size :])


def _latin1(data: bytes) -> str:
    return data.decode("latin-1")  # the frames' byte encoding: one char per byte


def call_frame(sample: Sample, params: dict[str, Any]) -> dict[str, Any]:
    """The ``call`` frame the executor sends a worker for ``sample``: its context as
    :func:`samples.context_fields` says, bodies as latin-1 strings, defaults left out."""
    ctx: dict[str, Any] = {}
    fields = samples.context_fields(PHASES[sample.phase].payload, sample.request, sample.response)
    for name, value in fields.items():
        if name.endswith("body"):
            body = {
                "content": _latin1(value["content"]),
                "eos": value["end_of_stream"],
                "present": value["present"],
            }
            ctx[name] = {k: v for k, v in body.items() if v}
        else:
            ctx[name] = value
    metadata = {
        "route_name": TEST_METADATA.route_name,
        "api_id": TEST_METADATA.api_id,
        "api_name": TEST_METADATA.api_name,
        "api_version": TEST_METADATA.api_version,
    }
    return {
        "op": "call",
        "iid": "sample",
        "seq": 1,
        "phase": sample.phase,
        "exec": {"request_id": "req-1", "route_name": TEST_METADATA.route_name},
        "params": params,
        "shared": {
            "request_id": "req-1",
            "api_id": TEST_METADATA.api_id,
            "api_name": TEST_METADATA.api_name,
            "api_version": TEST_METADATA.api_version,
            "metadata": {},
        },
        "ctx": ctx,
        "init": {"metadata": metadata, "params": params},
    }


def run_sample(module: ModuleType, sample: Sample, params: dict[str, Any]) -> Outcome:
    """What ``module``'s policy does with ``sample``, run by a worker shim in this process;
    ``params`` reach ``get_policy`` and the hook as given."""
    shim = worker_shim.Shim(None)
    started = shim.start({"module": module.__name__, "params": params, "check": True})
    assert started["ok"], started.get("error")
    try:
        reply = _through_socket(shim.call(_through_socket(call_frame(sample, params))))
    finally:
        shim.destroy(list(shim.instances))
    action = reply["action"]
    if action is None:
        return samples.action_outcome(sample, None)
    kind = action.pop("t")
    if "body" in action:
        action["body"] = action["body"].encode("latin-1")
    return samples.action_outcome(sample, action, immediate=kind == "ImmediateResponse")


def replay_sample(policy_dir: Path, sample_path: Path) -> Outcome:
    """Run one sample file against its policy and assert its expectation holds, both with the
    params as written and as they arrive through the executor (numbers as floats)."""
    sample = samples.read_sample(policy_dir.name, sample_path)
    module = load_policy_module(policy_dir)
    outcomes = []
    for params in (sample.params, wire_params(sample.params)):
        outcome = run_sample(module, sample, params)
        problems = samples.check_expectation(outcome, sample.expect)
        assert not problems, (
            f"{sample_path.name} ({sample.description}), params {params}: {problems}"
        )
        outcomes.append(outcome)
    return outcomes[0]


__all__ = [
    "POLICY_SOURCES",
    "TEST_METADATA",
    "Outcome",
    "call_frame",
    "load_policy_module",
    "policy_folders",
    "replay_sample",
    "run_sample",
    "validate_sample_shape",
    "wire_params",
]
