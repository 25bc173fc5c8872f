"""Lock every Python policy separately for its Python version, plus the executor and installer.

Incremental: each locked environment records a digest of its inputs (resolved source, Python
version, requirement lines, platforms, index). An environment whose digest is unchanged keeps
its pins; a changed one is re-resolved with the previous pins as preferences. ``--upgrade``
re-resolves everything from scratch, ``--upgrade-policy NAME`` one policy, ``--upgrade-package
PKG`` one distribution wherever it appears. ``--check`` (and ``build --locked``) resolves nothing:
it recomputes the inputs and fails with a unified diff when they differ from the file.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from gateway_builder import __version__, defaults
from gateway_builder.cache import Cache, atomic_write_bytes
from gateway_builder.digest import value_digest
from gateway_builder.errors import InputError, StaleLockError
from gateway_builder.fetch import FetchedPolicy, SourcePin, read_requirements_txt
from gateway_builder.lock.file import Lock, LockedEnv, LockedPackage, LockedPolicy, read_lock
from gateway_builder.lock.resolve import Resolver, ResolveRequest, dedupe, get_resolver
from gateway_builder.manifest import Manifests
from gateway_builder.options import LockOptions
from gateway_builder.ui import UI


@dataclass
class LockResult:
    """The new lock and what happened to each environment."""

    lock: Lock
    resolved: list[str] = field(default_factory=list)  # env labels re-resolved (or stale)
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # moved tags and similar


# --------------------------------------------------------------------------------------------
# Paths and inputs
# --------------------------------------------------------------------------------------------


def default_lock_path(manifests: Manifests) -> Path:
    """``python-build.lock`` next to python-build.yaml (else next to build.yaml)."""
    anchor = manifests.python_build_file or manifests.build_file
    folder = anchor.parent if anchor is not None else defaults.DEFAULT_MANIFEST_DIR
    return folder / defaults.LOCK_FILE_NAME


def executor_requirements_path() -> Path:
    """``gateway_executor/requirements.in`` (found without importing the executor)."""
    spec = importlib.util.find_spec("gateway_executor")
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations)))
    else:
        folder = defaults.REPO_DIR / "gateway_executor"
    return folder / defaults.EXECUTOR_REQUIREMENTS_FILE


def read_executor_requirements(path: Path | None = None) -> tuple[str, ...]:
    """The executor's requirement lines (options and direct references refused)."""
    path = path or executor_requirements_path()
    if not path.is_file():
        raise InputError(f"the executor's requirements file is missing: {path}")
    return read_requirements_txt(path, "the executor")


def pins_from_lock(lock: Lock | None, *, skip: Sequence[str] = ()) -> dict[str, SourcePin]:
    """Source pins of a lock (policies in ``skip`` excluded), for :func:`fetch.fetch_policies`."""
    if lock is None:
        return {}
    pins = {}
    for pol in lock.policies:
        if pol.name in skip:
            continue
        pins[pol.name] = SourcePin(
            spec_digest=pol.spec_digest,
            resolved=pol.resolved,
            tag=pol.tag,
            filename=pol.source_file,
        )
    return pins


def _env_digest(
    python: str, requirements: Sequence[str], platforms: Sequence[str]
) -> dict[str, Any]:
    # The index is not an input here: a policy's own index_url is in its spec digest, and the
    # default index (or a mirror of it) must serve the same files, which the hashes verify.
    return {"python": python, "requirements": list(requirements), "platforms": sorted(platforms)}


def policy_requirements(fetched: FetchedPolicy) -> tuple[str, ...]:
    """A policy's resolver input: its own requirements plus the SDK."""
    return dedupe([*fetched.requirements, defaults.SDK_REQUIREMENT])


def policy_input_digest(fetched: FetchedPolicy, platforms: Sequence[str]) -> str:
    """Digest of everything that determines a policy's locked environment."""
    data = _env_digest(fetched.python_version, policy_requirements(fetched), platforms)
    data.update(
        {
            "spec": fetched.spec_digest,
            "resolved": fetched.resolved,
            "artifact": fetched.locked_artifact_sha256 or "",
        }
    )
    return value_digest(data)


def manifest_digest(
    fetched: Sequence[FetchedPolicy],
    platforms: Sequence[str],
    executor_in: Sequence[str],
    installer_in: Sequence[str],
) -> str:
    """Digest of the manifest inputs the lock depends on (not params or runtime knobs)."""
    return value_digest(
        {
            "policies": sorted([f.name, f.spec_digest] for f in fetched),
            "platforms": sorted(platforms),
            "sdk": defaults.SDK_REQUIREMENT,
            "executor": list(executor_in),
            "installer": list(installer_in),
        }
    )


