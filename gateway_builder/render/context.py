"""Rendering a whole context: write every file, normalize modes and times, swap it into place.

The context is written into a temporary directory next to ``--out`` and renamed over it, so an
interrupted render never leaves a half-written context where a complete one was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gateway_executor
from gateway_builder import defaults
from gateway_builder.cache import Cache
from gateway_builder.digest import sha256_file
from gateway_builder.errors import InputError
from gateway_builder.fetch import download_artifacts
from gateway_builder.models import LockedRequirement
from gateway_builder.plan import BuildPlan
from gateway_builder.redact import redact_text
from gateway_builder.render.dockerfile import dockerfile_values
from gateway_builder.render.engine import write_engine_inputs
from gateway_builder.render.labels import labels_for
from gateway_builder.render.manifest import MARKER, manifest_text
from gateway_builder.render.registry import registry_json
from gateway_builder.render.templating import (
    EntrypointValues,
    HealthCheckValues,
    render_entrypoint,
    render_health_check,
    render_template,
    template_dir,
)
from gateway_builder.render.users import USERS_SPEC, users_json
from gateway_builder.render.wheelhouse import Downloader, write_locks_and_wheelhouses
from gateway_builder.render.writer import ContextWriter

#: Parts of the executor package that are not runtime code.
_SKIP_EXECUTOR = {"tests", "__pycache__"}


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


def _write_executor(w: ContextWriter) -> None:
    """Copy the installed ``gateway_executor`` package, without tests and bytecode."""
    package = Path(gateway_executor.__file__).resolve().parent
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package)
        if any(part in _SKIP_EXECUTOR for part in rel.parts) or path.suffix in (".pyc", ".pyo"):
            continue
        if path.is_file() and not path.is_symlink():
            w.copy(path, f"executor/gateway_executor/{rel.as_posix()}")


def _write_python_inputs(w: ContextWriter, plan: BuildPlan, download: Downloader) -> str:
    """Everything the Python side needs; returns the installer wheel's file name."""
    w.copy(template_dir() / "stage_tool.py", "build/stage_tool.py")
    installer = write_locks_and_wheelhouses(w, plan, download)
    _write_executor(w)
    for p in plan.python_policies:
        if p.source_dir is not None:
            w.tree(p.source_dir, f"policies/{p.name}/{p.package_dir_name}", f"policy '{p.name}'")
        if p.samples_dir is not None and p.samples_dir.is_dir():
            w.tree(
                p.samples_dir,
                f"rootfs{defaults.SAMPLES_DIR}/{p.name}/samples",
                f"samples of policy '{p.name}'",
            )
    w.text(f"rootfs{defaults.REGISTRY_PATH}", registry_json(plan))
    w.text(USERS_SPEC, users_json(plan))
    return installer


def write_context(
    plan: BuildPlan,
    root: Path,
    download: Downloader,
    *,
    revision: str | None = None,
    source: str | None = None,
) -> tuple[tuple[str, str], ...]:
    """Write every file of the context into the empty directory ``root``; returns the labels."""
    w = ContextWriter(root)
    labels = labels_for(plan, revision=revision, source=source)
    has_python = bool(plan.python_policies)
    installer = _write_python_inputs(w, plan, download) if has_python else ""
    write_engine_inputs(w, plan)
    manifest = manifest_text(plan, labels)
    w.text(MARKER, manifest)
    w.text(f"rootfs{defaults.APP_DIR}/{MARKER}", manifest)
    w.text(
        f"rootfs{defaults.ENTRYPOINT_PATH}",
        render_entrypoint(
            EntrypointValues(has_python_policies=has_python, builder_version=plan.builder_version)
        ),
        executable=True,
    )
    w.text(
        f"rootfs{defaults.HEALTH_CHECK_PATH}",
        render_health_check(
            HealthCheckValues(has_python_policies=has_python, builder_version=plan.builder_version)
        ),
        executable=True,
    )
    w.text(
        "Dockerfile", render_template("Dockerfile.j2", **dockerfile_values(plan, labels, installer))
    )
    return labels


def normalize_tree(
    root: Path, epoch: int, subtree_epochs: Mapping[str, int] | None = None
) -> tuple[int, int, str]:
    """Fix modes (0644/0755) and times of everything below ``root``; (files, bytes, digest).

    Times are ``epoch``, except below a top-level folder named in ``subtree_epochs``."""
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
    subtree_epochs = subtree_epochs or {}
    for path in [*reversed(entries), root]:
        top = path.relative_to(root).parts[:1]
        when = subtree_epochs.get(top[0], epoch) if top else epoch
        os.utime(path, (when, when), follow_symlinks=False)
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
        download = fetch_downloader(Cache.open(None))
    out_dir = Path(out_dir).absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        labels = write_context(plan, tmp, download, revision=revision, source=source)
        # Files copied as they are into the image (rootfs/: registry, build manifest, entrypoint)
        # carry the image's time; the rest (e.g. a prebuilt engine) the fixed one.
        files, size, digest = normalize_tree(
            tmp, plan.stage_epoch(), {"rootfs": plan.source_date_epoch}
        )
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RenderResult(
        out_dir, files, size, digest, tuple(p.name for p in plan.python_policies), labels
    )


def fetch_downloader(cache: Cache) -> Downloader:
    """The fetch stage's hash-checked, cached artifact download."""

    def download(
        reqs: Sequence[LockedRequirement], python: str, platform: str, dest: Path
    ) -> list[Path]:
        return download_artifacts(reqs, python, platform, dest, cache=cache)

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
