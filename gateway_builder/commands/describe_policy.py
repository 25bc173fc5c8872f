"""``gateway-builder describe-policy DIR``: a policy's reference page (Markdown or JSON)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway_builder.devkit.describe import describe_policy, to_markdown
from gateway_builder.options import DescribePolicyOptions
from gateway_builder.ui import UI


def options_from_args(args: argparse.Namespace) -> DescribePolicyOptions:
    """DIR and ``--format``."""
    return DescribePolicyOptions(policy_dir=args.policy_dir, format=args.format)


def run(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    """Print the page (``--format markdown``) or the data (``--format json`` or ``--json``)."""
    options = options_from_args(args)
    data = describe_policy(options)
    text = json.dumps(data, indent=2, sort_keys=True) if options.format == "json" else None
    ui.result(data, text if text is not None else to_markdown(data))
    return data