# --------------------------------------------------------------------------------------------
# Locking
# --------------------------------------------------------------------------------------------


@dataclass
class _EnvTask:
    label: str
    python: str
    requirements: tuple[str, ...]
    index_url: str | None
    digest: str
    previous: LockedEnv | None
    upgrade: bool
    upgrade_packages: tuple[str, ...]
    packages: dict[str, tuple[LockedPackage, ...]] = field(default_factory=dict)


def _requirement_names(lines: Sequence[str]) -> set[str]:
    names = set()
    for line in lines:
        try:
            names.add(str(canonicalize_name(Requirement(line).name)))
        except ValueError:
            continue
    return names


def _needs_resolution(task: _EnvTask, platforms: Sequence[str]) -> bool:
    prev = task.previous
    if prev is None or task.upgrade or prev.input_digest != task.digest:
        return True
    if any(p not in prev.packages for p in platforms):
        return True
    return bool(task.upgrade_packages)


def _env_tasks(
    fetched: Sequence[FetchedPolicy],
    previous: Lock | None,
    opts: LockOptions,
    platforms: Sequence[str],
    executor_in: tuple[str, ...],
    installer_in: tuple[str, ...],
) -> dict[str, _EnvTask]:
    """One task per environment to lock: the installer, the executor, each policy."""
    upgrade_pkgs = tuple(str(canonicalize_name(p)) for p in opts.upgrade_packages)

    def task(
        label: str,
        python: str,
        reqs: tuple[str, ...],
        index: str | None,
        digest: str,
        prev: LockedEnv | None,
        upgrade: bool,
    ) -> _EnvTask:
        touched = tuple(
            p
            for p in upgrade_pkgs
            if prev is not None and (p in prev.package_names() or p in _requirement_names(reqs))
        )
        return _EnvTask(label, python, reqs, index, digest, prev, upgrade, touched)

    tasks: dict[str, _EnvTask] = {}
    inst_digest = value_digest(_env_digest(defaults.INSTALLER_PYTHON, installer_in, platforms))
    tasks["installer"] = task(
        "the installer",
        defaults.INSTALLER_PYTHON,
        installer_in,
        None,
        inst_digest,
        previous.installer if previous else None,
        opts.upgrade,
    )
    exec_digest = value_digest(_env_digest(defaults.DEFAULT_PYTHON, executor_in, platforms))
    tasks["executor"] = task(
        "the executor",
        defaults.DEFAULT_PYTHON,
        executor_in,
        None,
        exec_digest,
        previous.executor if previous else None,
        opts.upgrade,
    )
    for f in sorted(fetched, key=lambda f: f.name):
        prev_pol = previous.policy(f.name) if previous else None
        tasks[f"policy:{f.name}"] = task(
            f"policy '{f.name}'",
            f.python_version,
            policy_requirements(f),
            f.index_url,
            policy_input_digest(f, platforms),
            prev_pol.env if prev_pol else None,
            opts.upgrade or f.name in opts.upgrade_policies,
        )
    return tasks


def _resolve(
    todo: Sequence[_EnvTask],
    platforms: Sequence[str],
    resolver: Resolver,
    jobs: int,
    ui: UI | None,
) -> None:
    """Resolve every (environment, platform) of ``todo`` in parallel into ``task.packages``."""
    requests = []
    for t in todo:
        for platform in platforms:
            prefs = t.previous.packages.get(platform, ()) if t.previous else ()
            request = ResolveRequest(
                label=t.label,
                requirements=t.requirements,
                python_version=t.python,
                platform=platform,
                index_url=t.index_url,
                preferences=() if t.upgrade else tuple(prefs),
                upgrade=t.upgrade,
                upgrade_packages=t.upgrade_packages,
            )
            requests.append((t, platform, request))
    if ui is not None:
        for t in todo:
            ui.info(f"resolving {t.label} for Python {t.python} with {resolver.name}")
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(requests)))) as pool:
        results = list(pool.map(lambda r: resolver.resolve(r[2]), requests))
    for (t, platform, _), packages in zip(requests, results, strict=True):
        t.packages[platform] = packages


def _env(t: _EnvTask) -> LockedEnv:
    return LockedEnv(t.python, t.digest, t.requirements, dict(sorted(t.packages.items())))


def _locked_policy(f: FetchedPolicy, env: LockedEnv) -> LockedPolicy:
    return LockedPolicy(
        name=f.name,
        version=f.definition.version,
        kind=f.kind,
        module=f.module,
        source_type=f.source_type,
        source=f.display,
        resolved=f.resolved,
        spec_digest=f.spec_digest,
        env=env,
        tag=f.tag,
        commit_time=f.commit_time,
        artifact=f.artifact.filename if f.artifact else None,
        artifact_sha256=f.locked_artifact_sha256,
        source_file=f.source_file,
    )


