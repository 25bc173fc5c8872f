"""The smoke test's inputs: the policy registry, each policy's samples and its expected pins.

They come from a rendered build context, or are copied out of the image (created, never
started) when no context is given; either way :func:`load_inputs` reads them from a directory.
"""

from __future__ import annotations

import io
import json
import tarfile
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from docker.errors import DockerException, NotFound
from docker.models.containers import Container

from gateway_builder import defaults
from gateway_builder.errors import InputError
from gateway_builder.smoke import samples as samples_mod
from gateway_builder.smoke.checks import isolation, layout
from gateway_builder.smoke.samples import Sample
from gateway_executor.registry import PolicyEntry, RegistryError, parse_registry


@dataclass
class Inputs:
    """The registry entries and, per policy, its samples and dependency pins."""

    entries: list[PolicyEntry]
    samples: dict[str, list[Sample]]
    pins: dict[str, dict[str, str]]
    origin: str  # "context DIR" or "image IMAGE"
    #: Policies whose pins are their venv's whole lock (from the build manifest).
    complete_pins: set[str] = field(default_factory=set)


def _read_json(path: Path, label: str, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{label}: cannot read the {what}: {exc}") from None


def load_inputs(root: Path, origin: str, *, registry_required: bool) -> Inputs:
    """Registry, samples and pins found under ``root`` (a rendered context or an image tree).

    Pins come from the build manifest (each venv's complete lock) when there is one, else from
    ``requirements.txt`` next to a policy's samples.
    """
    registry = layout.find_registry(root)
    if registry is None:
        if registry_required:
            raise InputError(
                f"{origin}: no {defaults.REGISTRY_FILE_NAME} found (is this a rendered context?)"
            )
        return Inputs(entries=[], samples={}, pins={}, origin=origin)
    label = f"{origin}: {registry.relative_to(root)}"
    try:
        entries = parse_registry(_read_json(registry, label, "policy registry"), label)
    except RegistryError as exc:
        raise InputError(str(exc)) from None
    inputs = Inputs(entries=entries, samples={}, pins={}, origin=origin)
    manifest = layout.find_build_manifest(root)
    if manifest is not None:
        mlabel = f"{origin}: {manifest.relative_to(root)}"
        locked = isolation.manifest_distributions(_read_json(manifest, mlabel, "build manifest"))
        inputs.pins.update(locked)
        inputs.complete_pins.update(locked)
    _load_policy_folders(root, inputs)
    return inputs


def _load_policy_folders(root: Path, inputs: Inputs) -> None:
    """Each policy's samples, and its ``requirements.txt`` pins where the manifest has none."""
    dirs = layout.find_policy_dirs(root, [e.name for e in inputs.entries])
    for entry in inputs.entries:
        folder = dirs.get(entry.name)
        if folder is None:
            continue
        inputs.samples[entry.name] = samples_mod.load_samples(
            entry.name, folder / "samples", label_root=root
        )
        req = folder / "requirements.txt"
        if entry.name not in inputs.pins and req.is_file():
            inputs.pins[entry.name] = isolation.parse_pins(req.read_text(encoding="utf-8"))


def _safe_extract(data: bytes, dest: Path) -> None:
    """Extract a ``get_archive`` tar: regular files and directories only, nothing outside dest."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            path = PurePosixPath(member.name)
            if path.is_absolute() or ".." in path.parts:
                continue
            target = dest.joinpath(*path.parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                if src is not None:
                    target.write_bytes(src.read())


def _copy_out(container: Container, path: str, root: Path) -> bool:
    """Copy ``path`` out of a (created or stopped) container to the same place under ``root``."""
    try:
        stream, _ = container.get_archive(path)
    except NotFound:
        return False
    dest = root / PurePosixPath(path).parent.relative_to("/")
    dest.mkdir(parents=True, exist_ok=True)
    _safe_extract(b"".join(stream), dest)
    return True


#: What the smoke test reads out of an image when no context is given.
IMAGE_INPUTS = (defaults.REGISTRY_PATH, layout.BUILD_MANIFEST_PATH, defaults.SAMPLES_DIR)


def image_inputs(client: Any, image: str, work: Path) -> Inputs:
    """Registry, build manifest and policy folders read out of the image (never started)."""
    container = client.containers.create(image)
    root = work / "image"
    try:
        for path in IMAGE_INPUTS:
            _copy_out(container, path, root)
    finally:
        with suppress(DockerException):
            container.remove(force=True)
    return load_inputs(root, f"image {image}", registry_required=False)
