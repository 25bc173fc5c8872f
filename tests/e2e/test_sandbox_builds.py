"""A policy's own build code runs in a throwaway container, never on the host (unless
``--allow-host-builds``): it cannot write or read host files, sees no credentials, has no
network, and gets its build requirements as wheels fetched on the host.

The probe policy's in-tree build backend tries all of that and writes what it saw into the wheel
(``probe_pkg/findings.json``), so the test reads the sandbox's view from the built artifact.
"""

from __future__ import annotations

import json
import socket
import sys
import textwrap
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from gwb_factories import (
    BACKEND_SRC,
    GOOD_POLICY,
    LocalIndex,
    definition_yaml,
    make_wheel,
)

from gateway_builder import defaults
from gateway_builder.cache import Cache
from gateway_builder.cli import main
from gateway_builder.fetch import FetchedPolicy, fetch_policy
from gateway_builder.manifest import PathSource, PipSource, PythonPolicySpec
from gateway_builder.models import BaseImages

pytestmark = pytest.mark.e2e

ENV_SECRET = "env-s3cret-for-the-build"
INDEX_SECRET = "index-s3cret-for-the-build"

PROBE_BACKEND = BACKEND_SRC + textwrap.dedent(
    """
    import os, socket

    def _findings():
        conf = json.loads(Path("probe.json").read_text())
        out = {"uid": os.getuid(), "env": dict(os.environ)}
        try:
            Path(conf["marker"]).write_text("the build code ran here")
            out["marker"] = "written"
        except OSError as exc:
            out["marker"] = type(exc).__name__
        try:
            out["host_file"] = Path(conf["host_file"]).read_text()
        except OSError as exc:
            out["host_file"] = type(exc).__name__
        try:
            with socket.create_connection(("127.0.0.1", conf["port"]), timeout=3):
                out["network"] = "connected"
        except OSError as exc:
            out["network"] = type(exc).__name__
        for name in conf.get("imports", []):
            out.setdefault("imported", {})[name] = getattr(__import__(name), "__version__", "?")
        return out

    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        files = {
            "probe_pkg/__init__.py": b"",
            "probe_pkg/policy.py": Path("policy.py").read_bytes(),
            "probe_pkg/policy-definition.yaml": Path("policy-definition.yaml").read_bytes(),
            "probe_pkg/findings.json": json.dumps(_findings(), sort_keys=True).encode(),
        }
        return _write_wheel(wheel_directory, "gwbtest-probe", "1.0.0", files, top_level="probe_pkg")
    """
)


class Listener:
    """A TCP listener on 127.0.0.1 that counts connections (the build must make none)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    try:
        yield server
    finally:
        server.close()


def write_probe(folder: Path, tmp: Path, port: int, requires: list[str] | None = None) -> Path:
    """The probe policy; the marker and host file it reaches for live under ``tmp``."""
    folder.mkdir(parents=True)
    (folder / "policy.py").write_text(GOOD_POLICY)
    (folder / "policy-definition.yaml").write_text(definition_yaml("probe"))
    (folder / "backend.py").write_text(PROBE_BACKEND)
    (folder / "pyproject.toml").write_text(
        f"[build-system]\nrequires = {json.dumps(requires or [])}\n"
        'build-backend = "backend"\nbackend-path = ["."]\n'
    )
    (tmp / "host-secret.txt").write_text("a host file the build must not read")
    (folder / "probe.json").write_text(
        json.dumps(
            {
                "marker": str(tmp / "marker"),
                "host_file": str(tmp / "host-secret.txt"),
                "port": port,
                "imports": [r.split(">")[0].split("=")[0] for r in requires or []],
            }
        )
    )
    return folder


def spec(source: PathSource | PipSource, python: str = "3.11") -> PythonPolicySpec:
    return PythonPolicySpec(
        name="probe",
        source=source,
        python=python,
        failure_mode="fail",
        timeout_ms=1000,
        isolation="worker",
        workers=1,
        origin="m/python-build.yaml:4:5",
    )


def findings(fetched: FetchedPolicy) -> dict[str, Any]:
    assert fetched.artifact is not None
    with zipfile.ZipFile(fetched.artifact.path) as zf:
        data: dict[str, Any] = json.loads(zf.read("probe_pkg/findings.json"))
    return data


@pytest.fixture
def secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CI machine: a secret in the environment and a private index with a password."""
    monkeypatch.setenv("GWB_TEST_SECRET", ENV_SECRET)
    monkeypatch.setenv(defaults.INDEX_URL_ENV, f"http://ci:{INDEX_SECRET}@127.0.0.1:9/simple")