def lock_policies(
    fetched: Sequence[FetchedPolicy],
    *,
    cache: Cache,
    previous: Lock | None = None,
    opts: LockOptions | None = None,
    executor_requirements: Sequence[str] | None = None,
    ui: UI | None = None,
) -> LockResult:
    """Compute the lock for ``fetched`` (re-resolving only what changed). Nothing is written."""
    opts = opts or LockOptions()
    unknown = sorted(set(opts.upgrade_policies) - {f.name for f in fetched})
    if unknown:
        raise InputError(f"--upgrade-policy: no Python policy named {', '.join(unknown)}")
    platforms = sorted(
        {defaults.DEFAULT_PLATFORM, *opts.platforms, *(previous.platforms if previous else ())}
    )
    executor_in = dedupe(executor_requirements or read_executor_requirements())
    installer_in = dedupe(defaults.INSTALLER_REQUIREMENTS)
    tasks = _env_tasks(fetched, previous, opts, platforms, executor_in, installer_in)
    notes = [
        f"policy '{f.name}': tag {f.tag} of {f.display.split('@')[0]} moved from "
        f"{f.moved_from[:12]} to {f.resolved[:12]}"
        for f in fetched
        if f.moved_from
    ]
    todo = [t for t in tasks.values() if _needs_resolution(t, platforms)]
    kept = [t.label for t in tasks.values() if t not in todo]
    resolver = get_resolver(opts.resolver, cache)
    if opts.resolve and todo:
        _resolve(todo, platforms, resolver, opts.jobs, ui)
    else:
        for t in todo:
            t.packages = dict(t.previous.packages) if t.previous else {}
    for t in tasks.values():
        if t not in todo:
            assert t.previous is not None
            t.packages = {p: t.previous.packages[p] for p in platforms}
    new = Lock(
        builder_version=__version__,
        resolver=resolver.name,
        resolver_version=resolver.version,
        manifest_digest=manifest_digest(fetched, platforms, executor_in, installer_in),
        platforms=tuple(platforms),
        sdk_requirement=defaults.SDK_REQUIREMENT,
        installer=_env(tasks["installer"]),
        executor=_env(tasks["executor"]),
        policies=tuple(
            _locked_policy(f, _env(tasks[f"policy:{f.name}"]))
            for f in sorted(fetched, key=lambda f: f.name)
        ),
    )
    if previous is not None and (not todo or not opts.resolve):
        # Nothing re-resolved: keep the header as it was (a no-op relock is byte-identical).
        new = new.with_header(
            builder_version=previous.builder_version,
            resolver=previous.resolver,
            resolver_version=previous.resolver_version,
        )
    return LockResult(new, [t.label for t in todo], kept, notes)


def write_lock(path: Path, lock: Lock) -> bool:
    """Write the lock atomically; return False (and leave the file alone) when unchanged."""
    text = lock.text()
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    atomic_write_bytes(path, text.encode("utf-8"))
    return True


def lock_diff(old_text: str, new_text: str, path: Path) -> str:
    """A unified diff from the file on disk to what it should be."""
    return "".join(
        difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            fromfile=f"{path} (on disk)",
            tofile=f"{path} (from the manifests)",
        )
    )


def check_lock(
    fetched: Sequence[FetchedPolicy],
    lock_path: Path,
    *,
    cache: Cache,
    platforms: Sequence[str] = (),
    executor_requirements: Sequence[str] | None = None,
) -> Lock:
    """Return the lock if it matches the manifests; else raise :class:`StaleLockError` + diff.

    Nothing is resolved: the inputs of every environment are recomputed and compared with the
    digests in the file. Moved tags (same tag, another commit) make the lock stale too.
    """
    try:
        old_text = lock_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StaleLockError(
            f"no lock file at {lock_path}: run `gateway-builder lock` and commit the result"
        ) from None
    previous = read_lock(lock_path)
    result = lock_policies(
        fetched,
        cache=cache,
        previous=previous,
        opts=LockOptions(platforms=tuple(platforms), resolve=False),
        executor_requirements=executor_requirements,
    )
    new_text = result.lock.text()
    if new_text == old_text:
        return previous
    changed = ", ".join(result.resolved) or "the lock header"
    reasons = "; ".join(result.notes)
    raise StaleLockError(
        f"{lock_path} is out of date with the manifests ({changed}"
        f"{'; ' + reasons if reasons else ''}): run `gateway-builder lock`",
        details=lock_diff(old_text, new_text, lock_path)
        + "(dependency pins of changed environments are shown as they are; `lock` re-resolves them)",
    )
