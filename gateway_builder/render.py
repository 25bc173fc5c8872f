"""``gateway-builder render``: write a complete, self-contained, deterministic build context.

Layout of a rendered context (every path below is relative to ``--out``)::

    Dockerfile                  from templates/Dockerfile.j2
    build-manifest.json         what is in the image: policies, pins, bases, labels
    build/stage_tool.py         helper run inside the builder stages (venvs, export)
    build/installer/pip-*.whl   the locked pip wheel, run from the wheel (never installed)
    locks/<venv>.txt            per venv: ``name==version --hash=sha256:...`` lines
    wheelhouse/<venv>/*.whl     per venv: exactly the locked artifacts, hash-checked
    policies/<name>/<pkg>/      simple-directory policy sources
    executor/gateway_executor/  the executor package (runtime code)
    engine/build.yaml           derived build file for the engine builder (Go entries, and the
    engine/python/<name>/       Python policies as filePath entries: definition + stub)
    engine/go/<name>/           Go filePath policies
    engine/prebuilt/app/        --policy-engine: the prebuilt engine binary
    rootfs/app/...              the last layer: entrypoint.sh, policy registry, build manifest
    rootfs/app/policy-samples/<name>/samples/   each policy's sample requests (smoke test)

Identical inputs give byte-identical files, modes and times (SOURCE_DATE_EPOCH). The context is
rendered into a temporary directory next to ``--out`` and then renamed into place.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import gateway_executor
from gateway_builder import defaults
from gateway_builder.errors import BuildError, InputError
from gateway_builder.plan import BuildPlan, LockedRequirement, PythonPolicyPlan
from gateway_builder.policy_registry import registry_json
from gateway_builder.redact import redact_text
from gateway_builder.templating import (
    EntrypointValues,
    render_entrypoint,
    render_template,
    template_dir,
)
from gateway_builder.treeutil import copy_tree
from gateway_builder.ui import UI
from gateway_executor.paths import policy_dir, venv_dir

#: (requirements, python_version, platform, dest_dir) -> paths placed in dest_dir.
Downloader = Callable[[Sequence[LockedRequirement], str, str, Path], list[Path]]
LogFn = Callable[[str], None]

MANIFEST_FORMAT = "gateway-builder/build-manifest"
MARKER = "build-manifest.json"
IN_STAGE = "/gateway-builder"
_SKIP_EXECUTOR = {"tests", "__pycache__"}
_STAGE_NAME = re.compile(r"[^a-z0-9_.-]+")


@dataclass(frozen=True)
class RenderResult:
    """What ``render`` wrote."""

    out_dir: Path
    files: int
    bytes: int
    digest: str  # sha256 over every path, mode and content of the context
    policies: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "out": str(self.out_dir),
            "files": self.files,
            "bytes": self.bytes,
            "digest": self.digest,
            "policies": list(self.policies),
        }


# --------------------------------------------------------------------------------------------
# Small pure helpers
# --------------------------------------------------------------------------------------------


def stage_name(prefix: str, name: str) -> str:
    """A valid Dockerfile stage name (lower case, ``[a-z0-9_.-]``)."""
    return f"{prefix}-{_STAGE_NAME.sub('-', name.lower()).strip('-.') or 'x'}"


def rfc3339(epoch: int) -> str:
    """``2024-01-02T03:04:05Z`` for the OCI ``created`` label."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_name(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name_version(filename: str) -> tuple[str, str]:
    """(canonical name, version) of a wheel file name."""
    parts = filename[: -len(".whl")].split("-")
    if not filename.endswith(".whl") or len(parts) < 5:
        raise BuildError(f"{filename}: not a wheel file name")
    return canonical_name(parts[0]), parts[1]


def lock_lines(requirements: Sequence[LockedRequirement]) -> list[str]:
    """Sorted ``name==version --hash=...`` lines."""
    return sorted(r.requirement_line() for r in requirements)


