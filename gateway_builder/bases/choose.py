"""Choosing the base images of the Dockerfile from :class:`BaseImageOptions`.

* Default: the upstream images of ``gateway.version`` (defaults.py); a registry mirror rewrites
  every default (never an explicit image).
* Per-image overrides: builder, runtime and per-version Python images. A Python image must have
  the official layout (``/usr/local/bin/pythonX.Y`` with its standard library under
  ``/usr/local/lib``).
* ``kind="local"``: the bases built from Debian packages (cached by content hash); the overrides
  above still replace single images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from gateway_builder import defaults
from gateway_builder.bases.builder import build_local_bases
from gateway_builder.dockerd import ensure_engine
from gateway_builder.models import BaseImages, PythonBase
from gateway_builder.options import (
    BaseImageOptions,
    LocalBasesOptions,
    check_tini,
    python_version_key,
)
from gateway_builder.ui import UI

#: The needed Python versions -> the base images to build them on.
Chooser = Callable[[tuple[str, ...]], BaseImages]


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
        for v in sorted(set(versions), key=python_version_key)
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


def choose_bases(options: BaseImageOptions, gateway_version: str, ui: UI) -> Chooser:
    """A function of the needed Python versions returning the BaseImages ``options`` ask for.

    ``gateway_version`` (the manifests') names the upstream images; the caller has the manifests
    loaded already. Local bases are built only when the returned function is called.
    """
    if options.kind == "local":
        choose = _local_chooser(options, ui)
    else:
        choose = _upstream_chooser(options, gateway_version)
    tini = options.tini
    if not tini:
        return choose
    check_tini(tini)
    return lambda versions: replace(choose(versions), tini=tini)


def _upstream_chooser(options: BaseImageOptions, gateway_version: str) -> Chooser:
    def upstream(versions: tuple[str, ...]) -> BaseImages:
        return upstream_bases(
            versions,
            gateway_version,
            mirror=options.registry_mirror,
            builder_image=options.builder_image,
            runtime_image=options.runtime_image,
            python_images=options.python_images,
            prebuilt_engine=options.prebuilt_engine,
        )

    return upstream


def _local_chooser(options: BaseImageOptions, ui: UI) -> Chooser:
    if options.registry_mirror:
        ui.warn("--registry-mirror has no effect with --bases local")
    python_images = dict(options.python_images)

    def local(versions: tuple[str, ...]) -> BaseImages:
        client = ensure_engine(log=ui.info)
        wanted = LocalBasesOptions(
            pythons=tuple(v for v in versions if v not in python_images),
            python_prefixes=options.python_prefixes,
        )
        with ui.step("local bases"):
            built = build_local_bases(
                wanted,
                client=client,
                log=ui.info,
                detail=ui.debug,
                engine_builder=not options.prebuilt_engine,
            ).bases
        if python_images:
            given = (
                official_python_base(v, python_images[v]) for v in versions if v in python_images
            )
            pythons = sorted([*built.pythons, *given], key=lambda b: python_version_key(b.version))
            built = replace(built, pythons=tuple(pythons))
        return apply_overrides(
            built, builder_image=options.builder_image, runtime_image=options.runtime_image
        )

    return local
