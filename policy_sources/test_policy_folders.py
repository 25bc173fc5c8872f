"""Checks every sample policy folder against the layout the builder relies on.

Definition schema and defaults, the mode/interface contract, exact pins, pyproject/requirements
agreement, the sample files' shape and params, the default manifest's entries, and (integration)
that ``pip wheel`` of each folder yields an importable package holding the policy files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from apip_sdk_core.policy.v1alpha2 import (
    BodyProcessingMode,
    HeaderProcessingMode,
    Policy,
    RequestHeaderPolicy,
    RequestPolicy,
    ResponseHeaderPolicy,
    ResponsePolicy,
    StreamingRequestPolicy,
    StreamingResponsePolicy,
)
from jsonschema import Draft202012Validator
from packaging.requirements import Requirement
from policy_samples import (
    LOCK_FILE,
    TEST_METADATA,
    load_policy_module,
    policy_folders,
    validate_sample_shape,
)

from gateway_builder import defaults
from gateway_builder.lock.file import read_lock
from gateway_builder.testing import PolicyHarness

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
FOLDERS = policy_folders()
DEFINITION_KEYS = {
    "name",
    "version",
    "displayName",
    "description",
    "parameters",
    "systemParameters",
}


def ids(folders: list[Path]) -> list[str]:
    return [f.name for f in folders]


def definition(folder: Path) -> dict[str, Any]:
    data = yaml.safe_load((folder / defaults.POLICY_DEFINITION_FILE).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def schema_defaults(folder: Path) -> dict[str, Any]:
    props = definition(folder)["parameters"]["properties"]
    return {name: prop["default"] for name, prop in props.items()}


def pins(folder: Path) -> dict[str, str]:
    """requirements.txt as {canonical name: exact version}."""
    out: dict[str, str] = {}
    for line in (folder / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", (
            f"{folder.name}: {line!r} is not an exact pin"
        )
        out[req.name.lower().replace("_", "-")] = specs[0].version
    return out


def mode_problems(policy: Policy) -> list[str]:
    """Where ``mode()`` disagrees with the interfaces the policy implements."""
    mode = policy.mode()
    problems = []
    for field, cls in (
        ("request_header_mode", RequestHeaderPolicy),
        ("response_header_mode", ResponseHeaderPolicy),
    ):
        processes = getattr(mode, field) is HeaderProcessingMode.PROCESS
        if processes != isinstance(policy, cls):
            problems.append(
                f"{field} is {getattr(mode, field).name} but implements {cls.__name__}: {isinstance(policy, cls)}"
            )
    for field, buffered, streaming in (
        ("request_body_mode", RequestPolicy, StreamingRequestPolicy),
        ("response_body_mode", ResponsePolicy, StreamingResponsePolicy),
    ):
        value = getattr(mode, field)
        expected = (
            BodyProcessingMode.STREAM
            if isinstance(policy, streaming)
            else BodyProcessingMode.BUFFER
            if isinstance(policy, buffered)
            else BodyProcessingMode.SKIP
        )
        if value is not expected:
            problems.append(f"{field} is {value.name}, the interfaces imply {expected.name}")
    return problems


def test_at_least_three_policies() -> None:
    assert {"prompt-enrichment", "prompt-guard", "token-scorer"} <= {f.name for f in FOLDERS}


@pytest.mark.parametrize("folder", FOLDERS, ids=ids(FOLDERS))
def test_definition(folder: Path) -> None:
    data = definition(folder)
    assert set(data) == DEFINITION_KEYS
    assert data["name"] == folder.name
    assert re.fullmatch(r"v\d+\.\d+\.\d+", data["version"])
    assert data["displayName"].strip() and data["description"].strip()
    assert data["systemParameters"] == {}
    schema = data["parameters"]
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    for name, prop in schema["properties"].items():
        assert "default" in prop, f"{name} has no default"
        assert prop.get("description"), f"{name} has no description"
    Draft202012Validator(schema).validate(schema_defaults(folder))


@pytest.mark.parametrize("folder", FOLDERS, ids=ids(FOLDERS))
def test_code_defaults_match_schema(folder: Path) -> None:
    assert schema_defaults(folder) == load_policy_module(folder).DEFAULTS


@pytest.mark.parametrize("folder", FOLDERS, ids=ids(FOLDERS))
def test_get_policy_and_mode_contract(folder: Path) -> None:
    module = load_policy_module(folder)
    configs = [{}, schema_defaults(folder)]
    configs += [
        json.loads(p.read_text())["params"] for p in sorted((folder / "samples").glob("*.json"))
    ]
    for params in configs:
        policy = module.get_policy(TEST_METADATA, params)
        assert isinstance(policy, Policy)
        assert not mode_problems(policy), (params, mode_problems(policy))


@pytest.mark.parametrize("folder", FOLDERS, ids=ids(FOLDERS))
def test_samples_are_well_formed_and_params_valid(folder: Path) -> None:
    validator = Draft202012Validator(definition(folder)["parameters"])
    samples = sorted((folder / "samples").glob("*.json"))
    assert len(samples) >= 3
    for path in samples:
        sample = json.loads(path.read_text(encoding="utf-8"))
        assert not validate_sample_shape(sample), (path.name, validate_sample_shape(sample))
        errors = [e.message for e in validator.iter_errors(sample.get("params") or {})]
        assert not errors, (path.name, errors)


@pytest.mark.parametrize("folder", FOLDERS, ids=ids(FOLDERS))
def test_pins_and_pyproject_agree(folder: Path) -> None:
    pinned = pins(folder)
    assert pinned, "requirements.txt pins nothing"
    project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["build-system"]["build-backend"] == "hatchling.build"
    meta = project["project"]
    assert meta["version"] == definition(folder)["version"].removeprefix("v")
    deps = [Requirement(d) for d in meta["dependencies"]]
    sdk = [d for d in deps if d.name == "apip-sdk-core"]
    assert [str(d) for d in sdk] == [str(Requirement(defaults.SDK_REQUIREMENT))]
    declared = {d.name.lower(): str(d.specifier) for d in deps if d.name != "apip-sdk-core"}
    assert declared == {name: f"=={version}" for name, version in pinned.items()}
    pkg = folder.name.replace("-", "_")
    mapping = project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert mapping["policy.py"] == f"{pkg}/policy.py"
    assert mapping[defaults.POLICY_DEFINITION_FILE] == f"{pkg}/{defaults.POLICY_DEFINITION_FILE}"


@pytest.mark.parametrize("folder", FOLDERS, ids=ids(FOLDERS))
def test_python_version_file(folder: Path) -> None:
    path = folder / defaults.PYTHON_VERSION_FILE
    if path.exists():
        assert path.read_text().strip() in defaults.SUPPORTED_PYTHONS


def test_two_policies_pin_conflicting_versions() -> None:
    seen: dict[str, set[str]] = {}
    for folder in FOLDERS:
        for name, version in pins(folder).items():
            seen.setdefault(name, set()).add(version)
    assert seen.get("markupsafe") == {"2.1.5", "3.0.2"}


def test_one_policy_declares_another_python() -> None:
    versions = {
        (f / defaults.PYTHON_VERSION_FILE).read_text().strip()
        for f in FOLDERS
        if (f / defaults.PYTHON_VERSION_FILE).exists()
    }
    assert versions - {defaults.DEFAULT_PYTHON}


def test_default_python_manifest_lists_every_sample() -> None:
    manifest_path = REPO / defaults.DEFAULT_PYTHON_BUILD_FILE
    manifest = yaml.safe_load(manifest_path.read_text(encoding="utf-8"))
    entries = {p["name"]: p for p in manifest["policies"]}
    assert set(entries) == {f.name for f in FOLDERS}
    for folder in FOLDERS:
        entry = entries[folder.name]
        assert (manifest_path.parent / entry["source"]["path"]).resolve() == folder
        params = entry.get("params", {})
        errors = [
            e.message
            for e in Draft202012Validator(definition(folder)["parameters"]).iter_errors(params)
        ]
        assert not errors, (folder.name, errors)
        load_policy_module(folder).get_policy(TEST_METADATA, params)
        version_file = folder / defaults.PYTHON_VERSION_FILE
        if version_file.exists() and "python" in entry:
            assert entry["python"] == version_file.read_text().strip()


@pytest.mark.integration
@pytest.mark.network
@pytest.mark.parametrize("folder", FOLDERS, ids=ids(FOLDERS))
def test_folder_builds_an_importable_wheel(folder: Path, tmp_path: Path) -> None:
    """`pip wheel --no-deps` of the folder ships the policy files inside the top-level package."""
    pkg = folder.name.replace("-", "_")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            str(folder),
            "-w",
            str(tmp_path),
        ],
        check=True,
        timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert {f"{pkg}/policy.py", f"{pkg}/{defaults.POLICY_DEFINITION_FILE}"} <= names
        assert not any(n.startswith(("tests/", "samples/")) for n in names)
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = {
            line.split(":", 1)[1].strip()
            for line in zf.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:")
        }
        zf.extractall(tmp_path / "site")
    assert {f"{name}=={version}" for name, version in pins(folder).items()} <= {
        r.lower() for r in requires
    }
    probe = (
        "import importlib; from apip_sdk_core.policy.v1alpha2 import PolicyMetadata;"
        f"m = importlib.import_module('{pkg}.policy');"
        "p = m.get_policy(PolicyMetadata(), {}); print(type(p).__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def find_python(version: str) -> str | None:
    """A CPython ``version`` ("3.12") interpreter: the newest pyenv build, else one on PATH."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    builds = [
        p for p in root.glob(f"{version}.*") if re.fullmatch(rf"{re.escape(version)}\.\d+", p.name)
    ]
    builds.sort(key=lambda p: int(p.name.rsplit(".", 1)[1]))
    for candidate in [
        *(str(p / "bin" / "python") for p in reversed(builds)),
        shutil.which(f"python{version}"),
    ]:
        if not candidate:
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


