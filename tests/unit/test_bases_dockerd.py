"""Unit tests of gateway_builder.dockerd that need no engine: addresses, errors, stream parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway_builder import defaults, dockerd
from gateway_builder.errors import BuildError


def test_docker_host_defaults_to_the_local_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert dockerd.docker_host() == defaults.DOCKER_DEFAULT_HOST
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert dockerd.docker_host() == "tcp://127.0.0.1:2375"


def test_no_engine_gives_one_line_build_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")
    assert dockerd.engine_answers() is False
    assert dockerd.can_start_local_engine() is False  # never start one for a foreign DOCKER_HOST
    with pytest.raises(BuildError) as err:
        dockerd.ensure_engine()
    assert "no container engine answers" in err.value.message
    assert "\n" not in err.value.message


def test_engine_address_credentials_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on port 1 of 127.0.0.1: the error names the address without the secret.
    monkeypatch.setenv("DOCKER_HOST", "tcp://user:s3cret@127.0.0.1:1")
    with pytest.raises(BuildError) as err:
        dockerd.ensure_engine()
    assert "s3cret" not in err.value.message


def test_build_lines_parse_the_legacy_stream() -> None:
    chunks: list[dict[str, Any]] = [
        {"stream": "Step 1/2 : FROM x\n"},
        {"stream": " ---> abc\n\n"},
        {"status": "Downloading", "id": "layer1"},
        {"aux": {"ID": "sha256:1234"}},
        {"errorDetail": {"message": "boom"}, "error": "boom"},
    ]
    assert list(dockerd._build_lines(chunks)) == [
        ("line", "Step 1/2 : FROM x"),
        ("line", " ---> abc"),
        ("line", "layer1 Downloading"),
        ("id", "sha256:1234"),
        ("error", "boom"),
    ]


def test_ensure_host_tool_finds_existing_commands() -> None:
    assert dockerd.ensure_host_tool("sh", "dash").endswith("/sh")
