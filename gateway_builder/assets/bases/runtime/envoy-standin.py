#!/usr/bin/python3.11 -I
"""Router stand-in installed at Envoy's path in gateway-builder's local runtime base.

No registry reachable from the machines this base is for carries Envoy, so this small program
takes its place: it accepts Envoy's command line (-c/--config-path, --config-yaml, -l/--log-level,
--concurrency; anything else is logged and ignored), logs what it got, answers every HTTP
request on 0.0.0.0:8080 (ROUTER_HTTP_HOST, ROUTER_HTTP_PORT) with 200 and a body saying it is a stand-in, and exits 0
on SIGTERM or SIGINT. It routes nothing and runs no policies.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "gateway-builder-router-standin 1"
VALUE_OPTIONS = {
    "-c": "config",
    "--config-path": "config",
    "--config-yaml": "config_yaml",
    "-l": "log_level",
    "--log-level": "log_level",
    "--concurrency": "concurrency",
}


def log(message: str) -> None:
    """One line on stdout, flushed (the entrypoint prefixes it)."""
    sys.stdout.write(f"router stand-in: {message}\n")
    sys.stdout.flush()


def parse_args(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Envoy-style options; unknown ones (with a value when the next word is not an option)."""
    known: dict[str, str] = {}
    ignored: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, inline = arg.partition("=")
        if name in VALUE_OPTIONS:
            if eq:
                value = inline
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise SystemExit(f"router stand-in: {name} needs a value")
            known[VALUE_OPTIONS[name]] = value
        elif (
            arg.startswith("-") and not eq and i + 1 < len(argv) and not argv[i + 1].startswith("-")
        ):
            ignored.append(f"{arg} {argv[i + 1]}")
            i += 1
        else:
            ignored.append(arg)
        i += 1
    return known, ignored


class Handler(BaseHTTPRequestHandler):
    """Answers everything with 200 and a short text saying this is a stand-in."""

    server_version = "gateway-builder-router-standin"

    def _answer(self) -> None:
        body = (
            b"LIVE\n" if self.path == "/ready" else b"gateway-builder router stand-in (not Envoy)\n"
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Gateway-Builder-Standin", "router")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer

    def log_message(self, format: str, *args: object) -> None:
        log(f"{self.address_string()} {format % args}")


def not_dumpable() -> None:
    """PR_SET_DUMPABLE 0, as the image wants of its router: no process of this user may trace it
    or read its memory. (A script cannot be made execute-only like a binary.)"""
    try:
        import ctypes

        if ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) != 0:
            log("warning: cannot clear the dumpable flag")
    except (OSError, AttributeError):
        log("warning: cannot clear the dumpable flag")


def main(argv: list[str]) -> int:
    """Run until SIGTERM/SIGINT; 0 on a clean stop."""
    if "--version" in argv:
        print(VERSION)
        return 0
    not_dumpable()
    known, ignored = parse_args(argv)
    config = known.get("config", "(none)")
    log(
        f"starting ({VERSION}; a stand-in, not Envoy): config={config} "
        f"log-level={known.get('log_level', 'info')} concurrency={known.get('concurrency', '0')} "
        f"config-yaml={len(known.get('config_yaml', ''))} bytes"
    )
    if config != "(none)" and not os.path.isfile(config):
        log(f"note: config {config} does not exist; the stand-in does not read it")
    if ignored:
        log(f"ignored arguments: {' '.join(ignored)}")
    host = os.environ.get("ROUTER_HTTP_HOST", "0.0.0.0")
    port = int(os.environ.get("ROUTER_HTTP_PORT", "8080"))
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log(f"received {signal.Signals(signum).name}, shutting down")
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log(f"listening on {host}:{server.server_address[1]}")
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
