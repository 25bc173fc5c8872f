"""Build contexts of the Dockerfile-built bases: normalized tars (fixed owner, modes and mtime),
so the same assets and prefix always send the same bytes to the engine."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from gateway_builder import defaults
from gateway_builder.bases.prefixes import PrefixEntry

#: Where an interpreter prefix goes in the context (the python-prefix Dockerfile copies it).
PREFIX_ROOT = "python"


def _tar_info(name: str, kind: str, size: int = 0, *, executable: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = defaults.DEFAULT_SOURCE_DATE_EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.size = size
    if kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.mode = 0o755 if executable else 0o644
    return info


def _add_asset_dir(tar: tarfile.TarFile, directory: Path, prefix: str = "") -> None:
    for path in sorted(directory.rglob("*")):
        name = prefix + path.relative_to(directory).as_posix()
        if path.is_dir():
            tar.addfile(_tar_info(name, "dir"))
        elif path.is_file():
            data = path.read_bytes()
            info = _tar_info(name, "file", len(data), executable=os.access(path, os.X_OK))
            tar.addfile(info, io.BytesIO(data))


def _add_prefix(tar: tarfile.TarFile, entries: Sequence[PrefixEntry], root: str) -> None:
    tar.addfile(_tar_info(root, "dir"))
    for entry in entries:
        name = f"{root}/{entry.relpath}"
        if entry.kind == "dir":
            tar.addfile(_tar_info(name, "dir"))
        elif entry.kind == "symlink":
            info = _tar_info(name, "file")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(entry.path), 0o777
            tar.addfile(info)
        else:
            st = entry.path.stat()
            info = _tar_info(name, "file", st.st_size, executable=bool(st.st_mode & 0o111))
            with entry.path.open("rb") as handle:
                tar.addfile(info, handle)


def build_context(asset_dir: Path, prefix: Sequence[PrefixEntry] | None = None) -> IO[bytes]:
    """An uncompressed tar build context: the asset directory, plus ``python/`` if given."""
    handle = tempfile.TemporaryFile(prefix="gateway-builder-context-")  # noqa: SIM115 (returned)
    with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_asset_dir(tar, asset_dir)
        if prefix is not None:
            _add_prefix(tar, prefix, PREFIX_ROOT)
    handle.seek(0)
    return handle
