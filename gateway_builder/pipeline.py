"""The front half of the pipeline: manifests -> fetch -> lock -> BuildPlan.

``prepare_plan`` is what ``render`` and ``build`` call. With ``--locked`` the lock file must
already match the manifests (else :class:`StaleLockError` with a diff); otherwise it is updated
incrementally and written.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway_builder import defaults
from gateway_builder.cache import Cache
from gateway_builder.errors import InputError
from gateway_builder.fetch import FetchedPolicy, fetch_policies
from gateway_builder.lock import (
    LockOptions,
    LockResult,
    check_lock,
    default_lock_path,
    lock_policies,
    options_from_args,
    pins_from_lock,
    write_lock,
)
from gateway_builder.lockfile import Lock, read_lock
from gateway_builder.manifest import Manifests, load_manifests
from gateway_builder.plan import BaseImages, BuildPlan, make_plan
from gateway_builder.ui import UI

#: ``bases`` for prepare_plan: the images, or a function of the needed Python versions.
BasesArg = BaseImages | Callable[[tuple[str, ...]], BaseImages]


@dataclass
class Context:
    """Loaded manifests, the cache, and the lock file (if one exists)."""

    manifests: Manifests
    cache: Cache
    lock_path: Path
    previous: Lock | None
    previous_error: InputError | None = None
    changed: bool = False

    @property
    def base(self) -> Path:
        """Directory that relative paths in the lock are relative to."""
        return self.lock_path.parent


def open_context(args: argparse.Namespace) -> Context:
    """Load the manifests named by ``args``, open the cache, read the existing lock."""
    from gateway_builder.cli import resolve_manifest_paths

    build, python_build = resolve_manifest_paths(args)
    manifests = load_manifests(build, python_build)
    cache = Cache.open(
        getattr(args, "cache_dir", None), offline=bool(getattr(args, "offline", False))
    )
    lock_path = getattr(args, "lock_file", None) or default_lock_path(manifests)
    previous, error = None, None
    if lock_path.exists():
        try:
            previous = read_lock(lock_path)
        except InputError as exc:
            error = exc
    return Context(manifests, cache, lock_path, previous, error)


def fetch_for(
    ctx: Context,
    ui: UI | None,
    *,
    upgrade: bool = False,
    upgrade_policies: Sequence[str] = (),
) -> list[FetchedPolicy]:
    """Fetch every Python policy, reusing the lock's pinned sources unless upgrading."""
    pins = {} if upgrade else pins_from_lock(ctx.previous, skip=upgrade_policies)
    return fetch_policies(
        ctx.manifests.python_policies(), ctx.cache, base=ctx.base, pins=pins, ui=ui
    )


def lock_and_write(
    ctx: Context, fetched: Sequence[FetchedPolicy], opts: LockOptions, ui: UI | None
) -> LockResult:
    """Update the lock incrementally and write it if it changed."""
    if ctx.previous_error is not None and ui is not None:
        ui.warn(f"ignoring the unreadable lock file: {ctx.previous_error.message}")
    result = lock_policies(
        ctx.manifests, fetched, cache=ctx.cache, previous=ctx.previous, opts=opts, ui=ui
    )
    if ui is not None:
        for note in result.notes:
            ui.warn(note)
    ctx.changed = write_lock(ctx.lock_path, result.lock)
    if ui is not None:
        ui.info(f"{ctx.lock_path}: {'written' if ctx.changed else 'unchanged'}")
    return result


def parse_labels(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE`` strings -> sorted pairs (a bad one is an InputError)."""
    out = []
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--label {value!r}: expected KEY=VALUE")
        out.append((key.strip(), val))
    return tuple(sorted(out))


def python_versions(fetched: Sequence[FetchedPolicy], lock: Lock) -> tuple[str, ...]:
    """Python versions the image needs (policies + executor), sorted."""
    versions = {f.python_version for f in fetched} | {lock.executor.python}
    return tuple(sorted(versions, key=lambda v: tuple(int(x) for x in v.split("."))))


def prepare_plan(args: argparse.Namespace, ui: UI, *, bases: BasesArg) -> BuildPlan:
    """Load manifests, fetch, lock (or verify with ``args.locked``) and make the BuildPlan."""
    ctx = open_context(args)
    with ui.step("fetch"):
        fetched = fetch_for(ctx, ui)
    if getattr(args, "locked", False):
        if ctx.previous_error is not None:
            raise ctx.previous_error
        with ui.step("check lock"):
            lock = check_lock(
                ctx.manifests,
                fetched,
                ctx.lock_path,
                cache=ctx.cache,
                platforms=tuple(getattr(args, "platforms", None) or ()),
            )
    else:
        with ui.step("lock"):
            lock = lock_and_write(ctx, fetched, options_from_args(args), ui).lock
    with ui.step("plan"):
        images = bases(python_versions(fetched, lock)) if callable(bases) else bases
        return make_plan(
            ctx.manifests,
            lock,
            fetched,
            bases=images,
            platform=getattr(args, "target_platform", None) or defaults.DEFAULT_PLATFORM,
            policy_engine_binary=getattr(args, "policy_engine", None),
            labels=parse_labels(getattr(args, "label", None) or ()),
            source_date_epoch=getattr(args, "source_date_epoch", None),
        )
