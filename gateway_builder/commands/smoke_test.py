"""``gateway-builder smoke-test IMAGE``: run the image and check every policy through it."""

from __future__ import annotations

import argparse
from typing import Any

from gateway_builder.errors import GatewayBuilderError
from gateway_builder.options import SmokeOptions
from gateway_builder.smoke import SmokeReport, SmokeTestError, smoke_test
from gateway_builder.ui import UI


def options_from_args(args: argparse.Namespace) -> SmokeOptions:
    """``--timeout`` and ``--transport``."""
    return SmokeOptions(timeout=args.timeout, transport=args.transport)


def run(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    """Smoke-test ``args.image`` and print the step table.

    A failure keeps the report's ``--json`` shape (steps, policies, warnings), with ``ok`` false
    and the error, whether a step failed or the test could not start."""
    try:
        report = smoke_test(args.image, options_from_args(args), context_dir=args.context, ui=ui)
    except GatewayBuilderError as exc:
        failed = exc.report if isinstance(exc, SmokeTestError) else SmokeReport(image=args.image)
        failed.error = failed.error or exc.message
        exc.result = failed.as_dict()
        raise
    data = report.as_dict()
    human = f"{report.table()}\n\nsmoke test passed: {args.image} in {report.seconds:.1f}s"
    ui.result(data, human)
    return data
