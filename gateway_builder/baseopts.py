"""Choosing the base images of the Dockerfile from the command line.

* Default: the upstream images of ``gateway.version`` (defaults.py); ``--registry-mirror PFX``
  rewrites every default (never an explicit image).
* Per-image overrides: ``--builder-image IMG``, ``--runtime-image IMG``,
  ``--python-image VERSION=IMG`` (repeatable). A Python image must have the official layout
  (``/usr/local/bin/pythonX.Y`` with its standard library under ``/usr/local/lib``).
* ``--bases local``: bases built from Debian packages by :mod:`gateway_builder.bases` (cached by
  content hash); the overrides above still replace single images.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from gateway_builder import defaults
from gateway_builder.errors import InputError
from gateway_builder.plan import BaseImages, PythonBase
from gateway_builder.ui import UI

_VERSION = re.compile(r"^3\.\d{1,2}$")
Chooser = Callable[[tuple[str, ...]], BaseImages]


def parse_python_images(values: Sequence[str]) -> dict[str, str]:
    """``VERSION=IMAGE`` flags -> {version: image}; InputError on a bad one."""
    out: dict[str, str] = {}
    for value in values:
        version, sep, image = value.partition("=")
        version, image = version.strip(), image.strip()
        if not sep or not _VERSION.match(version) or not image:
            raise InputError(
                f"--python-image {value!r}: expected VERSION=IMAGE, e.g. 3.12=python:3.12-slim"
            )
        if version not in defaults.SUPPORTED_PYTHONS:
            raise InputError(
                f"--python-image {value!r}: Python {version} is not supported "
                f"({', '.join(defaults.SUPPORTED_PYTHONS)})"
            )
        if version in out and out[version] != image:
            raise InputError(f"--python-image: two images for Python {version}")
        out[version] = image
    return out


def official_python_base(version: str, image: str) -> PythonBase:
    """A Python base with the layout of the official ``python:X.Y-slim`` images."""
    exe = f"/usr/local/bin/python{version}"
    copy = (exe, f"/usr/local/lib/python{version}", f"/usr/local/lib/libpython{version}.so.1.0")
    return PythonBase(version, image, exe, copy)


def upstream_bases(
    versions: Sequence[str],
    gateway_version: str,
    *,
    mirror: str | None = None,
    builder_image: str | None = None,
    runtime_image: str | None = None,
    python_images: Mapping[str, str] | None = None,
    prebuilt_engine: bool = False,
) -> BaseImages:
    """The upstream defaults (through ``mirror``), with explicit images taking precedence."""
    python_images = dict(python_images or {})
    pythons = tuple(
        official_python_base(
            v,
            python_images.get(v) or defaults.with_mirror(defaults.upstream_python_image(v), mirror),
        )
        for v in _sorted_versions(versions)
    )
    builder = builder_image or defaults.with_mirror(
        defaults.upstream_builder_image(gateway_version), mirror
    )
    runtime = runtime_image or defaults.with_mirror(
        defaults.upstream_runtime_image(gateway_version), mirror
    )
    return BaseImages(
        engine_builder=None if prebuilt_engine else builder, pythons=pythons, runtime=runtime
    )


def apply_overrides(
    bases: BaseImages,
    *,
    builder_image: str | None = None,
    runtime_image: str | None = None,
    python_images: Mapping[str, str] | None = None,
) -> BaseImages:
    """Replace single images of ``bases`` (e.g. local bases plus one custom runtime)."""
    python_images = dict(python_images or {})
    pythons = tuple(
        official_python_base(b.version, python_images[b.version])
        if b.version in python_images
        else b
        for b in bases.pythons
    )
    out = replace(bases, pythons=pythons)
    if runtime_image:
        out = replace(out, runtime=runtime_image)
    if builder_image and bases.engine_builder is not None:
        out = replace(
            out,
            engine_builder=builder_image,
            engine_builder_command=defaults.UPSTREAM_ENGINE_BUILDER_COMMAND,
        )
    return out


def _sorted_versions(versions: Sequence[str]) -> list[str]:
    return sorted(set(versions), key=lambda v: tuple(int(x) for x in v.split(".")))


def _gateway_version(args: argparse.Namespace) -> str:
    from gateway_builder.cli import resolve_manifest_paths
    from gateway_builder.manifest import load_manifests

    manifests = load_manifests(*resolve_manifest_paths(args))
    version = getattr(manifests, "gateway_version", None)
    return str(version or defaults.DEFAULT_GATEWAY_VERSION)


def bases_chooser(args: argparse.Namespace, ui: UI) -> Chooser:
    """A function of the needed Python versions returning the BaseImages ``args`` ask for."""
    choose = _chooser(args, ui)
    tini = getattr(args, "tini", None)
    if not tini:
        return choose
    if not tini.startswith("/"):
        raise InputError(f"--tini {tini!r}: expected an absolute path in the runtime image")
    return lambda versions: replace(choose(versions), tini=tini)


def _chooser(args: argparse.Namespace, ui: UI) -> Chooser:
    python_images = parse_python_images(getattr(args, "python_image", None) or [])
    prebuilt = getattr(args, "policy_engine", None) is not None
    builder_image = getattr(args, "builder_image", None)
    runtime_image = getattr(args, "runtime_image", None)
    if getattr(args, "bases", "upstream") == "local":
        if getattr(args, "registry_mirror", None):
            ui.warn("--registry-mirror has no effect with --bases local")

        def local(versions: tuple[str, ...]) -> BaseImages:
            from gateway_builder import bases as local_bases
            from gateway_builder.dockerd import ensure_engine

            client = ensure_engine(log=ui.info)
            with ui.step("local bases"):
                built = local_bases.build_local_bases(
                    [v for v in versions if v not in python_images],
                    client=client,
                    log=ui.info,
                    detail=ui.debug,
                    python_prefixes=local_bases.parse_prefix_args(
                        getattr(args, "python_prefix", None) or []
                    ),
                    engine_builder=not prebuilt,
                )
            if python_images:
                built = replace(
                    built,
                    pythons=tuple(
                        sorted(
                            [
                                *built.pythons,
                                *(official_python_base(v, python_images[v]) for v in versions
                                  if v in python_images),
                            ],
                            key=lambda b: tuple(int(x) for x in b.version.split(".")),
                        )
                    ),
                )  # fmt: skip
            return apply_overrides(built, builder_image=builder_image, runtime_image=runtime_image)

        return local

    mirror = getattr(args, "registry_mirror", None)
    gateway_version = _gateway_version(args)

    def upstream(versions: tuple[str, ...]) -> BaseImages:
        return upstream_bases(
            versions,
            gateway_version,
            mirror=mirror,
            builder_image=builder_image,
            runtime_image=runtime_image,
            python_images=python_images,
            prebuilt_engine=prebuilt,
        )

    return upstream
