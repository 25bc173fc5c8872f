"""Flags shared by several commands -> typed options."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway_builder import defaults
from gateway_builder.options import (
    BaseImageOptions,
    BuildOptions,
    LockOptions,
    RenderOptions,
    SessionOptions,
    Stage,
    check_tini,
    parse_labels,
    parse_python_images,
    parse_python_prefixes,
)


def session_options(args: argparse.Namespace) -> SessionOptions:
    """Manifests, fetch cache and lock file of a pipeline command."""
    return SessionOptions(
        build_file=args.build_file,
        python_build_file=args.python_build_file,
        cache_dir=args.cache_dir,
        offline=args.offline,
        lock_file=args.lock_file,
        allow_host_builds=args.allow_host_builds,
    )


def lock_options(args: argparse.Namespace, *, check: bool = False) -> LockOptions:
    """The lock flags every locking command has; ``check`` (``--check``, ``--locked``): verify
    the lock, never re-resolve or write it."""
    return LockOptions(
        resolver=args.resolver, platforms=tuple(args.platforms or ()), resolve=not check
    )


def base_image_options(args: argparse.Namespace) -> BaseImageOptions:
    """The base-image flags of ``render`` and ``build``."""
    return BaseImageOptions(
        kind=args.bases,
        registry_mirror=args.registry_mirror,
        builder_image=args.builder_image,
        runtime_image=args.runtime_image,
        python_images=parse_python_images(args.python_image),
        python_prefixes=parse_python_prefixes(args.python_prefix),
        prebuilt_engine=args.policy_engine is not None,
        tini=check_tini(args.tini),
    )


def render_options(args: argparse.Namespace) -> RenderOptions:
    """What ``render`` and ``build`` put into the context besides the lock."""
    return RenderOptions(
        platform=defaults.DEFAULT_PLATFORM,
        policy_engine=args.policy_engine,
        labels=parse_labels(args.label),
        source_date_epoch=args.source_date_epoch,
    )


def build_options(
    args: argparse.Namespace, *, out: Path | None, until: Stage, **build: Any
) -> BuildOptions:
    """Everything ``render`` and ``build`` share: session, lock check, bases, render inputs."""
    return BuildOptions(
        session=session_options(args),
        lock=lock_options(args, check=args.locked),
        bases=base_image_options(args),
        render=render_options(args),
        out=out,
        until=until,
        **build,
    )
