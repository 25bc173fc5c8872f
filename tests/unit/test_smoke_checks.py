"""Pure rules of the smoke test: logs, the process table, isolation, inputs, the step table."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gateway_builder import defaults
from gateway_builder.smoke import checks as c

# The entrypoint's own lines (templates/entrypoint.sh.j2) and the processes' prefixed output.
START_LOG = """\
[ent] 2026-11-27T04:00:00+0000 started executor (pid 8)
[ent] 2026-11-27T04:00:00+0000 waiting up to 120s for executor (/var/run/api-platform/python-executor.ready)
[py-pol] 2026-11-27 04:00:01,002 INFO gateway_executor.engine: policy prompt-guard:v1.0.0 ready (python 3.12.1, worker, 2 workers)
[py-pol] 2026-11-27 04:00:01,010 INFO gateway_executor: executor ready: 2 policies
[ent] 2026-11-27T04:00:01+0000 executor is ready
[ent] 2026-11-27T04:00:01+0000 started engine (pid 30)
[pol] policy engine stand-in: listening on /var/run/api-platform/policy-engine.sock
[ent] 2026-11-27T04:00:01+0000 engine is ready
[ent] 2026-11-27T04:00:01+0000 started router (pid 41)
[ent] 2026-11-27T04:00:01+0000 all processes started
[rtr] router stand-in: starting (gateway-builder-router-standin 1; a stand-in, not Envoy)
[rtr] router stand-in: listening on 0.0.0.0:8080
"""

SHUTDOWN_LOG = """\
[ent] 2026-11-27T04:00:09+0000 received SIGTERM: stopping router, policy engine, executor
[ent] 2026-11-27T04:00:09+0000 stopping router (pid 41): SIGTERM, SIGKILL after 10s
[rtr] router stand-in: received SIGTERM, shutting down
[ent] 2026-11-27T04:00:09+0000 router stopped
[ent] 2026-11-27T04:00:09+0000 stopping engine (pid 30): SIGTERM, SIGKILL after 10s
[ent] 2026-11-27T04:00:09+0000 engine stopped
[ent] 2026-11-27T04:00:09+0000 stopping executor (pid 8): SIGTERM, SIGKILL after 10s
[ent] 2026-11-27T04:00:10+0000 executor stopped
[ent] 2026-11-27T04:00:10+0000 shutdown complete
"""


# ---- logs ----------------------------------------------------------------------------------


def test_parse_log_splits_tags_and_drops_the_entrypoint_timestamp() -> None:
    lines = c.parse_log(START_LOG + "no prefix here\n")
    assert lines[0] == c.LogLine("[ent]", "started executor (pid 8)")
    assert lines[2].tag == "[py-pol]" and lines[2].text.startswith("2026-11-27 04:00:01,002 INFO")
    assert lines[-1] == c.LogLine("", "no prefix here")


def test_readiness_sees_all_three_processes() -> None:
    ready = c.readiness(c.parse_log(START_LOG))
    assert ready.complete()
    assert ready.executor_policies == 2
    assert ready.missing() == []


def test_readiness_lists_what_is_missing_in_start_order() -> None:
    partial = START_LOG.split("[ent] 2026-11-27T04:00:01+0000 engine is ready")[0]
    ready = c.readiness(c.parse_log(partial))
    assert ready.executor and not ready.engine
    assert ready.missing() == [
        "policy engine ready",
        "router serving",
        "entrypoint: all processes started",
    ]
    assert not ready.complete()


def test_readiness_accepts_the_real_envoy_and_images_without_executor() -> None:
    log = (
        "[ent] engine is ready\n[ent] all processes started\n"
        "[rtr] [2026-11-27 04:00:02.000][1][info][main] starting main dispatch loop\n"
    )
    ready = c.readiness(c.parse_log(log))
    assert ready.router and not ready.executor
    assert ready.complete(expect_executor=False)
    assert not ready.complete(expect_executor=True)


def test_a_ready_word_from_the_wrong_process_does_not_count() -> None:
    log = "[rtr] executor is ready\n[py-pol] all processes started\n[ent] router stand-in: listening on x\n"
    ready = c.readiness(c.parse_log(log))
    assert ready.missing() == [
        "executor ready",
        "policy engine ready",
        "router serving",
        "entrypoint: all processes started",
    ]


def test_exited_process_and_its_last_line() -> None:
    log = (
        "[ent] 2026-11-27T04:00:00+0000 started executor (pid 8)\n"
        "[py-pol] smoke fixture: executor dies at start\n"
        "[ent] 2026-11-27T04:00:00+0000 executor exited with status 3; stopping the others\n"
        "[ent] 2026-11-27T04:00:00+0000 exiting with status 3\n"
    )
    lines = c.parse_log(log)
    assert c.exited_process(lines) == ("executor", 3)
    assert c.last_line(lines, c.TAG_EXECUTOR) == "smoke fixture: executor dies at start"
    assert c.last_line(lines, c.TAG_ROUTER) is None
    assert c.exited_process(c.parse_log(START_LOG)) is None


def test_policy_failures_extract_the_cause() -> None:
    log = (
        "[py-pol] 2026-11-27 04:00:01,000 [ERROR] gateway_executor.engine: policy "
        "prompt-guard:v1.0.0 failed: import prompt_guard.policy: ModuleNotFoundError: x\n"
        "[py-pol] 2026-11-27 04:00:01,000 [ERROR] gateway_executor: executor not ready: "
        "prompt-guard:v1.0.0: import prompt_guard.policy: ModuleNotFoundError: x\n"
        "[py-pol] 2026-11-27 04:00:01,000 ERROR worker crashed for prompt-guardian\n"
        "[py-pol] INFO policy prompt-enrichment:v1.0.0 ready\n"
        "[ent] error: prompt-enrichment failed: not an executor line\n"
    )
    found = c.policy_failures(c.parse_log(log), ["prompt-guard", "prompt-enrichment"])
    assert found == {"prompt-guard": "import prompt_guard.policy: ModuleNotFoundError: x"}


def test_policy_failures_fall_back_to_the_line_without_its_prefix() -> None:
    log = "[py-pol] 2026-11-27 04:00:01,000 [ERROR] gateway_executor: cannot start token-scorer\n"
    assert c.policy_failures(c.parse_log(log), ["token-scorer"]) == {
        "token-scorer": "cannot start token-scorer"
    }


def test_a_policys_own_output_is_never_taken_for_the_executors_verdict() -> None:
    output = "[py-pol] [policy prompt-guard pid 35 err] Traceback (most recent call last):\n"
    assert c.policy_failures(c.parse_log(output), ["prompt-guard"]) == {}
    verdict = (
        "[py-pol] 2026-11-27 04:00:01,000 [ERROR] gateway_executor.engine: policy "
        "prompt-guard:v1.0.0 failed: ModuleNotFoundError: x\n"
    )
    found = c.policy_failures(c.parse_log(output + verdict), ["prompt-guard"])
    assert found == {"prompt-guard": "ModuleNotFoundError: x"}


@pytest.mark.parametrize(
    ("line", "stripped"),
    [
        ("2026-11-27 04:00:01,002 [ERROR] gateway_executor.engine: boom", "boom"),
        ("2026-11-27T04:00:01.5+00:00 WARNING x.y: careful", "careful"),
        ("no prefix: here", "no prefix: here"),
    ],
)
def test_strip_log_prefix(line: str, stripped: str) -> None:
    assert c.strip_log_prefix(line) == stripped


def test_last_error_line_prefers_error_words() -> None:
    lines = c.parse_log("[py-pol] Traceback (most recent call last):\n[py-pol] all good\n")
    assert c.last_error_line(lines) == "Traceback (most recent call last):"
    assert c.last_line(lines, c.TAG_EXECUTOR) == "Traceback (most recent call last):"


def test_clean_ordered_shutdown_has_no_problems() -> None:
    assert c.shutdown_problems(c.parse_log(START_LOG + SHUTDOWN_LOG)) == []


def test_shutdown_in_the_wrong_order_or_killed_is_reported() -> None:
    swapped = (
        SHUTDOWN_LOG.replace("router stopped", "TMP")
        .replace("engine stopped", "router stopped")
        .replace("TMP", "engine stopped")
    )
    assert c.shutdown_problems(c.parse_log(swapped)) == [
        "stop order: expected router, engine, executor, got engine, router, executor"
    ]
    killed = SHUTDOWN_LOG.replace(
        "executor stopped",
        "executor did not stop within 10s: sending SIGKILL\n[ent] executor killed",
    ).replace("shutdown complete", "shutdown finished, but not every process stopped cleanly")
    assert c.shutdown_problems(c.parse_log(killed)) == [
        "executor did not stop within 10s: sending SIGKILL",
        "executor killed",
        "no '[ent] shutdown complete' line",
    ]
    assert c.shutdown_problems([]) == [
        "stop order: expected router, engine, executor, got no stop lines",
        "no '[ent] shutdown complete' line",
    ]


def test_shutdown_without_executor() -> None:
    log = "[ent] router stopped\n[ent] engine stopped\n[ent] shutdown complete\n"
    assert c.shutdown_problems(c.parse_log(log), expect_executor=False) == []


# ---- the process table ---------------------------------------------------------------------


def test_proc_dump_script_runs_and_parses_on_this_host() -> None:
    """The real script under a real sh, against this machine's /proc."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        out = subprocess.run(
            ["sh", "-c", c.PROC_DUMP_SCRIPT], capture_output=True, check=True, timeout=60
        ).stdout
    finally:
        child.kill()
        child.wait()
    procs = {p.pid: p for p in c.parse_proc_dump(out)}
    me = procs[os.getpid()]
    assert me.ppid == os.getppid()
    assert me.uids[0] == os.getuid() and len(me.uids) == 4
    assert procs[child.pid].argv == ("sleep", "30")
    assert procs[child.pid].ppid == os.getpid()
    assert procs[child.pid].comm == "sleep"


