"""``gateway-builder render --out DIR``: validate, fetch, lock and write the build context."""

from __future__ import annotations

import argparse
from typing import Any

from gateway_builder.commands._flags import build_options
from gateway_builder.options import Stage
from gateway_builder.pipeline import run as run_pipeline
from gateway_builder.ui import UI, counted


def run(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    """Render the context into ``--out`` and print its size and digest."""
    outcome = run_pipeline(build_options(args, out=args.out, until=Stage.RENDER), ui)
    result = outcome.rendered
    assert result is not None
    data = {"ok": True, **result.as_dict(), "standin": outcome.standin}
    human = (
        f"rendered {result.out_dir}: {result.files} files, {result.bytes / 1e6:.1f} MB, "
        f"{counted(len(result.policies), 'Python policy')}, digest {result.digest}"
    )
    ui.result(data, human)
    return data
