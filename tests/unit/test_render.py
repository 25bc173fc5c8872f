"""render: the build context from hand-made BuildPlans over the real sample policy folders.

The wheels are small but real wheel files built here; the downloader serves them from a local
directory and checks hashes like the fetch stage's does.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
import zipfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import jinja2
import pytest

from gateway_builder import defaults
from gateway_builder.errors import BuildError, InputError
from gateway_builder.models import BaseImages, LockedRequirement, PolicyArtifact, PythonBase
from gateway_builder.plan import BuildPlan, GoPolicyEntry, PythonPolicyPlan, allocate_uids
from gateway_builder.render import (
    labels_for,
    render,
    rfc3339,
    stage_name,
    wheel_name_version,
)
from gateway_builder.render.registry import registry_json
from gateway_builder.render.templating import render_template
from gateway_executor.registry import parse_registry

SAMPLES = defaults.REPO_DIR / "policy_sources"
EPOCH = 1_700_000_000
#: prompt-guard's commit time (a git source): its stage's file times.
GIT_TIME = 1_699_000_000
FIXED = defaults.DEFAULT_SOURCE_DATE_EPOCH


def make_wheel(directory: Path, dist: str, version: str, tag: str = "py3-none-any") -> Path:
    """A minimal, valid wheel file for ``dist==version``."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = dist.replace("-", "_")
    path = directory / f"{stem}-{version}-{tag}.whl"
    info = f"{stem}-{version}.dist-info"
    files = {
        f"{stem}/__init__.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in {**files, f"{info}/RECORD": record}.items():
            zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), text)
    return path


def sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