def test_parse_proc_dump_handles_odd_comm_and_vanished_processes() -> None:
    dump = (
        b"\n@@proc 7\n7 (a) b (c)) S 1 7 7 0 -1\n@@status\nName:\tx\nUid:\t10001\t10001\t10001\t10001\n"
        b"@@cmdline\n/bin/x\0--flag\0value with space\0"
        b"\n@@proc 9\n\n@@status\n@@cmdline\n"  # vanished between ls and cat
        b"\n@@end\n"
    )
    (proc,) = c.parse_proc_dump(dump)
    assert (proc.pid, proc.ppid, proc.comm) == (7, 1, "a) b (c)")
    assert proc.argv == ("/bin/x", "--flag", "value with space")
    assert proc.uids == (10001,) * 4


U = (10001, 10001, 10001, 10001)


def _table(
    *extra: c.Proc, pid1: tuple[str, ...] = (defaults.TINI_PATH, "--", "/app/entrypoint.sh")
) -> list[c.Proc]:
    return [
        c.Proc(1, 0, U, pid1, "tini"),
        c.Proc(7, 1, U, ("bash", defaults.ENTRYPOINT_PATH), "entrypoint.sh"),
        c.Proc(
            8,
            7,
            U,
            ("/opt/venvs/_executor/bin/python", "-m", "gateway_executor", "--registry", "r"),
            "python",
        ),
        c.Proc(
            12,
            8,
            U,
            ("/opt/venvs/prompt-guard/bin/python", "-m", "gateway_executor.worker_shim"),
            "python",
        ),
        c.Proc(
            30,
            7,
            U,
            (defaults.ENGINE_BINARY, "-xds-server", "gateway-controller:18001"),
            "policy-engine",
        ),
        c.Proc(
            41,
            7,
            U,
            ("/usr/bin/python3.11", "-I", defaults.ENVOY_BINARY, "-c", defaults.ENVOY_CONFIG),
            "envoy",
        ),
        *extra,
    ]


