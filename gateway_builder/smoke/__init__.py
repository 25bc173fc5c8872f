"""Smoke test of a built gateway-runtime image (``gateway-builder smoke-test IMAGE``).

Starts the image with testcontainers, the executor's socket directory bind-mounted to a host
temporary directory, and acts as the Go policy engine over the executor's gRPC protocol through
the steps of :data:`STEPS`. The first failing step stops the run; :class:`SmokeTestError`
(exit 1) names the cause and carries the step table and the container's (redacted) logs.

Modules: :mod:`.steps` (the step runner and :func:`smoke_test`), :mod:`.inputs` (registry,
samples and pins from a context or the image), :mod:`.container` (a running container and its
readiness), :mod:`.protocol` (the gRPC calls), :mod:`.report` (results and the step table) and
:mod:`.checks` (the pure rules). Sample requests and their expectations are
:mod:`gateway_builder.smoke.samples`.
"""

from __future__ import annotations

from gateway_builder.smoke.inputs import IMAGE_INPUTS, Inputs, image_inputs, load_inputs
from gateway_builder.smoke.protocol import TRANSPORTS, check_health, run_samples
from gateway_builder.smoke.report import (
    PolicyResult,
    SmokeReport,
    SmokeTestError,
    StepFailed,
    StepResult,
    failure_details,
    log_tail,
)
from gateway_builder.smoke.steps import STEPS, smoke_test

__all__ = [
    "IMAGE_INPUTS",
    "STEPS",
    "TRANSPORTS",
    "Inputs",
    "PolicyResult",
    "SmokeReport",
    "SmokeTestError",
    "StepFailed",
    "StepResult",
    "check_health",
    "failure_details",
    "image_inputs",
    "load_inputs",
    "log_tail",
    "run_samples",
    "smoke_test",
]
