"""Property tests: whatever YAML comes in, the loader raises only its own error types."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway_builder.errors import GatewayBuilderError
from gateway_builder.manifest import load_manifests
from gateway_builder.manifest.yamlpos import parse_yaml

KEYS = [
    "version",
    "policies",
    "defaults",
    "name",
    "source",
    "git",
    "pip",
    "path",
    "url",
    "ref",
    "subdirectory",
    "package",
    "index_url",
    "python",
    "failure_mode",
    "timeout_ms",
    "isolation",
    "workers",
    "params",
    "gomodule",
    "pipPackage",
    "filePath",
    "gateway",
    "images",
    "x",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            "v1",
            "v2",
            "3.12",
            "fail",
            "skip",
            "worker",
            "per-call",
            "./pol",
            "a",
            "x@v1",
            "foo==1.0",
            "git+https://h/o/r.git@v1",
            "h/o/r/s@v1",
            "~=1.0",
            "",
        ]
    ),
    st.text(max_size=12),
)
docs: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=5),
    ),
    max_leaves=25,
)


def _load_text(tmp: Path, text: str) -> None:
    for name in ("build.yaml", "python-build.yaml"):
        path = tmp / name
        path.write_text(text)
        try:
            if name == "build.yaml":
                load_manifests(path, None)
            else:
                load_manifests(None, path)
        except GatewayBuilderError as exc:
            assert exc.exit_code == 2
            assert "\n" not in exc.message


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=docs)
def test_random_documents_only_raise_own_errors(tmp_path: Path, doc: Any) -> None:
    _load_text(tmp_path, yaml.safe_dump(doc))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(alphabet=st.sampled_from(list("ab:-[]{}\t\n #&*!|>'\"%@`,?v1")), max_size=80))
def test_random_text_only_raises_own_errors(tmp_path: Path, text: str) -> None:
    _load_text(tmp_path, text)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    policies=st.lists(
        st.fixed_dictionaries(
            {"name": st.sampled_from(["a", "b", "Bad", "c-1"])},
            optional={
                "source": st.dictionaries(
                    st.sampled_from(["git", "pip", "path"]), docs, max_size=3
                ),
                "python": scalars,
                "workers": scalars,
                "params": docs,
                "pipPackage": scalars,
                "gomodule": scalars,
            },
        ),
        max_size=4,
    )
)
def test_schema_shaped_documents(tmp_path: Path, policies: list[dict[str, Any]]) -> None:
    _load_text(tmp_path, yaml.safe_dump({"version": "v1", "policies": policies}))


def test_alias_bomb_is_bounded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    try:
        parse_yaml("\n".join(lines) + "\n", "bomb.yaml")
    except GatewayBuilderError as exc:
        assert "too large" in exc.message
    else:
        raise AssertionError("expected the alias bomb to be rejected")
