"""The policy developer kit end to end without Docker: ``new-policy`` -> ``test-policy`` (real
venvs, a real executor and worker shim) -> ``lock`` -> ``test-policy --lock-file``, the harness
API, ``--watch`` with a real file change, and the failures a policy author meets.

Everything installs from a package index served on 127.0.0.1 holding the real SDK (a wheel made
from the installed ``apip_sdk_core``) and small test packages, into a fresh cache per module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apip_sdk_core
import pytest
from gwb_factories import LocalIndex, make_wheel

from gateway_builder import cli, defaults
from gateway_builder.devkit import harness as harness_module
from gateway_builder.devkit.harness import ParamsError, PolicyHarness
from gateway_builder.errors import BuildError, InputError

pytestmark = pytest.mark.integration

REPO = defaults.REPO_DIR


def sdk_wheel_from_installed(dest: Path) -> Path:
    """A wheel of the installed apip-sdk-core (the real SDK, without the network)."""
    root = Path(apip_sdk_core.__file__).parent
    files = {
        f"apip_sdk_core/{p.relative_to(root).as_posix()}": p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }
    from importlib.metadata import version

    return make_wheel(dest, "apip-sdk-core", version("apip-sdk-core"), files=files)


@pytest.fixture(scope="module")
def devkit_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIndex]:
    """The real SDK, ``tinydep`` 1.0.0/1.1.0, and stand-ins named like the executor's and the
    installer's requirements (so that ``lock`` resolves)."""
    build = tmp_path_factory.mktemp("devkit-dists")
    index = LocalIndex(tmp_path_factory.mktemp("devkit-index"))
    index.add(sdk_wheel_from_installed(build))
    for version in ("1.0.0", "1.1.0"):
        index.add(
            make_wheel(
                build,
                "tinydep",
                version,
                files={"tinydep/__init__.py": f"VERSION = {version!r}\n"},
            )
        )
    index.add(make_wheel(build, "grpcio", "1.85.1"))
    index.add(make_wheel(build, "protobuf", "7.35.1"))
    index.add(make_wheel(build, "pip", "25.0"))
    index.serve()
    yield index
    index.stop()


