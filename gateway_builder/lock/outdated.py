"""Newer sources than the lock's: a newer tag for a version-prefix ref (``v1`` -> ``v1.3.0``),
a newer commit on a branch or ``HEAD``, a newer release within an index source's specifier.

The lock keeps floating refs on their locked source until ``--upgrade-policy NAME``; this module
only looks (``git ls-remote``, the index's project page) so that ``lock`` can say what an
upgrade would bring. Exact tags, commits and path sources never have anything newer here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from gateway_builder.cache import Cache
from gateway_builder.errors import GatewayBuilderError
from gateway_builder.fetch import FetchedPolicy
from gateway_builder.fetch.git import GitRemote, classify_ref, normalize_url, pick_version_tag
from gateway_builder.fetch.index import IndexClient, file_version
from gateway_builder.manifest import GitSource, PipSource


@dataclass(frozen=True)
class Outdated:
    """One policy whose manifest allows a newer source than the locked one."""

    name: str
    kind: str  # "tag" | "commit" | "release"
    locked: str
    newest: str

    def hint(self) -> str:
        """One line for the user."""
        return (
            f"policy '{self.name}': {self.kind} {self.newest} is available (locked: "
            f"{self.locked}); run `gateway-builder lock --upgrade-policy {self.name}`"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"name": self.name, "kind": self.kind, "locked": self.locked, "newest": self.newest}


def _tag_version(tag: str) -> tuple[int, ...]:
    return tuple(int(p) for p in tag.rsplit("/", 1)[-1].lstrip("v").split("."))


def _git(f: FetchedPolicy, src: GitSource, cache: Cache) -> Outdated | None:
    floating = classify_ref(src.ref) in ("major", "minor")
    if not floating and (f.tag is not None or re.fullmatch(r"[0-9a-f]{7,40}", src.ref)):
        return None  # an exact tag (moving it is reported when it moves) or a commit
    origin = f.spec.origin.rsplit(":", 2)[0] if f.spec.origin else ""
    url = normalize_url(src.url, Path(origin).parent if origin else Path.cwd())
    refs = GitRemote(url, cache, f"policy '{f.name}'").remote_refs()
    if floating:
        tags = sorted(k.removeprefix("refs/tags/") for k in refs if k.startswith("refs/tags/"))
        newest = pick_version_tag(src.ref, tags)
        if newest and f.tag and _tag_version(newest) > _tag_version(f.tag):
            return Outdated(f.name, "tag", f.tag, newest)
        return None
    head = refs.get("HEAD") if src.ref == "HEAD" else refs.get(f"refs/heads/{src.ref}")
    if head and head != f.resolved:
        return Outdated(f.name, "commit", f.resolved[:12], f"{head[:12]} on {src.ref}")
    return None


def _index(f: FetchedPolicy, src: PipSource) -> Outdated | None:
    locked = file_version(f.source_file or "")
    if locked is None:
        return None
    versions: set[Version] = set()
    for file in IndexClient(src.index_url).project_files(src.package):
        version = file.version()
        usable = file.filename.endswith("-none-any.whl") or not file.is_wheel
        if version is not None and usable and not file.yanked:
            versions.add(version)
    allowed = list(SpecifierSet(src.version).filter(versions))
    newest = max(allowed, default=None)
    if newest is not None and newest > locked:
        name = canonicalize_name(src.package)
        return Outdated(f.name, "release", f"{name}=={locked}", f"{name}=={newest}")
    return None


def find_outdated(
    fetched: Sequence[FetchedPolicy], cache: Cache, *, jobs: int = 4
) -> tuple[list[Outdated], list[str]]:
    """(policies with something newer, in name order; one line per source that could not be
    asked). Offline there is nothing to ask."""
    if cache.offline:
        return [], []

    def one(f: FetchedPolicy) -> Outdated | str | None:
        src = f.spec.source
        try:
            if isinstance(src, GitSource):
                return _git(f, src, cache)
            if isinstance(src, PipSource):
                return _index(f, src)
        except GatewayBuilderError as exc:
            return f"policy '{f.name}': cannot look for a newer source: {exc.message}"
        return None

    todo = sorted(fetched, key=lambda f: f.name)
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(todo)))) as pool:
        results = list(pool.map(one, todo))
    found = [r for r in results if isinstance(r, Outdated)]
    problems = [r for r in results if isinstance(r, str)]
    return found, problems