def policy_pins(policy: PythonPolicyPlan) -> tuple[LockedRequirement, ...]:
    """Everything installed into a policy's venv: its locked requirements plus its own wheel."""
    pins = list(policy.requirements)
    if policy.artifact is not None:
        name, version = wheel_name_version(policy.artifact.filename)
        if any(canonical_name(r.name) == name for r in pins):
            raise BuildError(f"policy {policy.name}: its lock also pins its own package {name}")
        pins.append(LockedRequirement(name, version, (f"sha256:{policy.artifact.sha256}",)))
    return tuple(sorted(pins, key=lambda r: canonical_name(r.name)))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def labels_for(
    plan: BuildPlan, *, revision: str | None = None, source: str | None = None
) -> tuple[tuple[str, str], ...]:
    """Every image label, sorted by key (user labels may override the generated ones)."""
    policies = [
        {
            "name": p.name,
            "version": p.version,
            "python": p.python_version,
            "source": redact_text(p.source_label),
            "resolved": p.resolved,
        }
        for p in plan.python_policies
    ]
    go = [
        {
            "name": g.name,
            "source": g.gomodule or f"filePath:{g.file_path.name if g.file_path else ''}",
        }
        for g in plan.go_policies
    ]
    labels = {
        "org.opencontainers.image.title": "gateway-runtime",
        "org.opencontainers.image.description": (
            f"gateway-runtime {plan.gateway_version} with {len(plan.python_policies)} Python and "
            f"{len(plan.go_policies)} Go policies, built by gateway-builder"
        ),
        "org.opencontainers.image.version": plan.gateway_version,
        "org.opencontainers.image.revision": revision or plan.lock_digest,
        "org.opencontainers.image.created": rfc3339(plan.source_date_epoch),
        "io.gateway-builder.builder-version": plan.builder_version,
        "io.gateway-builder.lock-digest": plan.lock_digest,
        "io.gateway-builder.platform": plan.platform,
        "io.gateway-builder.python-policies": _compact(policies),
        "io.gateway-builder.go-policies": _compact(go),
        "io.gateway-builder.base-images": _compact(_bases_dict(plan)),
    }
    if source:
        labels["org.opencontainers.image.source"] = redact_text(source)
    if plan.bases.standin:
        labels[defaults.STANDIN_LABEL] = "true"
        labels[f"{defaults.STANDIN_LABEL}.note"] = (
            "router and policy engine are gateway-builder stand-ins (local bases), "
            "not Envoy or the upstream policy engine"
        )
    for key, value in plan.labels:
        labels[key] = redact_text(value)
    return tuple(sorted(labels.items()))


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _bases_dict(plan: BuildPlan) -> dict[str, Any]:
    return {
        "engine_builder": plan.bases.engine_builder if plan.policy_engine_binary is None else None,
        "pythons": {b.version: b.image for b in plan.bases.pythons if b.version in _versions(plan)},
        "runtime": plan.bases.runtime,
    }


def _versions(plan: BuildPlan) -> tuple[str, ...]:
    return plan.python_versions if plan.python_policies else ()


# --------------------------------------------------------------------------------------------
# The Dockerfile view model
# --------------------------------------------------------------------------------------------


def _stage_cmd(executable: str, *args: str) -> list[str]:
    return [executable, "-I", f"{IN_STAGE}/stage_tool.py", *args]


def dockerfile_values(
    plan: BuildPlan, labels: Sequence[tuple[str, str]], installer: str
) -> dict[str, Any]:
    """Everything ``Dockerfile.j2`` needs, computed from the plan."""
    epoch = str(plan.source_date_epoch)
    has_python = bool(plan.python_policies)
    engine = None
    if plan.policy_engine_binary is None:
        if not plan.bases.engine_builder:
            raise InputError(
                "no engine builder image and no --policy-engine: nothing builds the engine"
            )
        out = f"{IN_STAGE}/out"
        engine = {
            "image": plan.bases.engine_builder,
            "command": [
                *plan.bases.engine_builder_command,
                "-build-file",
                f"{IN_STAGE}/engine/build.yaml",
                "-out-dir",
                out,
            ],
            "output": f"{out}/{defaults.ENGINE_BUILDER_OUTPUT}",
        }
    cpythons = []
    venvs: list[dict[str, Any]] = []
    if has_python:
        for version in plan.python_versions:
            base = plan.bases.python(version)
            if base.runtime_copy:
                cpythons.append(
                    {
                        "version": version,
                        "image": base.image,
                        "stage": stage_name("cpython", version),
                        "export": _stage_cmd(
                            base.executable,
                            "export",
                            "--epoch",
                            epoch,
                            "--strip-python",
                            *base.runtime_copy,
                        ),
                    }
                )
        for venv in _venv_specs(plan):
            base = plan.bases.python(venv["python_version"])
            venv["image"] = base.image
            venv["install"] = _stage_cmd(
                base.executable,
                "install",
                "--venv", venv["venv"],
                "--python-version", venv["python_version"],
                "--lock", f"{IN_STAGE}/locks/{venv['name']}.txt",
                "--wheelhouse", f"{IN_STAGE}/wheelhouse/{venv['name']}",
                "--installer", f"{IN_STAGE}/installer/{installer}",
                "--epoch", epoch,
            )  # fmt: skip
            if venv["code"]:
                venv["code"]["compile"] = _stage_cmd(
                    base.executable, "compile", "--epoch", epoch, venv["code"]["target"]
                )
            venvs.append(venv)
    return {
        "builder_version": plan.builder_version,
        "gateway_version": plan.gateway_version,
        "platform": plan.platform,
        "lock_digest": plan.lock_digest,
        "epoch": epoch,
        "policies": plan.python_policies,
        "go_policy_count": len(plan.go_policies),
        "engine": engine,
        "cpythons": cpythons,
        "venvs": venvs,
        "runtime": {
            "image": plan.bases.runtime,
            "uid": defaults.RUNTIME_UID,
            "ports": [str(p) for p in defaults.EXPOSED_PORTS],
            "entrypoint": [plan.bases.tini, "--", defaults.ENTRYPOINT_PATH],
        },
        "labels": list(labels),
    }


