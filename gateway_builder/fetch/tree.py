"""Safe handling of untrusted source trees: extraction, copying, content hashing.

Policy sources are untrusted. Nothing here ever follows a symlink while reading or writing:
trees are copied with an ``openat``-style walk (``O_NOFOLLOW`` on every file and directory),
archives are extracted without writing through a link, and every symlink is then resolved the
way the kernel would, step by step inside the tree's root; a link whose resolution leaves the
root at any step (even to come back), loops, or ends nowhere is refused. Special files (devices,
FIFOs, sockets) and hard links are refused. What later stages build is always such a checked
copy, never the live source.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import tarfile
import zipfile
from collections import deque
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

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
#: Symlinks followed while resolving one path before it counts as a loop (Linux's ELOOP bound).
MAX_LINK_FOLLOWS = 40
#: Directory nesting of a source tree (deeper trees are refused, not walked recursively).
MAX_TREE_DEPTH = 64

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
# O_NONBLOCK: a FIFO swapped in after the stat must not block the open.
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
_CREATE_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC


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
    """Whether the *text* of a link stays inside (a quick first filter; :func:`resolve_inside`
    decides, because the kernel resolves links inside the target too)."""
    if not target or target.startswith("/"):
        return False
    joined = posixpath.normpath(posixpath.join(str(rel_link.parent), target))
    return joined != ".." and not joined.startswith("../") and not joined.startswith("/")


def resolve_inside(root: Path, rel: PurePosixPath) -> tuple[PurePosixPath | None, str]:
    """Resolve ``rel`` under ``root`` as the kernel would, one component at a time.

    Returns ``(resolved, "")`` (a path of real entries below ``root``) or ``(None, reason)`` when
    a step climbs above ``root``, a link is absolute, the links loop, or an entry on the way is
    missing or not a directory. Only entries below ``root`` are ever looked at (``lstat`` and
    ``readlink`` of paths made of already resolved real directories).
    """
    pending: deque[str] = deque(rel.parts)
    resolved: list[str] = []
    follows = 0
    while pending:
        part = pending.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return None, "points outside the policy directory"
            resolved.pop()
            continue
        entry = root.joinpath(*resolved, part)
        try:
            mode = os.lstat(entry).st_mode
        except FileNotFoundError:
            return None, "points to something that does not exist in the policy directory"
        except OSError as exc:
            return None, f"cannot be resolved ({exc.strerror})"
        if stat.S_ISLNK(mode):
            follows += 1
            if follows > MAX_LINK_FOLLOWS:
                return None, "is part of a symlink loop"
            target = os.readlink(entry)
            if not target or target.startswith("/"):
                return None, "points outside the policy directory"
            pending.extendleft(reversed(target.split("/")))
            continue
        resolved.append(part)
        if pending and not stat.S_ISDIR(mode):
            return None, "points to something that does not exist in the policy directory"
    return PurePosixPath(*resolved) if resolved else PurePosixPath("."), ""


def walk(root: Path) -> Iterator[tuple[PurePosixPath, Path]]:
    """Every non-ignored entry under ``root`` as (relative posix path, absolute path), sorted.

    Symlinked directories are listed, never entered.
    """
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
    """Refuse symlinks the kernel would resolve outside ``root`` and special files below it."""
    for rel, path in walk(root):
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            resolved, reason = resolve_inside(root, rel)
            if resolved is None:
                raise InputError(f"{what}: symlink {rel} {reason} ({os.readlink(path)})")
        elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise InputError(f"{what}: {rel} is not a regular file or directory")
        if len(rel.parts) > MAX_TREE_DEPTH:
            raise InputError(f"{what}: {rel} is nested more than {MAX_TREE_DEPTH} levels deep")


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
    """Copy ``src`` into the (existing, empty) ``dst`` and check the copy.

    The walk holds a directory descriptor at every level and opens each child relative to it
    with ``O_NOFOLLOW``, so a source that changes while it is copied (a file or directory
    swapped for a symlink) cannot make the copy read outside the tree. Leftovers are skipped,
    modes normalized, symlinks copied as links; :func:`check_tree` then judges the copy.
    """
    try:
        fd = os.open(src, _OPEN_DIR)
    except OSError as exc:
        raise InputError(f"{what}: cannot read the directory {src}: {exc.strerror}") from None
    try:
        _copy_dir(fd, dst, PurePosixPath(), what)
    finally:
        os.close(fd)
    check_tree(dst, what)


def _copy_dir(fd: int, dst: Path, rel: PurePosixPath, what: str) -> None:
    if len(rel.parts) > MAX_TREE_DEPTH:
        raise InputError(f"{what}: {rel} is nested more than {MAX_TREE_DEPTH} levels deep")
    with os.scandir(fd) as entries:
        names = sorted(entry.name for entry in entries)
    for name in names:
        child = rel / name
        if is_ignored(child):
            continue
        try:
            mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
            target = dst / name
            if stat.S_ISLNK(mode):
                os.symlink(os.readlink(name, dir_fd=fd), target)
            elif stat.S_ISDIR(mode):
                sub = os.open(name, _OPEN_DIR, dir_fd=fd)
                try:
                    target.mkdir(mode=0o755)
                    _copy_dir(sub, target, child, what)
                finally:
                    os.close(sub)
            elif stat.S_ISREG(mode):
                _copy_file(fd, name, target, child, what)
            else:
                raise InputError(f"{what}: {child} is not a regular file or directory")
        except FileNotFoundError:
            raise InputError(f"{what}: {child} changed while it was being copied") from None
        except OSError as exc:
            raise InputError(f"{what}: cannot copy {child}: {exc.strerror}") from None


def _copy_file(dir_fd: int, name: str, target: Path, rel: PurePosixPath, what: str) -> None:
    src = os.open(name, _OPEN_FILE, dir_fd=dir_fd)
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{what}: {rel} is not a regular file or directory")
        os.set_blocking(src, True)
        executable = bool(st.st_mode & 0o111)
        with os.fdopen(src, "rb", closefd=False) as reader, _create(target, executable) as out:
            while chunk := reader.read(1 << 20):
                out.write(chunk)
    finally:
        os.close(src)


def _create(target: Path, executable: bool) -> BinaryIO:
    """A new file (never an existing one, never through a link) with a normalized mode."""
    fd = os.open(target, _CREATE_FILE, 0o755 if executable else 0o644)
    os.fchmod(fd, 0o755 if executable else 0o644)  # whatever the umask
    return os.fdopen(fd, "wb")


def _make_parents(dest: Path, rel: PurePosixPath, what: str) -> None:
    """Create the directories above ``rel`` below ``dest``; none of them may be a symlink."""
    current = dest
    for part in rel.parts[:-1]:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            current.mkdir(mode=0o755)
            continue
        if not stat.S_ISDIR(mode):
            raise InputError(
                f"{what}: refusing archive member {rel}: {current.relative_to(dest)} is not a "
                "directory"
            )


def extract_tar(archive: Path, dest: Path, what: str, *, strip: str = "") -> None:
    """Extract a tar into ``dest`` with every member checked; ``strip`` drops a leading dir.

    No member is written through a symlink (neither a parent directory nor the file itself);
    the extracted tree is then checked with :func:`check_tree`.
    """
    prefix = PurePosixPath(strip) if strip else None
    try:
        tar = tarfile.open(archive)  # noqa: SIM115 (closed by the with below)
    except (tarfile.TarError, OSError) as exc:
        raise InputError(f"{what}: {archive.name} is not a valid archive: {exc}") from None
    with tar:
        for member in tar:
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
            _extract_member(tar, member, rel, dest, what)
    check_tree(dest, what)


def _extract_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, rel: PurePosixPath, dest: Path, what: str
) -> None:
    _make_parents(dest, rel, what)
    target = dest / rel
    if member.isdir():
        try:
            mode = os.lstat(target).st_mode
        except FileNotFoundError:
            target.mkdir(mode=0o755)
            return
        if not stat.S_ISDIR(mode):
            raise InputError(f"{what}: archive member {rel} appears twice")
    elif member.issym():
        if not link_stays_inside(rel, member.linkname):
            raise InputError(
                f"{what}: symlink {rel} points outside the policy directory ({member.linkname})"
            )
        try:
            os.symlink(member.linkname, target)
        except FileExistsError:
            raise InputError(f"{what}: archive member {rel} appears twice") from None
    elif member.isreg():
        fh = tar.extractfile(member)
        assert fh is not None
        try:
            with fh, _create(target, bool(member.mode & 0o111)) as out:
                while chunk := fh.read(1 << 20):
                    out.write(chunk)
        except FileExistsError:
            raise InputError(f"{what}: archive member {rel} appears twice") from None
    else:
        raise InputError(f"{what}: refusing archive member {rel} (not a file or directory)")


def extract_zip(archive: Path, dest: Path, what: str, *, only: str = "") -> list[PurePosixPath]:
    """Extract a zip (wheel) into ``dest``, every member checked; ``only``: one top-level dir.

    Symlinks are refused, so no member can be written through one.
    """
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