@pytest.mark.parametrize("python", ["3.11", "3.12"])
def test_build_code_runs_in_the_sandbox_not_on_the_host(
    local_bases: BaseImages,
    listener: Listener,
    secrets_in_env: None,
    tmp_path: Path,
    python: str,
) -> None:
    folder = write_probe(tmp_path / "src" / "probe", tmp_path, listener.port)
    fetched = fetch_policy(
        spec(PathSource(folder), python), Cache.open(tmp_path / "c"), base=tmp_path
    )
    seen = findings(fetched)
    assert not (tmp_path / "marker").exists(), "the build code wrote a file on the host"
    assert seen["marker"] in ("FileNotFoundError", "PermissionError", "OSError")
    assert seen["host_file"] == "FileNotFoundError"
    assert seen["network"] != "connected" and listener.accepted == 0
    assert seen["uid"] == 65534
    env_text = json.dumps(seen["env"])
    assert ENV_SECRET not in env_text and INDEX_SECRET not in env_text
    assert seen["env"].get("HOME") == "/tmp"


def test_allow_host_builds_runs_it_here_but_without_credentials(
    listener: Listener, secrets_in_env: None, tmp_path: Path
) -> None:
    """The same probe with --allow-host-builds: it does reach the host (so the test above can
    tell the difference), still without the index password."""
    folder = write_probe(tmp_path / "src" / "probe", tmp_path, listener.port)
    fetched = fetch_policy(
        spec(PathSource(folder)), Cache.open(tmp_path / "c"), base=tmp_path, host_builds=True
    )
    seen = findings(fetched)
    assert (tmp_path / "marker").exists() and seen["marker"] == "written"
    assert seen["host_file"] == "a host file the build must not read"
    assert INDEX_SECRET not in json.dumps(seen["env"])


def test_build_requirements_come_as_wheels_and_an_index_sdist_builds_in_the_sandbox(
    local_bases: BaseImages, listener: Listener, tmp_path: Path
) -> None:
    index = LocalIndex(tmp_path / "index")
    index.add(
        make_wheel(
            tmp_path / "dists", "tinydep", "1.2.3", files={"tinydep.py": "__version__ = '1.2.3'\n"}
        )
    )
    folder = write_probe(
        tmp_path / "work" / "gwbtest_probe-1.0.0", tmp_path, listener.port, ["tinydep"]
    )
    (folder / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: gwbtest-probe\nVersion: 1.0.0\n")
    import tarfile

    sdist = tmp_path / "dists" / "gwbtest_probe-1.0.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    index.add(sdist)
    source = PipSource("gwbtest-probe", "==1.0.0", index.serve())
    try:
        fetched = fetch_policy(spec(source), Cache.open(tmp_path / "c"), base=tmp_path)
    finally:
        index.stop()
    seen = findings(fetched)
    assert seen["imported"] == {"tinydep": "1.2.3"}  # the build requirement, from its wheel
    assert not (tmp_path / "marker").exists() and listener.accepted == 0
    assert fetched.source_file == sdist.name


def test_cli_build_failure_in_the_sandbox_is_one_line(
    local_bases: BaseImages, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "pol"
    folder.mkdir()
    (folder / "policy.py").write_text(GOOD_POLICY)
    (folder / "policy-definition.yaml").write_text(definition_yaml("pol"))
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    )
    (folder / "backend.py").write_text("raise SystemExit('this backend refuses to build')\n")
    manifest = tmp_path / "python-build.yaml"
    manifest.write_text("version: v1\npolicies:\n  - name: pol\n    source:\n      path: pol\n")
    code = main(["fetch", "--python-build-file", str(manifest), "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 1
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "policy 'pol'" in line and "in the sandbox" in line and "Traceback" not in line