def _venv_specs(plan: BuildPlan) -> list[dict[str, Any]]:
    """One entry per venv: the executor's first, then the policies in name order."""
    specs: list[dict[str, Any]] = [
        {
            "name": defaults.EXECUTOR_VENV_NAME,
            "title": "policy executor",
            "stage": "executor",
            "venv": defaults.EXECUTOR_VENV,
            "python_version": plan.executor_python,
            "count": len(plan.executor_requirements),
            "code": {"context": "executor", "target": defaults.EXECUTOR_DIR},
        }
    ]
    for p in plan.python_policies:
        specs.append(
            {
                "name": p.name,
                "title": f"policy {p.name} {p.version}",
                "stage": stage_name("policy", p.name),
                "venv": venv_dir(p.name),
                "python_version": p.python_version,
                "count": len(policy_pins(p)),
                "code": (
                    {"context": f"policies/{p.name}", "target": policy_dir(p.name)}
                    if p.source_dir is not None
                    else None
                ),
            }
        )
    return specs


# --------------------------------------------------------------------------------------------
# Writing the context
# --------------------------------------------------------------------------------------------


class _Writer:
    """Writes files under a root with normalized modes; collects nothing else."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def text(self, rel: str, content: str, *, executable: bool = False) -> Path:
        return self.data(rel, content.encode("utf-8"), executable=executable)

    def data(self, rel: str, content: bytes, *, executable: bool = False) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(0o755 if executable else 0o644)
        return path

    def copy(self, src: Path, rel: str, *, executable: bool = False) -> Path:
        return self.data(rel, src.read_bytes(), executable=executable)

    def tree(self, src: Path, rel: str, what: str) -> None:
        dest = self.root / rel
        dest.mkdir(parents=True, exist_ok=True)
        copy_tree(src, dest, what)


def _derived_build_yaml(plan: BuildPlan) -> str:
    """The engine builder's build file: Go entries unchanged, Python policies as filePath."""
    lines = [
        "# Derived by gateway-builder from build.yaml and python-build.yaml; do not edit.",
        "version: v1",
        "gateway:",
        f"  version: {json.dumps(plan.gateway_version)}",
        "policies:",
    ]
    for g in plan.go_policies:
        lines.append(f"  - name: {json.dumps(g.name)}")
        if g.gomodule:
            lines.append(f"    gomodule: {json.dumps(g.gomodule)}")
        else:
            lines.append(f"    filePath: {json.dumps(f'./go/{g.name}')}")
    for p in plan.python_policies:
        lines.append(f"  - name: {json.dumps(p.name)}")
        lines.append(f"    filePath: {json.dumps(f'./python/{p.name}')}")
    return "\n".join(lines) + "\n"


_ENGINE_STUB = (
    '"""Placeholder: the engine registers this Python policy from policy-definition.yaml\n'
    'only; the policy runs in the Python executor."""\n'
)