@pytest.fixture
def devkit_env(
    devkit_index: LocalIndex, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The environment every devkit call here runs in: the local index, a module-wide cache."""
    cache = tmp_path_factory.getbasetemp() / "devkit-cache"
    env = {defaults.INDEX_URL_ENV: devkit_index.http_url, defaults.CACHE_ENV: str(cache)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield {**os.environ, **env}
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def gwb(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``gateway-builder ARGV`` in this process: (exit code, stdout, stderr)."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def scaffold(tmp_path: Path, name: str, *phases: str, capsys: pytest.CaptureFixture[str]) -> Path:
    target = tmp_path / name
    argv = ["new-policy", name, "--out", str(target)]
    if phases:
        argv += ["--phase", *phases]
    code, _, err = gwb(*argv, capsys=capsys)
    assert code == 0, err
    return target


ALL_BUT_RESPONSE_BODY = ("request_headers", "request_body", "response_headers", "streaming")


def test_new_policy_passes_test_policy_and_its_own_tests(
    tmp_path: Path, devkit_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = scaffold(tmp_path, "greeter", *ALL_BUT_RESPONSE_BODY, capsys=capsys)
    code, out, err = gwb("test-policy", str(folder), capsys=capsys)
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0].split() == ["sample", "phase", "expected", "got", "ms", "result"]
    rows = {line.split()[0]: line for line in lines[2:6]}
    assert sorted(rows) == [
        "request-body.json",
        "request-headers.json",
        "response-headers.json",
        "streaming-fallback.json",
    ]
    assert all(row.rstrip().endswith("ok") for row in rows.values())
    assert "4 of 4 samples passed" in out and "venv created from requirements" in out

    # The generated tests, run the way the author runs them.
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=folder,
        env=devkit_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "7 passed" in done.stdout


def test_json_result_and_venv_reuse_until_requirements_change(
    tmp_path: Path, devkit_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = scaffold(tmp_path, "bodies", "response_body", capsys=capsys)
    code, out, _ = gwb("--json", "test-policy", str(folder), capsys=capsys)
    first = json.loads(out)
    assert code == 0 and first["ok"] is True
    assert [s["sample"] for s in first["samples"]] == ["bodies/samples/response-body.json"]
    code, out, _ = gwb("--json", "test-policy", str(folder), capsys=capsys)
    assert json.loads(out)["venv"]["reused"] is True

    (folder / "requirements.txt").write_text("tinydep==1.1.0\n")
    (folder / "policy.py").write_text(
        (folder / "policy.py")
        .read_text()
        .replace("from typing import Any\n", "from typing import Any\n\nimport tinydep\n")
    )
    with PolicyHarness(folder) as harness:
        assert harness.env is not None and harness.env.reused is False
        assert harness.status()["distributions"]["tinydep"] == "1.1.0"


def test_a_mismatch_exits_1_and_shows_the_difference(
    tmp_path: Path, devkit_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = scaffold(tmp_path, "strict", capsys=capsys)
    sample = folder / "samples" / "request-headers.json"
    data = json.loads(sample.read_text())
    data["expect"]["headers_set"] = {"x-strict": "goodbye"}
    sample.write_text(json.dumps(data))
    code, out, err = gwb("test-policy", str(folder), capsys=capsys)
    assert code == 1
    assert "FAIL" in out
    assert "headers_set[x-strict]: expected 'goodbye', got 'hello'" in out
    (error,) = err.strip().splitlines()[-1:]
    assert error.startswith("error: strict: 1 of 1 samples failed")


def test_a_policy_that_fails_to_import_is_reported_with_its_cause(
    tmp_path: Path, devkit_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = scaffold(tmp_path, "broken", capsys=capsys)
    policy = folder / "policy.py"
    policy.write_text(policy.read_text() + "\nraise RuntimeError('boom at import')\n")
    code, _, err = gwb("test-policy", str(folder), capsys=capsys)
    assert code == 1
    assert "boom at import" in err


def test_harness_calls_every_phase_and_decodes_the_actions(
    tmp_path: Path, devkit_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = scaffold(tmp_path, "full", *ALL_BUT_RESPONSE_BODY, capsys=capsys)
    with PolicyHarness(folder) as harness:
        init = harness.init({"message": "hi"})
        assert init.mode == {
            "request_header_mode": "PROCESS",
            "request_body_mode": "BUFFER",
            "response_header_mode": "PROCESS",
            "response_body_mode": "STREAM",
        }
        assert init.capabilities["streaming_response"] is True
        assert not init.capabilities.get("streaming_request")

        action = harness.request_headers({"Accept": "*/*"}, path="/x")
        assert (action.kind, action.type) == ("modify", "UpstreamRequestHeaderModifications")
        assert action.headers_set == {"x-full": "hi"}
        action = harness.request_body({"a": 1})
        assert action.body == b'{"a":1,"note":"hi"}'
        assert harness.request_body("plain").kind == "passthrough"
        assert harness.response_headers(status=404).headers_set == {"x-full": "hi"}
        assert harness.response_body("whole").body == b"whole\nhi"
        assert harness.needs_more_response_data(b"x") is False
        chunks = harness.response_chunks([b"a", b"b", b"c"])
        assert [c.kind for c in chunks] == ["passthrough", "passthrough", "forward"]
        assert chunks[-1].body == b"c\nhi"

        with pytest.raises(ParamsError, match="message"):
            harness.init({"message": 5})
        # A hook that raises comes back as the executor's execution error.
        harness.init({"message": "hi"})
        error = harness.call("request_chunk", chunk=b"x")
        assert error.kind == "error" and error.error.startswith("execution_error")


def test_watch_reruns_after_a_real_change(
    tmp_path: Path, devkit_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = scaffold(tmp_path, "watched", capsys=capsys)
    gwb("test-policy", str(folder), capsys=capsys)  # the venv exists: the watch starts fast
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway_builder",
            "test-policy",
            str(folder),
            "--watch",
            "--max-runs",
            "2",
        ],
        env=devkit_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 120
        while not any("samples passed" in line for line in seen):
            assert time.monotonic() < deadline, "".join(seen)
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "".join(seen)
            seen.append(line)
        assert any(line.rstrip().endswith("ok") for line in seen)
        policy = folder / "policy.py"
        policy.write_text(
            policy.read_text().replace(
                "headers_to_set={HEADER: self.message}", "headers_to_set={HEADER: 'changed'}"
            )
        )
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out + err
    assert "changed: policy.py" in err
    assert "expected 'hello', got 'changed'" in out


def test_lock_then_test_policy_from_the_lock(
    tmp_path: Path, devkit_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = scaffold(tmp_path / "policies", "locked", capsys=capsys)
    (folder / "requirements.txt").write_text("tinydep==1.0.0\n")
    manifest = tmp_path / "python-build.yaml"
    manifest.write_text(
        "version: v1\npolicies:\n  - name: locked\n    source:\n      path: policies/locked\n"
    )
    for command in ("validate", "lock"):
        code, out, err = gwb(command, "--python-build-file", str(manifest), capsys=capsys)
        assert code == 0, out + err
    lock = tmp_path / "python-build.lock"
    code, out, err = gwb(
        "--json", "test-policy", str(folder), "--lock-file", str(lock), capsys=capsys
    )
    assert code == 0, out + err
    assert json.loads(out)["venv"]["origin"] == f"lock {lock}"
    with PolicyHarness(folder, lock_file=lock) as harness:
        assert harness.status()["distributions"]["tinydep"] == "1.0.0"

    code, _, err = gwb(
        "test-policy", str(folder), "--lock-file", str(lock), "--python", "3.12", capsys=capsys
    )
    assert code == 2 and "for Python 3.11, not 3.12" in err
    (folder / "requirements.txt").write_text("tinydep==1.1.0\n")
    code, _, err = gwb("test-policy", str(folder), "--lock-file", str(lock), capsys=capsys)
    assert code == 2
    assert "is stale" in err and len(err.strip().splitlines()) == 1


def test_harness_errors_are_build_and_input_errors(
    tmp_path: Path, devkit_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = scaffold(tmp_path, "errs", capsys=capsys)
    with pytest.raises(InputError, match="not a directory"):
        PolicyHarness(tmp_path / "nowhere")
    with pytest.raises(ParamsError):
        PolicyHarness(folder, params={"message": ""})
    harness = PolicyHarness(folder)
    with pytest.raises(BuildError, match="not started"):
        harness.init()
    results: list[Any] = []
    with harness:
        results = harness.run_samples()
    assert [r.ok for r in results] == [True]


@pytest.mark.network
def test_the_built_wheel_ships_the_scaffold_templates_and_the_harness(tmp_path: Path) -> None:
    """Installed from its wheel (not the checkout), new-policy finds its templates and policy
    authors can import the harness (with type information)."""
    from gateway_builder.toolenv import isolated_env, uv_binary

    subprocess.run(
        [uv_binary(), "build", "--wheel", "--quiet", "--out-dir", str(tmp_path), str(REPO)],
        env=isolated_env(),
        check=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("gateway_builder-*.whl")
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    assets = REPO / "gateway_builder" / "assets" / "policy"
    wanted = {
        f"gateway_builder/assets/policy/{p.relative_to(assets).as_posix()}"
        for p in assets.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert wanted and wanted <= names
    assert {"gateway_builder/testing.py", "gateway_builder/py.typed"} <= names


def test_the_executor_does_not_outlive_a_killed_harness(
    tmp_path: Path,
    devkit_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = scaffold(tmp_path, "orphan", capsys=capsys)
    script = (
        "import sys, time\n"
        "from gateway_builder.testing import PolicyHarness\n"
        "h = PolicyHarness(sys.argv[1]).start()\n"
        "print(h.executor_pid, h._work, flush=True)\n"
        "time.sleep(300)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(folder)],
        env=devkit_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        pid, work_dir = proc.stdout.readline().split()
        executor, work = int(pid), Path(work_dir)
        assert Path(f"/proc/{executor}").exists() and work.is_dir()
    finally:
        proc.kill()
        proc.wait(30)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{executor}").exists():
        state = Path(f"/proc/{executor}/stat").read_text(errors="replace")
        if state[state.rindex(")") + 2] == "Z":
            break
        assert time.monotonic() < deadline, "the executor outlived the process that started it"
        time.sleep(0.1)
    # The next harness removes the temporary directory the killed one left behind (not its own).
    monkeypatch.setattr(harness_module, "STALE_AFTER_S", 0.0)
    assert work.is_dir()
    with PolicyHarness(folder) as other:
        assert not work.exists()
        assert other._work is not None
        assert other._work not in harness_module.sweep_stale_work_dirs()  # a live harness's
        assert other._work.is_dir()


def test_test_policy_needs_no_docker(
    tmp_path: Path, devkit_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """With the Docker SDK unimportable (and no engine asked for), test-policy still runs."""
    folder = scaffold(tmp_path, "nodocker", "request_body", capsys=capsys)
    blocker = tmp_path / "blocker" / "docker"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('no Docker here')\n")
    done = subprocess.run(
        [sys.executable, "-m", "gateway_builder", "test-policy", str(folder)],
        env={**devkit_env, "PYTHONPATH": f"{blocker.parent}{os.pathsep}{REPO}"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 of 1 samples passed" in done.stdout


def test_a_vanished_executor_is_a_build_error_not_a_grpc_traceback(
    tmp_path: Path, devkit_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = scaffold(tmp_path, "vanish", capsys=capsys)
    with PolicyHarness(folder) as harness:
        pid = harness.executor_pid
        assert pid is not None
        os.kill(pid, 9)
        deadline = time.monotonic() + 30
        while harness._proc is not None and harness._proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(BuildError, match=r"InitPolicy failed \(the executor is exited"):
            harness.init()


def test_a_socket_found_before_the_executor_listens_does_not_break_the_first_calls(
    tmp_path: Path,
    devkit_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A start-up probe that meets the socket file before anything listens on it gets
    'connection refused', and gRPC then backs off reconnecting that channel for a second; the
    calls after start-up must not go through that channel (InitPolicy failed with 'Connection
    refused' on a running executor)."""
    import socket as socketlib

    folder = scaffold(tmp_path, "early", capsys=capsys)
    original = PolicyHarness._launch
    stale: list[socketlib.socket] = []

    def launch_behind_a_dead_socket(self: PolicyHarness, work: Path, env: Any) -> None:
        dead = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
        dead.bind(str(work / "executor.sock"))  # exists, refuses connections (no listen)
        stale.append(dead)
        original(self, work, env)

    monkeypatch.setattr(PolicyHarness, "_launch", launch_behind_a_dead_socket)
    try:
        with PolicyHarness(folder) as harness:
            assert harness.init().mode["request_header_mode"] == "PROCESS"
            assert harness.request_headers().headers_set == {"x-early": "hello from early"}
    finally:
        for dead in stale:
            dead.close()
