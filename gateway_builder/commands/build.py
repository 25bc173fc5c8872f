"""``gateway-builder build``: validate, fetch, lock, render, build the image, smoke-test it.

Stages can be skipped like the OpenTelemetry Collector Builder's: ``--render-only`` stops after
the context, ``--no-smoke`` after the image, ``--from-context DIR`` builds a rendered context.
"""

from __future__ import annotations

import argparse
from typing import Any

from gateway_builder.commands._flags import build_options
from gateway_builder.errors import InputError
from gateway_builder.options import BuildOptions, SmokeOptions, Stage, check_tags
from gateway_builder.pipeline import Outcome
from gateway_builder.pipeline import run as run_pipeline
from gateway_builder.ui import UI, counted


def options_from_args(args: argparse.Namespace) -> BuildOptions:
    """The build flags; conflicting stage skips are bad input."""
    if args.render_only and args.from_context is not None:
        raise InputError("--render-only and --from-context exclude each other")
    if args.render_only and args.out is None:
        raise InputError("--render-only needs --out DIR (where to keep the context)")
    if args.from_context is not None and args.out is not None:
        raise InputError("--out has no effect with --from-context")
    until = Stage.RENDER if args.render_only else Stage.BUILD if args.no_smoke else Stage.SMOKE
    return build_options(
        args,
        out=args.out,
        until=until,
        tags=check_tags(args.tag),
        no_cache=args.no_cache,
        from_context=args.from_context,
        smoke=SmokeOptions(),
        keep_stages=args.keep_stage_images,
    )


def run(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    """Run the pipeline and print what was built."""
    opts = options_from_args(args)
    outcome = run_pipeline(opts, ui)
    if opts.until == Stage.RENDER:
        assert outcome.rendered is not None
        data = {
            "ok": True,
            "rendered_only": True,
            **outcome.rendered.as_dict(),
            "standin": outcome.standin,
        }
        ui.result(data, f"rendered {outcome.rendered.out_dir} (--render-only: not built)")
        return data
    return _report(outcome, ui)


def _report(outcome: Outcome, ui: UI) -> dict[str, Any]:
    built = outcome.built
    assert built is not None
    data = {
        "ok": True,
        **built.as_dict(),
        "context": None if outcome.temporary_context else str(outcome.context),
        "python_policies": outcome.python_policies,
        "standin": outcome.standin,
        "smoke": outcome.smoke.as_dict() if outcome.smoke is not None else None,
    }
    human = [
        f"image  {built.id}",
        f"tags   {', '.join(built.tags) or '(none)'}",
        f"size   {built.size / 1e6:.1f} MB, {len(built.layers)} layers; "
        f"{built.cached_steps}/{built.steps} steps from cache, {built.seconds:.1f}s",
    ]
    if built.removed_images:
        human.append(f"clean  removed the {counted(built.removed_images, 'step image')} it created")
    if outcome.standin:
        human.append("NOTE   router and policy engine are stand-ins (--bases local)")
    ui.result(data, "\n".join(human))
    return data
