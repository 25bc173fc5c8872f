"""Manifest loading: good files load, every broken file gives one located error and exit 2."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from gateway_builder.cli import main
from gateway_builder.errors import ManifestError
from gateway_builder.manifest import GitSource, PathSource, PipSource, load_manifests

LOCATED = re.compile(r"^error: (?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<rest>.+)$")


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    d = tmp_path / "pol"
    d.mkdir()
    (d / "policy.py").write_text("def get_policy(metadata, params):\n    return None\n")
    return d


GOOD_PYTHON = """
version: v1
defaults:
  python: "3.11"
  failure_mode: skip
  timeout_ms: 5000
  isolation: worker
  workers: 3
policies:
  - name: local-one
    source:
      path: ./pol
    params:
      action: mask
  - name: from-git
    source:
      git: {url: "https://tok@example.com/org/repo.git", ref: v1, subdirectory: policies/x}
    python: "3.12"
    failure_mode: fail
  - name: from-index
    source:
      pip: {package: my-policy, version: "~=1.2", index_url: "https://example.com/simple"}
    isolation: per-call
"""

GOOD_BUILD = """
version: v1
gateway:
  version: 1.2.0-SNAPSHOT
  images: {runtime: "example/runtime:1"}
policies:
  - name: basic-auth
    gomodule: github.com/wso2/gateway-controllers/policies/basic-auth@v0
  - name: py-exact
    pipPackage: some-policy==1.0.0
  - name: py-compat
    pipPackage: some-policy2~=1.2.0@https://user:secret@example.com/simple
  - name: py-vcs
    pipPackage: git+https://github.com/org/repo.git@v1.2.3#subdirectory=policies/x
  - name: py-named
    pipPackage: "named @ git+https://github.com/org/repo.git@main"
  - name: py-short
    pipPackage: github.com/wso2/gateway-controllers/policies/prompt-compressor@v0
  - name: py-dir
    filePath: ./pol
