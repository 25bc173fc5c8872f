"""Policy validation: definition file, entry module (ast only), params schema, Python version,
requirements.txt. Each failure is one InputError naming the policy."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from gateway_builder.errors import InputError
from gateway_builder.fetch import read_requirements_txt
from gateway_builder.fetch.definition import (
    check_entry_module,
    load_definition,
    read_python_version,
    validate_policy,
)
from gateway_builder.manifest import PathSource, PythonPolicySpec

DEFINITION = textwrap.dedent(
    """
    name: demo
    version: v1.2.3
    displayName: Demo
    description: A demo.
    parameters:
      type: object
      additionalProperties: false
      required: [action]
      properties:
        action: {type: string, enum: [block, mask]}
        limits:
          type: array
          items: {type: integer, minimum: 1}
    systemParameters: {}
    """
)


def spec(
    folder: Path, params: dict[str, Any] | None = None, name: str = "demo"
) -> PythonPolicySpec:
    return PythonPolicySpec(
        name=name,
        source=PathSource(folder),
        python=None,
        failure_mode="fail",
        timeout_ms=1000,
        isolation="worker",
        workers=1,
        params=params if params is not None else {"action": "mask"},
        origin="manifests/python-build.yaml:4:5",
    )


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    (tmp_path / "policy-definition.yaml").write_text(DEFINITION)
    (tmp_path / "policy.py").write_text("def get_policy(metadata, params):\n    return object()\n")
    return tmp_path


def test_valid_policy(policy: Path) -> None:
    definition = validate_policy(spec(policy), policy, policy / "policy.py")
    assert definition.name == "demo" and definition.version == "v1.2.3"
    assert definition.display_name == "Demo"
    assert definition.parameters["required"] == ["action"]


def error_of(policy: Path, **kw: Any) -> str:
    with pytest.raises(InputError) as info:
        validate_policy(spec(policy, **kw), policy, policy / "policy.py")
    message = str(info.value)
    assert message.startswith("manifests/python-build.yaml:4:5: policy '")
    assert "\n" not in message
    return message


def test_missing_definition(policy: Path) -> None:
    (policy / "policy-definition.yaml").unlink()
    assert "policy-definition.yaml not found" in error_of(policy)


def test_definition_symlink_is_not_trusted(
    policy: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("x") / "def.yaml"
    elsewhere.write_text(DEFINITION)
    (policy / "policy-definition.yaml").unlink()
    (policy / "policy-definition.yaml").symlink_to(elsewhere)
    assert "not found" in error_of(policy)


def test_name_mismatch(policy: Path) -> None:
    message = error_of(policy, name="other")
    assert "policy name mismatch: the manifest declares 'other'" in message
    assert "has 'demo'" in message


@pytest.mark.parametrize("version", ["1.2.3", "v1.2", "v1", "v1.2.3-rc1", "latest"])
def test_bad_version(policy: Path, version: str) -> None:
    (policy / "policy-definition.yaml").write_text(DEFINITION.replace("v1.2.3", version))
    assert "is not of the form vX.Y.Z" in error_of(policy)


def test_bad_yaml_and_bad_schema(policy: Path) -> None:
    (policy / "policy-definition.yaml").write_text("name: demo\nversion: [unclosed\n")
    assert "policy-definition.yaml:3:1: invalid YAML" in error_of(policy)
    (policy / "policy-definition.yaml").write_text(
        "name: demo\nversion: v1.0.0\nparameters:\n  type: 12\n"
    )
    assert "'parameters' is not a valid JSON Schema" in error_of(policy)
    (policy / "policy-definition.yaml").write_text("- just a list\n")
    assert "expected a mapping" in error_of(policy)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({}, "params: 'action' is a required property"),
        ({"action": "drop"}, "params.action: 'drop' is not one of ['block', 'mask']"),
        ({"action": "mask", "extra": 1}, "Additional properties are not allowed ('extra'"),
        ({"action": "mask", "limits": [3, 0]}, "params.limits[1]: 0 is less than the minimum of 1"),
    ],
)
def test_params_against_schema(policy: Path, params: dict[str, Any], fragment: str) -> None:
    assert fragment in error_of(policy, params=params)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("x = 1\n", "does not define a module-level get_policy"),
        ("def helper():\n    def get_policy(m, p):\n        pass\n", "does not define"),
        ("class P:\n    def get_policy(self, m, p):\n        pass\n", "does not define"),
        (
            "def get_policy(metadata):\n    pass\n",
            "policy.py:1: get_policy must accept two arguments",
        ),
        ("def get_policy(a, b, c):\n    pass\n", "must accept two arguments"),
        ("async def get_policy(m, p):\n    pass\n", "plain function, not async"),
        ("def get_policy(m, p)\n    pass\n", "policy.py:1: syntax error"),
    ],
)
def test_entry_module_problems(policy: Path, source: str, fragment: str) -> None:
    (policy / "policy.py").write_text(source)
    assert fragment in error_of(policy)


@pytest.mark.parametrize(
    "source",
    [
        "def get_policy(metadata, params):\n    pass\n",
        "def get_policy(metadata, params, extra=None):\n    pass\n",
        "def get_policy(*args):\n    pass\n",
        "get_policy = lambda metadata, params: None\n",
        "from ._impl import get_policy\n",
        "from ._impl import make as get_policy\n",
        "try:\n    from fast import get_policy\nexcept ImportError:\n    from slow import get_policy\n",
        "import sys\nif sys.version_info >= (3, 12):\n    def get_policy(m, p):\n        pass\nelse:\n    def get_policy(m, p):\n        pass\n",
    ],
)
def test_entry_module_accepted_forms(tmp_path: Path, source: str) -> None:
    (tmp_path / "policy.py").write_text(source)
    check_entry_module(tmp_path / "policy.py", "t")


def test_entry_module_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "policy.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef get_policy(m, p):\n    pass\n"
    )
    check_entry_module(tmp_path / "policy.py", "t")
    assert not marker.exists()


def test_missing_policy_py(policy: Path) -> None:
    (policy / "policy.py").unlink()
    assert "policy.py not found" in error_of(policy)


def test_load_definition_defaults(tmp_path: Path) -> None:
    (tmp_path / "policy-definition.yaml").write_text("name: x\nversion: v0.0.1\n")
    definition = load_definition(tmp_path, "t")
    assert definition.parameters == {} and definition.system_parameters == {}


@pytest.mark.parametrize(("text", "expected"), [("3.12\n", "3.12"), (" 3.10.4 ", "3.10")])
def test_python_version_file(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "python_version.txt").write_text(text)
    assert read_python_version([tmp_path / "missing", tmp_path], "t") == expected


@pytest.mark.parametrize("text", ["2.7", "3.9", "python3.12", "3.99"])
def test_python_version_file_unsupported(tmp_path: Path, text: str) -> None:
    (tmp_path / "python_version.txt").write_text(text)
    with pytest.raises(InputError, match=r"python_version\.txt says"):
        read_python_version([tmp_path], "t")
    assert read_python_version([tmp_path / "none"], "t") is None


def test_requirements_txt(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("# comment\nJinja2==3.1.4  # pinned\n\nnumpy>=2; python_version >= '3.11'\n")
    assert read_requirements_txt(path, "t") == (
        "Jinja2==3.1.4",
        'numpy>=2; python_version >= "3.11"',
    )
    assert read_requirements_txt(tmp_path / "absent.txt", "t") == ()
    for bad, fragment in [
        ("--index-url https://x\n", "requirements.txt:1: options such as --index-url"),
        ("-e .\n", "options such as -e"),
        ("pkg @ https://example.com/pkg.whl\n", "direct references"),
        ("ok==1\nnot a requirement!!\n", "requirements.txt:2:"),
    ]:
        path.write_text(bad)
        with pytest.raises(InputError, match=fragment):
            read_requirements_txt(path, "policy 'p'")