class LocalIndex:
    """A find-links directory of wheels, serving LockedRequirements like fetch.download_artifacts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[tuple[str, str, tuple[str, ...]]] = []

    def add(self, dist: str, version: str) -> LockedRequirement:
        wheel = make_wheel(self.root, dist, version)
        return LockedRequirement(dist.lower(), version, (sha(wheel),))

    def download(
        self, reqs: Sequence[LockedRequirement], python: str, platform: str, dest: Path
    ) -> list[Path]:
        self.calls.append((python, platform, tuple(r.name for r in reqs)))
        out = []
        for req in reqs:
            for wheel in sorted(self.root.glob("*.whl")):
                if sha(wheel) in req.hashes:
                    target = dest / wheel.name
                    shutil.copyfile(wheel, target)
                    out.append(target)
                    break
            else:
                raise BuildError(f"{req.name}=={req.version}: not in the local index")
        return out


@pytest.fixture
def index(tmp_path: Path) -> LocalIndex:
    return LocalIndex(tmp_path / "index")


def bases(*, standin: bool = False, tini: str = defaults.TINI_PATH) -> BaseImages:
    return BaseImages(
        engine_builder="registry.example/gateway-builder:1.2.0",
        pythons=(
            PythonBase("3.11", "py:3.11", "/usr/bin/python3.11"),
            PythonBase(
                "3.12",
                "py:3.12",
                "/usr/local/bin/python3.12",
                ("/usr/local/bin/python3.12", "/usr/local/lib/python3.12"),
            ),
        ),
        runtime="registry.example/gateway-runtime:1.2.0",
        standin=standin,
        tini=tini,
    )


def make_plan(index: LocalIndex, tmp: Path, **changes: object) -> BuildPlan:
    """Two policies: prompt-guard as a simple directory (3.11), token-scorer packaged (3.12)."""
    sdk = index.add("apip-sdk-core", "0.2.3")
    uids = allocate_uids(["prompt-guard", "token-scorer"])
    guard = PythonPolicyPlan(
        name="prompt-guard",
        version="v1.0.0",
        python_version="3.11",
        module="prompt_guard.policy",
        package_dir_name="prompt_guard",
        source_dir=SAMPLES / "prompt-guard",
        artifact=None,
        definition_dir=SAMPLES / "prompt-guard",
        requirements=(sdk, index.add("markupsafe", "3.0.2")),
        failure_mode="fail",
        timeout_ms=5000,
        isolation="worker",
        workers=2,
        params_json=json.dumps({"action": "mask"}),
        source_label="git+https://user:s3cret@git.example/org/policies.git@abc123#subdirectory=prompt-guard",
        resolved="abc123",
        source_time=GIT_TIME,
        uid=uids["prompt-guard"],
        gid=uids["prompt-guard"],
        samples_dir=SAMPLES / "prompt-guard" / "samples",
    )
    own = make_wheel(tmp / "built", "gwb-token-scorer", "1.0.0")
    scorer = PythonPolicyPlan(
        name="token-scorer",
        version="v1.0.0",
        python_version="3.12",
        module="token_scorer.policy",
        package_dir_name="token_scorer",
        source_dir=None,
        artifact=PolicyArtifact(own.name, sha(own).removeprefix("sha256:"), own),
        definition_dir=SAMPLES / "token-scorer",
        requirements=(sdk, index.add("numpy", "2.1.3")),
        failure_mode="skip",
        timeout_ms=30000,
        isolation="per-call",
        workers=1,
        params_json="{}",
        source_label="path:../policy_sources/token-scorer",
        resolved="sha256:" + "1" * 64,
        uid=uids["token-scorer"],
        gid=uids["token-scorer"],
        samples_dir=SAMPLES / "token-scorer" / "samples",
    )
    plan = BuildPlan(
        builder_version="9.9.9",
        gateway_version="1.2.0",
        platform="x86_64",
        go_policies=(
            GoPolicyEntry("cors", gomodule="github.com/wso2/gateway-controllers/policies/cors@v0"),
        ),
        python_policies=(guard, scorer),
        executor_python="3.11",
        executor_requirements=(index.add("grpcio", "1.70.0"), index.add("protobuf", "5.29.0")),
        installer_requirements=(index.add("pip", "26.3"),),
        bases=bases(),
        policy_engine_binary=None,
        lock_digest="sha256:" + "a" * 64,
        source_date_epoch=EPOCH,
        labels=(("com.example.team", "gateway $TEAM"),),
    )
    return replace(plan, **changes)  # type: ignore[arg-type]


def listing(root: Path) -> list[tuple[str, int, int, bytes]]:
    """(path, mode, mtime, content) of everything below ``root``."""
    out = []
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        content = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        out.append((path.relative_to(root).as_posix(), st.st_mode, int(st.st_mtime), content))
    return out


# --------------------------------------------------------------------------------------------


def test_context_layout_locks_and_wheelhouses(index: LocalIndex, tmp_path: Path) -> None:
    plan = make_plan(index, tmp_path)
    result = render(plan, tmp_path / "ctx", download=index.download)
    ctx = result.out_dir
    assert result.policies == ("prompt-guard", "token-scorer")

    guard_lock = (ctx / "locks" / "prompt-guard.txt").read_text()
    pins = [line for line in guard_lock.splitlines() if not line.startswith("#")]
    assert pins == [
        r.requirement_line()
        for r in sorted(plan.python_policies[0].requirements, key=lambda r: r.name)
    ]
    assert all("--hash=sha256:" in line for line in pins)
    scorer_lock = (ctx / "locks" / "token-scorer.txt").read_text()
    own = plan.python_policies[1].artifact
    assert own is not None
    assert f"gwb-token-scorer==1.0.0 --hash=sha256:{own.sha256}" in scorer_lock

    def wheels(venv: str) -> list[str]:
        return sorted(p.name for p in (ctx / "wheelhouse" / venv).iterdir())

    assert wheels("prompt-guard") == [
        "apip_sdk_core-0.2.3-py3-none-any.whl",
        "markupsafe-3.0.2-py3-none-any.whl",
    ]
    assert wheels("token-scorer") == [
        "apip_sdk_core-0.2.3-py3-none-any.whl",
        "gwb_token_scorer-1.0.0-py3-none-any.whl",
        "numpy-2.1.3-py3-none-any.whl",
    ]
    assert wheels("_executor") == [
        "grpcio-1.70.0-py3-none-any.whl",
        "protobuf-5.29.0-py3-none-any.whl",
    ]
    assert [p.name for p in (ctx / "build" / "installer").iterdir()] == [
        "pip-26.3-py3-none-any.whl"
    ]
    # Each venv's artifacts are downloaded for its own Python version.
    assert ("3.12", "x86_64", ("apip-sdk-core", "numpy")) in index.calls

    # Simple-directory source copied under policies/<name>/<pkg>/, leftovers skipped.
    copied = ctx / "policies" / "prompt-guard" / "prompt_guard"
    assert (copied / "policy.py").read_bytes() == (
        SAMPLES / "prompt-guard" / "policy.py"
    ).read_bytes()
    assert not list(copied.rglob("__pycache__"))
    assert not (ctx / "policies" / "token-scorer").exists()
    # Samples for the smoke test, executor without tests or caches.
    assert sorted(
        p.name
        for p in (
            ctx / "rootfs" / defaults.SAMPLES_DIR.lstrip("/") / "prompt-guard" / "samples"
        ).iterdir()
    ) == sorted(p.name for p in (SAMPLES / "prompt-guard" / "samples").glob("*.json"))
    executor = ctx / "executor" / "gateway_executor"
    assert (executor / "__main__.py").is_file() and (executor / "worker_shim.py").is_file()
    assert not list(executor.rglob("__pycache__")) and not list(executor.rglob("*.pyc"))
    assert not (executor / "tests").exists()
    entrypoint = ctx / "rootfs" / "app" / "entrypoint.sh"
    assert entrypoint.stat().st_mode & 0o777 == 0o755
    assert "readonly HAS_PYTHON_POLICIES=1" in entrypoint.read_text()


def test_registry_matches_the_contract_and_the_executor_reads_it(
    index: LocalIndex, tmp_path: Path
) -> None:
    plan = make_plan(index, tmp_path)
    ctx = render(plan, tmp_path / "ctx", download=index.download).out_dir
    text = (ctx / "rootfs" / defaults.REGISTRY_PATH.lstrip("/")).read_text()
    assert text == registry_json(plan)
    assert text.endswith("}\n") and '\n  "format"' in text
    doc = json.loads(text)
    assert doc["format"] == "gateway-builder/policy-registry" and doc["format_version"] == 1
    assert json.dumps(doc, indent=2, sort_keys=True) + "\n" == text
    guard, scorer = doc["policies"]
    assert guard == {
        "name": "prompt-guard",
        "version": "v1.0.0",
        "module": "prompt_guard.policy",
        "sys_path": ["/app/policies/prompt-guard"],
        "python": "/opt/venvs/prompt-guard/bin/python",
        "python_version": "3.11",
        "failure_mode": "fail",
        "timeout_ms": 5000,
        "init_timeout_ms": 5000,
        "isolation": "worker",
        "workers": 2,
        "memory_mb": 1024,
        "params": {"action": "mask"},
        "source": "git+https://user:****@git.example/org/policies.git@abc123#subdirectory=prompt-guard",
        # Its own uid and gid (from a hash of the name: the same in every build), a private home
        # of that uid, and no environment variable of the container.
        "uid": 26818,
        "gid": 26818,
        "env": [],
        "home": "/var/lib/gateway-policies/prompt-guard",
    }
    assert scorer["sys_path"] == [] and scorer["python"] == "/opt/venvs/token-scorer/bin/python"
    entries = parse_registry(doc)
    assert [e.key for e in entries] == ["prompt-guard:v1.0.0", "token-scorer:v1.0.0"]


def test_no_secret_anywhere_in_the_context(index: LocalIndex, tmp_path: Path) -> None:
    ctx = render(make_plan(index, tmp_path), tmp_path / "ctx", download=index.download).out_dir
    for path in ctx.rglob("*"):
        if path.is_file():
            assert b"s3cret" not in path.read_bytes(), path


def test_derived_engine_build_file(index: LocalIndex, tmp_path: Path) -> None:
    go_dir = tmp_path / "my-go-policy"
    go_dir.mkdir()
    (go_dir / "go.mod").write_text("module example.com/mine\n")
    (go_dir / "policy.go").write_text("package mine\n")
    plan = make_plan(index, tmp_path)
    plan = replace(plan, go_policies=(*plan.go_policies, GoPolicyEntry("mine", file_path=go_dir)))
    ctx = render(plan, tmp_path / "ctx", download=index.download).out_dir
    assert (ctx / "engine" / "build.yaml").read_text().splitlines()[1:] == [
        "version: v1",
        "gateway:",
        '  version: "1.2.0"',
        "policies:",
        '  - name: "cors"',
        '    gomodule: "github.com/wso2/gateway-controllers/policies/cors@v0"',
        '  - name: "mine"',
        '    filePath: "./go/mine"',
        '  - name: "prompt-guard"',
        '    filePath: "./python/prompt-guard"',
        '  - name: "token-scorer"',
        '    filePath: "./python/token-scorer"',
    ]
    assert (ctx / "engine" / "go" / "mine" / "go.mod").is_file()
    py = ctx / "engine" / "python" / "prompt-guard"
    assert sorted(p.name for p in py.iterdir()) == ["policy-definition.yaml", "policy.py"]
    assert (py / "policy-definition.yaml").read_bytes() == (
        SAMPLES / "prompt-guard" / "policy-definition.yaml"
    ).read_bytes()


def test_dockerfile_stages_order_and_metadata(index: LocalIndex, tmp_path: Path) -> None:
    plan = make_plan(index, tmp_path, bases=bases(standin=True, tini="/sbin/tini"))
    ctx = render(plan, tmp_path / "ctx", download=index.download).out_dir
    text = (ctx / "Dockerfile").read_text()
    lines = text.splitlines()
    assert not any(line.startswith("# syntax") for line in lines)
    assert "--mount" not in text
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms == [
        "FROM registry.example/gateway-builder:1.2.0 AS engine",
        "FROM py:3.12 AS cpython-3.12",
        "FROM py:3.11 AS executor",
        "FROM py:3.11 AS policy-prompt-guard",
        "FROM py:3.12 AS policy-token-scorer",
        "FROM py:3.11 AS users",
        "FROM registry.example/gateway-runtime:1.2.0",
    ]
    runtime = lines[lines.index(froms[-1]) :]
    copies = [line for line in runtime if line.startswith("COPY")]
    assert copies == [
        "COPY --from=cpython-3.12 /export/ /",
        "COPY --from=users /export/ /",
        "COPY --from=engine /export/ /",
        "COPY --from=executor /export/ /",
        "COPY --from=policy-prompt-guard /export/ /",
        "COPY --from=policy-token-scorer /export/ /",
        "COPY rootfs/ /",
    ]
    assert not any(line.startswith("RUN") for line in runtime)
    assert 'ENTRYPOINT ["/sbin/tini", "--", "/app/entrypoint.sh"]' in lines
    assert f"USER {defaults.RUNTIME_UID}:{defaults.RUNTIME_UID}" in lines
    assert "EXPOSE " + " ".join(str(p) for p in defaults.EXPOSED_PORTS) in lines
    assert "CMD []" in lines
    # Install steps: hash-checked, offline, per-venv wheelhouse; simple-dir code compiled.
    assert text.count('"install", "--venv"') == 3
    assert '"--python-version", "3.12", "--lock", "/gateway-builder/locks/token-scorer.txt"' in text
    assert "COPY policies/prompt-guard/ /app/policies/prompt-guard/" in lines
    assert "COPY executor/ /app/python-executor/" in lines
    # Each stage's times from its own inputs: the git policy its commit time, the rest 1980.
    assert f'"export", "--epoch", "{FIXED}", "--strip-python", "/usr/local/bin/python3.12"' in text
    assert f"touch -h -d @{FIXED} /export/app/policy-engine" in text
    install_epochs = re.findall(r'"--venv", "([^"]+)".*?"--epoch", "(\d+)"', text)
    assert dict(install_epochs) == {
        "/opt/venvs/_executor": str(FIXED),
        "/opt/venvs/prompt-guard": str(GIT_TIME),
        "/opt/venvs/token-scorer": str(FIXED),
    }
    assert f'"compile", "--epoch", "{GIT_TIME}", "/app/policies/prompt-guard"' in text
    assert not [line for line in lines if line.startswith("RUN") and str(EPOCH) in line]
    labels = dict(labels_for(plan))
    assert labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    assert labels[defaults.STANDIN_LABEL] == "true"
    assert labels["com.example.team"] == "gateway $TEAM"
    assert '"com.example.team"="gateway \\$TEAM"' in text
    policies = json.loads(labels["io.gateway-builder.python-policies"])
    assert [(p["name"], p["version"]) for p in policies] == [
        ("prompt-guard", "v1.0.0"),
        ("token-scorer", "v1.0.0"),
    ]
    assert "****" in policies[0]["source"]
    assert labels["io.gateway-builder.lock-digest"] == plan.lock_digest
    assert labels["io.gateway-builder.builder-version"] == "9.9.9"


def test_prebuilt_engine_skips_the_engine_stage(index: LocalIndex, tmp_path: Path) -> None:
    binary = tmp_path / "policy-engine"
    binary.write_bytes(b"\x7fELF-not-really")
    plan = make_plan(index, tmp_path, policy_engine_binary=binary)
    plan = replace(plan, bases=replace(plan.bases, engine_builder=None))
    ctx = render(plan, tmp_path / "ctx", download=index.download).out_dir
    text = (ctx / "Dockerfile").read_text()
    assert " AS engine" not in text and "COPY engine/prebuilt/ /" in text
    copied = ctx / "engine" / "prebuilt" / "app" / "policy-engine"
    assert copied.read_bytes() == binary.read_bytes() and copied.stat().st_mode & 0o111
    assert not (ctx / "engine" / "build.yaml").exists()


def test_no_python_policies_means_no_executor(index: LocalIndex, tmp_path: Path) -> None:
    plan = make_plan(index, tmp_path, python_policies=())
    ctx = render(plan, tmp_path / "ctx", download=index.download).out_dir
    text = (ctx / "Dockerfile").read_text()
    assert " AS executor" not in text and "cpython" not in text
    assert not (ctx / "rootfs" / defaults.REGISTRY_PATH.lstrip("/")).exists()
    assert "readonly HAS_PYTHON_POLICIES=0" in (ctx / "rootfs/app/entrypoint.sh").read_text()


def test_rendering_twice_is_byte_identical(index: LocalIndex, tmp_path: Path) -> None:
    plan = make_plan(index, tmp_path)
    first = render(plan, tmp_path / "one", download=index.download)
    second = render(plan, tmp_path / "two", download=index.download)
    assert listing(first.out_dir) == listing(second.out_dir)
    assert first.digest == second.digest and first.files == second.files
    # rootfs/ (the last layer) has the image's time; what builder stages read, the fixed one.
    times = {path.split("/")[0]: mtime for path, _, mtime, _ in listing(first.out_dir)}
    assert times.pop("rootfs") == EPOCH
    assert set(times.values()) == {FIXED}
    assert all(
        mtime == EPOCH for path, _, mtime, _ in listing(first.out_dir) if path.startswith("rootfs")
    )
    # Re-rendering into the same directory replaces it, with the same result.
    again = render(plan, tmp_path / "one", download=index.download)
    assert again.digest == first.digest and listing(again.out_dir) == listing(second.out_dir)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_change_in_one_policy_touches_only_its_files(index: LocalIndex, tmp_path: Path) -> None:
    plan = make_plan(index, tmp_path)
    before = {
        p: c
        for p, _, _, c in listing(render(plan, tmp_path / "a", download=index.download).out_dir)
    }
    guard = plan.python_policies[0]
    bumped = replace(guard, requirements=(guard.requirements[0], index.add("markupsafe", "3.0.3")))
    plan2 = replace(plan, python_policies=(bumped, plan.python_policies[1]))
    after = {
        p: c
        for p, _, _, c in listing(render(plan2, tmp_path / "b", download=index.download).out_dir)
    }
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert changed == [
        "build-manifest.json",
        "locks/prompt-guard.txt",
        "rootfs/app/build-manifest.json",
        "wheelhouse/prompt-guard/markupsafe-3.0.2-py3-none-any.whl",
        "wheelhouse/prompt-guard/markupsafe-3.0.3-py3-none-any.whl",
    ]


def test_hash_mismatch_fails_and_leaves_nothing(index: LocalIndex, tmp_path: Path) -> None:
    plan = make_plan(index, tmp_path)
    guard = plan.python_policies[0]
    wrong = replace(guard.requirements[1], hashes=("sha256:" + "0" * 64,))
    bad = replace(
        plan, python_policies=(replace(guard, requirements=(guard.requirements[0], wrong)),)
    )

    def download(reqs: Sequence[LockedRequirement], py: str, plat: str, dest: Path) -> list[Path]:
        # A broken mirror: serves the right name and version, but other bytes.
        out = []
        for req in reqs:
            path = make_wheel(dest, req.name, req.version)
            out.append(path)
        return out

    with pytest.raises(BuildError, match="not a hash the lock allows"):
        render(bad, tmp_path / "ctx", download=download)
    assert not (tmp_path / "ctx").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ctx")] == []


def test_out_must_be_a_context_or_empty(index: LocalIndex, tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    with pytest.raises(InputError, match="not a rendered context"):
        render(make_plan(index, tmp_path), out, download=index.download)
    assert (out / "notes.txt").read_text() == "mine\n"


def test_templates_are_strict() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render_template("Dockerfile.j2", builder_version="1")


def test_small_helpers() -> None:
    assert stage_name("policy", "My.Policy_1") == "policy-my.policy_1"
    assert stage_name("policy", "a b/c") == "policy-a-b-c"
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert wheel_name_version("MarkupSafe-2.1.5-cp311-cp311-manylinux_2_17_x86_64.whl") == (
        "markupsafe",
        "2.1.5",
    )
    with pytest.raises(BuildError):
        wheel_name_version("markupsafe-2.1.5.tar.gz")