def test_a_good_process_tree() -> None:
    procs = _table()
    assert c.process_problems(procs) == []
    roles = c.classify(procs)
    assert roles.init and roles.init.pid == 1
    assert (roles.executor.pid, roles.engine.pid, roles.router.pid) == (8, 30, 41)  # type: ignore[union-attr]
    assert 12 in {p.pid for p in roles.others}  # a worker is not "the executor"


def test_exec_sessions_are_ignored_even_as_root() -> None:
    procs = _table(
        c.Proc(99, 0, (0, 0, 0, 0), ("sh", "-c", "..."), "sh"),
        c.Proc(100, 99, (0,) * 4, ("cat",), "cat"),
    )
    assert c.process_problems(procs) == []
    assert {p.pid for p in c.without_exec_sessions(procs)} == {1, 7, 8, 12, 30, 41}


def test_process_problems_name_each_fault() -> None:
    procs = [p for p in _table(pid1=("/bin/bash", "/app/entrypoint.sh")) if p.pid != 30]
    procs.append(c.Proc(50, 7, (0, 0, 0, 0), ("/usr/sbin/cron",), "cron"))
    problems = c.process_problems(procs)
    assert problems[0].startswith("PID 1 is not tini: pid 1 (/bin/bash /app/entrypoint.sh)")
    assert "no engine process" in problems
    assert any(p.startswith("runs as root: pid 50 (/usr/sbin/cron)") for p in problems)


