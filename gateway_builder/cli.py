"""The ``gateway-builder`` command line.

Commands follow the pipeline (each step can run alone, like the OpenTelemetry Collector Builder):
``validate`` -> ``fetch`` -> ``lock`` -> ``render`` -> ``build`` (-> ``smoke-test``), plus
``schema`` and ``bases build``. Exit codes: 0 ok, 1 failure, 2 bad input.

Each stage module exposes ``command(args, ui) -> dict``; this module only parses arguments,
dispatches, and maps errors to exit codes. Flags are defined here, one function per command.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gateway_builder import __version__, defaults
from gateway_builder.errors import GatewayBuilderError, InputError
from gateway_builder.redact import redact_text
from gateway_builder.ui import UI

EXIT_OK, EXIT_FAILURE, EXIT_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2 (no usage dump)."""

    def error(self, message: str) -> Any:
        sys.stderr.write(f"error: {self.prog}: {message} (see --help)\n")
        raise SystemExit(EXIT_INPUT)


# --------------------------------------------------------------------------------------------
# Shared flag groups
# --------------------------------------------------------------------------------------------


def _global_flags(*, top: bool = False) -> argparse.ArgumentParser:
    # Accepted before and after the command; subcommands must not reset the top-level values.
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--json",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="print a machine-readable result on stdout (logs stay on stderr)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if top else argparse.SUPPRESS,
        help="more output",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="errors only",
    )
    return p


def _manifest_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--build-file",
        type=Path,
        default=None,
        help=f"the Go manifest (default: {defaults.DEFAULT_BUILD_FILE} if present)",
    )
    p.add_argument(
        "--python-build-file",
        type=Path,
        default=None,
        help=f"the Python manifest (default: {defaults.DEFAULT_PYTHON_BUILD_FILE} if present)",
    )
    return p


def _fetch_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--cache-dir", type=Path, default=None, help="fetch cache (default: user cache dir)"
    )
    p.add_argument("--offline", action="store_true", help="use only the cache; fail on a miss")
    return p


def _lock_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--lock-file",
        type=Path,
        default=None,
        help=f"lock file (default: {defaults.LOCK_FILE_NAME} next to python-build.yaml)",
    )
    p.add_argument("--resolver", choices=defaults.RESOLVERS, default=defaults.DEFAULT_RESOLVER)
    p.add_argument(
        "--platform",
        dest="platforms",
        action="append",
        choices=defaults.PLATFORMS,
        default=None,
        help="target architecture to lock for (repeatable; x86_64 is always included)",
    )
    return p


def _render_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--locked", action="store_true", help="fail if the lock file is stale (for CI)")
    p.add_argument(
        "--bases",
        choices=("upstream", "local"),
        default="upstream",
        help="upstream images (default) or local bases built from Debian packages",
    )
    p.add_argument(
        "--registry-mirror", default=None, help="prefix that rewrites every default image"
    )
    p.add_argument("--builder-image", default=None, help="image that compiles the Go policy engine")
    p.add_argument("--runtime-image", default=None, help="runtime base image (Envoy + tini)")
    p.add_argument(
        "--python-image",
        action="append",
        default=[],
        metavar="VERSION=IMAGE",
        help="Python builder base for one version (repeatable)",
    )
    p.add_argument(
        "--python-prefix",
        action="append",
        default=[],
        metavar="VERSION=DIR",
        help="interpreter prefix for a local Python base (default: discovered with pyenv)",
    )
    p.add_argument(
        "--policy-engine", type=Path, default=None, help="prebuilt engine binary: skip its stage"
    )
    p.add_argument(
        "--tini",
        default=None,
        metavar="PATH",
        help=f"tini in the runtime base image (default: {defaults.TINI_PATH})",
    )
    p.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="extra image label"
    )
    p.add_argument(
        "--source-date-epoch",
        type=int,
        default=None,
        help="timestamp for the created label (default: $SOURCE_DATE_EPOCH or the lock's)",
    )
    return p


# --------------------------------------------------------------------------------------------
# Commands implemented here
# --------------------------------------------------------------------------------------------


