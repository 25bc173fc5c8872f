"""Content keys and tags of the local bases: an image is reused exactly when everything it is made
from (Dockerfile, asset files, build arguments, parent image, inputs) is unchanged."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway_builder import defaults
from gateway_builder.digest import canonical_json, sha256_text

#: Bump when the way images are assembled changes in code (not in assets): new keys for all.
BASES_FORMAT = 1
#: Dockerfiles and files of each base, one directory per kind (``debian/rootfs`` is an overlay).
ASSETS_DIR = defaults.PACKAGE_DIR / "assets" / "bases"
#: Labels every local base carries: its kind and its content key.
KIND_LABEL = "io.gateway-builder.local-base"
KEY_LABEL = "io.gateway-builder.local-base.key"


def content_key(parts: Mapping[str, Any]) -> str:
    """A 16-hex-digit key of ``parts`` (canonical JSON), used as the image tag."""
    return sha256_text(canonical_json({"format": BASES_FORMAT, **parts}))[:16]


def local_tag(kind: str, key: str) -> str:
    """``gateway-builder-local/<kind>:<key>``."""
    return f"{defaults.LOCAL_BASE_REPO}/{kind}:{key}"


def asset_digests(directory: Path) -> dict[str, str]:
    """``relative path -> "<mode>:<sha256>"`` of every file under ``directory`` (sorted)."""
    digests: dict[str, str] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        mode = "755" if os.access(path, os.X_OK) else "644"
        digests[path.relative_to(directory).as_posix()] = (
            f"{mode}:{hashlib.sha256(path.read_bytes()).hexdigest()}"
        )
    return digests
