"""Lock every Python policy separately for its Python version, plus the executor and installer.

Incremental: each locked environment records a digest of its inputs (resolved source, Python
version, requirement lines, platforms, index). An environment whose digest is unchanged keeps
its pins; a changed one is re-resolved with the previous pins as preferences. ``--upgrade``
re-resolves everything from scratch, ``--upgrade-policy NAME`` one policy, ``--upgrade-package
PKG`` one distribution wherever it appears.

``--check`` (and ``build --locked``) trusts nothing in the file: it recomputes every
environment's inputs and fails with a unified diff when they differ (stale), checks every pin's
files and hashes against its ``pins_digest`` and its own name and version (edited), and resolves
every environment again with its pins as preferences: the pins, files and hashes must be exactly
what that gives (inconsistent). A plain ``lock`` re-resolves an environment whose pins were edited.

The lock is named after its manifest (``python-build.yaml`` -> ``python-build.lock``) and records
it; a lock written for another manifest is never overwritten.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from gateway_builder import __version__, defaults
from gateway_builder.cache import Cache, atomic_write_bytes
from gateway_builder.digest import value_digest
from gateway_builder.errors import InputError, StaleLockError
from gateway_builder.fetch import FetchedPolicy, SourcePin, read_requirements_txt
from gateway_builder.fetch.index import file_project, file_version
from gateway_builder.lock.file import Lock, LockedEnv, LockedPackage, LockedPolicy, read_lock
from gateway_builder.lock.resolve import Resolver, ResolveRequest, dedupe, get_resolver
from gateway_builder.manifest import Manifests, PathSource
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


def lock_anchor(manifests: Manifests) -> Path | None:
    """The manifest a lock belongs to: the Python manifest, else build.yaml."""
    return manifests.python_build_file or manifests.build_file


def default_lock_path(manifests: Manifests) -> Path:
    """Named after its manifest, next to it: ``python-build.yaml`` -> ``python-build.lock``,
    ``other.yaml`` -> ``other.lock`` (two manifests in one folder never share a lock)."""
    anchor = lock_anchor(manifests)
    if anchor is None:
        return defaults.DEFAULT_MANIFEST_DIR / defaults.LOCK_FILE_NAME
    return anchor.parent / f"{anchor.stem}.lock"


def manifest_name(manifests: Manifests, lock_path: Path) -> str | None:
    """The manifest as the lock records it: its path relative to the lock's folder."""
    anchor = lock_anchor(manifests)
    if anchor is None:
        return None
    try:
        rel = os.path.relpath(anchor.resolve(), lock_path.resolve().parent)
    except ValueError:  # another drive
        return anchor.resolve().as_posix()
    return Path(rel).as_posix()


def check_lock_owner(previous: Lock | None, manifest: str | None, lock_path: Path) -> None:
    """Refuse a lock file written for another manifest (it would be overwritten or misread)."""
    if previous is None or previous.manifest is None or manifest is None:
        return
    if previous.manifest != manifest:
        raise InputError(
            f"{lock_path} is the lock of {previous.manifest}, not of {manifest}: refusing to "
            f"use or overwrite it; pass --lock-file with another path for {manifest}"
        )


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


