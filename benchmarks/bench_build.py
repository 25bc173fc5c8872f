"""Image build benchmark: per-policy venvs (gateway-builder) versus one shared site-packages.

Both images hold the default manifests' Python policies at the same pinned versions (the same
lock) on the same local runtime base, built with the Docker legacy builder:

* **gateway-builder**: the rendered context (one venv per policy, each on its declared Python,
  one builder stage and one runtime layer per policy).
* **shared (upstream way)**: every pin ``pip install --target`` into one ``/app/python-libs``
  with one Python (Debian's 3.11, as in the runtime base), policies in name order, last install
  wins (so prompt-enrichment's MarkupSafe 2.1.5 is replaced by prompt-guard's 3.0.2, and
  token-scorer runs on 3.11 instead of its declared 3.12).

Scenarios: cold build (``--no-cache``; the base images exist), rebuild with nothing changed,
rebuild after a code change in one policy (prompt-guard), image size, size above the runtime
base, and the bytes of layers a registry pull must fetch after that one-policy change.

Needs a Docker engine and the public package index (the shared variant downloads the cp311
wheels of the same pinned versions with pip). Run: ``.venv/bin/python benchmarks/bench_build.py``
(or ``nox -s bench -- bench_build``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker

from gateway_builder import cli, defaults
from gateway_builder.build import BuiltImage, build_image
from gateway_builder.commands.build import options_from_args
from gateway_builder.dockerd import ensure_engine
from gateway_builder.pipeline import run as run_pipeline
from gateway_builder.plan import BuildPlan
from gateway_builder.ui import UI

REPO = defaults.REPO_DIR
CHANGED_POLICY = "prompt-guard"
WHEEL_CACHE = Path(
    os.environ.get("GWB_BENCH_CACHE", Path.home() / ".cache" / "gateway-builder-bench")
)
SHARED_PYTHON = "3.11"


@dataclass
class Row:
    """One variant's numbers."""

    cold_s: float = 0.0
    noop_s: float = 0.0
    noop_cached: str = ""
    change_s: float = 0.0
    change_layers: str = ""
    change_mb: float = 0.0
    size_mb: float = 0.0
    added_mb: float = 0.0


def layer_sizes(client: docker.DockerClient, image_id: str) -> dict[str, int]:
    """{diff id: uncompressed bytes} of an image's layers (from ``docker save``)."""
    raw = io.BytesIO(b"".join(client.images.get(image_id).save(named=False)))
    diff_ids = client.images.get(image_id).attrs["RootFS"]["Layers"]
    with tarfile.open(fileobj=raw) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        sizes = [outer.getmember(layer).size for layer in manifest[0]["Layers"]]
    return dict(zip(diff_ids, sizes, strict=True))


def changed(client: docker.DockerClient, before: str, after: str) -> tuple[int, int, float]:
    """(layers changed, layers total, MB of the changed layers) between two images."""
    old = set(client.images.get(before).attrs["RootFS"]["Layers"])
    sizes = layer_sizes(client, after)
    new = [d for d in sizes if d not in old]
    return len(new), len(sizes), sum(sizes[d] for d in new) / 1e6


def build(
    client: docker.DockerClient, context: Path, tag: str, *, nocache: bool = False
) -> BuiltImage:
    return build_image(context, client=client, tags=[tag], nocache=nocache)


# --------------------------------------------------------------------------------------------
# The shared site-packages variant
# --------------------------------------------------------------------------------------------

SHARED_DOCKERFILE = """\
# One shared site-packages, one Python: how upstream installs Python policies.
{engine_stage}
FROM {python_image} AS python-deps
COPY installer/ /installer/
COPY wheels/ /wheels/
COPY requirements/ /requirements/
RUN set -e; for r in /requirements/*.txt; do \\
      {python} /installer/{pip}/pip install --isolated --no-index --find-links /wheels \\
        --no-deps --upgrade --target /app/python-libs --no-cache-dir \\
        --disable-pip-version-check --root-user-action ignore -r "$r"; \\
    done
FROM {runtime_image}
COPY --from=engine /export/ /
COPY --from=python-deps /app/python-libs/ /app/python-libs/
COPY executor/ /app/python-executor/
COPY rootfs/ /
ENV PYTHONPATH=/app/python-libs:/app/python-executor PYTHONUNBUFFERED=1
USER {uid}:{uid}
ENTRYPOINT ["/usr/bin/tini", "--", "/app/entrypoint.sh"]
"""


