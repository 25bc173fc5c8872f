"""Registry parsing: the format, every field, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway_executor import defaults
from gateway_executor.registry import (
    RegistryError,
    load_registry,
    parse_registry,
    registry_document,
)


def entry(**over: Any) -> dict[str, Any]:
    base = {
        "name": "prompt-guard",
        "version": "v1.2.3",
        "module": "prompt_guard.policy",
        "sys_path": ["/app/policies/prompt-guard"],
        "python": "/opt/venvs/prompt-guard/bin/python",
        "python_version": "3.12",
        "failure_mode": "skip",
        "timeout_ms": 1500,
        "isolation": "per-call",
        "workers": 3,
        "params": {"a": 1},
        "source": "path:x",
    }
    base.update(over)
    return base


def doc(*entries: dict[str, Any], **over: Any) -> dict[str, Any]:
    d = {"format": defaults.REGISTRY_FORMAT, "format_version": 1, "policies": list(entries)}
    d.update(over)
    return d


def test_full_entry_is_read() -> None:
    [e] = parse_registry(doc(entry()))
    assert e.key == "prompt-guard:v1.2.3" and e.major == "v1"
    assert e.sys_path == ("/app/policies/prompt-guard",)
    assert (e.failure_mode, e.timeout_ms, e.isolation, e.workers) == ("skip", 1500, "per-call", 3)
    assert e.params == {"a": 1}


def test_optional_fields_default() -> None:
    minimal = {k: entry()[k] for k in ("name", "version", "module", "python")}
    [e] = parse_registry(doc(minimal))
    assert (e.failure_mode, e.isolation, e.workers) == ("fail", "worker", defaults.DEFAULT_WORKERS)
    assert e.timeout_ms == int(defaults.DEFAULT_TIMEOUT_S * 1000) and e.sys_path == ()


def test_init_timeout_defaults_to_the_call_timeout() -> None:
    [e] = parse_registry(doc(entry(timeout_ms=1500)))
    assert e.init_timeout_ms == 1500
    [e] = parse_registry(doc(entry(timeout_ms=1500, init_timeout_ms=9000)))
    assert (e.timeout_ms, e.init_timeout_ms) == (1500, 9000)
    assert registry_document([e])["policies"][0]["init_timeout_ms"] == 9000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (doc(format_version=2), "format_version 2 is not supported"),
        (doc(format="other"), "format"),
        (doc(policies={}), "policies: expected a list"),
        (doc(entry(failure_mode="explode")), "policies[0].failure_mode: expected fail or skip"),
        (doc(entry(isolation="thread")), "policies[0].isolation"),
        (doc(entry(timeout_ms=0)), "policies[0].timeout_ms: expected a positive integer"),
        (doc(entry(timeout_ms=True)), "policies[0].timeout_ms"),
        (doc(entry(workers="2")), "policies[0].workers"),
        (doc(entry(init_timeout_ms=0)), "policies[0].init_timeout_ms: expected a positive"),
        (doc(entry(init_timeout_ms=2.5)), "policies[0].init_timeout_ms"),
        (doc(entry(module="")), "policies[0].module: expected a non-empty string"),
        (doc(entry(sys_path="/x")), "policies[0].sys_path: expected a list of strings"),
        (doc(entry(params=[])), "policies[0].params: expected an object"),
        (doc(entry(colour="red")), "unknown field 'colour'"),
        (doc(entry(), entry()), "listed twice"),
        ([], "expected a JSON object"),
    ],
)
def test_bad_registries_give_one_line_errors(data: Any, message: str) -> None:
    with pytest.raises(RegistryError) as info:
        parse_registry(data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_load_reports_json_position_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "r.json"
    bad.write_text('{\n  "format": ,\n}')
    with pytest.raises(RegistryError, match=r"r\.json:2:\d+: invalid JSON"):
        load_registry(bad)
    with pytest.raises(RegistryError, match="cannot read the registry"):
        load_registry(tmp_path / "missing.json")
    good = tmp_path / "ok.json"
    good.write_text(json.dumps(doc(entry())))
    assert load_registry(good)[0].name == "prompt-guard"
