"""Building (or reusing by tag) every local base, and the report of what each one cost."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import docker

from gateway_builder import defaults
from gateway_builder.bases.context import build_context
from gateway_builder.bases.debian import ROOTFS_OVERLAY, import_debian_image
from gateway_builder.bases.keys import (
    ASSETS_DIR,
    KEY_LABEL,
    KIND_LABEL,
    asset_digests,
    content_key,
    local_tag,
)
from gateway_builder.bases.prefixes import (
    PrefixEntry,
    discover_prefix,
    prefix_entries,
    prefix_fingerprint,
    validate_prefix,
)
from gateway_builder.dockerd import LogFn, image_exists, stream_build
from gateway_builder.models import BaseImages, PythonBase
from gateway_builder.options import LocalBasesOptions, check_python_version, python_version_key

STANDIN_NOTE_LABEL = f"{defaults.STANDIN_LABEL}.note"
#: The stand-in builder in the engine-builder base (no system build lock to pass).
LOCAL_ENGINE_BUILDER_COMMAND: tuple[str, ...] = ("/usr/local/bin/gateway-builder",)
_STANDIN_LABELS = {defaults.STANDIN_LABEL: "true", STANDIN_NOTE_LABEL: defaults.STANDIN_NOTE}


@dataclass
class BaseEvent:
    """What happened to one base image in a run (for reports and benchmarks)."""

    kind: str
    tag: str
    cached: bool
    seconds: float
    image_id: str = ""
    size: int = 0


@dataclass
class BasesReport:
    """The bases of one run and what each cost."""

    bases: BaseImages
    events: list[BaseEvent] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (the ``bases build --json`` result)."""
        return {
            "bases": {
                "engine_builder": self.bases.engine_builder,
                "runtime": self.bases.runtime,
                "standin": self.bases.standin,
                "tini": self.bases.tini,
                "engine_builder_command": list(self.bases.engine_builder_command),
                "pythons": [asdict(p) for p in self.bases.pythons],
            },
            "images": [asdict(e) for e in self.events],
        }

    def table(self) -> str:
        """One row per image (kind, tag, size, build time or "cached") and the stand-in note."""
        rows = [("kind", "image", "size", "time")]
        for event in self.events:
            state = "cached" if event.cached else f"{event.seconds:.1f}s"
            rows.append((event.kind, event.tag, f"{event.size / 2**20:.0f} MiB", state))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
        lines.append(
            "router and policy engine in these bases are stand-ins (label "
            f"{defaults.STANDIN_LABEL}=true)"
        )
        return "\n".join(lines)


