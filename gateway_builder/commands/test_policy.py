"""``gateway-builder test-policy DIR``: run a policy's samples through the real executor."""

from __future__ import annotations

import argparse
from typing import Any

from gateway_builder.devkit.runner import PolicyRun, failure, run_once, watch
from gateway_builder.errors import GatewayBuilderError, InputError
from gateway_builder.options import PolicyEnvOptions, PolicyTestOptions, check_python_version
from gateway_builder.ui import UI


def options_from_args(args: argparse.Namespace) -> PolicyTestOptions:
    """DIR, ``--python``, ``--lock-file``, ``--cache-dir``, ``--watch``, ``--max-runs``."""
    if args.max_runs is not None and args.max_runs < 1:
        raise InputError(f"--max-runs {args.max_runs}: expected a positive number")
    return PolicyTestOptions(
        policy_dir=args.policy_dir,
        env=PolicyEnvOptions(
            python=check_python_version(args.python) if args.python else None,
            lock_file=args.lock_file,
            cache_dir=args.cache_dir,
        ),
        watch=args.watch,
        max_runs=args.max_runs,
    )


def run(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    """One run (exit 1 on a mismatch), or ``--watch``: a run after every change."""
    options = options_from_args(args)
    if not options.watch:
        done = run_once(options, ui)
        ui.result(done.as_dict(), done.table())
        if not done.ok:
            raise failure(done)
        return done.as_dict()

    def report(done: PolicyRun | None, error: GatewayBuilderError | None) -> None:
        if done is not None:
            ui.result(done.as_dict(), done.table() + "\n")
        elif error is not None:  # keep watching: show why, as a single run would
            ui.error(error.message)
            if error.details:
                ui.info(error.details.rstrip())

    last = watch(options, ui, report)
    if last is None:
        raise GatewayBuilderError("the last run did not complete")
    if not last.ok:
        raise failure(last)
    return last.as_dict()