def requirements_origin(fetched: FetchedPolicy) -> str:
    """Where a policy's requirements come from, as the user knows it (for resolver errors)."""
    if fetched.artifact is not None:
        return f"Requires-Dist of {fetched.artifact.filename}"
    src = fetched.spec.source
    if isinstance(src, PathSource):
        return f"{src.path / 'requirements.txt'}"
    return f"requirements.txt of {fetched.display}"


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
    origin: str = ""


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
    if prev is None or task.upgrade or prev.input_digest != task.digest or prev.pins_edited():
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
        tasks[f"policy:{f.name}"] = policy_task = task(
            f"policy '{f.name}'",
            f.python_version,
            policy_requirements(f),
            f.index_url,
            policy_input_digest(f, platforms),
            prev_pol.env if prev_pol else None,
            opts.upgrade or f.name in opts.upgrade_policies,
        )
        policy_task.origin = requirements_origin(f)
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
                origin=t.origin,
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
    manifest: str | None = None,
) -> LockResult:
    """Compute the lock for ``fetched`` (re-resolving only what changed). Nothing is written.

    ``manifest`` is recorded in the lock (see :func:`manifest_name`)."""
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
    notes += [
        f"{t.label}: the pins in the lock file were edited by hand (they do not match their "
        "pins_digest): re-resolved"
        for t in tasks.values()
        if t.previous is not None and t.previous.pins_edited()
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
        manifest=manifest if manifest is not None else previous.manifest if previous else None,
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


# --------------------------------------------------------------------------------------------
# Checking
# --------------------------------------------------------------------------------------------

_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class _LockedEnvRef:
    """One environment of a lock, with what resolving it again needs."""

    label: str  # "policy 'one'", "the executor", "the installer"
    env: LockedEnv
    index_url: str | None = field(default=None, repr=False)  # may carry credentials


def _env_refs(lock: Lock, fetched: Sequence[FetchedPolicy] = ()) -> list[_LockedEnvRef]:
    index = {f.name: f.index_url for f in fetched}
    refs = [
        _LockedEnvRef("the installer", lock.installer),
        _LockedEnvRef("the executor", lock.executor),
    ]
    refs += [_LockedEnvRef(f"policy '{p.name}'", p.env, index.get(p.name)) for p in lock.policies]
    return refs


def _package_problems(where: str, pkg: LockedPackage) -> list[str]:
    """What is wrong with one pin on its own (its files must be of its name and version)."""
    pin = f"{where}: {pkg.name}=={pkg.version}"
    if not pkg.files or len(pkg.files) != len(pkg.hashes):
        return [
            f"{pin}: expected one hash per file, got {len(pkg.files)} file(s) and {len(pkg.hashes)} hash(es)"
        ]
    problems = [f"{pin}: {h!r} is not a sha256 hash" for h in pkg.hashes if not _HASH.match(h)]
    try:
        version = Version(pkg.version)
    except InvalidVersion:
        return [*problems, f"{pin}: {pkg.version!r} is not a version"]
    for name in pkg.files:
        if file_project(name) != pkg.name or file_version(name) != version:
            problems.append(f"{pin}: the file {name} is not of {pkg.name} {pkg.version}")
    return problems


def edited_problems(lock: Lock) -> tuple[list[str], set[str]]:
    """Hand edits visible without resolving: (pins whose files are not of their name and
    version, one line per entry; labels of environments whose pins no longer match their
    ``pins_digest``)."""
    problems = []
    edited = set()
    for ref in _env_refs(lock):
        for platform in sorted(ref.env.packages):
            for pkg in ref.env.packages[platform]:
                problems += _package_problems(f"{ref.label} ({platform})", pkg)
        if ref.env.pins_edited():
            edited.add(ref.label)
    return problems, edited


def _compare_pins(
    label: str, platform: str, locked: Sequence[LockedPackage], resolved: Sequence[LockedPackage]
) -> list[str]:
    where = f"{label} ({platform})"
    have = {p.name: p for p in locked}
    want = {p.name: p for p in resolved}
    problems = []
    for name in sorted(have.keys() | want.keys()):
        old, new = have.get(name), want.get(name)
        if new is None:
            assert old is not None
            problems.append(f"{where}: {name}=={old.version} is pinned but nothing requires it")
        elif old is None:
            problems.append(f"{where}: {name} is required ({name}=={new.version}) but not pinned")
        elif old.version != new.version:
            problems.append(
                f"{where}: {name} is pinned at {old.version}; resolving the inputs gives {new.version}"
            )
        elif (old.files, old.hashes) != (new.files, new.hashes):
            got = ", ".join(f"{f} {h}" for f, h in zip(old.files, old.hashes, strict=False))
            real = ", ".join(f"{f} {h}" for f, h in zip(new.files, new.hashes, strict=False))
            problems.append(
                f"{where}: {name}=={old.version}: the lock records {got or 'no file'}; the index "
                f"has {real}"
            )
    return problems


def verify_pins(
    lock: Lock,
    fetched: Sequence[FetchedPolicy],
    *,
    cache: Cache,
    resolver: str = defaults.DEFAULT_RESOLVER,
    jobs: int = 4,
    only: set[str] | None = None,
) -> tuple[list[str], Lock]:
    """Resolve every environment (or those labelled in ``only``) again with its pins as
    preferences; (problems, corrected lock).

    A consistent lock resolves to itself: the same versions, files and hashes. Anything else was
    edited by hand or no longer matches the index."""
    refs = _env_refs(lock, fetched)
    backend = get_resolver(resolver, cache)
    requests = [
        (ref, platform)
        for ref in refs
        if only is None or ref.label in only
        for platform in sorted(lock.platforms)
    ]

    def resolve(item: tuple[_LockedEnvRef, str]) -> tuple[LockedPackage, ...]:
        ref, platform = item
        return backend.resolve(
            ResolveRequest(
                label=ref.label,
                requirements=ref.env.requirements_in,
                python_version=ref.env.python,
                platform=platform,
                index_url=ref.index_url,
                preferences=tuple(ref.env.packages.get(platform, ())),
            )
        )

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(requests)))) as pool:
        results = list(pool.map(resolve, requests))
    problems: list[str] = []
    fixed: dict[str, dict[str, tuple[LockedPackage, ...]]] = {}
    for (ref, platform), packages in zip(requests, results, strict=True):
        problems += _compare_pins(ref.label, platform, ref.env.packages.get(platform, ()), packages)
        fixed.setdefault(ref.label, {})[platform] = packages

    def env(ref: _LockedEnvRef) -> LockedEnv:
        if ref.label not in fixed:
            return ref.env
        return LockedEnv(
            ref.env.python, ref.env.input_digest, ref.env.requirements_in, fixed[ref.label]
        )

    installer, executor, *policies = refs
    corrected = replace(
        lock,
        installer=env(installer),
        executor=env(executor),
        policies=tuple(
            replace(p, env=env(ref)) for p, ref in zip(lock.policies, policies, strict=True)
        ),
    )
    return problems, corrected


