"""``gateway-builder lock``: write (or with ``--check`` verify) the lock file."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from gateway_builder.commands._flags import lock_options, session_options
from gateway_builder.errors import InputError
from gateway_builder.fetch import FetchedPolicy
from gateway_builder.lock import LockResult
from gateway_builder.lock.outdated import Outdated, find_outdated
from gateway_builder.options import LockOptions
from gateway_builder.pipeline import Session
from gateway_builder.ui import UI, counted


def options_from_args(args: argparse.Namespace) -> LockOptions:
    """The lock flags plus ``--upgrade*``; ``--check`` verifies only."""
    return replace(
        lock_options(args, check=args.check),
        upgrade=args.upgrade,
        upgrade_policies=tuple(args.upgrade_policy),
        upgrade_packages=tuple(args.upgrade_package),
    )


def _outdated(session: Session, fetched: list[FetchedPolicy], ui: UI) -> list[Outdated]:
    found, problems = find_outdated(fetched, session.cache)
    for line in problems:
        ui.warn(line)
    return found


def run(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    """Lock (incrementally) or check, and print one line per policy; ``--outdated`` lists the
    policies with a newer source than the locked one and writes nothing."""
    session = Session.open(session_options(args))
    opts = options_from_args(args)
    if args.outdated:
        if args.check or opts.upgrade or opts.upgrade_policies or opts.upgrade_packages:
            raise InputError("--outdated only looks: it excludes --check and --upgrade*")
        with ui.step("fetch"):
            fetched = session.fetch(ui)
        found = _outdated(session, fetched, ui)
        result = {
            "ok": True,
            "lock_file": str(session.lock_path),
            "outdated": [o.as_dict() for o in found],
        }
        lines = [f"{o.name:<24} {o.kind:<8} {o.locked:<24} -> {o.newest}" for o in found]
        lines.append(
            f"{counted(len(found), 'policy', 'policies')} with a newer source"
            + (": upgrade one with `gateway-builder lock --upgrade-policy NAME`" if found else "")
        )
        ui.result(result, "\n".join(lines))
        return result
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
    found = _outdated(session, fetched, ui)
    for item in found:
        ui.info(f"hint: {item.hint()}")
    result = {**_result(session, res), "outdated": [o.as_dict() for o in found]}
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
