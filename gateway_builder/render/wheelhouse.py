"""Lock files and wheelhouses: per venv, exactly the locked artifacts, each hash-checked.

The builder stages install with ``--require-hashes --no-deps`` from these directories only, so
anything missing, extra or with an unlocked hash is an error here rather than in ``docker build``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from packaging.utils import canonicalize_name

from gateway_builder import defaults
from gateway_builder.digest import sha256_file
from gateway_builder.errors import BuildError
from gateway_builder.models import LockedRequirement
from gateway_builder.plan import BuildPlan, PythonPolicyPlan
from gateway_builder.render.writer import ContextWriter

#: (requirements, python_version, platform, dest_dir) -> paths placed in dest_dir.
Downloader = Callable[[Sequence[LockedRequirement], str, str, Path], list[Path]]

_LOCK_HEADER = (
    "# Locked by gateway-builder for {what} (Python {py}, {platform}); installed with\n"
    "# --require-hashes --no-deps from wheelhouse/{name}/. Do not edit.\n"
)


class VenvLock(NamedTuple):
    """One venv's lock: what it is for, its pins and the wheels the fetch stage built for it."""

    name: str
    what: str
    python: str
    pins: tuple[LockedRequirement, ...]
    own_wheels: tuple[Path, ...]


def wheel_name_version(filename: str) -> tuple[str, str]:
    """(canonical name, version) of a wheel file name."""
    parts = filename[: -len(".whl")].split("-")
    if not filename.endswith(".whl") or len(parts) < 5:
        raise BuildError(f"{filename}: not a wheel file name")
    return canonicalize_name(parts[0]), parts[1]


def lock_lines(requirements: Sequence[LockedRequirement]) -> list[str]:
    """Sorted ``name==version --hash=...`` lines."""
    return sorted(r.requirement_line() for r in requirements)


def policy_pins(policy: PythonPolicyPlan) -> tuple[LockedRequirement, ...]:
    """Everything installed into a policy's venv: its locked requirements plus its own wheel."""
    pins = list(policy.requirements)
    if policy.artifact is not None:
        name, version = wheel_name_version(policy.artifact.filename)
        if any(canonicalize_name(r.name) == name for r in pins):
            raise BuildError(f"policy {policy.name}: its lock also pins its own package {name}")
        pins.append(LockedRequirement(name, version, (f"sha256:{policy.artifact.sha256}",)))
    return tuple(sorted(pins, key=lambda r: canonicalize_name(r.name)))


def venv_locks(plan: BuildPlan) -> list[VenvLock]:
    """Every venv of the image: the executor's first, then the policies in plan order."""
    venvs = [
        VenvLock(
            defaults.EXECUTOR_VENV_NAME,
            "the policy executor",
            plan.executor_python,
            plan.executor_requirements,
            (),
        )
    ]
    for p in plan.python_policies:
        own: tuple[Path, ...] = (p.artifact.path,) if p.artifact is not None else ()
        venvs.append(
            VenvLock(p.name, f"policy {p.name} {p.version}", p.python_version, policy_pins(p), own)
        )
    return venvs


def verify_wheelhouse(reqs: Sequence[LockedRequirement], files: Sequence[Path], what: str) -> None:
    """Exactly one file per requirement, each with a locked sha256; nothing else."""
    by_name: dict[str, list[Path]] = {}
    for path in files:
        name, version = wheel_name_version(path.name)
        by_name.setdefault(f"{name}=={version}", []).append(path)
    for req in reqs:
        key = f"{canonicalize_name(req.name)}=={req.version}"
        found = by_name.pop(key, [])
        if len(found) != 1:
            raise BuildError(f"{what}: expected one artifact for {key}, got {len(found)}")
        digest = f"sha256:{sha256_file(found[0])}"
        if digest not in req.hashes:
            raise BuildError(f"{what}: {found[0].name} has {digest}, not a hash the lock allows")
    if by_name:
        raise BuildError(f"{what}: unexpected artifacts {sorted(by_name)}")


def fill_wheelhouse(
    w: ContextWriter,
    venv: str,
    reqs: Sequence[LockedRequirement],
    python: str,
    plan: BuildPlan,
    download: Downloader,
    extra: Sequence[Path] = (),
) -> None:
    """Download ``reqs`` and copy ``extra`` into ``wheelhouse/<venv>``; nothing else may appear."""
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


def write_installer(w: ContextWriter, plan: BuildPlan, download: Downloader) -> str:
    """Place the locked pip wheel under ``build/installer``; returns its file name."""
    if len(plan.installer_requirements) != 1 or plan.installer_requirements[0].name != "pip":
        raise BuildError("the lock's installer must be exactly one pinned pip")
    installer_dir = w.root / "build" / "installer"
    installer_dir.mkdir(parents=True, exist_ok=True)
    got = download(plan.installer_requirements, plan.executor_python, plan.platform, installer_dir)
    verify_wheelhouse(plan.installer_requirements, got, "installer")
    installer = got[0].name
    installer_dir.joinpath(installer).chmod(0o644)
    return installer


def write_locks_and_wheelhouses(w: ContextWriter, plan: BuildPlan, download: Downloader) -> str:
    """Per venv: lock file + wheelhouse. Returns the installer wheel's file name."""
    installer = write_installer(w, plan, download)
    for venv in venv_locks(plan):
        text = _LOCK_HEADER.format(
            what=venv.what, py=venv.python, platform=plan.platform, name=venv.name
        )
        w.text(f"locks/{venv.name}.txt", text + "\n".join(lock_lines(venv.pins)) + "\n")
        wheels = venv.own_wheels
        downloadable = [r for r in venv.pins if not wheels or not _is_own(r, wheels[0])]
        fill_wheelhouse(w, venv.name, downloadable, venv.python, plan, download, wheels)
        placed = sorted((w.root / "wheelhouse" / venv.name).iterdir())
        verify_wheelhouse(venv.pins, placed, venv.name)
    return installer


def _is_own(req: LockedRequirement, artifact: Path) -> bool:
    """Whether ``req`` pins the policy's own wheel (copied, never downloaded)."""
    return (canonicalize_name(req.name), req.version) == wheel_name_version(artifact.name)