def pip_download(pins: list[str], dest: Path) -> None:
    """cp311 manylinux wheels of exactly ``pins`` (name==version), cached across runs."""
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for pin in pins:  # one at a time: conflicting pins of one package are the point
        target = WHEEL_CACHE / pin.replace("==", "-")
        if not target.is_dir() or not any(target.glob("*.whl")):
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
            cmd += ["--python-version", SHARED_PYTHON, "--implementation", "cp"]
            cmd += ["--abi", "cp311", "--abi", "abi3", "--abi", "none"]
            cmd += ["--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64"]
            cmd += ["-d", str(target), pin]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"pip download {pin} failed:\n{done.stderr[-2000:]}")
        for wheel in target.glob("*.whl"):
            shutil.copy(wheel, dest / wheel.name)


def shared_context(plan: BuildPlan, ours: Path, out: Path) -> Path:
    """A context installing the same pins into one site-packages with Python 3.11."""
    if out.exists():
        shutil.rmtree(out)
    for sub in ("wheels", "requirements"):
        (out / sub).mkdir(parents=True)
    shutil.copytree(ours / "build" / "installer", out / "installer")
    shutil.copytree(ours / "executor", out / "executor")
    shutil.copytree(ours / "rootfs", out / "rootfs")
    shutil.copytree(ours / "engine", out / "engine")
    # The same engine stage as ours (the comparison is about the Python side).
    lines = (ours / "Dockerfile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith(" AS engine"))
    end = lines.index("", start)
    engine_stage = "\n".join(lines[start:end])
    pins: set[str] = set()
    for lock in sorted((ours / "locks").glob("*.txt")):
        lines = [
            line.split()[0]
            for line in lock.read_text().splitlines()
            if line and not line.startswith("#")
        ]
        (out / "requirements" / lock.name).write_text("\n".join(lines) + "\n")
        pins.update(lines)
    # Policy wheels (py3-none-any) come from our wheelhouse; the rest for cp311 from the index.
    own = {p.artifact.filename for p in plan.python_policies if p.artifact}
    for wheel in (ours / "wheelhouse").rglob("*.whl"):
        if wheel.name in own or wheel.name.endswith("-none-any.whl"):
            shutil.copy(wheel, out / "wheels" / wheel.name)
    have = {w.name.split("-")[0].lower().replace("_", "-") for w in (out / "wheels").iterdir()}
    missing = sorted(p for p in pins if p.split("==")[0].lower().replace("_", "-") not in have)
    pip_download(missing, out / "wheels")
    base = next(b for b in plan.bases.pythons if b.version == SHARED_PYTHON)
    pip = next((out / "installer").glob("pip-*.whl")).name
    (out / "Dockerfile").write_text(
        SHARED_DOCKERFILE.format(
            engine_stage=engine_stage,
            python_image=base.image,
            python=base.executable,
            pip=pip,
            runtime_image=plan.bases.runtime,
            uid=defaults.RUNTIME_UID,
        )
    )
    return out


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    opts = parser.parse_args(argv)
    ui = UI(verbosity=-1)
    client = ensure_engine()
    work = Path(tempfile.mkdtemp(prefix="gwb-bench-build-"))
    try:
        ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.pyc", "*.lock")
        shutil.copytree(REPO / "manifests", work / "manifests", ignore=ignore)
        shutil.copytree(REPO / "policy_sources", work / "policy_sources", ignore=ignore)
        argv_build = [
            "build",
            "--bases",
            "local",
            "--build-file",
            str(work / "manifests" / "build.yaml"),
            "--python-build-file",
            str(work / "manifests" / "python-build.yaml"),
            "--out",
        ]

        def render(out: Path) -> tuple[BuildPlan, float]:
            args = cli.build_parser().parse_args([*argv_build, str(out), "--render-only"])
            t0 = time.monotonic()
            plan = run_pipeline(options_from_args(args), ui).plan
            assert plan is not None
            return plan, time.monotonic() - t0

        ours_ctx, shared_ctx_dir = work / "ctx-ours", work / "ctx-shared"
        _, render_first = render(ours_ctx)  # also builds/reuses the local bases
        plan, render_warm = render(ours_ctx)
        runtime_size = client.images.get(plan.bases.runtime).attrs["Size"]
        shared_context(plan, ours_ctx, shared_ctx_dir)

        rows = {"ours": Row(), "shared": Row()}
        for name, ctx in (("ours", ours_ctx), ("shared", shared_ctx_dir)):
            tag = f"gateway-builder-bench/{name}:latest"
            cold = build(client, ctx, tag, nocache=True)
            noop = build(client, ctx, tag)
            row = rows[name]
            row.cold_s, row.noop_s = cold.seconds, noop.seconds
            row.noop_cached = f"{noop.cached_steps}/{noop.steps}"
            row.size_mb = cold.size / 1e6
            row.added_mb = (cold.size - runtime_size) / 1e6
            rows[name] = row

        policy = work / "policy_sources" / CHANGED_POLICY / "policy.py"
        policy.write_text(policy.read_text() + "\n# benchmark: a one-line code change\n")
        plan2, render_change = render(ours_ctx)
        shared_context(plan2, ours_ctx, shared_ctx_dir)
        for name, ctx in (("ours", ours_ctx), ("shared", shared_ctx_dir)):
            tag = f"gateway-builder-bench/{name}:latest"
            before = client.images.get(tag).id
            after = build(client, ctx, f"gateway-builder-bench/{name}:changed")
            n, total, mb = changed(client, before, after.id)
            rows[name].change_s = after.seconds
            rows[name].change_layers = f"{n}/{total}"
            rows[name].change_mb = mb

        print_table(rows, render_first, render_warm, render_change)
    finally:
        if opts.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def print_table(
    rows: dict[str, Row], render_first: float, render_warm: float, render_change: float
) -> None:
    ours, shared = rows["ours"], rows["shared"]
    lines = [
        ("cold build, no layer cache (s)", f"{ours.cold_s:.1f}", f"{shared.cold_s:.1f}"),
        ("rebuild, nothing changed (s)", f"{ours.noop_s:.1f}", f"{shared.noop_s:.1f}"),
        ("  steps from cache", ours.noop_cached, shared.noop_cached),
        (
            f"rebuild after a change in {CHANGED_POLICY} (s)",
            f"{ours.change_s:.1f}",
            f"{shared.change_s:.1f}",
        ),
        ("  layers changed", ours.change_layers, shared.change_layers),
        ("  MB of changed layers (to pull)", f"{ours.change_mb:.1f}", f"{shared.change_mb:.1f}"),
        ("image size (MB)", f"{ours.size_mb:.1f}", f"{shared.size_mb:.1f}"),
        ("  above the runtime base (MB)", f"{ours.added_mb:.1f}", f"{shared.added_mb:.1f}"),
    ]
    w0 = max(len(r[0]) for r in lines)
    head = f"{'':<{w0}}  {'per-policy venvs':>17}  {'shared site-pkgs':>17}"
    print(head)
    print("-" * len(head))
    for label, a, b in lines:
        print(f"{label:<{w0}}  {a:>17}  {b:>17}")
    print()
    print(
        f"gateway-builder render (fetch + lock + context): first {render_first:.1f}s "
        f"(includes checking the local bases), warm {render_warm:.1f}s, "
        f"after the policy change {render_change:.1f}s"
    )
    print(
        "shared variant: one Python (3.11) for all; last install wins on conflicting pins "
        "(MarkupSafe 2.1.5 vs 3.0.2); token-scorer does not get its declared 3.12."
    )


if __name__ == "__main__":
    raise SystemExit(main())