def _write_engine_inputs(w: _Writer, plan: BuildPlan) -> None:
    if plan.policy_engine_binary is not None:
        binary = Path(plan.policy_engine_binary)
        if not binary.is_file():
            raise InputError(f"--policy-engine {binary}: no such file")
        w.copy(binary, "engine/prebuilt/app/policy-engine", executable=True)
        return
    w.text("engine/build.yaml", _derived_build_yaml(plan))
    for g in plan.go_policies:
        if g.file_path is not None:
            w.tree(Path(g.file_path), f"engine/go/{g.name}", f"Go policy '{g.name}'")
    for p in plan.python_policies:
        definition = p.definition_dir / defaults.POLICY_DEFINITION_FILE
        if not definition.is_file():
            raise BuildError(f"policy {p.name}: {definition} is missing")
        w.copy(definition, f"engine/python/{p.name}/{defaults.POLICY_DEFINITION_FILE}")
        w.text(f"engine/python/{p.name}/policy.py", _ENGINE_STUB)


def _write_executor(w: _Writer) -> None:
    package = Path(gateway_executor.__file__).resolve().parent
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package)
        if any(part in _SKIP_EXECUTOR for part in rel.parts) or path.suffix in (".pyc", ".pyo"):
            continue
        if path.is_file() and not path.is_symlink():
            w.copy(path, f"executor/gateway_executor/{rel.as_posix()}")


def _verify_wheelhouse(reqs: Sequence[LockedRequirement], files: Sequence[Path], what: str) -> None:
    """Exactly one file per requirement, each with a locked sha256; nothing else."""
    by_name: dict[str, list[Path]] = {}
    for path in files:
        name, version = wheel_name_version(path.name)
        by_name.setdefault(f"{name}=={version}", []).append(path)
    for req in reqs:
        key = f"{canonical_name(req.name)}=={req.version}"
        found = by_name.pop(key, [])
        if len(found) != 1:
            raise BuildError(f"{what}: expected one artifact for {key}, got {len(found)}")
        digest = f"sha256:{sha256_file(found[0])}"
        if digest not in req.hashes:
            raise BuildError(f"{what}: {found[0].name} has {digest}, not a hash the lock allows")
    if by_name:
        raise BuildError(f"{what}: unexpected artifacts {sorted(by_name)}")


def _fill_wheelhouse(
    w: _Writer,
    venv: str,
    reqs: Sequence[LockedRequirement],
    python: str,
    plan: BuildPlan,
    download: Downloader,
    extra: Sequence[Path] = (),
) -> None:
    dest = w.root / "wheelhouse" / venv
    dest.mkdir(parents=True, exist_ok=True)
    files = list(download(reqs, python, plan.platform, dest))
    for src in extra:
        files.append(w.copy(src, f"wheelhouse/{venv}/{src.name}"))
    present = sorted(p for p in dest.iterdir())
    if sorted(files) != present:
        raise BuildError(f"wheelhouse/{venv}: the downloader left unexpected files")
    for path in present:
        path.chmod(0o644)


def _write_locks_and_wheelhouses(w: _Writer, plan: BuildPlan, download: Downloader) -> str:
    """Per venv: lock file + wheelhouse. Returns the installer wheel's file name."""
    if len(plan.installer_requirements) != 1 or plan.installer_requirements[0].name != "pip":
        raise BuildError("the lock's installer must be exactly one pinned pip")
    installer_dir = w.root / "build" / "installer"
    installer_dir.mkdir(parents=True, exist_ok=True)
    got = download(plan.installer_requirements, plan.executor_python, plan.platform, installer_dir)
    _verify_wheelhouse(plan.installer_requirements, got, "installer")
    installer = got[0].name
    installer_dir.joinpath(installer).chmod(0o644)

    header = "# Locked by gateway-builder for {what} (Python {py}, {platform}); installed with\n"
    header += "# --require-hashes --no-deps from wheelhouse/{name}/. Do not edit.\n"
    venvs: list[tuple[str, str, str, tuple[LockedRequirement, ...], tuple[Path, ...]]] = [
        (defaults.EXECUTOR_VENV_NAME, "the policy executor", plan.executor_python,
         plan.executor_requirements, ()),
    ]  # fmt: skip
    for p in plan.python_policies:
        own: tuple[Path, ...] = (p.artifact.path,) if p.artifact is not None else ()
        venvs.append(
            (p.name, f"policy {p.name} {p.version}", p.python_version, policy_pins(p), own)
        )
    for name, what, python, pins, wheels in venvs:
        text = header.format(what=what, py=python, platform=plan.platform, name=name)
        w.text(f"locks/{name}.txt", text + "\n".join(lock_lines(pins)) + "\n")
        downloadable = [r for r in pins if not wheels or not _is_own(r, wheels[0])]
        _fill_wheelhouse(w, name, downloadable, python, plan, download, wheels)
        _verify_wheelhouse(pins, sorted((w.root / "wheelhouse" / name).iterdir()), name)
    return installer