def _edited_error(
    lock_path: Path, problems: Sequence[str], what: str, remedy: str
) -> StaleLockError:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return StaleLockError(
        f"{lock_path} {what}: {problems[0]}{more}; {remedy}",
        details="\n".join(f"  {p}" for p in problems),
    )


def check_lock(
    fetched: Sequence[FetchedPolicy],
    lock_path: Path,
    *,
    cache: Cache,
    platforms: Sequence[str] = (),
    executor_requirements: Sequence[str] | None = None,
    manifest: str | None = None,
    resolver: str = defaults.DEFAULT_RESOLVER,
    jobs: int = 4,
) -> Lock:
    """Return the lock if it matches the manifests and is what resolving them gives; else raise
    :class:`StaleLockError` naming the entry (with a diff or the list of problems).

    In order: the lock belongs to ``manifest``; no pin was edited by hand (``pins_digest``, file
    names); the inputs of every environment equal the manifests' (moved tags make it stale too);
    resolving every environment again with its pins as preferences gives exactly its pins, files
    and hashes.
    """
    try:
        old_text = lock_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StaleLockError(
            f"no lock file at {lock_path}: run `gateway-builder lock` and commit the result"
        ) from None
    previous = read_lock(lock_path)
    check_lock_owner(previous, manifest, lock_path)
    problems, edited = edited_problems(previous)
    if problems or edited:
        # Name the entries: resolve the edited environments again and compare.
        edited |= {p.split(" (", 1)[0] for p in problems}
        found, corrected = verify_pins(
            previous, fetched, cache=cache, resolver=resolver, jobs=jobs, only=edited
        )
        problems += [p for p in found if p not in problems]
        named = {p.split(" (", 1)[0] for p in problems}
        problems += [
            f"{label}: the pins do not match their pins_digest (changed after resolving)"
            for label in sorted(edited - named)
        ]
        error = _edited_error(
            lock_path,
            problems,
            "was edited by hand",
            "run `gateway-builder lock` to re-resolve the edited environments",
        )
        error.details = f"{error.details}\n{lock_diff(old_text, corrected.text(), lock_path)}"
        raise error
    result = lock_policies(
        fetched,
        cache=cache,
        previous=previous,
        opts=LockOptions(platforms=tuple(platforms), resolve=False),
        executor_requirements=executor_requirements,
        manifest=manifest,
    )
    new_text = result.lock.text()
    if new_text != old_text:
        changed = ", ".join(result.resolved) or "the lock header"
        reasons = "; ".join(result.notes)
        raise StaleLockError(
            f"{lock_path} is out of date with the manifests ({changed}"
            f"{'; ' + reasons if reasons else ''}): run `gateway-builder lock`",
            details=lock_diff(old_text, new_text, lock_path)
            + "(dependency pins of changed environments are shown as they are; `lock` re-resolves them)",
        )
    problems, corrected = verify_pins(previous, fetched, cache=cache, resolver=resolver, jobs=jobs)
    if problems:
        labels = sorted({p.split(" (", 1)[0] for p in problems})
        upgrade = " ".join(
            f"--upgrade-policy {label.split(chr(39))[1]}"
            for label in labels
            if label.startswith("policy '")
        )
        remedy = f"restore it, or re-resolve with `gateway-builder lock {upgrade or '--upgrade'}`"
        error = _edited_error(lock_path, problems, "was edited or is inconsistent", remedy)
        error.details = f"{error.details}\n{lock_diff(old_text, corrected.text(), lock_path)}"
        raise error
    return previous