@pytest.mark.integration
@pytest.mark.network
@pytest.mark.parametrize("folder", FOLDERS, ids=ids(FOLDERS))
def test_policy_tests_pass_in_its_own_venv(folder: Path, tmp_path: Path) -> None:
    """The policy's own tests pass as its author runs them: pytest in a fresh venv of its Python
    with its pins, the SDK and gateway-builder (whose harness runs the samples in the policy's
    own venv behind a real executor)."""
    version_file = folder / defaults.PYTHON_VERSION_FILE
    version = version_file.read_text().strip() if version_file.exists() else defaults.DEFAULT_PYTHON
    python = find_python(version)
    if python is None:
        pytest.skip(f"no CPython {version} on this machine")
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_CONFIG": "1"}
    uv = [sys.executable, "-m", "uv"]
    subprocess.run(
        [*uv, "venv", "-q", "--python", python, str(venv)], check=True, env=env, timeout=120
    )
    vpy = str(venv / "bin" / "python")
    install = [
        "-r",
        str(folder / "requirements.txt"),
        defaults.SDK_REQUIREMENT,
        "pytest",
        "pytest-timeout",
        # gateway-builder's own dependencies (it runs from the checkout) and the executor's
        "-r",
        str(REPO / "pyproject.toml"),
        "--extra",
        "executor",
    ]
    subprocess.run(
        [*uv, "pip", "install", "-q", "--python", vpy, *install], check=True, env=env, timeout=600
    )
    listed = subprocess.run(
        [
            vpy,
            "-c",
            "import sys, importlib.metadata as m; print('%d.%d' % sys.version_info[:2]);"
            "[print(d.metadata['Name'].lower(), d.version) for d in m.distributions()]",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split("\n")
    assert listed[0] == version
    installed = dict(line.split(" ", 1) for line in listed[1:] if line)
    for name, pinned in pins(folder).items():
        assert installed.get(name) == pinned, (name, installed.get(name))
    result = subprocess.run(
        [vpy, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder / "tests")],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


@pytest.mark.integration
@pytest.mark.network
@pytest.mark.parametrize("folder", FOLDERS, ids=ids(FOLDERS))
def test_harness_runs_the_locked_python_and_pins(folder: Path) -> None:
    """Behind the harness the policy runs the Python and exactly the pins the lock has for it
    (what its workers report through HealthCheck, as in the image)."""
    locked = read_lock(LOCK_FILE).policy(folder.name)
    assert locked is not None
    with PolicyHarness(folder, lock_file=LOCK_FILE) as harness:
        status = harness.status()
    assert status["ready"] is True
    assert status["python_version"].rsplit(".", 1)[0] == locked.env.python
    pinned = {p.name: p.version for p in locked.env.packages["x86_64"]}
    reported = {
        name.lower().replace("_", "-"): version for name, version in status["distributions"].items()
    }
    assert {n: reported.get(n) for n in pinned} == pinned