def _is_own(req: LockedRequirement, artifact: Path) -> bool:
    return (canonical_name(req.name), req.version) == wheel_name_version(artifact.name)


def _manifest(plan: BuildPlan, labels: Sequence[tuple[str, str]]) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "format_version": 1,
        "builder_version": plan.builder_version,
        "gateway_version": plan.gateway_version,
        "platform": plan.platform,
        "lock_digest": plan.lock_digest,
        "source_date_epoch": plan.source_date_epoch,
        "standin": plan.bases.standin,
        "bases": _bases_dict(plan),
        "python_policies": [
            {
                "name": p.name,
                "version": p.version,
                "python_version": p.python_version,
                "venv": venv_dir(p.name),
                "source": redact_text(p.source_label),
                "resolved": p.resolved,
                "distributions": {canonical_name(r.name): r.version for r in policy_pins(p)},
            }
            for p in plan.python_policies
        ],
        "executor": {
            "venv": defaults.EXECUTOR_VENV,
            "python_version": plan.executor_python,
            "distributions": {
                canonical_name(r.name): r.version for r in plan.executor_requirements
            },
        },
        "go_policies": [
            {"name": g.name, "gomodule": g.gomodule, "filePath": g.file_path is not None}
            for g in plan.go_policies
        ],
        "labels": dict(labels),
    }


def write_context(
    plan: BuildPlan,
    root: Path,
    download: Downloader,
    *,
    revision: str | None = None,
    source: str | None = None,
) -> tuple[tuple[str, str], ...]:
    """Write every file of the context into the empty directory ``root``; returns the labels."""
    w = _Writer(root)
    labels = labels_for(plan, revision=revision, source=source)
    has_python = bool(plan.python_policies)
    installer = ""
    if has_python:
        w.copy(template_dir() / "stage_tool.py", "build/stage_tool.py")
        installer = _write_locks_and_wheelhouses(w, plan, download)
        _write_executor(w)
        for p in plan.python_policies:
            if p.source_dir is not None:
                w.tree(
                    p.source_dir, f"policies/{p.name}/{p.package_dir_name}", f"policy '{p.name}'"
                )
            if p.samples_dir is not None and p.samples_dir.is_dir():
                w.tree(
                    p.samples_dir,
                    f"rootfs{defaults.SAMPLES_DIR}/{p.name}/samples",
                    f"samples of policy '{p.name}'",
                )
        w.text(f"rootfs{defaults.REGISTRY_PATH}", registry_json(plan))
    _write_engine_inputs(w, plan)
    manifest = json.dumps(_manifest(plan, labels), indent=2, sort_keys=True, ensure_ascii=False)
    w.text(MARKER, manifest + "\n")
    w.text(f"rootfs{defaults.APP_DIR}/build-manifest.json", manifest + "\n")
    w.text(
        f"rootfs{defaults.ENTRYPOINT_PATH}",
        render_entrypoint(
            EntrypointValues(has_python_policies=has_python, builder_version=plan.builder_version)
        ),
        executable=True,
    )
    w.text(
        "Dockerfile", render_template("Dockerfile.j2", **dockerfile_values(plan, labels, installer))
    )
    return labels


