"""A stand-in for the router, the policy engine or the executor, driven by the entrypoint tests.

Usage: ``entrypoint_standin.py ROLE ARGS...`` (ROLE: router, engine, executor). It appends its argv
to ``$STANDIN_DIR/<role>.argv`` (one JSON list per run) and events to ``$STANDIN_DIR/events``
(``<role> <event>`` lines, in order), becomes ready the way the real process does (executor: writes
``--ready-file``; engine: listens on ``$STANDIN_ENGINE_SOCKET``), then waits for SIGTERM.

``$STANDIN_<ROLE>`` picks a behaviour: ``ok`` (default), ``die:N`` (exit N before ready),
``exit:N:SECONDS`` (exit N that long after ready; ``exit:N:router``: once the router is ready,
whatever the machine's load), ``never-ready``, ``ignore-term``,
``slow-term:SECONDS``, ``no-newline`` (last output line without a newline).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path


def event(role: str, what: str) -> None:
    with open(Path(os.environ["STANDIN_DIR"]) / "events", "a", encoding="utf-8") as fh:
        fh.write(f"{role} {what}\n")


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def main() -> int:
    role, argv = sys.argv[1], sys.argv[2:]
    mode = os.environ.get(f"STANDIN_{role.upper()}", "ok")
    with open(Path(os.environ["STANDIN_DIR"]) / f"{role}.argv", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(argv) + "\n")
    event(role, "start")
    print(f"{role} starting", flush=True)
    print(f"{role} diagnostics on stderr", file=sys.stderr, flush=True)
    if mode.startswith("die:"):
        event(role, "die")
        return int(mode.split(":")[1])

    def on_term(signum: int, frame: object) -> None:
        event(role, "term")
        if mode != "no-newline":
            print(f"{role} got SIGTERM", flush=True)
        if mode.startswith("slow-term:"):
            time.sleep(float(mode.split(":")[1]))
        event(role, "stopped")
        raise SystemExit(0)

    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, lambda s, f: event(role, "term-ignored"))
    else:
        signal.signal(signal.SIGTERM, on_term)

    server = None
    if mode != "never-ready":
        if role == "executor":
            Path(option(argv, "--ready-file")).write_text("ready\n", encoding="utf-8")
        elif role == "engine":
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(os.environ["STANDIN_ENGINE_SOCKET"])
            server.listen()
        event(role, "ready")
        print(f"{role} ready", flush=True)
    if mode == "no-newline":
        sys.stdout.write(f"{role} last words")
        sys.stdout.flush()
    if mode.startswith("exit:"):
        _, code, delay = mode.split(":")
        if delay == "router":
            events = Path(os.environ["STANDIN_DIR"]) / "events"
            until = time.monotonic() + 60
            while time.monotonic() < until and "router ready" not in events.read_text():
                time.sleep(0.05)
        else:
            time.sleep(float(delay))
        event(role, "exit")
        return int(code)
    deadline = time.monotonic() + 60  # never outlive a test run
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
