"""Where the registry, the build manifest and the samples are below a root directory.

The root is a rendered context (files at its top or under ``rootfs/``) or a tree copied out of
an image (files at their image paths); both layouts are searched the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from gateway_builder import defaults


def find_registry(root: Path) -> Path | None:
    """The policy registry in a rendered context (or an extracted image tree); shallowest wins."""
    return _find_file(root, defaults.REGISTRY_PATH)


#: File name of the build manifest (render writes it at the context root and into the image).
BUILD_MANIFEST_NAME = "build-manifest.json"
BUILD_MANIFEST_PATH = f"{defaults.APP_DIR}/{BUILD_MANIFEST_NAME}"


def find_build_manifest(root: Path) -> Path | None:
    """The build manifest in a rendered context or an extracted image tree."""
    return _find_file(root, BUILD_MANIFEST_PATH)


def _find_file(root: Path, image_path: str) -> Path | None:
    """``image_path`` under ``root`` as the context (root, rootfs/) or an image tree has it."""
    name = PurePosixPath(image_path).name
    rel = image_path.lstrip("/")
    for path in (root / name, root / "rootfs" / rel, root / rel):
        if path.is_file():
            return path
    found = sorted(
        (p for p in _walk(root) if p.name == name and p.is_file()),
        key=lambda p: (len(p.parts), str(p)),
    )
    return found[0] if found else None


#: How deep the input search goes below a context (rendered contexts need 5: rootfs/app/...).
SEARCH_DEPTH = 6


def _walk(root: Path, depth: int = SEARCH_DEPTH) -> Iterator[Path]:
    """Every path below ``root`` down to ``depth`` levels (symlinked directories not followed)."""
    for current, dirs, files in os.walk(root):
        level = len(Path(current).relative_to(root).parts)
        if level >= depth:
            dirs[:] = []
        dirs.sort()
        for name in (*dirs, *sorted(files)):
            yield Path(current) / name


def _name_forms(policy: str) -> set[str]:
    return {policy, policy.replace("-", "_")}


def find_policy_dirs(root: Path, policies: Iterable[str]) -> dict[str, Path]:
    """For each policy, the directory holding its ``samples/`` under ``root``.

    Any layout works where a path component below ``root`` is the policy name (or the name with
    ``_`` for ``-``), e.g. ``policies/<name>/samples`` or ``policies/<name>/<pkg>/samples``;
    the shallowest match wins.
    """
    sample_dirs = sorted(
        (p for p in _walk(root) if p.name == "samples" and p.is_dir() and any(p.glob("*.json"))),
        key=lambda p: (len(p.parts), str(p)),
    )
    found: dict[str, Path] = {}
    for policy in policies:
        forms = _name_forms(policy)
        for sample_dir in sample_dirs:
            parts = sample_dir.parent.relative_to(root).parts
            if forms & set(parts):
                found[policy] = sample_dir.parent
                break
    return found