def test_a_process_outside_tini_is_reported() -> None:
    procs = [p if p.pid != 30 else c.Proc(30, 500, U, p.argv, p.comm) for p in _table()]
    procs.append(c.Proc(500, 0, U, ("/init-like",), "x"))  # parent 0: treated as an exec session
    assert any("engine" in p for p in c.process_problems(procs))
    orphan = [p if p.pid != 41 else c.Proc(41, 777, U, p.argv, p.comm) for p in _table()]
    assert c.process_problems(orphan) == [
        "the router is not a descendant of PID 1: pid 41 "
        f"(/usr/bin/python3.11 -I {defaults.ENVOY_BINARY} -c {defaults.ENVOY_CONFIG})"
    ]


def test_no_executor_needed_without_python_policies() -> None:
    procs = [p for p in _table() if p.pid not in (8, 12)]
    assert c.process_problems(procs, expect_executor=False) == []
    assert c.process_problems(procs) == ["no executor process"]


# ---- isolation -----------------------------------------------------------------------------


def test_parse_pins() -> None:
    text = (
        "# deps\nJinja2==3.1.4\nMarkupSafe == 2.1.5 ; python_version>'3'\nrequests>=2\n"
        "-r other.txt\nfoo[bar]==1.0  # x\n#skipped==1\n"
        "numpy==2.1.3 --hash=sha256:aa --hash=sha256:bb\n"
        "grpcio==1.71.0 \\\n    --hash=sha256:cc\n"
    )
    assert c.parse_pins(text) == {
        "jinja2": "3.1.4",
        "markupsafe": "2.1.5",
        "foo": "1.0",
        "numpy": "2.1.3",
        "grpcio": "1.71.0",
    }


def test_manifest_distributions() -> None:
    doc = {
        "python_policies": [
            {"name": "a", "distributions": {"MarkupSafe": "2.1.5", "apip_sdk_core": "0.2.3"}},
            {"name": "b"},
            "junk",
        ]
    }
    assert c.manifest_distributions(doc) == {"a": {"markupsafe": "2.1.5", "apip-sdk-core": "0.2.3"}}
    assert c.manifest_distributions([]) == {}


def test_a_complete_lock_also_flags_extra_distributions() -> None:
    reported = {"a": {"markupsafe": "2.1.5", "apip-sdk-core": "0.2.3", "pip": "24.0"}}
    pins = {"a": {"markupsafe": "2.1.5", "apip-sdk-core": "0.2.3"}}
    assert c.check_isolation(reported, pins).problems == []
    assert c.check_isolation(reported, pins, complete={"a"}).problems == [
        "policy a: installed but not locked: pip 24.0"
    ]


def test_isolation_with_conflicting_pins() -> None:
    reported = {
        "prompt-enrichment": {"Jinja2": "3.1.4", "MarkupSafe": "2.1.5", "apip_sdk_core": "0.2.3"},
        "prompt-guard": {"MarkupSafe": "3.0.2", "apip-sdk-core": "0.2.3"},
    }
    pins = {
        "prompt-enrichment": {"jinja2": "3.1.4", "markupsafe": "2.1.5"},
        "prompt-guard": {"MarkupSafe": "3.0.2"},
    }
    result = c.check_isolation(reported, pins)
    assert result.problems == []
    assert result.differing == {
        "markupsafe": {"prompt-enrichment": "2.1.5", "prompt-guard": "3.0.2"}
    }
    assert result.pins_checked == {"prompt-enrichment": 2, "prompt-guard": 1}


