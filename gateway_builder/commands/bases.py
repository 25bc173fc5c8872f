"""``gateway-builder bases build``: local base images built from Debian packages."""

from __future__ import annotations

import argparse
from typing import Any

from gateway_builder.bases import build_local_bases
from gateway_builder.dockerd import ensure_engine
from gateway_builder.options import (
    LocalBasesOptions,
    check_python_version,
    parse_python_prefixes,
)
from gateway_builder.ui import UI


def options_from_args(args: argparse.Namespace) -> LocalBasesOptions:
    """``--python`` (repeatable; default the default Python), ``--python-prefix``, ``--rebuild``.

    A prefix's version is built too, so ``--python-prefix 3.12=DIR`` alone builds 3.12."""
    prefixes = parse_python_prefixes(args.python_prefix)
    versions = [check_python_version(v) for v in args.pythons] or list(LocalBasesOptions().pythons)
    versions += [v for v in prefixes if v not in versions]
    return LocalBasesOptions(
        pythons=tuple(versions), python_prefixes=prefixes, rebuild=args.rebuild
    )


def run(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    """Build (or reuse) the local bases and print what each cost."""
    opts = options_from_args(args)
    client = ensure_engine(log=ui.info)
    report = build_local_bases(opts, client=client, log=ui.info, detail=ui.debug)
    result = {"ok": True, **report.as_dict()}
    ui.result(result, report.table())
    return result
