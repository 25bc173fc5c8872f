"""``gateway-builder build`` end to end: the default manifests into an image, checked inside.

The manifests and policy folders are copied to a temp directory (so a test may change a policy
without touching the repository) and locked there. Images use the local bases; the Docker layer
cache keeps rebuilds cheap.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
from gwb_build_helpers import (
    DEFAULT_TAG,
    LABEL_ARGS,
    SECRET,
    Workspace,
    build_default,
    copy_workspace,
)

from gateway_builder import cli, defaults
from gateway_builder.commands import build as build_command
from gateway_builder.commands import render as render_command
from gateway_builder.errors import StaleLockError
from gateway_builder.models import BaseImages
from gateway_builder.ui import UI

pytestmark = [pytest.mark.e2e, pytest.mark.network]

TAG = DEFAULT_TAG


@dataclass(frozen=True)
class Built:
    ws: Workspace
    context: Path
    data: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def image_id(self) -> str:
        return str(self.data["image"])


@pytest.fixture(scope="module")
def built(local_bases: BaseImages, tmp_path_factory: pytest.TempPathFactory) -> Built:
    ws, context, data = build_default(tmp_path_factory.mktemp("ws"))
    manifest = json.loads((context / "build-manifest.json").read_text())
    return Built(ws, context, data, manifest)


def run_in_image(client: docker.DockerClient, image_id: str, python: str, script: str) -> str:
    """Run ``python -c script`` in the image (entrypoint bypassed); return its output."""
    out = client.containers.run(
        image_id, ["-I", "-c", script], entrypoint=python, remove=True, network_disabled=True
    )
    return out.decode() if isinstance(out, bytes) else str(out)


CHECK_VENVS = r"""
import json, subprocess
registry = json.load(open("/app/python-executor/policy-registry.json"))
probe = '''
import importlib, importlib.metadata as md, json, sys, sysconfig
sys.path[:0] = json.loads(sys.argv[1])
dists = {d.metadata["Name"]: d.version for d in md.distributions(path=[sysconfig.get_paths()["purelib"]])}
module = importlib.import_module(sys.argv[2])
print(json.dumps({"python": "%d.%d" % sys.version_info[:2], "dists": dists,
                  "get_policy": callable(getattr(module, "get_policy", None)),
                  "prefix": sys.prefix, "base": sys.base_prefix}))
'''
out = {}
for p in registry["policies"]:
    done = subprocess.run([p["python"], "-I", "-c", probe, json.dumps(p["sys_path"]), p["module"]],
                          capture_output=True, text=True)
    out[p["name"]] = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr}
done = subprocess.run(["/opt/venvs/_executor/bin/python", "-I", "-c", probe, '["/app/python-executor"]',
                       "gateway_executor.registry"], capture_output=True, text=True)
