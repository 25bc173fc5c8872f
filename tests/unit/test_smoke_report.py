"""The smoke report: JSON form, the step table, and what a failure prints (redacted logs)."""

from __future__ import annotations

import json

from gateway_builder.smoke import PolicyResult, SmokeReport, StepResult, failure_details, log_tail


def _report() -> SmokeReport:
    report = SmokeReport(image="img:1", seconds=4.567)
    report.steps = [
        StepResult("inputs", "pass", 0.01, "3 policies, 18 samples (from the context)"),
        StepResult("start", "pass", 2.0, "ready in 1.9s"),
    ]
    report.policies = [
        PolicyResult(
            "prompt-guard",
            "v1.0.0",
            "3.11.2",
            True,
            {"MarkupSafe": "3.0.2", "apip-sdk-core": "0.2.3"},
            [{"sample": "a.json", "ok": True, "outcome": "modify", "problems": [], "ms": 1.2}],
        )
    ]
    return report


def test_a_passing_report_as_json() -> None:
    report = _report()
    assert report.ok
    data = json.loads(json.dumps(report.as_dict()))
    assert data["ok"] is True and data["error"] is None and data["seconds"] == 4.57
    assert [s["step"] for s in data["steps"]] == ["inputs", "start"]
    assert data["policies"][0]["distributions"] == {"MarkupSafe": "3.0.2", "apip-sdk-core": "0.2.3"}
    assert data["policies"][0]["samples"][0]["ok"] is True
    assert report.table().splitlines()[2].startswith("inputs  PASS")


def test_a_failed_step_or_an_error_is_not_ok() -> None:
    report = _report()
    report.steps.append(StepResult("protocol", "fail", 1.0, "policy x not ready: boom"))
    assert not report.ok
    report = _report()
    report.error = "smoke test of img:1: container engine error: gone"
    assert not report.ok and report.as_dict()["ok"] is False


def test_failure_details_show_the_table_and_the_redacted_log_tail() -> None:
    log = "\n".join(f"[py-pol] line {i}" for i in range(500))
    log += "\n[ent] fetching https://user:s3cr3t@pypi.example/simple?token=abc\n"
    details = failure_details("TABLE", log)
    head, _, shown = details.partition("\n--- container logs (last 200 lines) ---\n")
    assert head == "TABLE"
    lines = shown.splitlines()
    assert len(lines) == 200 and lines[0] == "[py-pol] line 301"
    assert "s3cr3t" not in details and "abc" not in lines[-1]
    assert lines[-1] == "[ent] fetching https://user:****@pypi.example/simple?token=****"
    assert failure_details("TABLE", None) == "TABLE"
    assert log_tail("a\nb\nc", 2) == "b\nc"
