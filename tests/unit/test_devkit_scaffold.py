"""The policy developer kit without venvs or executors: ``new-policy`` output, its bad input,
``test-policy``'s input checks, ``describe-policy``, and reading the phases of a ``policy.py``."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from apip_sdk_core.policy.v1alpha2 import (
    BodyProcessingMode,
    HeaderProcessingMode,
    PolicyMetadata,
    RequestHeaderPolicy,
    RequestPolicy,
    ResponseHeaderPolicy,
    ResponsePolicy,
    StreamingResponsePolicy,
)

from gateway_builder import cli, defaults
from gateway_builder.devkit.describe import describe_policy, parameters
from gateway_builder.devkit.policydir import (
    implemented_interfaces,
    implemented_phases,
    load_policy_samples,
    read_policy_dir,
)
from gateway_builder.devkit.scaffold import SAMPLE_FILES, new_policy
from gateway_builder.errors import InputError
from gateway_builder.options import DescribePolicyOptions, NewPolicyOptions

REPO = defaults.REPO_DIR
#: The project's own ruff rules: generated code passes what the project's code passes.
RULES = "E,F,W,I,B,UP,SIM,RUF"


def gwb(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``gateway-builder ARGV`` in this process (usage errors included): (code, out, err)."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def import_policy(folder: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_scaffold_{folder.name}", folder / "policy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PHASE_SETS = [
    ("request_headers",),
    ("request_body",),
    ("response_headers",),
    ("response_body",),
    ("streaming",),
    ("request_headers", "request_body", "response_headers", "response_body"),
    ("response_headers", "request_headers", "streaming"),
]


@pytest.mark.parametrize("phases", PHASE_SETS, ids=["+".join(p) for p in PHASE_SETS])
def test_new_policy_is_complete_and_consistent(tmp_path: Path, phases: tuple[str, ...]) -> None:
    created = new_policy(NewPolicyOptions(name="my-policy", phases=phases, out=tmp_path / "p"))
    folder = created.root
    samples = [f"samples/{SAMPLE_FILES[p]}" for p in phases]
    assert set(created.files) == {
        "README.md",
        "policy-definition.yaml",
        "policy.py",
        "requirements.txt",
        "tests/test_policy.py",
        *samples,
    }
    assert not (folder / "pyproject.toml").exists()  # a simple folder: no wheel build
    assert not (folder / defaults.PYTHON_VERSION_FILE).exists()

    policy = read_policy_dir(folder)
    assert (policy.name, policy.definition.version) == ("my-policy", "v0.1.0")
    assert policy.requirements == () and not policy.packaged
    props = policy.definition.parameters["properties"]
    assert list(props) == ["message"] and props["message"]["default"] == "hello from my-policy"
    loaded = load_policy_samples(policy)
    assert [Path(s.file).name for s in loaded] == sorted(SAMPLE_FILES[p] for p in phases)

    expected_phases = {
        "request_headers": {"request_headers"},
        "request_body": {"request_body"},
        "response_headers": {"response_headers"},
        "response_body": {"response_body"},
        "streaming": {"response_body", "response_body_chunk"},
    }
    assert set(implemented_phases(policy)) == set().union(*(expected_phases[p] for p in phases))

    instance = import_policy(folder).get_policy(PolicyMetadata(), {"message": "x"})
    mode = instance.mode()
    assert (mode.request_header_mode is HeaderProcessingMode.PROCESS) == (
        "request_headers" in phases
    )
    assert (mode.response_header_mode is HeaderProcessingMode.PROCESS) == (
        "response_headers" in phases
    )
    assert mode.request_body_mode is (
        BodyProcessingMode.BUFFER if "request_body" in phases else BodyProcessingMode.SKIP
    )
    response_body = (
        BodyProcessingMode.STREAM
        if "streaming" in phases
        else BodyProcessingMode.BUFFER
        if "response_body" in phases
        else BodyProcessingMode.SKIP
    )
    assert mode.response_body_mode is response_body
    for phase, cls in (
        ("request_headers", RequestHeaderPolicy),
        ("request_body", RequestPolicy),
        ("response_headers", ResponseHeaderPolicy),
        ("streaming", StreamingResponsePolicy),
    ):
        assert isinstance(instance, cls) == (phase in phases)
    assert isinstance(instance, ResponsePolicy) == bool({"response_body", "streaming"} & {*phases})

    ruff = [sys.executable, "-m", "ruff"]
    lint = subprocess.run(
        [*ruff, "check", "--isolated", "--line-length", "100", "--select", RULES, str(folder)],
        cwd=folder,  # gateway_builder is a third-party package to the policy
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout
    fmt = subprocess.run(
        [*ruff, "format", "--isolated", "--line-length", "100", "--check", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert fmt.returncode == 0, fmt.stdout


def test_new_policy_cli_writes_python_version_and_reports_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out" / "guard"
    code, out, err = gwb(
        capsys, "--json", "new-policy", "guard", "--phase", "request_body", "--python", "3.12",
        "--out", str(target),
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["path"] == str(target) and result["phases"] == ["request_body"]
    assert "python_version.txt" in result["files"]
    assert (target / "python_version.txt").read_text() == "3.12\n"
    assert read_policy_dir(target).python_version == "3.12"


def test_new_policy_defaults_to_request_headers_in_dot_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    code, _, err = gwb(capsys, "new-policy", "first")
    assert code == 0, err
    assert implemented_phases(read_policy_dir(tmp_path / "first")) == ("request_headers",)
    code, _, err = gwb(capsys, "new-policy", "second", "--out", "empty")  # an empty dir is fine
    assert code == 0, err
    assert read_policy_dir(tmp_path / "empty").name == "second"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["new-policy", "p", "--phase", "request_trailers"], "invalid choice: 'request_trailers'"),
        (["new-policy", "Bad_Name"], "policy name 'Bad_Name': expected lowercase letters"),
        (["new-policy", "has space"], "policy name 'has space': expected lowercase letters"),
        (["new-policy", "../escape"], "policy name '../escape': expected lowercase letters"),
        (["new-policy", "a" * 64], "at most 63 characters"),
        (["new-policy", "p", "--python", "3.9"], "--python 3.9: expected one of"),
        (
            ["new-policy", "p", "--phase", "streaming", "response_body"],
            "--phase streaming already handles the response body",
        ),
    ],
)
def test_new_policy_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = gwb(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_new_policy_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "taken"
    existing.mkdir()
    (existing / "policy.py").write_text("mine\n")
    code, _, err = gwb(capsys, "new-policy", "taken", "--out", str(existing))
    assert code == 2 and "already exists; new-policy never overwrites" in err
    assert [p.name for p in existing.iterdir()] == ["policy.py"]
    assert (existing / "policy.py").read_text() == "mine\n"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, _, err = gwb(capsys, "new-policy", "file", "--out", str(a_file))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "taken"]  # no staging left


# --- test-policy: input checked before anything is installed --------------------------------


@pytest.fixture
def scaffolded(tmp_path: Path) -> Path:
    return new_policy(NewPolicyOptions(name="checked", out=tmp_path / "checked")).root


def test_a_sample_that_does_not_parse_is_exit_2_naming_file_and_line(
    scaffolded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (scaffolded / "samples" / "broken.json").write_text('{\n  "description": "x",\n  oops\n}\n')
    code, out, err = gwb(capsys, "test-policy", str(scaffolded))
    assert code == 2 and out == ""
    assert err.strip() == (
        "error: checked/samples/broken.json:3:3: invalid JSON: Expecting property name enclosed "
        "in double quotes"
    )


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ({"phase": "request_headers"}, "missing key 'description'"),
        (
            {"description": "d", "phase": "request_trailers", "request": {}, "expect": {}},
            "phase: expected one of",
        ),
        (
            {
                "description": "d",
                "phase": "request_headers",
                "request": {},
                "params": {"message": 3},
                "expect": {"kind": "passthrough"},
            },
            "checked/samples/bad.json: params.message: 3 is not of type 'string'",
        ),
    ],
)
def test_bad_samples_are_input_errors(
    scaffolded: Path,
    capsys: pytest.CaptureFixture[str],
    sample: dict[str, object],
    message: str,
) -> None:
    (scaffolded / "samples" / "bad.json").write_text(json.dumps(sample))
    code, _, err = gwb(capsys, "test-policy", str(scaffolded))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err


def test_test_policy_input_errors(
    tmp_path: Path, scaffolded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = gwb(capsys, "test-policy", str(tmp_path / "missing"))
    assert code == 2 and "not a directory" in err
    code, _, err = gwb(capsys, "test-policy", str(tmp_path))
    assert code == 2 and "policy-definition.yaml not found" in err
    code, _, err = gwb(capsys, "test-policy", str(scaffolded), "--watch", "--max-runs", "0")
    assert code == 2 and "--max-runs 0" in err
    code, _, err = gwb(capsys, "test-policy", str(scaffolded), "--python", "2.7")
    assert code == 2 and "--python 2.7" in err
    for sample in (scaffolded / "samples").iterdir():
        sample.unlink()
    code, _, err = gwb(capsys, "test-policy", str(scaffolded))
    assert code == 2 and "no samples/*.json to run" in err


# --- describe-policy ---------------------------------------------------------------------------


def test_describe_a_sample_policy_as_markdown_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    folder = REPO / "policy_sources" / "token-scorer"
    code, out, _ = gwb(capsys, "describe-policy", str(folder), "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert (data["name"], data["version"], data["python"]) == ("token-scorer", "v1.0.0", "3.12")
    assert data["phases"] == ["request_body", "response_headers"]
    assert data["layout"] == "packaged"
    by_name = {p["name"]: p for p in data["parameters"]}
    assert by_name["maxTokens"] == {
        "name": "maxTokens",
        "type": "integer",
        "default": 0,
        "has_default": True,
        "required": False,
        "description": "Block prompts whose estimated token count exceeds this; 0 turns the limit off.",
    }
    assert len(data["samples"]) == 6
    code, out, _ = gwb(capsys, "describe-policy", str(folder))
    assert out.startswith("# Token Scorer\n\n`token-scorer` v1.0.0\n")
    assert "- Phases: `request_body`, `response_headers`" in out
    assert "| `exposeInResponse` | boolean | `true` | no |" in out
    assert "| `response-headers.json` | `response_headers` |" in out


def test_describe_a_new_policy(tmp_path: Path) -> None:
    created = new_policy(
        NewPolicyOptions(name="docs", phases=("streaming",), out=tmp_path / "docs")
    )
    data = describe_policy(DescribePolicyOptions(policy_dir=created.root))
    assert data["phases"] == ["response_body", "response_body_chunk"]
    assert [p["name"] for p in data["parameters"]] == ["message"]
    assert data["samples"][0]["file"] == "streaming-fallback.json"
    with pytest.raises(InputError, match="--format yaml"):
        describe_policy(DescribePolicyOptions(policy_dir=created.root, format="yaml"))


def test_parameter_types_in_words() -> None:
    schema = {
        "type": "object",
        "required": ["mode"],
        "properties": {
            "mode": {"enum": ["mask", "block"], "description": "what\n  to do"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "limit": {"type": ["integer", "null"], "default": None},
            "fixed": {"const": 1},
        },
    }
    rows = {p["name"]: p for p in parameters(schema)}
    assert rows["mode"]["type"] == 'one of: "mask", "block"'
    assert rows["mode"]["required"] is True and rows["mode"]["description"] == "what to do"
    assert rows["tags"]["type"] == "array of string"
    assert rows["limit"]["type"] == "integer or null" and rows["limit"]["has_default"] is True
    assert rows["fixed"]["type"] == "always 1"


def test_phases_are_read_through_aliases_and_intermediate_classes(tmp_path: Path) -> None:
    source = tmp_path / "policy.py"
    source.write_text(
        "from apip_sdk_core.policy import v1alpha2\n"
        "from apip_sdk_core import RequestHeaderPolicy as Headers\n"
        "class Base(Headers):\n    pass\n"
        "class Mine(Base, v1alpha2.StreamingRequestPolicy):\n    pass\n"
        "class Unrelated(object):\n    pass\n"
    )
    assert implemented_interfaces(source) == {
        "RequestHeaderPolicy",
        "StreamingRequestPolicy",
        "RequestPolicy",
    }
