"""The content-addressed fetch cache.

Layout under the cache root (``--cache-dir``, ``$GATEWAY_BUILDER_CACHE_DIR`` or the user cache dir)::

    artifacts/sha256/<ab>/<hex>/<filename>   downloaded or built wheels/sdists, keyed by sha256
    trees/<kind>/<key>/                      extracted policy sources (git commit + subdir, path
                                             content hash, wheel packages), never modified
    git/<sha256 of url>.git                  bare mirrors of git repositories (no URL stored)
    records/<kind>/<key>.json                small resolution records (used by --offline)
    uv/, pip/, venvs/                        resolver caches and pip-tools interpreters

Entries are written to a temp name and renamed into place, so a crash never leaves a half-written
entry that a later run would trust. Nothing in the cache is trusted either: an artifact is hashed
again before use, and a tree is compared with the content hash recorded when it was written
(``records/tree/``); an entry changed since (by hand, by a tool, on a bad disk) is reported with its
path, removed and fetched again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import platformdirs

from gateway_builder import defaults
from gateway_builder.digest import sha256_file, sha256_text
from gateway_builder.errors import InputError

_CHUNK = 1 << 20
_log = logging.getLogger("gateway_builder.cache")


def default_cache_dir() -> Path:
    """``$GATEWAY_BUILDER_CACHE_DIR`` if set, else the platform's user cache dir."""
    env = os.environ.get(defaults.CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("gateway-builder"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def strip_userinfo(url: str) -> str:
    """``scheme://user:secret@host/path`` -> ``scheme://host/path`` (other URLs unchanged)."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


@dataclass
class Cache:
    """A cache root plus the ``--offline`` switch (no network; a miss is an error)."""

    root: Path
    offline: bool = False
    #: Where a cache entry found changed is reported (the command's UI sets it).
    warn: Callable[[str], None] = field(default=_log.warning, repr=False, compare=False)

    @classmethod
    def open(cls, root: Path | None = None, *, offline: bool = False) -> Cache:
        """The cache at ``root`` (or the default location), created if missing."""
        path = (root or default_cache_dir()).expanduser().resolve()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the cache directory {path}: {exc.strerror}") from None
        return cls(path, offline)

    # -- artifacts ------------------------------------------------------------------------------

    def _artifact_dir(self, sha256: str) -> Path:
        hexdigest = sha256.removeprefix("sha256:")
        return self.root / "artifacts" / "sha256" / hexdigest[:2] / hexdigest

    def artifact(self, sha256: str) -> Path | None:
        """The cached file with this sha256 (``<hex>`` or ``sha256:<hex>``), if present and its
        bytes still have that hash (a changed one is reported and removed: fetch it again)."""
        folder = self._artifact_dir(sha256)
        if not folder.is_dir():
            return None
        files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
        if len(files) != 1:
            return None
        if sha256_file(files[0]) != sha256.removeprefix("sha256:"):
            self._discard(files[0].parent, "its sha256 is not the one it is stored under")
            return None
        return files[0]

    def _discard(self, path: Path, why: str) -> None:
        """Report a changed cache entry and move it out of the way (then delete it)."""
        self.warn(
            f"the fetch cache entry {path} was changed after it was written ({why}): fetching it again"
        )
        gone = path.with_name(f".discarded-{path.name}-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            os.replace(path, gone)
        except FileNotFoundError:
            return  # another process discarded it first
        shutil.rmtree(gone, ignore_errors=True)

    def put_artifact(self, src: Path, filename: str | None = None) -> tuple[Path, str]:
        """Copy ``src`` into the cache under its sha256; return (cached path, hex sha256)."""
        digest = sha256_file(src)
        name = filename or src.name
        if "/" in name or name.startswith("."):
            raise InputError(f"refusing artifact file name {name!r}")
        existing = self.artifact(digest)
        if existing is not None:
            return existing, digest
        folder = self._artifact_dir(digest)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
        try:
            shutil.copyfile(src, tmp / name)
            if sha256_file(tmp / name) != digest:  # src changed under us
                raise InputError(f"{src} changed while it was being cached")
            try:
                os.replace(tmp, folder)
            except OSError:
                if self.artifact(digest) is None:  # not a concurrent writer: a real failure
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        path = self.artifact(digest)
        assert path is not None
        return path, digest

    # -- trees ----------------------------------------------------------------------------------

    def tree(self, kind: str, key: str) -> Path:
        """Where the tree ``kind/key`` lives (it exists only once completely written)."""
        return self.root / "trees" / kind / key

    def put_tree(
        self,
        kind: str,
        key: str,
        fill: Callable[[Path], None],
        *,
        digest: Callable[[Path], str],
        expected: str | None = None,
    ) -> Path:
        """The tree ``kind/key``, created by calling ``fill(tmp_dir)`` unless it exists and is
        unchanged.

        ``digest(tree)`` is recorded when the tree is written; an existing tree must still have
        it (or ``expected``, for trees keyed by their own content hash), else it is reported,
        removed and filled again."""
        final = self.tree(kind, key)
        if final.is_dir():
            recorded = expected or (self.read_record("tree", f"{kind}/{key}") or {}).get("digest")
            if recorded is not None and digest(final) == recorded:
                return final
            if recorded is None:  # written before trees were recorded: cannot tell, refill
                shutil.rmtree(final, ignore_errors=True)
            else:
                self._discard(final, "its content hash is not the one recorded")
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
        try:
            fill(tmp)
            self.write_record("tree", f"{kind}/{key}", {"digest": digest(tmp)})
            try:
                os.replace(tmp, final)
            except OSError:
                if not final.is_dir():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    # -- git mirrors ----------------------------------------------------------------------------

    def git_mirror(self, url: str) -> Path:
        """The bare mirror directory for ``url``, named by a hash of the URL without credentials.

        Leaving the userinfo out means no secret can be guessed back from the name, and a rotated
        token reuses the same mirror.
        """
        return self.root / "git" / f"{sha256_text(strip_userinfo(url))[:32]}.git"

    # -- records --------------------------------------------------------------------------------

    def read_record(self, kind: str, key: str) -> dict[str, Any] | None:
        """A small JSON record (e.g. which artifact an index spec resolved to last time)."""
        path = self.root / "records" / kind / f"{sha256_text(key)}.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_record(self, kind: str, key: str, data: dict[str, Any]) -> None:
        """Store a JSON record atomically."""
        path = self.root / "records" / kind / f"{sha256_text(key)}.json"
        atomic_write_bytes(path, json.dumps(data, sort_keys=True).encode())

    def subdir(self, name: str) -> Path:
        """A tool-specific directory (``uv``, ``pip``, ``venvs`` ...), created if missing."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path