out["_executor"] = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr}
import os
out["_uid"] = os.getuid()
print(json.dumps(out))
"""


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_default_manifests_build_into_an_image(
    built: Built, docker_client: docker.DockerClient
) -> None:
    img = docker_client.images.get(TAG)
    assert img.id == built.image_id
    config = img.attrs["Config"]
    assert config["User"] == f"{defaults.RUNTIME_UID}:{defaults.RUNTIME_UID}"
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "/app/entrypoint.sh"]
    assert not config["Cmd"]
    assert sorted(config["ExposedPorts"]) == sorted(f"{p}/tcp" for p in defaults.EXPOSED_PORTS)
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == "1.2.0"
    assert labels["org.opencontainers.image.created"].endswith("Z")
    assert labels[defaults.STANDIN_LABEL] == "true"
    assert labels["io.gateway-builder.lock-digest"] == built.manifest["lock_digest"]
    names = [p["name"] for p in json.loads(labels["io.gateway-builder.python-policies"])]
    assert names == ["prompt-enrichment", "prompt-guard", "token-scorer"]
    assert labels["org.example.origin"] == "https://ci:****@git.example/x"
    assert SECRET not in json.dumps(img.attrs)


def test_each_venv_equals_its_lock_runs_its_python_and_imports(
    built: Built, docker_client: docker.DockerClient
) -> None:
    result = json.loads(
        run_in_image(docker_client, built.image_id, "/opt/venvs/_executor/bin/python", CHECK_VENVS)
    )
    assert result["_uid"] == defaults.RUNTIME_UID
    want = {p["name"]: p for p in built.manifest["python_policies"]}
    for name, policy in want.items():
        got = result[name]
        assert "error" not in got, got
        assert got["python"] == policy["python_version"]
        assert got["get_policy"] is True
        assert got["prefix"] == f"/opt/venvs/{name}"
        assert {canonical(k): v for k, v in got["dists"].items()} == policy["distributions"]
    assert result["token-scorer"]["python"] == "3.12"
    assert (
        result["prompt-guard"]["dists"]["MarkupSafe"]
        != result["prompt-enrichment"]["dists"]["MarkupSafe"]
    )
    executor = result["_executor"]
    assert "error" not in executor, executor
    assert {canonical(k): v for k, v in executor["dists"].items()} == built.manifest["executor"][
        "distributions"
    ]


def host_local_cas() -> list[bytes]:
    """Base64 bodies of the CAs this machine added (e.g. a TLS-intercepting proxy's)."""
    bodies = []
    for crt in sorted(Path("/usr/local/share/ca-certificates").glob("*.crt")):
        text = crt.read_text(errors="replace")
        for block in text.split("-----BEGIN CERTIFICATE-----")[1:]:
            body = "".join(block.split("-----END CERTIFICATE-----")[0].split())
            bodies.append(body[:120].encode())
    return bodies


@dataclass
class Layers:
    names: dict[str, list[str]]  # diff id -> member names
    recorded: set[str]  # every path listed in a RECORD of an installed distribution
    problems: list[str]


def inspect_layers(client: docker.DockerClient, image_id: str, base: str) -> Layers:
    """Every layer of ``image_id`` that its base image does not have, read from ``docker save``."""
    base_layers = set(client.images.get(base).attrs["RootFS"]["Layers"])
    diff_ids = client.images.get(image_id).attrs["RootFS"]["Layers"]
    raw = io.BytesIO(b"".join(client.images.get(image_id).save(named=False)))
    cas = host_local_cas()
    out = Layers({}, set(), [])
    with tarfile.open(fileobj=raw) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        for diff_id, layer in zip(diff_ids, manifest[0]["Layers"], strict=True):
            if diff_id in base_layers:
                continue
            data = outer.extractfile(layer)
            assert data is not None
            with tarfile.open(fileobj=io.BytesIO(data.read())) as inner:
                out.names[diff_id] = inner.getnames()
                for member in inner.getmembers():
                    if not member.isfile() or member.size > 50_000_000:
                        continue
                    fh = inner.extractfile(member)
                    assert fh is not None
                    content = fh.read()
                    if SECRET.encode() in content:
                        out.problems.append(f"{member.name}: contains the test credential")
                    flat = b"".join(content.split())
                    if any(ca in flat for ca in cas):
                        out.problems.append(f"{member.name}: contains a CA of this machine")
                    if member.name.endswith(".dist-info/RECORD"):
                        site = member.name.rsplit("/", 2)[0]
                        for line in content.decode().splitlines():
                            out.recorded.add(posixpath.normpath(f"{site}/{line.split(',')[0]}"))
    return out


def _is_dir_of_recorded(name: str, recorded: set[str]) -> bool:
    prefix = name.rstrip("/") + "/"
    return any(r.startswith(prefix) for r in recorded)


FORBIDDEN = (
    (".whl", "a wheel"),
    ("wheelhouse", "the wheelhouse"),
    ("gateway-builder/", "the build-stage files"),
    ("site-packages/pip/", "pip"),
    ("/.cache/", "a cache"),
    ("pip.conf", "a pip configuration"),
    (".netrc", "credentials"),
    ("ca-certificates", "a CA bundle"),
    ("/bin/gcc", "a compiler"),
    ("/cc1", "a compiler"),
    ("/bin/cc", "a compiler"),
)
#: Allowed only when a locked wheel ships them (listed in a RECORD), e.g. numpy's headers or
#: grpcio's gRPC root store: the builder itself must add none.
ONLY_FROM_WHEELS = (
    (".pem", "a certificate"),
    (".crt", "a certificate"),
    ("-config", "build configuration"),
    ("/include/", "C headers"),
)


def test_no_wheelhouse_pip_cache_compiler_ca_or_credential_in_any_layer(
    built: Built, docker_client: docker.DockerClient, local_bases: BaseImages
) -> None:
    layers = inspect_layers(docker_client, built.image_id, local_bases.runtime)
    assert len(layers.names) >= 5  # cpython, engine, executor, 3 policies, rootfs
    problems = list(layers.problems)
    for names in layers.names.values():
        for name in names:
            problems += [f"{name}: {what}" for needle, what in FORBIDDEN if needle in f"/{name}"]
            if name not in layers.recorded and not _is_dir_of_recorded(name, layers.recorded):
                problems += [
                    f"{name}: {what} no locked distribution ships"
                    for needle, what in ONLY_FROM_WHEELS
                    if needle in f"/{name}"
                ]
    assert problems == [], "\n".join(problems)


def test_second_build_reuses_every_layer(built: Built) -> None:
    again = built.ws.build("--out", str(built.context), "--tag", TAG, *LABEL_ARGS)
    assert again["image"] == built.image_id
    froms = sum(
        1
        for line in (built.context / "Dockerfile").read_text().splitlines()
        if line.startswith("FROM ")
    )
    assert again["cached_steps"] == again["steps"] - froms


def test_rendering_twice_gives_byte_identical_contexts(built: Built, tmp_path: Path) -> None:
    def render_to(out: Path) -> str:
        args = cli.build_parser().parse_args(built.ws.argv("render", "--out", str(out)))
        digest: str = render_command.run(args, UI(verbosity=-1))["digest"]
        return digest

    one, two = tmp_path / "one", tmp_path / "two"
    assert render_to(one) == render_to(two)
    files = sorted(p.relative_to(one) for p in one.rglob("*"))
    assert files == sorted(p.relative_to(two) for p in two.rglob("*"))
    for rel in files:
        a, b = one / rel, two / rel
        assert a.lstat().st_mode == b.lstat().st_mode and a.lstat().st_mtime == b.lstat().st_mtime
        if a.is_file():
            assert a.read_bytes() == b.read_bytes(), rel


def test_changing_one_policy_changes_only_its_layers(
    built: Built, docker_client: docker.DockerClient
) -> None:
    before = docker_client.images.get(built.image_id).attrs["RootFS"]["Layers"]
    policy = built.ws.root / "policy_sources" / "prompt-guard" / "policy.py"
    original = policy.read_text()
    policy.write_text(original + "\n# a code change of one policy\n")
    try:
        bumped = built.ws.build("--out", str(built.context), *LABEL_ARGS)
    finally:
        policy.write_text(original)
    after = docker_client.images.get(bumped["image"]).attrs["RootFS"]["Layers"]
    assert len(after) == len(before)
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    lines = (built.context / "Dockerfile").read_text().splitlines()
    runtime = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    copies = [line for line in runtime if line.startswith("COPY ")]
    first = len(before) - len(copies)
    by_layer = {first + i: line for i, line in enumerate(copies)}
    assert [by_layer.get(i) for i in changed] == [
        "COPY --from=policy-prompt-guard /export/ /",
        "COPY rootfs/ /",
    ]


def test_stale_lock_with_locked_fails_with_the_diff(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = copy_workspace(tmp_path / "stale")
    shutil.copy(built.ws.root / "manifests" / defaults.LOCK_FILE_NAME, ws.root / "manifests")
    text = ws.python_build_file.read_text()
    ws.python_build_file.write_text(text.replace('python: "3.12"', 'python: "3.11"'))
    args = cli.build_parser().parse_args(ws.argv("build", "--locked", "--no-smoke"))
    with pytest.raises(StaleLockError) as info:
        build_command.run(args, UI(verbosity=-1))
    assert info.value.details and "token-scorer" in info.value.details
    assert any(line.startswith(("-", "+")) for line in info.value.details.splitlines())
    code = cli.main(ws.argv("build", "--locked", "--no-smoke"))
    assert code == 1
    err = capsys.readouterr().err
    assert "error:" in err and "token-scorer" in err


def test_render_only_then_from_context_gives_the_same_image(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    context = tmp_path / "ctx"
    argv = built.ws.argv("build", "--render-only", "--out", str(context), *LABEL_ARGS)
    assert cli.main(argv) == 0
    assert (context / "Dockerfile").is_file() and (context / "build-manifest.json").is_file()
    capsys.readouterr()
    assert cli.main(["--json", "build", "--from-context", str(context), "--no-smoke"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["image"] == built.image_id
    assert "STAND-INS" in err  # --bases local says so loudly


def test_prebuilt_policy_engine_skips_the_engine_stage(
    built: Built, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    container = docker_client.containers.create(built.image_id)
    try:
        stream, _ = container.get_archive(defaults.ENGINE_BINARY)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile(tar.getmembers()[0])
            assert member is not None
            engine = member.read()
    finally:
        container.remove()
    binary = tmp_path / "policy-engine"
    binary.write_bytes(engine)
    context = tmp_path / "ctx"
    data = built.ws.build("--policy-engine", str(binary), "--out", str(context), *LABEL_ARGS)
    dockerfile = (context / "Dockerfile").read_text()
    assert " AS engine" not in dockerfile and "COPY engine/prebuilt/ /" in dockerfile
    out = docker_client.containers.run(
        data["image"], [defaults.ENGINE_BINARY], entrypoint="sha256sum", remove=True
    )
    assert out.decode().split()[0] == hashlib.sha256(engine).hexdigest()
