"""Locked artifacts -> a wheelhouse: exactly the files the lock names, hash-checked and cached."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from gateway_builder.cache import Cache
from gateway_builder.errors import BuildError, InputError
from gateway_builder.fetch.index import IndexClient, best_wheel, copy_into, file_version
from gateway_builder.models import LockedRequirement


def download_artifacts(
    requirements: Sequence[LockedRequirement],
    python_version: str,
    platform: str,
    dest_dir: Path,
    *,
    cache: Cache,
    index_url: str | None = None,
) -> list[Path]:
    """Place exactly the locked artifacts for a target into ``dest_dir``; return their paths.

    For each requirement, one wheel whose sha256 is in the lock's hashes and whose tags install
    on CPython ``python_version`` / manylinux ``platform``. Downloads are verified and cached by
    sha256; a cached file is reused without touching the network.
    """
    out: list[Path] = []
    client: IndexClient | None = None
    for req in requirements:
        wanted = {h.removeprefix("sha256:") for h in req.hashes}
        cached = [(h, p) for h in sorted(wanted) if (p := cache.artifact(h)) is not None]
        names = [p.name for _, p in cached]
        best = best_wheel(names, python_version, platform)
        if best is not None:
            path = next(p for _, p in cached if p.name == best)
            out.append(copy_into(path, dest_dir))
            continue
        if cache.offline:
            raise InputError(
                f"{req.name}=={req.version}: no wheel for Python {python_version} / {platform} in "
                "the cache (--offline)"
            )
        client = client or IndexClient(index_url)
        listed = client.project_files(req.name)
        files = [
            f
            for f in listed
            if f.sha256 in wanted or (f.sha256 is None and file_version(f.filename) is not None)
        ]
        by_name = {f.filename: f for f in files if str(file_version(f.filename)) == req.version}
        best = best_wheel(sorted(by_name), python_version, platform)
        same_version = [f for f in listed if str(file_version(f.filename)) == req.version]
        if best is None and same_version and not by_name:
            raise BuildError(
                f"{req.name}=={req.version}: no file on the index has the hash the lock records "
                f"({', '.join(sorted(req.hashes))}): the lock was edited or is inconsistent; "
                "`gateway-builder lock --check` names the entry"
            )
        if best is None:
            raise BuildError(
                f"{req.name}=={req.version}: the lock has no wheel that installs on Python "
                f"{python_version} / {platform} (only an sdist?); building sdists of dependencies "
                "is not supported"
            )
        file = by_name[best]
        with tempfile.TemporaryDirectory(prefix="gwb-dl-") as tmp:
            downloaded = client.download(file, Path(tmp))
            path, digest = cache.put_artifact(downloaded)
        if digest not in wanted:
            raise BuildError(
                f"sha256 mismatch for {best}: the lock allows {', '.join(sorted(wanted))}, "
                f"downloaded {digest}"
            )
        out.append(copy_into(path, dest_dir))
    return out
