"""The ``gateway-builder`` command line.

Commands follow the pipeline (each step can run alone, like the OpenTelemetry Collector Builder):
``validate`` -> ``fetch`` -> ``lock`` -> ``render`` -> ``build`` (-> ``smoke-test``), plus
``schema``, ``bases build`` and the policy developer kit (``new-policy``, ``test-policy``,
``describe-policy``). Exit codes: 0 ok, 1 failure, 2 bad input.

This module only parses arguments, dispatches to ``gateway_builder.commands.<name>.run(args, ui)``
(which turns flags into typed options and calls the library) and maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway_builder import __version__, defaults
from gateway_builder.commands import COMMANDS
from gateway_builder.errors import GatewayBuilderError
from gateway_builder.redact import redact_text
from gateway_builder.ui import UI

EXIT_OK, EXIT_FAILURE, EXIT_INPUT = 0, 1, 2


class _VersionAction(argparse.Action):
    """``--version``: the version as text, or as JSON when ``--json`` is on the command line."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        argv = getattr(parser, "argv", None)
        as_json = getattr(namespace, "json", False) or "--json" in (
            sys.argv[1:] if argv is None else argv
        )
        if as_json:
            sys.stdout.write(json.dumps({"ok": True, "version": __version__}) + "\n")
        else:
            sys.stdout.write(f"gateway-builder {__version__}\n")
        raise SystemExit(EXIT_OK)


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
        help="errors only (no progress lines, warnings or result table)",
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
    p.add_argument(
        "--lock-file",
        type=Path,
        default=None,
        help="the lock file, whose pinned sources fetch reuses (default: named after the Python "
        "manifest and next to it: python-build.yaml -> python-build.lock, other.yaml -> other.lock)",
    )
    p.add_argument(
        "--allow-host-builds",
        action="store_true",
        help="run policies' build code (their build backend, setup.py) on this machine instead "
        "of a throwaway container without network or credentials",
    )
    return p


def _lock_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--resolver",
        choices=defaults.RESOLVERS,
        default=defaults.DEFAULT_RESOLVER,
        help=f"what resolves the requirements: uv (fast) or pip-tools (default: {defaults.DEFAULT_RESOLVER})",
    )
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
        metavar="SECONDS",
        help="the image's time: its created label and the file times of its last layer (registry, "
        "build manifest); each builder stage keeps the time of its own inputs, never later than "
        "this (default: $SOURCE_DATE_EPOCH, else the newest git commit in the lock, else "
        "1980-01-01)",
    )
    return p


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------


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
    parser.add_argument(
        "--version",
        action=_VersionAction,
        nargs=0,
        help="print the version and exit (JSON with --json)",
    )
    sub: Any = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, help="the step to run"
    )
    sub.required = True

    sub.add_parser("validate", parents=[g, m], help="check both manifests")

    sp = sub.add_parser("schema", parents=[g], help="print the JSON Schema of the manifests")
    sp.add_argument(
        "manifest",
        nargs="?",
        default="all",
        choices=("all", "build.yaml", "python-build.yaml"),
        help="whose schema to print: build.yaml, python-build.yaml, or all (default: both, "
        "keyed by file name)",
    )

    sub.add_parser("fetch", parents=[g, m, f], help="fetch Python policies into the cache")

    sp = sub.add_parser(
        "lock", parents=[g, m, f, lk], help="lock each policy per Python version, with hashes"
    )
    sp.add_argument("--upgrade", action="store_true", help="re-resolve every policy")
    sp.add_argument(
        "--upgrade-policy",
        action="append",
        default=[],
        metavar="NAME",
        help="re-resolve one policy: its source (newest matching tag or release) and its "
        "dependencies (repeatable)",
    )
    sp.add_argument(
        "--upgrade-package",
        action="append",
        default=[],
        metavar="PKG",
        help="move one dependency to its newest allowed version wherever it is pinned (repeatable)",
    )
    sp.add_argument(
        "--check",
        action="store_true",
        help="verify the lock (inputs, pins and hashes) without writing it; exit 1 with the "
        "reason and a diff if it is stale, edited or inconsistent",
    )
    sp.add_argument(
        "--outdated",
        action="store_true",
        help="list policies whose source has a newer matching tag or release; write nothing",
    )

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
    sp.add_argument(
        "--keep-stage-images",
        action="store_true",
        help="keep the builder stages' images (Docker's layer cache for them, listed as <none>): "
        "a rebuild then reruns only the stages whose inputs changed; by default the build "
        "removes every image it created except the result",
    )

    _add_image_commands(sub, g)
    _add_policy_commands(sub, g)
    return parser


