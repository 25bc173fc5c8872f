"""``gateway-builder smoke-test IMAGE``: run the image and check every policy through it."""

from __future__ import annotations

import argparse
from typing import Any

from gateway_builder.options import SmokeOptions
from gateway_builder.smoke import smoke_test
from gateway_builder.ui import UI


def options_from_args(args: argparse.Namespace) -> SmokeOptions:
    """``--timeout`` and ``--transport``."""
    return SmokeOptions(timeout=args.timeout, transport=args.transport)


def run(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    """Smoke-test ``args.image`` and print the step table."""
    report = smoke_test(args.image, options_from_args(args), context_dir=args.context, ui=ui)
    data = report.as_dict()
    human = f"{report.table()}\n\nsmoke test passed: {args.image} in {report.seconds:.1f}s"
    ui.result(data, human)
    return data
