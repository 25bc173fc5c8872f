"""Safe handling of untrusted source trees: extraction, copying, content hashing.

Policy sources are untrusted. Every archive member, subdirectory and symlink is checked to stay
inside its root; special files (devices, FIFOs, sockets) and hard links are refused.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from gateway_builder.errors import InputError

#: Names skipped at any depth when hashing or copying a source directory.
IGNORED_NAMES = frozenset(
    {
        "__pycache__",
        ".git",
        ".hg",
        ".venv",
        ".tox",
        ".nox",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".DS_Store",
    }
)
#: Names skipped at the root of a source directory only (local build/venv leftovers).
IGNORED_ROOT_NAMES = frozenset({"venv", "env", "build", "dist"})
IGNORED_SUFFIXES = (".pyc", ".pyo", ".egg-info")


def is_ignored(rel: PurePosixPath) -> bool:
    """Whether a relative path is a build/VCS leftover that is neither hashed nor copied."""
    if any(part in IGNORED_NAMES for part in rel.parts):
        return True
    if rel.parts and rel.parts[0] in IGNORED_ROOT_NAMES:
        return True
    return any(part.endswith(IGNORED_SUFFIXES) for part in rel.parts)


def safe_relpath(name: str, what: str) -> PurePosixPath:
    """Normalize an archive member / subdirectory name; reject absolute paths and ``..``."""
    if not name or "\x00" in name or "\\" in name:
        raise InputError(f"{what}: refusing the path {name!r}")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise InputError(f"{what}: refusing {name!r}: it escapes its root")
    parts = [p for p in path.parts if p not in ("", ".")]
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def link_stays_inside(rel_link: PurePosixPath, target: str) -> bool:
    """Whether a symlink at ``rel_link`` (relative to a root) pointing to ``target`` stays inside."""
    if not target or target.startswith("/"):
        return False
    joined = posixpath.normpath(posixpath.join(str(rel_link.parent), target))
    return joined != ".." and not joined.startswith("../") and not joined.startswith("/")


def walk(root: Path) -> Iterator[tuple[PurePosixPath, Path]]:
    """Every non-ignored entry under ``root`` as (relative posix path, absolute path), sorted."""
    stack = [root]
    out: list[tuple[PurePosixPath, Path]] = []
    while stack:
        folder = stack.pop()
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            path = Path(entry.path)
            rel = PurePosixPath(path.relative_to(root).as_posix())
            if is_ignored(rel):
                continue
            out.append((rel, path))
            if entry.is_dir(follow_symlinks=False):
                stack.append(path)
    yield from sorted(out, key=lambda item: item[0].parts)


def check_tree(root: Path, what: str) -> None:
    """Reject symlinks that leave ``root`` and special files anywhere below it."""
    for rel, path in walk(root):
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            target = os.readlink(path)
            if not link_stays_inside(rel, target):
                raise InputError(
                    f"{what}: symlink {rel} points outside the policy directory ({target})"
                )
        elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise InputError(f"{what}: {rel} is not a regular file or directory")


def content_hash(root: Path) -> str:
    """``sha256:<hex>`` over relative paths, types, executable bits and contents (sorted)."""
    digest = hashlib.sha256()
    for rel, path in walk(root):
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            record = f"L {rel} {os.readlink(path)}\n"
        elif stat.S_ISDIR(mode):
            record = f"D {rel}\n"
        else:
            h = hashlib.sha256(path.read_bytes()).hexdigest()
            record = f"F {rel} {'x' if mode & 0o111 else '-'} {h}\n"
        digest.update(record.encode("utf-8", "surrogateescape"))
    return f"sha256:{digest.hexdigest()}"


def copy_tree(src: Path, dst: Path, what: str) -> None:
    """Copy ``src`` into the (existing, empty) ``dst``: checked, ignoring leftovers, modes normalized."""
    check_tree(src, what)
    for rel, path in walk(src):
        target = dst / rel
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(path), target)
        elif stat.S_ISDIR(mode):
            target.mkdir(mode=0o755)
        else:
            target.write_bytes(path.read_bytes())
            os.chmod(target, 0o755 if mode & 0o111 else 0o644)


def extract_tar(archive: Path, dest: Path, what: str, *, strip: str = "") -> None:
    """Extract a tar into ``dest`` with every member checked; ``strip`` drops a leading dir."""
    prefix = PurePosixPath(strip) if strip else None
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            rel = safe_relpath(member.name, what)
            if prefix is not None:
                if rel == prefix:
                    continue
                try:
                    rel = rel.relative_to(prefix)
                except ValueError:
                    continue
            if str(rel) == "." or is_ignored(rel):
                continue
            target = dest / rel
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True, mode=0o755)
            elif member.issym():
                if not link_stays_inside(rel, member.linkname):
                    raise InputError(
                        f"{what}: symlink {rel} points outside the policy directory "
                        f"({member.linkname})"
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(member.linkname, target)
            elif member.isreg():
                target.parent.mkdir(parents=True, exist_ok=True)
                fh = tar.extractfile(member)
                assert fh is not None
                with fh, target.open("wb") as out:
                    while chunk := fh.read(1 << 20):
                        out.write(chunk)
                os.chmod(target, 0o755 if member.mode & 0o111 else 0o644)
            else:
                raise InputError(f"{what}: refusing archive member {rel} (not a file or directory)")


def extract_zip(archive: Path, dest: Path, what: str, *, only: str = "") -> list[PurePosixPath]:
    """Extract a zip (wheel) into ``dest``, every member checked; ``only``: one top-level dir."""
    written: list[PurePosixPath] = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            rel = safe_relpath(info.filename, what)
            if str(rel) == ".":
                continue
            if only and rel.parts[0] != only:
                continue
            unix_mode = info.external_attr >> 16
            if unix_mode and stat.S_ISLNK(unix_mode):
                raise InputError(f"{what}: refusing symlink {rel} in the archive")
            target = dest / rel
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True, mode=0o755)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as fh, target.open("wb") as out:
                while chunk := fh.read(1 << 20):
                    out.write(chunk)
            os.chmod(target, 0o755 if unix_mode & 0o111 else 0o644)
            written.append(rel)
    return written
