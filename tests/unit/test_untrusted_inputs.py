"""Untrusted YAML, JSON and Python files are read within bounds, and only JSON values pass.

Each oversized, over-expanded, over-deep or non-JSON input is refused with one line naming the
file and line, quickly and in little memory. Time and peak memory are measured in a child
process (an address-space limit keeps a regression from eating the machine); the bounds here are
generous on purpose, the exact numbers go in benchmarks and notes.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway_builder.cli import main
from gateway_builder.errors import InputError, ManifestError
from gateway_builder.fetch.definition import check_entry_module, load_definition
from gateway_builder.manifest import load_python_manifest

#: Generous bounds for one refusal (the targets are 2 s and 200 MB; a busy machine is slower).
REFUSAL_SECONDS = 10.0
REFUSAL_MAX_RSS_MB = 400
#: Address space of the child: a regression fails with MemoryError instead of swapping.
CHILD_ADDRESS_SPACE = 3 << 30

_MEASURE = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    start = time.monotonic()
    error = ""
    try:
        kind, path = sys.argv[1], Path(sys.argv[2])
        if kind == "definition":
            from gateway_builder.fetch.definition import load_definition
            load_definition(path.parent, "policy 'p'")
        elif kind == "manifest":
            from gateway_builder.manifest import load_python_manifest
            load_python_manifest(path)
        else:
            from gateway_builder.fetch.definition import check_entry_module
            check_entry_module(path, "policy 'p'")
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    print(json.dumps({
        "seconds": time.monotonic() - start,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "error": error[:500],
    }))
    """
)


