"""Interpreter prefixes: where a CPython other than Debian's comes from (pyenv's by default),
which of its files go into a local Python base, and a cheap fingerprint of them for the key."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway_builder.errors import InputError


def validate_prefix(prefix: Path, version: str) -> Path:
    """The resolved ``prefix`` if it holds CPython ``version``; InputError otherwise."""
    prefix = prefix.resolve()
    exe = prefix / "bin" / f"python{version}"
    stdlib = prefix / "lib" / f"python{version}" / "os.py"
    if not exe.is_file() or not stdlib.is_file():
        raise InputError(
            f"interpreter prefix {prefix} for Python {version}: expected bin/python{version} "
            f"and lib/python{version}/os.py"
        )
    return prefix


def discover_prefix(version: str, *, pyenv: str | None = None) -> Path:
    """The prefix of CPython ``version`` according to ``pyenv prefix <version>``."""
    exe = pyenv or shutil.which("pyenv")
    hint = f"pass --python-prefix {version}=DIR"
    if not exe:
        raise InputError(f"Python {version}: pyenv not found to discover its prefix; {hint}")
    done = subprocess.run(
        [exe, "prefix", version], capture_output=True, text=True, check=False, timeout=60
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"Python {version}: pyenv prefix {version} failed ({reason}); {hint}")
    # pyenv prints one prefix per line when several versions are selected; take the first.
    return validate_prefix(Path(lines[0]), version)


@dataclass(frozen=True)
class PrefixEntry:
    """One file, directory or symlink of an interpreter prefix that goes into the image."""

    relpath: str  # POSIX path relative to the prefix
    path: Path  # on the host
    kind: str  # "dir" | "file" | "symlink"


#: Top-level stdlib packages left out (GUI, demos).
_SKIP_STDLIB = {"idlelib", "tkinter", "turtledemo", "site-packages"}
#: Directory names left out anywhere in the stdlib (test suites, bytecode caches).
_SKIP_DIRS = {"test", "tests", "idle_test", "__pycache__"}
#: Extension modules left out (Tk, CPython's own test modules and samples).
_SKIP_EXTENSIONS = re.compile(
    r"^(_tkinter|_test\w*|_ctypes_test|xxlimited\w*|_xxtestfuzz|xxsubtype)\."
)


def _keep(rel: str, version: str, is_dir: bool) -> bool:
    parts = rel.split("/")
    top = parts[0]
    if top == "bin":
        return rel == "bin" or (
            len(parts) == 2 and parts[1] in {f"python{version}", "python3", "python"}
        )
    if top != "lib":
        return False
    if len(parts) == 1:
        return True
    if len(parts) == 2:
        return parts[1] == f"python{version}" or parts[1].startswith(("libpython",))
    if parts[1] != f"python{version}":
        return False
    inner = parts[2:]
    if inner[0] in _SKIP_STDLIB:
        # keep the empty site-packages directory itself
        return inner == ["site-packages"]
    if any(p in _SKIP_DIRS for p in inner[:-1]) or (is_dir and inner[-1] in _SKIP_DIRS):
        return False
    name = inner[-1]
    if name.endswith((".pyc", ".pyo", ".a")):
        return False
    return not (inner[0] == "lib-dynload" and _SKIP_EXTENSIONS.match(name))


def prefix_entries(prefix: Path, version: str) -> list[PrefixEntry]:
    """What of ``prefix`` goes into the image, sorted: the interpreter, libpython, the stdlib
    without tests, caches, Tk/IDLE, static libraries and site-packages contents."""
    entries: list[PrefixEntry] = []

    def walk(directory: Path, rel: str) -> None:
        for child in sorted(directory.iterdir(), key=lambda p: p.name):
            child_rel = f"{rel}/{child.name}" if rel else child.name
            if child.is_symlink():
                if _keep(child_rel, version, False):
                    entries.append(PrefixEntry(child_rel, child, "symlink"))
            elif child.is_dir():
                if _keep(child_rel, version, True):
                    entries.append(PrefixEntry(child_rel, child, "dir"))
                    walk(child, child_rel)
            elif child.is_file() and _keep(child_rel, version, False):
                entries.append(PrefixEntry(child_rel, child, "file"))

    walk(prefix, "")
    return entries


def prefix_fingerprint(entries: Sequence[PrefixEntry]) -> str:
    """SHA-256 over the entries' paths, modes, file sizes and mtimes, link targets (no reads)."""
    digest = hashlib.sha256()
    for entry in entries:
        st = entry.path.lstat()
        target = os.readlink(entry.path) if entry.kind == "symlink" else ""
        # A directory's own mtime changes with files left out of the image: ignore it.
        size, mtime = (st.st_size, st.st_mtime_ns) if entry.kind == "file" else (0, 0)
        digest.update(
            f"{entry.relpath}\0{entry.kind}\0{size}\0{mtime}\0{st.st_mode:o}\0{target}\n".encode()
        )
    return digest.hexdigest()
