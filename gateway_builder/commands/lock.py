"""``gateway-builder lock``: write (or with ``--check`` verify) the lock file."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from gateway_builder.commands._flags import lock_options, session_options
from gateway_builder.lock import LockResult
from gateway_builder.options import LockOptions
from gateway_builder.pipeline import Session
from gateway_builder.ui import UI


def options_from_args(args: argparse.Namespace) -> LockOptions:
    """The lock flags plus ``--upgrade*``; ``--check`` verifies only."""
    return replace(
        lock_options(args, check=args.check),
        upgrade=args.upgrade,
        upgrade_policies=tuple(args.upgrade_policy),
        upgrade_packages=tuple(args.upgrade_package),
    )


def run(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    """Lock (incrementally) or check, and print one line per policy."""
    session = Session.open(session_options(args))
    opts = options_from_args(args)
    if not opts.resolve:
        with ui.step("fetch"):
            fetched = session.fetch(ui)
        with ui.step("check lock"):
            session.check(fetched, opts)
        result = {"ok": True, "lock_file": str(session.lock_path), "up_to_date": True}
        ui.result(result, f"{session.lock_path} is up to date")
        return result
    with ui.step("fetch"):
        fetched = session.fetch(ui, upgrade=opts.upgrade, upgrade_policies=opts.upgrade_policies)
    with ui.step("lock"):
        res = session.lock(fetched, opts, ui)
    result = _result(session, res)
    lines = [
        f"{p.name:<24} py{p.env.python:<5} "
        + ", ".join(f"{x.name}=={x.version}" for x in p.env.packages.get("x86_64", ()))
        for p in res.lock.policies
    ]
    state = "written" if session.changed else "unchanged"
    lines.append(
        f"{session.lock_path}: {state} ({len(res.resolved)} resolved, {len(res.kept)} kept)"
    )
    ui.result(result, "\n".join(lines))
    return result


def _result(session: Session, res: LockResult) -> dict[str, Any]:
    lock = res.lock
    return {
        "ok": True,
        "lock_file": str(session.lock_path),
        "changed": session.changed,
        "resolver": lock.resolver,
        "platforms": list(lock.platforms),
        "resolved": res.resolved,
        "kept": res.kept,
        "notes": res.notes,
        "policies": [
            {
                "name": p.name,
                "python": p.env.python,
                "resolved": p.resolved,
                "packages": {
                    plat: [f"{x.name}=={x.version}" for x in pkgs]
                    for plat, pkgs in p.env.packages.items()
                },
            }
            for p in lock.policies
        ],
    }