def measure(kind: str, path: Path) -> dict[str, Any]:
    """Load ``path`` as ``kind`` in a child process; its time, peak RSS and error."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE, CHILD_ADDRESS_SPACE))

    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, kind, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def assert_refused_quickly(result: dict[str, Any], *fragments: str) -> None:
    assert result["error"].startswith(("InputError", "ManifestError")), result
    for fragment in fragments:
        assert fragment in result["error"], result
    assert result["seconds"] < REFUSAL_SECONDS, result
    assert result["max_rss_mb"] < REFUSAL_MAX_RSS_MB, result


# --- policy-definition.yaml ------------------------------------------------------------------


def billion_laughs(levels: int = 9) -> str:
    """A schema whose ``allOf`` aliases expand to 10**levels subschemas (the metaschema check
    walks every one of them)."""
    lines = ["name: p", "version: v1.0.0", "x0: &a0 {type: string}"]
    for i in range(1, levels + 1):
        lines.append(f"x{i}: &a{i} {{allOf: [" + ", ".join([f"*a{i - 1}"] * 10) + "]}")
    lines.append(f"parameters: *a{levels}")
    return "\n".join(lines) + "\n"


def test_billion_laughs_definition_is_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "policy-definition.yaml"
    path.write_text(billion_laughs())
    result = measure("definition", path)
    assert_refused_quickly(result, "policy-definition.yaml:", "too large")


def test_definition_over_the_size_cap_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "policy-definition.yaml"
    path.write_text("name: p\nversion: v1.0.0\ndescription: " + "x" * (16 << 20) + "\n")
    result = measure("definition", path)
    assert_refused_quickly(result, "policy-definition.yaml", "bytes")


def test_deeply_nested_definition_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy-definition.yaml"
    path.write_text("name: p\nversion: v1.0.0\nparameters: " + "[" * 5000 + "]" * 5000 + "\n")
    result = measure("definition", path)
    assert_refused_quickly(result, "policy-definition.yaml:3", "nest")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(".nan", "finite number"), ("-.inf", "finite number"), ("2024-01-01", "date")],
)
def test_definition_values_must_be_json(tmp_path: Path, value: str, expected: str) -> None:
    (tmp_path / "policy-definition.yaml").write_text(
        "name: p\nversion: v1.0.0\nparameters:\n  type: object\n"
        f"  properties:\n    x: {{type: number, default: {value}}}\n"
    )
    with pytest.raises(InputError, match=rf"policy-definition.yaml:6:.*{expected}"):
        load_definition(tmp_path, "policy 'p'")


# --- manifests ------------------------------------------------------------------------------


def test_huge_manifest_is_refused_before_parsing(tmp_path: Path) -> None:
    entry = "  - name: p{i}\n    source: {{path: .}}\n    params: {{a: 1, b: [1, 2]}}\n"
    body = "".join(entry.format(i=i) for i in range(400_000))
    path = tmp_path / "python-build.yaml"
    path.write_text("version: v1\npolicies:\n" + body)
    assert path.stat().st_size > 16 << 20
    result = measure("manifest", path)
    assert_refused_quickly(result, "python-build.yaml:1:1", "bytes")


def test_manifest_with_too_many_values_is_refused_while_composing(tmp_path: Path) -> None:
    path = tmp_path / "python-build.yaml"
    path.write_text("version: v1\npolicies: []\nx: [" + "1," * 400_000 + "1]\n")
    assert path.stat().st_size < 1 << 20  # under the size cap: the value cap must stop it
    result = measure("manifest", path)
    assert_refused_quickly(result, "python-build.yaml:3:", "too large")


def test_manifest_alias_expansion_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "python-build.yaml"
    lines = ["version: v1", "policies: []", "x0: &a0 [lol]"]
    for i in range(1, 12):
        lines.append(f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    path.write_text("\n".join(lines) + "\n")
    result = measure("manifest", path)
    assert_refused_quickly(result, "python-build.yaml:", "too large")


def manifest_with_params(tmp_path: Path, params: str) -> Path:
    (tmp_path / "pol").mkdir(exist_ok=True)
    path = tmp_path / "python-build.yaml"
    path.write_text(
        "version: v1\npolicies:\n  - name: p\n    source:\n      path: pol\n"
        f"    params:\n{textwrap.indent(params, '      ')}"
    )
    return path


@pytest.mark.parametrize(
    ("params", "line", "field", "expected"),
    [
        ("threshold: .nan\n", 7, "policies[0].params.threshold", "finite number"),
        ("limits: [1, .inf]\n", 7, "policies[0].params.limits[1]", "finite number"),
        ("a:\n  b: -.Inf\n", 8, "policies[0].params.a.b", "finite number"),
        ("since: 2024-01-01\n", 7, "policies[0].params.since", "date"),
        ("at: 2024-01-01 10:00:00\n", 7, "policies[0].params.at", "date"),
        ("blob: !!binary aGVsbG8=\n", 7, "policies[0].params.blob", "binary"),
        ("s: !!set {a, b}\n", 7, "policies[0].params.s", "JSON"),
    ],
)
def test_params_must_be_json_values(
    tmp_path: Path, params: str, line: int, field: str, expected: str
) -> None:
    path = manifest_with_params(tmp_path, params)
    with pytest.raises(ManifestError) as info:
        load_python_manifest(path)
    assert info.value.line == line and info.value.field == field
    assert expected in info.value.expected


def test_json_params_still_load(tmp_path: Path) -> None:
    path = manifest_with_params(
        tmp_path, 'a: 1.5\nb: [1, "2024-01-01", null, true]\nc: {d: -0.0}\n'
    )
    _, (spec,) = load_python_manifest(path)
    assert spec.params == {"a": 1.5, "b": [1, "2024-01-01", None, True], "c": {"d": -0.0}}


def test_cli_refuses_nan_params_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = manifest_with_params(tmp_path, "threshold: .nan\n")
    assert main(["--json", "validate", "--python-build-file", str(path)]) == 2
    out = capsys.readouterr()
    assert json.loads(out.out)["ok"] is False
    assert "Traceback" not in out.err and "params.threshold" in out.err


# --- policy.py ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    ["+".join(["1"] * 200_000), "not " * 100_000 + "1", "-" * 200_000 + "1"],
    ids=["long-sum", "deep-not", "deep-minus"],
)
def test_deeply_nested_policy_py_is_one_error(tmp_path: Path, expression: str) -> None:
    path = tmp_path / "policy.py"
    path.write_text(f"def get_policy(metadata, params):\n    return None\n\nX = {expression}\n")
    result = measure("policy", path)
    assert_refused_quickly(result, "policy.py", "nested")


def test_deeply_nested_policy_py_gives_json_from_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "pol"
    folder.mkdir()
    (folder / "policy-definition.yaml").write_text("name: pol\nversion: v1.0.0\n")
    (folder / "policy.py").write_text(
        "def get_policy(metadata, params):\n    return None\n\nX = " + "+".join(["1"] * 200_000)
    )
    manifest = tmp_path / "python-build.yaml"
    manifest.write_text("version: v1\npolicies:\n  - name: pol\n    source:\n      path: pol\n")
    code = main(
        ["--json", "fetch", "--python-build-file", str(manifest), "--cache-dir", str(tmp_path)]
    )
    out = capsys.readouterr()
    assert code == 2
    assert json.loads(out.out)["ok"] is False
    assert "Traceback" not in out.err and "policy.py" in out.err


def test_policy_py_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.py"
    path.write_text("def get_policy(metadata, params):\n    return None\n" + "#" * (8 << 20))
    with pytest.raises(InputError, match=r"policy\.py.*bytes"):
        check_entry_module(path, "policy 'p'")


class _CyclicGarbage:
    """Collected with a finalizer, which runs Python code (and so lets other threads in) in
    whichever thread the collection happens: the condition of the CPython 3.11 AST race."""

    def __del__(self) -> None:
        sum(range(200))


def test_parallel_entry_module_checks_never_crash(tmp_path: Path) -> None:
    source = (
        "def get_policy(metadata, params):\n    return "
        + "(" * 50
        + "1"
        + ")" * 50
        + "\nX = ["
        + ",".join(f"{{'a': [{i}, ({i},)]}}" for i in range(200))
        + "]\n"
    )
    paths = []
    for i in range(4):
        path = tmp_path / f"p{i}" / "policy.py"
        path.parent.mkdir()
        path.write_text(source)
        paths.append(path)
    errors: list[BaseException] = []

    def check(path: Path) -> None:
        for _ in range(100):
            for _ in range(20):
                a, b = _CyclicGarbage(), _CyclicGarbage()
                a.other, b.other = b, a  # type: ignore[attr-defined]
            del a, b
            try:
                check_entry_module(path, "policy 'p'")
            except BaseException as exc:  # the race shows up as SystemError
                errors.append(exc)
                return

    old_interval, old_threshold = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(1e-6)
    gc.set_threshold(50, 5, 5)
    try:
        threads = [threading.Thread(target=check, args=(p,)) for p in paths]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
    finally:
        sys.setswitchinterval(old_interval)
        gc.set_threshold(*old_threshold)
        gc.collect()
    assert not errors, [repr(e) for e in errors[:3]]


def test_measure_helper_reports_a_normal_load(tmp_path: Path) -> None:
    """The child process really loads: a valid definition gives no error."""
    (tmp_path / "policy-definition.yaml").write_text("name: p\nversion: v1.0.0\n")
    result = measure("definition", tmp_path / "policy-definition.yaml")
    assert result["error"] == "" and result["seconds"] > 0
    assert os.path.getsize(tmp_path / "policy-definition.yaml") > 0


def test_nesting_is_capped_by_the_composer_and_through_aliases() -> None:
    from gateway_builder.manifest.yamlpos import MANIFEST_LIMITS, parse_yaml

    too_deep = MANIFEST_LIMITS.max_depth + 1
    with pytest.raises(ManifestError, match=f"nested more than {MANIFEST_LIMITS.max_depth}"):
        parse_yaml("x: " + "[" * too_deep + "]" * too_deep + "\n", "m.yaml")
    half = MANIFEST_LIMITS.max_depth // 2 + 2
    chained = (
        f"a: &a {'[' * half}1{']' * half}\n"
        f"b: {'[' * half}*a{']' * half}\n"  # each half fits; the alias makes it too deep
    )
    with pytest.raises(ManifestError) as info:
        parse_yaml(chained, "m.yaml")
    assert info.value.line == 2 and "nested more than" in info.value.expected
    with pytest.raises(ManifestError, match="refers to a value containing it"):
        parse_yaml("a: &a [1, *a]\n", "m.yaml")
    data, _ = parse_yaml(f"a: &a {'[' * half}1{']' * half}\nb: *a\n", "m.yaml")
    assert data["a"] == data["b"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"files": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested more than"),
        (b'{"files": [{"filename": "a-1.whl", "url": "a", "size": NaN}]}', "NaN"),
        (b'{"files": {"not": "a list"}}', "no 'files' list"),
        (b"[1, 2", "invalid JSON"),
    ],
)
def test_index_json_pages_are_bounded_and_checked(body: bytes, expected: str) -> None:
    from gateway_builder.errors import BuildError
    from gateway_builder.fetch.index import IndexClient

    client = IndexClient("https://index.example/simple")
    with pytest.raises(BuildError, match=expected):
        client._parse_json(body, "https://index.example/simple/a/", "index a")


def test_index_json_skips_malformed_entries() -> None:
    from gateway_builder.fetch.index import IndexClient

    client = IndexClient("https://index.example/simple")
    body = json.dumps(
        {
            "files": [
                "junk",
                {"filename": 3, "url": "x"},
                {"filename": "a-1.0-py3-none-any.whl", "url": "../../f/a.whl", "hashes": []},
            ]
        }
    ).encode()
    (only,) = client._parse_json(body, "https://index.example/simple/a/", "index a")
    assert only.filename == "a-1.0-py3-none-any.whl" and only.sha256 is None