def _add_image_commands(sub: Any, g: argparse.ArgumentParser) -> None:
    """``smoke-test`` and ``bases``: commands on images rather than manifests."""
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
    sp.add_argument(
        "action", choices=("build",), help="build: build (or reuse) the local base images"
    )
    sp.add_argument(
        "--python",
        dest="pythons",
        action="append",
        default=[],
        metavar="VERSION",
        help=f"a Python base to build (repeatable; default: {defaults.DEFAULT_PYTHON})",
    )
    sp.add_argument(
        "--python-prefix",
        action="append",
        default=[],
        metavar="VERSION=DIR",
        help="interpreter prefix to copy into that Python base (default: discovered with pyenv); "
        "its version is built too",
    )
    sp.add_argument(
        "--rebuild", action="store_true", help="ignore existing local bases and the layer cache"
    )


def _add_policy_commands(sub: Any, g: argparse.ArgumentParser) -> None:
    """``new-policy``, ``test-policy``, ``describe-policy``: the policy developer kit."""
    sp = sub.add_parser("new-policy", parents=[g], help="scaffold a complete, working policy")
    sp.add_argument("name", metavar="NAME", help="the policy name (as in the manifests)")
    sp.add_argument(
        "--phase",
        dest="phases",
        action="extend",
        nargs="+",
        choices=defaults.SCAFFOLD_PHASES,
        default=None,
        metavar="PHASE",
        help=f"phases it implements: {', '.join(defaults.SCAFFOLD_PHASES)} (repeatable; "
        f"default {defaults.DEFAULT_SCAFFOLD_PHASES[0]})",
    )
    sp.add_argument(
        "--python", default=None, metavar="VERSION", help="write python_version.txt (e.g. 3.12)"
    )
    sp.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="the folder to create (default ./NAME)",
    )

    sp = sub.add_parser(
        "test-policy", parents=[g], help="run a policy's samples through the real executor"
    )
    sp.add_argument("policy_dir", type=Path, metavar="DIR", help="the policy folder")
    sp.add_argument("--python", default=None, metavar="VERSION", help="Python of the policy's venv")
    sp.add_argument(
        "--lock-file",
        type=Path,
        default=None,
        help="install the policy's pins from this lock (default: resolve its requirements)",
    )
    sp.add_argument("--cache-dir", type=Path, default=None, help="cache of venvs and downloads")
    sp.add_argument("--watch", action="store_true", help="rerun after every change of DIR")
    sp.add_argument(
        "--max-runs", type=int, default=None, metavar="N", help="--watch: stop after N runs"
    )

    sp = sub.add_parser(
        "describe-policy", parents=[g], help="a policy's reference page, for docs sites"
    )
    sp.add_argument("policy_dir", type=Path, metavar="DIR", help="the policy folder")
    sp.add_argument(
        "--format",
        choices=("markdown", "json"),
        default="markdown",
        help="a Markdown page (default) or the same as JSON",
    )


def _run(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    # Imported on use: `--help` and a bad flag stay fast and need no Docker SDK or gRPC.
    module = importlib.import_module(f"gateway_builder.commands.{COMMANDS[args.command]}")
    result: dict[str, Any] = module.run(args, ui)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gateway-builder`` console script."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser.argv = argv  # type: ignore[attr-defined]  # for --version --json in either order
    args = parser.parse_args(argv)
    ui = UI(verbosity=-1 if args.quiet else args.verbose, json_mode=args.json)
    try:
        _run(args, ui)
    except GatewayBuilderError as exc:
        ui.error(exc.message)
        if exc.details:
            sys.stderr.write(redact_text(exc.details).rstrip() + "\n")
        if args.json:
            # A command whose failure has a result of its own (the smoke test's step table)
            # keeps that shape, with the error added.
            ui.result(
                {
                    **(exc.result or {}),
                    "ok": False,
                    "error": exc.message,
                    "exit_code": exc.exit_code,
                }
            )
        return exc.exit_code
    except KeyboardInterrupt:
        ui.error("interrupted")
        return 130
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