"""


def test_good_manifests_load(tmp_path: Path, policy_dir: Path) -> None:
    b = write(tmp_path, "build.yaml", GOOD_BUILD)
    p = write(tmp_path, "python-build.yaml", GOOD_PYTHON.replace("local-one", "local-two"))
    m = load_manifests(b, p)
    names = [s.name for s in m.python_policies()]
    assert names == [
        "py-exact",
        "py-compat",
        "py-vcs",
        "py-named",
        "py-short",
        "py-dir",
        "local-two",
        "from-git",
        "from-index",
    ]
    specs = {s.name: s for s in m.python_policies()}
    assert specs["py-exact"].source == PipSource("some-policy", "==1.0.0", None)
    assert specs["py-compat"].source == PipSource(
        "some-policy2", "~=1.2.0", "https://user:secret@example.com/simple"
    )
    assert specs["py-vcs"].source == GitSource(
        "https://github.com/org/repo.git", "v1.2.3", "policies/x"
    )
    assert specs["py-named"].source == GitSource("https://github.com/org/repo.git", "main", None)
    assert specs["py-short"].source == GitSource(
        "https://github.com/wso2/gateway-controllers.git",
        "policies/prompt-compressor/v0",
        "policies/prompt-compressor",
    )
    assert specs["py-dir"].source == PathSource(policy_dir.resolve())
    # defaults applied; per-policy values win
    assert specs["local-two"].failure_mode == "skip" and specs["local-two"].workers == 3
    assert specs["from-git"].failure_mode == "fail" and specs["from-git"].python == "3.12"
    assert specs["from-index"].isolation == "per-call"
    assert specs["local-two"].params == {"action": "mask"}
    assert [g.name for g in m.go_specs] == ["basic-auth"]
    assert m.gateway_version == "1.2.0-SNAPSHOT"
    # redaction in display
    assert "secret" not in specs["py-compat"].source.display()
    assert "tok@" not in specs["from-git"].source.display()


def test_upstream_build_file_loads_unchanged(tmp_path: Path) -> None:
    # Shape of the upstream gateway/build.yaml, including legacy CLI-only fields.
    b = write(
        tmp_path,
        "build.yaml",
        """
        version: v1
        versionResolution: minor
        gateway:
          version: 1.2.0-SNAPSHOT
          images:
            builder: ghcr.io/wso2/api-platform/gateway-builder:1.2.0
            controller: ghcr.io/wso2/api-platform/gateway-controller:1.2.0
            runtime: ghcr.io/wso2/api-platform/gateway-runtime:1.2.0
        policies:
          - name: api-key-auth
            gomodule: github.com/wso2/gateway-controllers/policies/api-key-auth@v0
            version: v0.1.0
          - name: granite-guardian-prompt-injection
            pipPackage: github.com/wso2/gateway-controllers/policies/granite-guardian-prompt-injection@v0
        """,
    )
    m = load_manifests(b, None)
    assert len(m.go_specs) == 1 and len(m.python_policies()) == 1


def test_default_manifests_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Path(__file__).resolve().parents[2]
    if not (repo / "manifests" / "python-build.yaml").exists():
        pytest.fail("default manifests missing")
    monkeypatch.chdir(repo)
    assert main(["validate"]) == 0


# (file name, text, expected line, expected column, expected field, expected text fragment)
BROKEN: list[tuple[str, str, int, int, str, str]] = [
    ("python-build.yaml", "", 1, 1, "", "file is empty"),
    ("python-build.yaml", "version: v1\npolicies: [\n", 3, 1, "", "invalid YAML"),
    ("python-build.yaml", "version: v1\npolicies:\n\t- name: a\n", 3, 1, "", "tabs"),
    ("python-build.yaml", "- just\n- a list\n", 1, 1, "", "expected a mapping"),
    ("python-build.yaml", "version: v2\npolicies: []\n", 1, 10, "version", "expected 'v1'"),
    (
        "python-build.yaml",
        "policies:\n  - name: a\n    source: {path: ./pol}\n",
        1,
        1,
        "version",
        "required",
    ),
    ("python-build.yaml", "version: v1\npolicies: []\n", 2, 11, "policies", "at least one"),
    (
        "python-build.yaml",
        "version: v1\nbogus: 1\npolicies:\n  - name: a\n    source: {path: ./pol}\n",
        2,
        1,
        "bogus",
        "unknown key",
    ),
    (
        "python-build.yaml",
        "version: v1\npolicies:\n  - name: a\n    source:\n      path: ./pol\n      git: {url: x}\n",
        5,
        7,
        "policies[0].source",
        "exactly one of git, pip, path",
    ),
    (
        "python-build.yaml",
        "version: v1\npolicies:\n  - name: a\n    source: {}\n",
        4,
        13,
        "policies[0].source",
        "exactly one of",
    ),
    (
        "python-build.yaml",
        "version: v1\npolicies:\n  - name: a\n",
        3,
        5,
        "policies[0].source",
        "required",
    ),
    (
        "python-build.yaml",
        "version: v1\npolicies:\n  - name: a\n    source: {path: ./pol}\n    timeout_ms: soon\n",
        5,
        17,
        "policies[0].timeout_ms",
        "integer",
    ),
    (
        "python-build.yaml",
        "version: v1\npolicies:\n  - name: a\n    source: {path: ./pol}\n    workers: 0\n",
        5,
        14,
        "policies[0].workers",
        "greater than or equal to 1",
    ),
    (
        "python-build.yaml",
        "version: v1\npolicies:\n  - name: a\n    source: {path: ./pol}\n    failure_mode: explode\n",
        5,
        19,
        "policies[0].failure_mode",
        "'fail' or 'skip'",
    ),
    (
        "python-build.yaml",
        "version: v1\npolicies:\n  - name: a\n    source: {path: ./pol}\n    python: 3.10\n",
        5,
        13,
        "policies[0].python",
        "quoted string",
    ),
    (
        "python-build.yaml",
        'version: v1\npolicies:\n  - name: a\n    source: {path: ./pol}\n    python: "2.7"\n',
        5,
        13,
        "policies[0].python",
        "3.10, 3.11, 3.12, 3.13",
    ),
    (
        "python-build.yaml",
        'version: v1\npolicies:\n  - name: a\n    source:\n      pip: {package: foo, version: "=>1.0"}\n',
        5,
        36,
        "policies[0].source.pip.version",
        "PEP 440",
    ),
    (
        "python-build.yaml",
        'version: v1\npolicies:\n  - name: a\n    source:\n      pip: {package: "foo>=1"}\n',
        5,
        22,
        "policies[0].source.pip.package",
        "bare distribution name",
    ),
    (
        "python-build.yaml",
        'version: v1\npolicies:\n  - name: a\n    source:\n      git: {url: x, ref: "v1 .. v2"}\n',
        5,
        26,
        "policies[0].source.git.ref",
        "git tag",
    ),
    (
        "python-build.yaml",
        "version: v1\npolicies:\n  - name: a\n    source:\n      git: {url: x, subdirectory: ../../etc}\n",
        5,
        35,
        "policies[0].source.git.subdirectory",
        "inside the repository",
    ),
    (
        "python-build.yaml",
        "version: v1\npolicies:\n  - name: Bad Name\n    source: {path: ./pol}\n",
        3,
        11,
        "policies[0].name",
        "policy name",
    ),
    (
        "python-build.yaml",
        "version: v1\npolicies:\n  - name: a\n    source: {path: ./pol}\n  - name: a\n    source: {path: ./pol}\n",
        5,
        11,
        "policies[1].name",
        "duplicate policy name 'a'",
    ),
    (
        "python-build.yaml",
        "version: v1\npolicies:\n  - name: a\n    source: {path: ./missing}\n",
        4,
        20,
        "policies[0].source.path",
        "directory not found",
    ),
    (
        "python-build.yaml",
        "version: v1\nversion: v1\npolicies: []\n",
        2,
        1,
        "version",
        "duplicate key",
    ),
    (
        "python-build.yaml",
        "version: v1\npolicies:\n  - name: a\n    source: {path: ./pol}\n    params: [1, 2]\n",
        5,
        13,
        "policies[0].params",
        "mapping",
    ),
    (
        "python-build.yaml",
        "version: v1\ndefaults:\n  isolation: threads\npolicies:\n  - name: a\n    source: {path: ./pol}\n",
        3,
        14,
        "defaults.isolation",
        "'worker' or 'per-call'",
    ),
    (
        "build.yaml",
        "version: v1\npolicies:\n  - name: a\n",
        3,
        5,
        "policies[0]",
        "exactly one of filePath, gomodule, pipPackage",
    ),
    (
        "build.yaml",
        "version: v1\npolicies:\n  - name: a\n    gomodule: x@v1\n    pipPackage: y==1\n",
        3,
        5,
        "policies[0]",
        "exactly one of",
    ),
    (
        "build.yaml",
        "version: v1\npolicies:\n  - name: a\n    gomodule: no-version\n",
        4,
        15,
        "policies[0].gomodule",
        "module/path@ref",
    ),
    (
        "build.yaml",
        "version: v1\npolicies:\n  - name: a\n    pipPackage: foo\n",
        4,
        17,
        "policies[0].pipPackage",
        "unrecognized pipPackage",
    ),
    (
        "build.yaml",
        "version: v1\npolicies:\n  - name: a\n    pipPackage: foo~=1.2\n",
        4,
        17,
        "policies[0].pipPackage",
        "invalid pip spec",
    ),
    (
        "build.yaml",
        'version: v1\npolicies:\n  - name: a\n    pipPackage: "x @ https://example.com/x.whl"\n',
        4,
        17,
        "policies[0].pipPackage",
        "only git+",
    ),
    (
        "build.yaml",
        "version: v1\npolicies:\n  - name: a\n    pipPackage: github.com/org/repo@v1\n",
        4,
        17,
        "policies[0].pipPackage",
        "4 path segments",
    ),
    (
        "build.yaml",
        "version: v1\npolicies:\n  - name: a\n    filePath: ./nowhere\n",
        4,
        15,
        "policies[0].filePath",
        "directory not found",
    ),
    (
        "build.yaml",
        'version: "1"\npolicies:\n  - name: a\n    gomodule: x@v1\n',
        1,
        10,
        "version",
        "expected 'v1'",
    ),
    (
        "build.yaml",
        "version: v1\npolicies:\n  - name: a\n    gomodule: x@v1\n    extra: 1\n",
        5,
        5,
        "policies[0].extra",
        "unknown key",
    ),
    (
        "build.yaml",
        "version: v1\ngateway: 1.2.0\npolicies:\n  - name: a\n    gomodule: x@v1\n",
        2,
        10,
        "gateway",
        "mapping",
    ),
]


@pytest.mark.parametrize(
    ("fname", "text", "line", "col", "field", "fragment"),
    BROKEN,
    ids=[f"{i}-{b[5][:24]}" for i, b in enumerate(BROKEN)],
)
def test_broken_manifest_exits_2_with_location(
    tmp_path: Path,
    policy_dir: Path,
    capsys: pytest.CaptureFixture[str],
    fname: str,
    text: str,
    line: int,
    col: int,
    field: str,
    fragment: str,
) -> None:
    path = tmp_path / fname
    path.write_text(text)
    flag = "--build-file" if fname == "build.yaml" else "--python-build-file"
    code = main(["validate", flag, str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    m = LOCATED.match(err[0])
    assert m, err[0]
    assert m["file"].endswith(fname)
    assert (int(m["line"]), int(m["col"])) == (line, col), err[0]
    if field:
        assert m["rest"].startswith(f"{field}: "), err[0]
    assert fragment in m["rest"], err[0]
    assert "Traceback" not in err[0]


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", "--python-build-file", str(tmp_path / "nope.yaml")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.endswith("nope.yaml: file not found")


def test_duplicate_across_files(
    tmp_path: Path, policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    b = write(
        tmp_path, "build.yaml", "version: v1\npolicies:\n  - name: shared\n    gomodule: x/y@v1\n"
    )
    p = write(
        tmp_path,
        "python-build.yaml",
        "version: v1\npolicies:\n  - name: other\n    source: {path: ./pol}\n  - name: shared\n    source: {path: ./pol}\n",
    )
    code = main(["validate", "--build-file", str(b), "--python-build-file", str(p)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert re.search(
        r"python-build\.yaml:5:5: policies\[1\]\.name: duplicate policy name 'shared' \(also declared at .*build\.yaml:3:5\)",
        err,
    ), err


def test_json_mode_reports_error_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write(tmp_path, "python-build.yaml", "version: v3\npolicies: []\n")
    code = main(["--json", "validate", "--python-build-file", str(p)])
    out = capsys.readouterr().out
    assert code == 2
    import json

    data = json.loads(out)
    assert data["ok"] is False and data["exit_code"] == 2 and ":1:10: version:" in data["error"]


def test_manifest_error_fields(tmp_path: Path) -> None:
    p = write(
        tmp_path, "python-build.yaml", "version: v1\npolicies:\n  - name: a\n    source: {}\n"
    )
    with pytest.raises(ManifestError) as info:
        load_manifests(None, p)
    assert (info.value.line, info.value.column, info.value.field) == (4, 13, "policies[0].source")


def test_schema_command_prints_both(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["schema"]) == 0
    schemas = json.loads(capsys.readouterr().out)
    assert set(schemas) == {"build.yaml", "python-build.yaml"}
    assert schemas["python-build.yaml"]["additionalProperties"] is False
    assert "policies" in schemas["build.yaml"]["required"]


def test_init_timeout_ms_defaults_to_timeout_ms_and_can_be_set(
    tmp_path: Path, policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = """
    version: v1
    defaults: {timeout_ms: 2000}
    policies:
      - name: plain
        source: {path: ./pol}
      - name: slow-init
        source: {path: ./pol}
        init_timeout_ms: 60000
    """
    p = write(tmp_path, "python-build.yaml", text)
    specs = {s.name: s for s in load_manifests(None, p).python_policies()}
    assert (specs["plain"].timeout_ms, specs["plain"].init_timeout_ms) == (2000, None)
    assert specs["slow-init"].init_timeout_ms == 60000
    # A default for every policy, and a bad value: one located error, exit 2.
    p = write(
        tmp_path, "python-build.yaml", text.replace("{timeout_ms: 2000}", "{init_timeout_ms: 9}")
    )
    assert {s.name: s.init_timeout_ms for s in load_manifests(None, p).python_policies()} == {
        "plain": 9,
        "slow-init": 60000,
    }
    p = write(tmp_path, "python-build.yaml", text.replace("60000", "0"))
    assert main(["validate", "--python-build-file", str(p)]) == 2
    [err] = capsys.readouterr().err.strip().splitlines()
    assert err.endswith("policies[1].init_timeout_ms: expected a number greater than 0"), err
