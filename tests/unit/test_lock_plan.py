"""make_plan: lock + fetched policies -> BuildPlan (requirements per platform, provenance,
SOURCE_DATE_EPOCH rules, consistency checks)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway_builder import defaults
from gateway_builder.cache import Cache
from gateway_builder.errors import InputError, StaleLockError
from gateway_builder.fetch import FetchedPolicy, fetch_policy
from gateway_builder.lock.file import Lock, LockedEnv, LockedPackage, LockedPolicy
from gateway_builder.manifest import GoPolicySpec, Manifests, PathSource, PythonPolicySpec
from gateway_builder.models import BaseImages, PythonBase
from gateway_builder.plan import make_plan

BASES = BaseImages(
    engine_builder=None,
    pythons=(PythonBase("3.11", "py:3.11", "/usr/local/bin/python3.11"),),
    runtime="runtime:1",
)


def pkg(name: str, version: str, digest: str) -> LockedPackage:
    return LockedPackage(
        name, version, (f"{name}-{version}-py3-none-any.whl",), (f"sha256:{digest * 64}",)
    )


@pytest.fixture
def fetched(tmp_path: Path) -> FetchedPolicy:
    folder = tmp_path / "policies" / "demo"
    (folder / "samples").mkdir(parents=True)
    (folder / "samples" / "a.json").write_text("{}")
    (folder / "policy-definition.yaml").write_text("name: demo\nversion: v1.4.0\n")
    (folder / "policy.py").write_text("def get_policy(m, p):\n    return None\n")
    spec = PythonPolicySpec(
        name="demo",
        source=PathSource(folder),
        python=None,
        failure_mode="skip",
        timeout_ms=1234,
        isolation="per-call",
        workers=3,
        params={"b": [1, 2], "a": "x"},
        origin="m/python-build.yaml:1:1",
    )
    return fetch_policy(spec, Cache.open(tmp_path / "cache"), base=tmp_path / "manifests")


def make_lock(f: FetchedPolicy, *, commit_time: int | None = None, **entry: object) -> Lock:
    env = LockedEnv(
        "3.11",
        "sha256:" + "0" * 64,
        ("zed", "apip-sdk-core"),
        {"x86_64": (pkg("zed", "1.0", "b"), pkg("apip-sdk-core", "0.2.3", "a"))},
    )
    values: dict[str, object] = {
        "name": f.name,
        "version": f.definition.version,
        "kind": f.kind,
        "module": f.module,
        "source_type": f.source_type,
        "source": f.display,
        "resolved": f.resolved,
        "spec_digest": f.spec_digest,
        "env": env,
        "commit_time": commit_time,
    }
    values.update(entry)
    small = LockedEnv("3.11", "sha256:" + "1" * 64, ("x",), {"x86_64": (pkg("pip", "25.0", "c"),)})
    return Lock(
        builder_version="0.1.0",
        resolver="uv",
        resolver_version="0.13.9",
        manifest_digest="sha256:" + "2" * 64,
        platforms=("x86_64",),
        sdk_requirement=defaults.SDK_REQUIREMENT,
        installer=small,
        executor=dataclasses.replace(small, packages={"x86_64": (pkg("grpcio", "1.85.1", "d"),)}),
        policies=(LockedPolicy(**values),),  # type: ignore[arg-type]
    )


def manifests() -> Manifests:
    return Manifests(
        build_file=None,
        python_build_file=None,
        build=None,
        python=None,
        python_specs=[],
        go_specs=[GoPolicySpec("cors", "github.com/x/cors@v0", None)],
    )


def test_make_plan(fetched: FetchedPolicy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    lock = make_lock(fetched)
    plan = make_plan(
        manifests(),
        lock,
        [fetched],
        bases=BASES,
        labels=[("z", "1"), ("a", "2")],
        policy_engine_binary=Path("/e"),
    )
    (p,) = plan.python_policies
    assert (p.name, p.version, p.python_version, p.module) == (
        "demo",
        "v1.4.0",
        "3.11",
        "demo.policy",
    )
    assert [r.name for r in p.requirements] == ["apip-sdk-core", "zed"]
    assert p.requirements[0].hashes == ("sha256:" + "a" * 64,)
    assert (p.failure_mode, p.timeout_ms, p.isolation, p.workers) == ("skip", 1234, "per-call", 3)
    assert p.params_json == '{"a":"x","b":[1,2]}'
    assert p.source_label == "path:../policies/demo" and p.resolved == fetched.resolved
    assert p.source_dir == fetched.source_dir and p.artifact is None
    assert p.samples_dir is not None and (p.samples_dir / "a.json").is_file()
    assert [g.name for g in plan.go_policies] == ["cors"]
    assert plan.executor_python == "3.11" and plan.executor_requirements[0].name == "grpcio"
    assert plan.installer_requirements[0].requirement_line().startswith("pip==25.0 --hash=sha256:")
    assert plan.labels == (("a", "2"), ("z", "1"))
    assert plan.lock_digest == lock.digest
    assert plan.source_date_epoch == defaults.DEFAULT_SOURCE_DATE_EPOCH
    assert plan.gateway_version == defaults.DEFAULT_GATEWAY_VERSION
    assert plan.policy_engine_binary == Path("/e")


def test_source_date_epoch_rules(fetched: FetchedPolicy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    lock = make_lock(fetched, commit_time=1_700_000_123)
    assert make_plan(manifests(), lock, [fetched], bases=BASES).source_date_epoch == 1_700_000_123
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "42")
    assert make_plan(manifests(), lock, [fetched], bases=BASES).source_date_epoch == 42
    assert (
        make_plan(manifests(), lock, [fetched], bases=BASES, source_date_epoch=7).source_date_epoch
        == 7
    )
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(InputError, match="SOURCE_DATE_EPOCH"):
        make_plan(manifests(), lock, [fetched], bases=BASES)


def test_inconsistent_lock_is_stale(fetched: FetchedPolicy) -> None:
    lock = make_lock(fetched, resolved="sha256:" + "9" * 64)
    with pytest.raises(StaleLockError, match="policy 'demo'"):
        make_plan(manifests(), lock, [fetched], bases=BASES)
    other_python = make_lock(fetched, env=LockedEnv("3.12", "x", (), {"x86_64": ()}))
    with pytest.raises(StaleLockError):
        make_plan(manifests(), other_python, [fetched], bases=BASES)


def test_platform_missing_from_lock(fetched: FetchedPolicy) -> None:
    with pytest.raises(InputError, match="lock --platform aarch64"):
        make_plan(manifests(), make_lock(fetched), [fetched], bases=BASES, platform="aarch64")