def test_isolation_problems() -> None:
    reported = {
        "a": {"markupsafe": "3.0.2", "apip-sdk-core": "0.2.3"},  # shared env: a sees b's version
        "b": {"markupsafe": "3.0.2"},
        "c": {},
    }
    pins = {"a": {"markupsafe": "2.1.5"}, "b": {"markupsafe": "3.0.2", "jinja2": "3.1.4"}}
    assert c.check_isolation(reported, pins).problems == [
        "policy a: markupsafe is 3.0.2, its lock pins 2.1.5",
        "policy b: apip-sdk-core is not installed in its environment",
        "policy b: jinja2 is not installed, its lock pins 3.1.4",
        "policy c reports no installed distributions",
    ]


# ---- where the inputs are ------------------------------------------------------------------


def test_find_registry_and_policy_dirs(tmp_path: Path) -> None:
    registry = tmp_path / "python-executor" / defaults.REGISTRY_FILE_NAME
    registry.parent.mkdir()
    registry.write_text(json.dumps({"policies": []}))
    deep = tmp_path / "wheelhouse" / "x" / defaults.REGISTRY_FILE_NAME
    deep.parent.mkdir(parents=True)
    deep.write_text("{}")
    assert c.find_registry(tmp_path) == registry

    for rel in (
        "policies/prompt-guard/samples",
        "policies/prompt-enrichment/prompt_enrichment/samples",
        "policies/other/samples",  # a policy not asked for
        "policies/empty-policy/samples",  # no JSON inside: ignored
    ):
        (tmp_path / rel).mkdir(parents=True)
        if "empty" not in rel:
            (tmp_path / rel / "a.json").write_text("{}")
    found = c.find_policy_dirs(
        tmp_path, ["prompt-guard", "prompt-enrichment", "empty-policy", "missing"]
    )
    assert found == {
        "prompt-guard": tmp_path / "policies/prompt-guard",
        "prompt-enrichment": tmp_path / "policies/prompt-enrichment/prompt_enrichment",
    }


def test_find_registry_none(tmp_path: Path) -> None:
    assert c.find_registry(tmp_path) is None
    assert c.find_build_manifest(tmp_path) is None


@pytest.mark.parametrize("layout", ["context", "image"])
def test_registry_and_build_manifest_in_context_and_image_layouts(
    tmp_path: Path, layout: str
) -> None:
    prefix = tmp_path / "rootfs" if layout == "context" else tmp_path
    registry = prefix / defaults.REGISTRY_PATH.lstrip("/")
    registry.parent.mkdir(parents=True)
    registry.write_text("{}")
    manifest = (tmp_path if layout == "context" else prefix / "app") / c.BUILD_MANIFEST_NAME
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("{}")
    assert c.find_registry(tmp_path) == registry
    assert c.find_build_manifest(tmp_path) == manifest


# ---- the table -----------------------------------------------------------------------------


def test_format_table() -> None:
    steps = [
        c.StepResult("inputs", "pass", 0.013, "2 policies, 9 samples"),
        c.StepResult("fail-fast", "fail", 12.5, "x" * 200),
        c.StepResult("shutdown", "skipped"),
    ]
    table = c.format_table(steps, width=80)
    lines = table.splitlines()
    assert lines[0].split() == ["step", "result", "seconds", "detail"]
    assert lines[2].startswith("inputs     PASS       0.01  2 policies")
    # A long detail wraps onto indented lines, every character kept (never cut with "...").
    assert lines[3].startswith("fail-fast  FAIL      12.50  xxx") and len(lines[3]) == 80
    detail = lines[3][len("fail-fast  FAIL      12.50  ") :] + "".join(
        line.strip() for line in lines[4:-1]
    )
    assert detail == "x" * 200 and all(len(line) <= 80 for line in lines)
    assert lines[-1].rstrip() == "shutdown   SKIPPED    0.00"
    assert steps[1].as_dict() == {
        "step": "fail-fast",
        "status": "fail",
        "ok": False,
        "seconds": 12.5,
        "detail": "x" * 200,
    }


@pytest.mark.parametrize("status", ["pass", "fail", "skipped"])
def test_step_json_ok_flag(status: str) -> None:
    assert c.StepResult("s", status).as_dict()["ok"] is (status == "pass")
