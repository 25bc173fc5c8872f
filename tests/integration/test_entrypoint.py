"""The rendered entrypoint as a real bash process, with stand-ins for router, engine and executor."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway_builder import defaults
from gateway_builder.render.templating import EntrypointValues, render_entrypoint
from gateway_executor import defaults as executor_defaults

pytestmark = pytest.mark.integration

STANDIN = Path(__file__).with_name("entrypoint_standin.py")


@dataclass
class Run:
    """A running entrypoint whose output lines are collected by a thread."""

    proc: subprocess.Popen[str]
    state: Path
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    # Bounds on progress, not timed assertions: generous, since the stand-ins are Python
    # processes that start slowly on a machine other work keeps busy.
    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no line containing {text!r}; output:\n" + "\n".join(self.lines))

    def finish(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def events(self) -> list[str]:
        path = self.state / "events"
        return path.read_text().splitlines() if path.exists() else []

    def argv(self, role: str) -> list[str]:
        value: list[str] = json.loads((self.state / f"{role}.argv").read_text().splitlines()[-1])
        return value

    def output(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Gateway:
    root: Path
    sockets: Path
    state: Path
    runs: list[Run] = field(default_factory=list)

    def entrypoint(self, *, has_python: bool = True) -> Path:
        values = EntrypointValues(
            has_python_policies=has_python,
            builder_version="test",
            executor_python=str(self.root / "bin" / "executor-python"),
            executor_dir=str(self.root / "app" / "python-executor"),
            registry_path=str(self.root / "app" / "python-executor" / "policy-registry.json"),
            executor_socket=str(self.sockets / "python-executor.sock"),
            executor_ready_file=str(self.sockets / "python-executor.ready"),
            engine_binary=str(self.root / "bin" / "policy-engine"),
            engine_socket=str(self.sockets / "policy-engine.sock"),
            router_binary=str(self.root / "bin" / "envoy"),
            router_config=str(self.root / "etc" / "envoy.yaml"),
            router_config_override=str(self.root / "etc" / "config-override.yaml"),
            socket_dir=str(self.sockets),
            executor_ready_timeout=10,
            engine_ready_timeout=10,
            shutdown_grace=5,
        )
        path = self.root / f"entrypoint-{int(has_python)}.sh"
        path.write_text(render_entrypoint(values))
        path.chmod(0o755)
        return path

    def start(self, *args: str, has_python: bool = True, **env: str) -> Run:
        full_env = {
            "PATH": os.environ["PATH"],
            "STANDIN_DIR": str(self.state),
            "STANDIN_ENGINE_SOCKET": str(self.sockets / "policy-engine.sock"),
            **env,
        }
        proc = subprocess.Popen(
            ["bash", str(self.entrypoint(has_python=has_python)), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=full_env,
        )
        run = Run(proc, self.state)
        self.runs.append(run)
        return run


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, role in (
        ("executor-python", "executor"),
        ("policy-engine", "engine"),
        ("envoy", "router"),
    ):
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {STANDIN} {role} "$@"\n')
        wrapper.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    # Unix socket paths must stay short: use a short directory under /tmp.
    sockets = Path(f"/tmp/gwep-{os.getpid()}-{tmp_path.name[-12:]}")
    gw = Gateway(tmp_path, sockets, state)
    try:
        yield gw
    finally:
        for run in gw.runs:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()
        shutil.rmtree(sockets, ignore_errors=True)


def _ordered(events: list[str], *wanted: str) -> bool:
    """True if ``wanted`` occur in ``events`` in this order."""
    positions = [events.index(w) for w in wanted]
    return positions == sorted(positions)


def test_rendered_entrypoint_is_shellcheck_clean(gateway: Gateway) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    for has_python in (True, False):
        subprocess.run([shellcheck, str(gateway.entrypoint(has_python=has_python))], check=True)
    default = gateway.root / "default.sh"
    default.write_text(render_entrypoint(EntrypointValues(has_python_policies=True)))
    subprocess.run([shellcheck, str(default)], check=True)


def test_starts_in_order_prefixes_output_and_forwards_arguments(gateway: Gateway) -> None:
    run = gateway.start(
        "--rtr.log-level",
        "debug",
        "--rtr.component-log-level=upstream:info",
        "--rtr.disable-hot-restart",
        "--pol.config",
        "/etc/policy-engine/config.toml",
        "--py.workers",
        "3",
        "--py.log-level=DEBUG",
        "--pol.offset",
        "-5",
    )
    run.wait_for("all processes started")
    run.wait_for("[rtr] router ready")
    events = run.events()
    assert _ordered(events, "executor start", "executor ready", "engine start", "engine ready")
    assert _ordered(events, "engine ready", "router start")
    run.wait_for("[py-pol] executor starting")
    run.wait_for("[py-pol] executor diagnostics on stderr")
    run.wait_for("[pol] engine ready")
    assert run.wait_for("is ready").startswith("[ent] ")

    sockets = gateway.sockets
    assert run.argv("executor") == [
        "-m",
        "gateway_executor",
        "--registry",
        str(gateway.root / "app" / "python-executor" / "policy-registry.json"),
        "--listen",
        str(sockets / "python-executor.sock"),
        "--ready-file",
        str(sockets / "python-executor.ready"),
        "--shutdown-grace",
        "3",
        "--workers",
        "3",
        "--log-level=DEBUG",
    ]
    assert run.argv("engine") == [
        "-xds-server",
        "gateway-controller:18001",
        "--config",
        "/etc/policy-engine/config.toml",
        "--offset",
        "-5",
    ]
    assert run.argv("router") == [
        "-c",
        str(gateway.root / "etc" / "envoy.yaml"),
        "--log-level",
        "debug",
        "--component-log-level=upstream:info",
        "--disable-hot-restart",
    ]
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_signal_stops_router_engine_executor_in_order(
    gateway: Gateway, sig: signal.Signals
) -> None:
    run = gateway.start()
    run.wait_for("[rtr] router ready")
    run.proc.send_signal(sig)
    assert run.finish() == 0
    events = run.events()
    assert _ordered(
        events,
        "router term",
        "router stopped",
        "engine term",
        "engine stopped",
        "executor term",
        "executor stopped",
    )
    out = run.output()
    assert f"received {sig.name}" in out
    for name in ("router", "engine", "executor"):
        assert f"stopping {name} (pid" in out
        assert "[ent] " in run.wait_for(f"{name} stopped")
    assert "shutdown complete" in out
    leftovers = ("python-executor.ready", "python-executor.sock", "policy-engine.sock")
    assert not [name for name in leftovers if (gateway.sockets / name).exists()]


def test_sigkill_after_the_grace_period(gateway: Gateway) -> None:
    # A 3 s budget: the router's share ends 2 s before its end (the engine's and the executor's
    # 1 s each come after it).
    run = gateway.start(STANDIN_ROUTER="ignore-term", SHUTDOWN_GRACE_SECONDS="3")
    run.wait_for("[rtr] router ready")
    t0 = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    code = run.finish()
    elapsed = time.monotonic() - t0
    assert code == 1
    out = run.output()
    # What is left of its share when bash gets to it: 1.0 s, a little less on a busy machine.
    grace = re.search(r"stopping router \(pid \d+\): SIGTERM, SIGKILL after (\d\.\d)s", out)
    assert grace is not None and 0.5 <= float(grace.group(1)) <= 1.0, out
    assert f"router did not stop within {grace.group(1)}s: sending SIGKILL" in out
    assert "router killed" in out
    assert "not every process stopped cleanly" in out
    # The others are still stopped after the router was killed.
    assert _ordered(run.events(), "router term-ignored", "engine term", "executor term")
    assert elapsed >= 1.0


def test_the_whole_shutdown_fits_its_budget(gateway: Gateway) -> None:
    """SHUTDOWN_GRACE_SECONDS bounds the whole ordered shutdown, not each process: an executor
    that ignores SIGTERM is killed at the budget's end, and the executor is told to finish 2 s
    before it (--shutdown-grace; --py.shutdown-grace overrides)."""
    run = gateway.start(STANDIN_EXECUTOR="ignore-term", SHUTDOWN_GRACE_SECONDS="4")
    run.wait_for("[rtr] router ready")
    t0 = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    code = run.finish()
    elapsed = time.monotonic() - t0
    assert code == 1
    assert "executor did not stop within " in run.output()
    # At least the budget; the upper bound only catches a hang (bash and the stand-ins' exits
    # after the SIGKILL take seconds on a busy machine).
    assert 3.5 <= elapsed < 4 + 30, elapsed
    argv = run.argv("executor")
    assert argv[argv.index("--shutdown-grace") + 1] == "2"

    rendered = gateway.start("--py.shutdown-grace", "1.5")
    rendered.wait_for("[rtr] router ready")
    argv = rendered.argv("executor")
    # The budget rendered into this entrypoint is 5 s: the executor gets 3; the user's
    # --py.shutdown-grace comes later and wins.
    assert argv[argv.index("--shutdown-grace") :][:2] == ["--shutdown-grace", "3"]
    assert argv[-2:] == ["--shutdown-grace", "1.5"]
    rendered.proc.send_signal(signal.SIGTERM)
    assert rendered.finish() == 0
    # The image's default: 8 s, inside docker stop's 10 s; the executor's own default is the 6
    # the entrypoint gives it.
    assert defaults.SHUTDOWN_GRACE_S == 8 and executor_defaults.SHUTDOWN_GRACE_S == 6


def test_slow_stop_within_grace_is_clean(gateway: Gateway) -> None:
    run = gateway.start(STANDIN_ENGINE="slow-term:0.5", SHUTDOWN_GRACE_SECONDS="3")
    run.wait_for("[rtr] router ready")
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 0
    assert "SIGKILL" not in run.output().replace("SIGKILL after", "")


def test_a_process_exit_stops_the_others_and_keeps_its_status(gateway: Gateway) -> None:
    run = gateway.start(STANDIN_ENGINE="exit:3:router")
    assert run.finish() == 3
    out = run.output()
    assert "engine exited with status 3; stopping the others" in out
    events = run.events()
    assert "router term" in events and "executor term" in events
    assert "engine term" not in events
    assert "exiting with status 3" in out


def test_a_process_exiting_zero_still_fails_the_container(gateway: Gateway) -> None:
    run = gateway.start(STANDIN_ROUTER="exit:0:0.2")
    assert run.finish() == 1
    assert "router exited with status 0; stopping the others" in run.output()


def test_executor_dying_at_start_fails_fast_without_starting_the_engine(gateway: Gateway) -> None:
    t0 = time.monotonic()
    run = gateway.start(STANDIN_EXECUTOR="die:2", PYTHON_EXECUTOR_READY_TIMEOUT="60")
    assert run.finish() == 2
    assert time.monotonic() - t0 < 30  # at once, not after the 60 s ready timeout
    assert "executor exited with status 2" in run.output()
    assert not any(e.startswith("engine") for e in run.events())


def test_executor_not_ready_times_out(gateway: Gateway) -> None:
    # A stale ready file from an earlier run must not count as ready.
    gateway.sockets.mkdir(parents=True, exist_ok=True)
    (gateway.sockets / "python-executor.ready").write_text("stale\n")
    (gateway.sockets / "policy-engine.sock").write_text("stale\n")
    t0 = time.monotonic()
    run = gateway.start(STANDIN_EXECUTOR="never-ready", PYTHON_EXECUTOR_READY_TIMEOUT="1")
    assert run.finish() == 1
    elapsed = time.monotonic() - t0
    assert elapsed >= 1.0  # the message below says it was the 1 s, not the rendered 10 s
    out = run.output()
    assert "executor not ready after 1s" in out
    # The entrypoint stops it (a stand-in still starting up dies of the SIGTERM unrecorded).
    assert "stopping executor (pid" in out
    assert not any(e.startswith("engine") for e in run.events())


def test_engine_not_ready_times_out(gateway: Gateway) -> None:
    run = gateway.start(STANDIN_ENGINE="never-ready", POLICY_ENGINE_READY_TIMEOUT="1")
    assert run.finish() == 1
    out = run.output()
    assert "engine not ready after 1s" in out
    assert out.index("stopping engine (pid") < out.index("stopping executor (pid")


def test_without_python_policies_the_executor_is_not_started(gateway: Gateway) -> None:
    run = gateway.start("--py.workers", "2", has_python=False)
    run.wait_for("all processes started")
    assert "ignoring --py.* arguments" in run.output()
    assert not any(e.startswith("executor") for e in run.events())
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 0


def test_last_line_without_newline_is_prefixed(gateway: Gateway) -> None:
    run = gateway.start(STANDIN_ROUTER="no-newline")
    run.wait_for("[rtr] router ready")
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 0
    assert "[rtr] router last words" in run.lines


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve"], "unexpected argument 'serve'"),
        (["--config", "x"], "unexpected argument '--config'"),
        (["--py.listen", "/tmp/x.sock"], "--py.listen is not allowed"),
        (["--py.socket=/tmp/x.sock"], "--py.socket=/tmp/x.sock is not allowed"),
        (["--rtr."], "unexpected argument '--rtr.'"),
    ],
)
def test_bad_arguments_exit_1_before_starting_anything(
    gateway: Gateway, args: list[str], message: str
) -> None:
    run = gateway.start(*args)
    assert run.finish() == 1
    assert message in run.output()
    assert run.events() == []


def test_bad_timeout_environment_is_an_error(gateway: Gateway) -> None:
    run = gateway.start(SHUTDOWN_GRACE_SECONDS="ten")
    assert run.finish() == 1
    assert "SHUTDOWN_GRACE_SECONDS must be a whole number of seconds, got 'ten'" in run.output()
    assert run.events() == []


def test_signal_while_waiting_for_readiness_stops_what_runs(gateway: Gateway) -> None:
    run = gateway.start(STANDIN_EXECUTOR="never-ready")
    run.wait_for("[py-pol] executor starting")
    run.wait_for("waiting up to")
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 0
    assert "executor term" in run.events()
    assert not any(e.startswith(("engine", "router")) for e in run.events())
    assert "shutdown complete" in run.output()
