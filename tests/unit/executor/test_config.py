"""Flags and upstream environment variables; invalid values are errors."""

from __future__ import annotations

import pytest

from gateway_executor import defaults
from gateway_executor.config import ConfigError, is_tcp_address, parse_config


def test_defaults() -> None:
    cfg = parse_config([], env={})
    assert cfg.listen == defaults.SOCKET_PATH and cfg.socket_path == defaults.SOCKET_PATH
    assert cfg.registry == defaults.REGISTRY_PATH
    assert (cfg.workers, cfg.timeout_s) == (None, None)
    assert cfg.max_concurrent == defaults.DEFAULT_MAX_CONCURRENT and cfg.log_level == "INFO"


def test_environment_then_flags_win() -> None:
    env = {
        "PYTHON_POLICY_WORKERS": "3",
        "PYTHON_POLICY_MAX_CONCURRENT": "7",
        "PYTHON_POLICY_TIMEOUT": "1.5",
        "LOG_LEVEL": "debug",
    }
    cfg = parse_config([], env=env)
    assert (cfg.workers, cfg.max_concurrent, cfg.timeout_s, cfg.log_level) == (3, 7, 1.5, "DEBUG")
    cfg = parse_config(["--workers", "5", "--timeout", "2", "--log-level", "warn"], env=env)
    assert (cfg.workers, cfg.timeout_s, cfg.log_level) == (5, 2.0, "WARNING")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (
            [],
            {"PYTHON_POLICY_WORKERS": "abc"},
            "PYTHON_POLICY_WORKERS: expected a positive integer",
        ),
        ([], {"PYTHON_POLICY_WORKERS": "0"}, "PYTHON_POLICY_WORKERS"),
        ([], {"PYTHON_POLICY_MAX_CONCURRENT": "-1"}, "PYTHON_POLICY_MAX_CONCURRENT"),
        ([], {"PYTHON_POLICY_TIMEOUT": "soon"}, "PYTHON_POLICY_TIMEOUT: expected a positive"),
        ([], {"PYTHON_POLICY_TIMEOUT": "inf"}, "PYTHON_POLICY_TIMEOUT"),
        ([], {"LOG_LEVEL": "chatty"}, "LOG_LEVEL: expected one of"),
        (["--workers", "x"], {}, "--workers: expected a positive integer"),
        (["--timeout", "0"], {}, "--timeout"),
    ],
)
def test_invalid_values_are_errors(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_config(argv, env=env)


@pytest.mark.parametrize(
    ("listen", "tcp"),
    [
        ("127.0.0.1:9004", True),
        ("[::1]:9004", True),
        ("localhost:0", True),
        ("/var/run/x.sock", False),
        ("unix:/tmp/x.sock", False),
        ("./rel.sock", False),
        ("name-without-port", False),
    ],
)
def test_listen_address_kind(listen: str, tcp: bool) -> None:
    assert is_tcp_address(listen) is tcp
    cfg = parse_config(["--listen", listen], env={})
    assert (cfg.socket_path is None) is tcp


def test_unix_prefix_is_stripped_and_listen_env() -> None:
    assert parse_config(["--listen", "unix:/tmp/a.sock"], env={}).socket_path == "/tmp/a.sock"
    assert parse_config([], env={"PYTHON_EXECUTOR_LISTEN": "/tmp/b.sock"}).listen == "/tmp/b.sock"


def test_debug_listen_from_flag_or_env_must_be_tcp() -> None:
    assert parse_config([], env={}).debug_listen is None
    assert parse_config(["--debug-listen", "0.0.0.0:9004"], env={}).debug_listen == "0.0.0.0:9004"
    env = {"PYTHON_EXECUTOR_DEBUG_LISTEN": "127.0.0.1:9004"}
    assert parse_config([], env=env).debug_listen == "127.0.0.1:9004"
    with pytest.raises(ConfigError, match="--debug-listen: expected HOST:PORT"):
        parse_config(["--debug-listen", "/tmp/x.sock"], env={})


def test_sync_wait_us_default_zero_env_and_flag() -> None:
    env_name = defaults.ENV_SYNC_WAIT_US
    assert env_name == "PYTHON_EXECUTOR_SYNC_WAIT_US"
    assert parse_config([], env={}).sync_wait_us == defaults.SYNC_WAIT_US
    assert parse_config(["--sync-wait-us", "0"], env={}).sync_wait_us == 0
    assert parse_config([], env={env_name: "0"}).sync_wait_us == 0
    assert parse_config([], env={env_name: "750"}).sync_wait_us == 750
    assert parse_config([], env={env_name: "100000"}).sync_wait_us == 100_000
    # The flag wins over the environment (even with a value the environment would reject).
    assert parse_config(["--sync-wait-us", "50"], env={env_name: "750"}).sync_wait_us == 50
    assert parse_config(["--sync-wait-us", "0"], env={env_name: "bad"}).sync_wait_us == 0
    # An empty variable counts as unset, like the other upstream variables.
    assert parse_config([], env={env_name: ""}).sync_wait_us == defaults.SYNC_WAIT_US


@pytest.mark.parametrize("raw", ["-1", "abc", "1.5", "100001"])
@pytest.mark.parametrize("source", ["flag", "env"])
def test_invalid_sync_wait_us_is_an_error_naming_the_source(raw: str, source: str) -> None:
    if source == "flag":
        argv, env, name = ["--sync-wait-us", raw], {}, "--sync-wait-us"
    else:
        argv, env, name = [], {defaults.ENV_SYNC_WAIT_US: raw}, defaults.ENV_SYNC_WAIT_US
    with pytest.raises(ConfigError) as info:
        parse_config(argv, env=env)
    message = str(info.value)
    assert message.startswith(f"{name}: expected an integer number of microseconds"), message
    assert "from 0 to 100000" in message and repr(raw) in message, message
    assert "\n" not in message


def test_limits_cooldown_and_grace_from_flags_or_environment() -> None:
    cfg = parse_config([], env={})
    assert cfg.max_message_bytes == defaults.MAX_MESSAGE_BYTES == 50 * 1024 * 1024
    assert cfg.quarantine_cooldown_s == defaults.QUARANTINE_COOLDOWN_S
    assert cfg.shutdown_grace_s == defaults.SHUTDOWN_GRACE_S
    env = {
        defaults.ENV_MAX_MESSAGE_BYTES: "65536",
        defaults.ENV_QUARANTINE_COOLDOWN: "0",
        defaults.ENV_SHUTDOWN_GRACE: "4.5",
    }
    cfg = parse_config([], env=env)
    assert (cfg.max_message_bytes, cfg.quarantine_cooldown_s, cfg.shutdown_grace_s) == (
        65536,
        0.0,
        4.5,
    )
    cfg = parse_config(
        ["--max-message-bytes", "8192", "--quarantine-cooldown", "2.5", "--shutdown-grace", "3"],
        env=env,
    )
    assert (cfg.max_message_bytes, cfg.quarantine_cooldown_s, cfg.shutdown_grace_s) == (
        8192,
        2.5,
        3.0,
    )


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--max-message-bytes", "50MiB"], {}, "--max-message-bytes: expected a number of bytes"),
        (["--max-message-bytes", "100"], {}, "--max-message-bytes: expected a number of bytes"),
        ([], {defaults.ENV_MAX_MESSAGE_BYTES: str(2**31)}, defaults.ENV_MAX_MESSAGE_BYTES),
        (["--quarantine-cooldown", "-1"], {}, "--quarantine-cooldown: expected a number"),
        ([], {defaults.ENV_QUARANTINE_COOLDOWN: "inf"}, defaults.ENV_QUARANTINE_COOLDOWN),
        ([], {defaults.ENV_SHUTDOWN_GRACE: "0"}, defaults.ENV_SHUTDOWN_GRACE),
    ],
)
def test_invalid_limits_are_errors_naming_the_source(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(argv, env=env)