class _Builder:
    """Builds one run's bases, reusing any whose content-key tag exists, and records events."""

    def __init__(
        self, client: docker.DockerClient, log: LogFn, detail: LogFn, *, rebuild: bool
    ) -> None:
        self.client = client
        self.log = log
        self.detail = detail
        self.rebuild = rebuild
        self.events: list[BaseEvent] = []

    def _image_id(self, tag: str) -> str:
        return str(self.client.images.get(tag).id)

    def _record(self, kind: str, tag: str, cached: bool, start: float) -> str:
        image = self.client.images.get(tag)
        self.events.append(
            BaseEvent(
                kind,
                tag,
                cached,
                round(time.monotonic() - start, 2),
                str(image.id),
                int(image.attrs.get("Size", 0)),
            )
        )
        return tag

    def cached(self, kind: str, tag: str, start: float) -> bool:
        """True (and recorded) when ``tag`` exists and may be reused."""
        if not self.rebuild and image_exists(self.client, tag):
            self.log(f"{kind}: using cached {tag}")
            self._record(kind, tag, True, start)
            return True
        return False

    def debian(self) -> str:
        """The Debian base every other base starts from."""
        start = time.monotonic()
        key = content_key(
            {
                "kind": "debian",
                "suite": defaults.LOCAL_DEBIAN_SUITE,
                "variant": defaults.LOCAL_DEBIAN_VARIANT,
                "mirror": defaults.LOCAL_DEBIAN_MIRROR,
                "security_mirror": defaults.LOCAL_DEBIAN_SECURITY_MIRROR,
                "overlay": asset_digests(ROOTFS_OVERLAY),
            }
        )
        tag = local_tag("debian", key)
        if self.cached("debian", tag, start):
            return tag
        import_debian_image(self.client, tag, key, log=self.log, detail=self.detail)
        return self._record("debian", tag, False, start)

    def dockerfile_image(
        self,
        kind: str,
        asset: str,
        parent: str,
        *,
        buildargs: Mapping[str, str],
        labels: Mapping[str, str] | None = None,
        prefix: Sequence[PrefixEntry] | None = None,
        inputs: Mapping[str, str] | None = None,
    ) -> str:
        """Build ``assets/bases/<asset>/Dockerfile`` on ``parent``, tagged by its content key."""
        start = time.monotonic()
        asset_dir = ASSETS_DIR / asset
        parent_id = self._image_id(parent)
        key = content_key(
            {
                "kind": kind,
                "parent_id": parent_id,
                "assets": asset_digests(asset_dir),
                "buildargs": dict(buildargs),
                "labels": dict(labels or {}),
                "inputs": dict(inputs or {}),
            }
        )
        tag = local_tag(kind, key)
        if self.cached(kind, tag, start):
            return tag
        self.log(f"{kind}: building {tag}")
        all_labels = {KIND_LABEL: kind, KEY_LABEL: key, **(labels or {})}
        with build_context(asset_dir, prefix) as context:
            stream_build(
                self.client,
                log=lambda line: (self.log if line.startswith("Step ") else self.detail)(
                    f"{kind}: {line}"
                ),
                fileobj=context,
                custom_context=True,
                tag=tag,
                buildargs={"BASE_IMAGE": parent, **buildargs},
                labels=all_labels,
                nocache=self.rebuild,
            )
        return self._record(kind, tag, False, start)

    def python_from_debian(self, debian: str, version: str) -> PythonBase:
        """Debian's own CPython ``version`` with venv support."""
        tag = self.dockerfile_image(
            f"python{version}", "python-debian", debian, buildargs={"PY_VERSION": version}
        )
        return PythonBase(version, tag, f"/usr/bin/python{version}", ())

    def python_from_prefix(self, debian: str, version: str, prefix: Path) -> PythonBase:
        """CPython ``version`` copied from ``prefix``, made relocatable, with its libraries."""
        prefix = validate_prefix(prefix, version)
        entries = prefix_entries(prefix, version)
        root = f"{defaults.LOCAL_PYTHON_ROOT}/{version}"
        tag = self.dockerfile_image(
            f"python{version}",
            "python-prefix",
            debian,
            buildargs={
                "PY_VERSION": version,
                "PY_ROOT": root,
                "PYTHON_RUNTIME_PACKAGES": " ".join(defaults.LOCAL_PYTHON_RUNTIME_PACKAGES),
            },
            labels={f"{KIND_LABEL}.python-prefix": str(prefix)},
            prefix=entries,
            inputs={"prefix": str(prefix), "fingerprint": prefix_fingerprint(entries)},
        )
        return PythonBase(version, tag, f"{root}/bin/python{version}", (root,))

    def runtime(self, debian: str) -> str:
        """tini, bash, Debian's Python, the copied Pythons' libraries, the user, a router."""
        return self.dockerfile_image(
            "runtime",
            "runtime",
            debian,
            buildargs={
                "PYTHON_RUNTIME_PACKAGES": " ".join(defaults.LOCAL_PYTHON_RUNTIME_PACKAGES),
                "RUNTIME_USER": defaults.RUNTIME_USER,
                "RUNTIME_UID": str(defaults.RUNTIME_UID),
                "SOCKET_DIR": defaults.SOCKET_DIR,
                "ENVOY_BINARY": defaults.ENVOY_BINARY,
                "ENVOY_CONFIG": defaults.ENVOY_CONFIG,
            },
            labels=_STANDIN_LABELS,
        )

    def engine_builder(self, debian: str) -> str:
        """Debian's Go and the stand-in builder of a small policy engine."""
        return self.dockerfile_image(
            "engine-builder", "engine-builder", debian, buildargs={}, labels=_STANDIN_LABELS
        )


def _interpreter_prefixes(
    versions: Sequence[str], prefixes: Mapping[str, Path]
) -> dict[str, Path | None]:
    """Version -> its interpreter prefix (None: Debian's package), resolved before the slow part
    so that a bad one fails fast."""
    resolved: dict[str, Path | None] = {}
    for version in versions:
        if version in prefixes:
            resolved[version] = validate_prefix(prefixes[version], version)
        elif version == defaults.LOCAL_DEBIAN_PYTHON:
            resolved[version] = None
        else:
            resolved[version] = discover_prefix(version)
    return resolved


def build_local_bases(
    options: LocalBasesOptions,
    *,
    client: docker.DockerClient,
    log: LogFn,
    detail: LogFn | None = None,
    engine_builder: bool = True,
) -> BasesReport:
    """Build (or reuse, by content-hash tag) every local base the Dockerfile needs.

    ``options.pythons``: the CPython versions the venvs use; Debian's comes from its package,
    others from ``options.python_prefixes[version]`` or else ``pyenv prefix <version>``.
    ``options.rebuild``: ignore existing tags and the layer cache. ``engine_builder``: False when
    a prebuilt engine is given. ``log`` gets progress lines (steps, cached/built); ``detail``
    (default: ``log``) the full build output (apt, debootstrap per-package lines). The report's
    ``bases`` are what a plan uses; its events say what each image cost.
    """
    versions = sorted({check_python_version(v) for v in options.pythons}, key=python_version_key)
    for version in options.python_prefixes:
        check_python_version(version)
    resolved = _interpreter_prefixes(versions, options.python_prefixes)
    builder = _Builder(client, log, detail or log, rebuild=options.rebuild)
    debian = builder.debian()
    pythons = []
    for version in versions:
        prefix = resolved[version]
        if prefix is None:
            pythons.append(builder.python_from_debian(debian, version))
        else:
            pythons.append(builder.python_from_prefix(debian, version, prefix))
    runtime = builder.runtime(debian)
    engine = builder.engine_builder(debian) if engine_builder else None
    bases = BaseImages(
        engine_builder=engine,
        pythons=tuple(pythons),
        runtime=runtime,
        standin=True,
        tini=defaults.TINI_PATH,
        engine_builder_command=LOCAL_ENGINE_BUILDER_COMMAND,
    )
    return BasesReport(bases, builder.events)