def normalize_tree(root: Path, epoch: int) -> tuple[int, int, str]:
    """Fix modes (0644/0755) and times of everything below ``root``; (files, bytes, digest)."""
    digest = hashlib.sha256()
    files = size = 0
    entries = sorted(root.rglob("*"), key=lambda p: p.relative_to(root).parts)
    for path in entries:
        rel = path.relative_to(root).as_posix()
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            digest.update(f"L {rel} {os.readlink(path)}\n".encode())
        elif stat.S_ISDIR(mode):
            path.chmod(0o755)
            digest.update(f"D {rel}\n".encode())
        else:
            executable = bool(mode & 0o111)
            path.chmod(0o755 if executable else 0o644)
            files += 1
            size += path.stat().st_size
            digest.update(f"F {rel} {int(executable)} {sha256_file(path)}\n".encode())
    for path in [*reversed(entries), root]:
        os.utime(path, (epoch, epoch), follow_symlinks=False)
    return files, size, f"sha256:{digest.hexdigest()}"


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move ``tmp`` to ``out_dir``, replacing an earlier rendered context there."""
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir() or out_dir.is_symlink():
            raise InputError(f"--out {out_dir}: exists and is not a directory")
        if any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
            raise InputError(
                f"--out {out_dir}: not empty and not a rendered context; choose another directory"
            )
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)


def render(
    plan: BuildPlan,
    out_dir: Path,
    *,
    download: Downloader | None = None,
    revision: str | None = None,
    source: str | None = None,
) -> RenderResult:
    """Render the build context of ``plan`` into ``out_dir`` (atomically replaced).

    ``download`` places the locked artifacts of a venv into a directory (default: the fetch
    stage's cached, hash-checked download); ``revision``/``source`` fill the OCI labels.
    """
    if download is None:
        from gateway_builder.cache import Cache

        download = fetch_downloader(Cache.open(None))
    out_dir = Path(out_dir).absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        labels = write_context(plan, tmp, download, revision=revision, source=source)
        files, size, digest = normalize_tree(tmp, plan.source_date_epoch)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RenderResult(
        out_dir, files, size, digest, tuple(p.name for p in plan.python_policies), labels
    )


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def fetch_downloader(cache: Any) -> Downloader:
    """The fetch stage's hash-checked, cached artifact download."""
    from gateway_builder import fetch

    def download(
        reqs: Sequence[LockedRequirement], python: str, platform: str, dest: Path
    ) -> list[Path]:
        return fetch.download_artifacts(reqs, python, platform, dest, cache=cache)

    return download


def vcs_provenance(manifest: Path | None) -> tuple[str | None, str | None]:
    """(commit, redacted origin URL) of the git work tree holding ``manifest``, if any."""
    if manifest is None:
        return None, None
    try:
        import git

        repo = git.Repo(Path(manifest).resolve().parent, search_parent_directories=True)
        commit = repo.head.commit.hexsha
        if repo.is_dirty(untracked_files=False):
            commit += "-dirty"
        url = next((r.url for r in repo.remotes if r.name == "origin"), None)
    except Exception:
        return None, None
    return commit, (redact_text(url) if url else None)


def render_from_args(
    args: argparse.Namespace, ui: UI, out_dir: Path
) -> tuple[BuildPlan, RenderResult]:
    """prepare_plan (validate, fetch, lock) + render, as ``render`` and ``build`` run them."""
    from gateway_builder import baseopts, pipeline
    from gateway_builder.cache import Cache
    from gateway_builder.cli import resolve_manifest_paths

    plan = pipeline.prepare_plan(args, ui, bases=baseopts.bases_chooser(args, ui))
    ctx_cache = Cache.open(
        getattr(args, "cache_dir", None), offline=bool(getattr(args, "offline", False))
    )
    build_file, python_file = resolve_manifest_paths(args)
    revision, source = vcs_provenance(python_file or build_file)
    with ui.step("render"):
        result = render(
            plan, out_dir, download=fetch_downloader(ctx_cache), revision=revision, source=source
        )
    _update_committed_registry(args, plan, ui)
    return plan, result


def _update_committed_registry(args: argparse.Namespace, plan: BuildPlan, ui: UI) -> None:
    """For the repository's default manifests, keep ``registry/`` in step with the render."""
    from gateway_builder.cli import resolve_manifest_paths

    build_file, python_file = resolve_manifest_paths(args)
    repo_defaults = (
        defaults.REPO_DIR / defaults.DEFAULT_BUILD_FILE,
        defaults.REPO_DIR / defaults.DEFAULT_PYTHON_BUILD_FILE,
    )
    used = tuple(Path(p).resolve() if p else None for p in (build_file, python_file))
    lock_file = getattr(args, "lock_file", None)
    default_lock = repo_defaults[1].parent / defaults.LOCK_FILE_NAME
    if (
        used != tuple(p.resolve() for p in repo_defaults)
        or (lock_file is not None and Path(lock_file).resolve() != default_lock.resolve())
        or not plan.python_policies
    ):
        return
    target = defaults.REPO_DIR / defaults.COMMITTED_REGISTRY_DIR / defaults.REGISTRY_FILE_NAME
    text = registry_json(plan)
    if target.is_file() and target.read_text(encoding="utf-8") == text:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    ui.info(f"updated {target.relative_to(defaults.REPO_DIR)} (commit it)")


def command(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    """``gateway-builder render --out DIR``."""
    plan, result = render_from_args(args, ui, args.out)
    data = {"ok": True, **result.as_dict(), "standin": plan.bases.standin}
    human = (
        f"rendered {result.out_dir}: {result.files} files, {result.bytes / 1e6:.1f} MB, "
        f"{len(result.policies)} Python policies, digest {result.digest}"
    )
    ui.result(data, human)
    return data