def resolve_manifest_paths(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """The manifest paths to load: explicit flags, else the defaults that exist."""
    build = args.build_file
    python_build = args.python_build_file
    if build is None and python_build is None:
        if defaults.DEFAULT_BUILD_FILE.exists():
            build = defaults.DEFAULT_BUILD_FILE
        if defaults.DEFAULT_PYTHON_BUILD_FILE.exists():
            python_build = defaults.DEFAULT_PYTHON_BUILD_FILE
        if build is None and python_build is None:
            raise InputError(
                f"no manifests found: expected {defaults.DEFAULT_BUILD_FILE} and/or "
                f"{defaults.DEFAULT_PYTHON_BUILD_FILE}, or pass --build-file / --python-build-file"
            )
    return build, python_build


def _cmd_validate(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    from gateway_builder.manifest import load_manifests

    build, python_build = resolve_manifest_paths(args)
    manifests = load_manifests(build, python_build)
    py = manifests.python_policies()
    result = {
        "ok": True,
        "build_file": str(build) if build else None,
        "python_build_file": str(python_build) if python_build else None,
        "go_policies": [g.name for g in manifests.go_specs],
        "python_policies": [{"name": s.name, "source": s.source.display()} for s in py],
    }
    human = f"ok: {len(manifests.go_specs)} Go policies, {len(py)} Python policies"
    ui.result(result, human)
    return result


def _cmd_schema(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    from gateway_builder.manifest import json_schemas

    schemas = json_schemas()
    if args.manifest != "all":
        schemas = {args.manifest: schemas[args.manifest]}
    sys.stdout.write(json.dumps(schemas, indent=2, sort_keys=True) + "\n")
    return {"ok": True}


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------

#: command name -> (module, function) for stage commands; module.function(args, ui) -> dict
_STAGE_COMMANDS: dict[str, tuple[str, str]] = {
    "fetch": ("gateway_builder.fetch", "command"),
    "lock": ("gateway_builder.lock", "command"),
    "render": ("gateway_builder.render", "command"),
    "build": ("gateway_builder.image", "command"),
    "smoke-test": ("gateway_builder.smoke", "command"),
    "bases": ("gateway_builder.bases", "command"),
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (all commands and flags)."""
    g, m, f, lk, r = (
        _global_flags(),
        _manifest_flags(),
        _fetch_flags(),
        _lock_flags(),
        _render_flags(),
    )
    parser = _Parser(
        prog="gateway-builder",
        description="Build a tested, reproducible gateway-runtime image from build.yaml + python-build.yaml.",
        parents=[_global_flags(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"gateway-builder {__version__}")
    sub: Any = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    sub.add_parser("validate", parents=[g, m], help="check both manifests")

    sp = sub.add_parser("schema", parents=[g], help="print the JSON Schema of the manifests")
    sp.add_argument(
        "manifest", nargs="?", default="all", choices=("all", "build.yaml", "python-build.yaml")
    )

    sub.add_parser("fetch", parents=[g, m, f], help="fetch Python policies into the cache")

    sp = sub.add_parser(
        "lock", parents=[g, m, f, lk], help="lock each policy per Python version, with hashes"
    )
    sp.add_argument("--upgrade", action="store_true", help="re-resolve every policy")
    sp.add_argument("--upgrade-policy", action="append", default=[], metavar="NAME")
    sp.add_argument("--upgrade-package", action="append", default=[], metavar="PKG")
    sp.add_argument("--check", action="store_true", help="exit 1 with a diff if the lock is stale")

    sp = sub.add_parser(
        "render", parents=[g, m, f, lk, r], help="write a self-contained build context"
    )
    sp.add_argument("--out", type=Path, required=True, help="output directory")

    sp = sub.add_parser(
        "build", parents=[g, m, f, lk, r], help="validate, fetch, lock, render, build, smoke-test"
    )
    sp.add_argument("--tag", action="append", default=[], help="image tag (repeatable)")
    sp.add_argument("--no-cache", action="store_true", help="do not use the Docker layer cache")
    sp.add_argument(
        "--out", type=Path, default=None, help="where to render the context (default: a temp dir)"
    )
    sp.add_argument("--render-only", action="store_true", help="stop after rendering the context")
    sp.add_argument(
        "--from-context", type=Path, default=None, help="build an already rendered context"
    )
    sp.add_argument("--no-smoke", action="store_true", help="skip the smoke test")

    sp = sub.add_parser("smoke-test", parents=[g], help="smoke-test a built image")
    sp.add_argument("image", help="image id or tag")
    sp.add_argument(
        "--context", type=Path, default=None, help="rendered context (registry and samples)"
    )
    sp.add_argument(
        "--timeout",
        type=float,
        default=defaults.SMOKE_READY_TIMEOUT_S,
        help="seconds the three processes get to report ready",
    )
    sp.add_argument(
        "--transport",
        choices=("auto", "unix", "tcp"),
        default="auto",
        help="reach the executor on its bind-mounted socket, or on TCP published on 127.0.0.1 "
        "(default auto: the socket when it answers from the host)",
    )

    sp = sub.add_parser("bases", parents=[g], help="local base images built from Debian packages")
    sp.add_argument("action", choices=("build",))
    sp.add_argument("--python", dest="pythons", action="append", default=[], metavar="VERSION")
    sp.add_argument("--python-prefix", action="append", default=[], metavar="VERSION=DIR")
    sp.add_argument(
        "--rebuild", action="store_true", help="ignore existing local bases and the layer cache"
    )
    return parser


def _run(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    if args.command == "validate":
        return _cmd_validate(args, ui)
    if args.command == "schema":
        return _cmd_schema(args, ui)
    module_name, func_name = _STAGE_COMMANDS[args.command]
    module = importlib.import_module(module_name)
    func: Callable[[argparse.Namespace, UI], dict[str, Any]] = getattr(module, func_name)
    return func(args, ui)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gateway-builder`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    ui = UI(verbosity=-1 if args.quiet else args.verbose, json_mode=args.json)
    try:
        _run(args, ui)
    except GatewayBuilderError as exc:
        ui.error(exc.message)
        if exc.details:
            sys.stderr.write(redact_text(exc.details).rstrip() + "\n")
        if args.json:
            ui.result({"ok": False, "error": exc.message, "exit_code": exc.exit_code})
        return exc.exit_code
    except KeyboardInterrupt:
        ui.error("interrupted")
        return 130
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
