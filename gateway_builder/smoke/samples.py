"""The smoke test's side of the sample contract.

The sample format, the request a sample makes and how an answer is checked against ``expect``
are :mod:`gateway_executor.samples` (shared with the executor client and the sample policies'
tests). What is the smoke test's own: it acts as the Go policy engine on a fixed route
(:data:`SMOKE_METADATA`), and a bad sample is an input error of the build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway_builder.errors import InputError
from gateway_executor import samples, translate
from gateway_executor.phases import SAMPLE_PHASES
from gateway_executor.proto import python_executor_pb2 as pb
from gateway_executor.samples import (
    EXPECT_KEYS,
    EXPECT_KINDS,
    SAMPLE_KEYS,
    Outcome,
    Sample,
    check_expectation,
    encode_body,
    outcome_of,
)

#: How each sample phase travels: its request payload, wire phase and response field.
PHASES: dict[str, translate.PayloadKind] = {
    name: translate.PAYLOADS[name] for name in SAMPLE_PHASES
}
#: Metadata the smoke test passes to ``InitPolicy`` (an arbitrary but stable route).
SMOKE_METADATA = {
    "route_name": "smoke-test-route",
    "api_id": "smoke-test-api",
    "api_name": "smoke-test",
    "api_version": "v1.0",
}


def parse_sample(policy: str, raw: Any, where: str) -> Sample:
    """Validate a decoded sample file; ``where`` (a path) prefixes every error message."""
    try:
        return samples.parse_sample(policy, raw, where)
    except samples.SampleError as exc:
        raise InputError(str(exc)) from None


def load_samples(policy: str, samples_dir: Path, *, label_root: Path | None = None) -> list[Sample]:
    """Every ``*.json`` sample in ``samples_dir`` (sorted by file name), validated."""
    try:
        return samples.load_samples(policy, samples_dir, label_root=label_root)
    except samples.SampleError as exc:
        raise InputError(str(exc)) from None


def init_request(sample: Sample, policy_version: str) -> pb.InitPolicyRequest:
    """The ``InitPolicy`` call the engine makes when it attaches the policy to a route."""
    return pb.InitPolicyRequest(
        policy_name=sample.policy,
        policy_version=policy_version,
        policy_metadata=pb.PolicyMetadata(**SMOKE_METADATA),
        params=translate.dict_to_struct(sample.params),
    )


def stream_request(
    sample: Sample, *, request_id: str, instance_id: str, policy_version: str
) -> pb.StreamRequest:
    """The ``StreamRequest`` carrying ``sample`` in its phase, on the smoke test's route."""
    return samples.sample_request(
        sample,
        request_id=request_id,
        instance_id=instance_id,
        policy_version=policy_version,
        **SMOKE_METADATA,
    )


__all__ = [
    "EXPECT_KEYS",
    "EXPECT_KINDS",
    "PHASES",
    "SAMPLE_KEYS",
    "SMOKE_METADATA",
    "Outcome",
    "Sample",
    "check_expectation",
    "encode_body",
    "init_request",
    "load_samples",
    "outcome_of",
    "parse_sample",
    "stream_request",
]
