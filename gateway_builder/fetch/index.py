"""A small client for Python package indexes (PEP 503 HTML and PEP 691 JSON, http(s) and file://).

Used to list a project's files with their sha256, download a file and verify it, and pick the
one wheel that fits a target (Python version + Linux architecture). Credentials in the index URL
are sent as HTTP basic auth to the index's own host only and never printed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from gateway_builder import defaults
from gateway_builder.errors import BuildError, InputError
from gateway_builder.manifest.yamlpos import JSON_LIMITS, load_json
from gateway_builder.redact import redact_url

_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.1"
)


@dataclass(frozen=True)
class IndexFile:
    """One distribution file listed by an index."""

    filename: str
    url: str  # absolute; credentials stripped
    sha256: str | None
    requires_python: str | None = None
    yanked: bool = False

    @property
    def is_wheel(self) -> bool:
        """Whether the file is a wheel."""
        return self.filename.endswith(".whl")

    def version(self) -> Version | None:
        """The version parsed from the file name (None for unknown formats)."""
        return file_version(self.filename)


def file_version(filename: str) -> Version | None:
    """Version of a wheel or sdist file name, or None."""
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        if filename.endswith((".tar.gz", ".zip")):
            return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return None


def file_project(filename: str) -> str | None:
    """Canonical project name of a wheel or sdist file name, or None."""
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[0])
        if filename.endswith((".tar.gz", ".zip")):
            return str(parse_sdist_filename(filename)[0])
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return None


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[dict[str, str | None], str]] = []
        self._current: dict[str, str | None] | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._current = dict(attrs)
            self._text = ""

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._current is not None:
            self.links.append((self._current, self._text.strip()))
            self._current = None


def _ssl_context() -> ssl.SSLContext:
    cafile = os.environ.get("SSL_CERT_FILE")
    if cafile and Path(cafile).is_file():
        return ssl.create_default_context(cafile=cafile)
    return ssl.create_default_context()


def default_index_url() -> str:
    """``$GATEWAY_BUILDER_INDEX_URL`` (a mirror) if set, else the public index."""
    return os.environ.get(defaults.INDEX_URL_ENV) or defaults.DEFAULT_INDEX_URL


class IndexClient:
    """Read one index (``https://host/simple`` or ``file:///dir``)."""

    def __init__(self, index_url: str | None = None, *, timeout: float = 60.0) -> None:
        parts = urlsplit(index_url or default_index_url())
        self._auth: str | None = None
        self._host = parts.hostname or ""
        netloc = parts.netloc
        if parts.username is not None:
            user = unquote(parts.username)
            password = unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._auth = f"Basic {token}"
            netloc = parts.hostname or ""
            if parts.port:
                netloc += f":{parts.port}"
        #: A signed index URL's query goes with every page request (never printed).
        self._query = parts.query
        path = parts.path.rstrip("/") + "/"
        self.url = urlunsplit((parts.scheme, netloc, path, "", ""))
        self.display = redact_url(index_url or default_index_url())
        self.timeout = timeout
        self._context = _ssl_context()

    # -- HTTP -----------------------------------------------------------------------------------

    def _open(self, url: str, accept: str | None = None) -> Any:
        request = urllib.request.Request(url)
        request.add_header("User-Agent", "gateway-builder")
        if accept:
            request.add_header("Accept", accept)
        if self._auth and urlsplit(url).hostname == self._host:
            request.add_header("Authorization", self._auth)
        last: Exception | None = None
        for attempt in range(3):
            try:
                return urllib.request.urlopen(request, timeout=self.timeout, context=self._context)
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    raise
                last = exc
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = exc
            time.sleep(0.5 * (attempt + 1))
        assert last is not None
        raise last

    # -- listing --------------------------------------------------------------------------------

    def project_files(self, name: str) -> list[IndexFile]:
        """Every file the index lists for project ``name`` (empty if the project is unknown)."""
        project = canonicalize_name(name)
        if self.url.startswith("file://"):
            return self._local_files(project)
        page = urljoin(self.url, f"{project}/") + (f"?{self._query}" if self._query else "")
        try:
            with self._open(page, _ACCEPT) as resp:
                # An index page is untrusted: read no more than the JSON limit allows.
                body = resp.read(JSON_LIMITS.max_bytes + 1)
                ctype = resp.headers.get("Content-Type", "")
                final = resp.geturl()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise BuildError(
                f"package index {self.display}: HTTP {exc.code} for project {project}"
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BuildError(f"package index {self.display} unreachable: {reason}") from None
        label = f"package index {self.display}: project {project}"
        if len(body) > JSON_LIMITS.max_bytes:
            raise BuildError(f"{label}: the page is larger than {JSON_LIMITS.max_bytes} bytes")
        if "json" in ctype:
            return self._parse_json(body, final, label)
        return self._parse_html(body.decode("utf-8", "replace"), final)

    def _parse_json(self, body: bytes, base: str, label: str) -> list[IndexFile]:
        try:
            data = load_json(body, label)
        except InputError as exc:
            raise BuildError(exc.message) from None
        files = data.get("files") if isinstance(data, dict) else None
        if not isinstance(files, list):
            raise BuildError(f"{label}: not a PEP 691 project page (no 'files' list)")
        out = []
        for f in files:
            if not isinstance(f, dict):
                continue
            filename, url = f.get("filename"), f.get("url")
            if not isinstance(filename, str) or not isinstance(url, str):
                continue
            hashes = f.get("hashes")
            sha = hashes.get("sha256") if isinstance(hashes, dict) else None
            requires = f.get("requires-python")
            out.append(
                IndexFile(
                    filename,
                    _strip_fragment(urljoin(base, url)),
                    sha if isinstance(sha, str) else None,
                    requires if isinstance(requires, str) else None,
                    bool(f.get("yanked")),
                )
            )
        return out

    def _parse_html(self, text: str, base: str) -> list[IndexFile]:
        parser = _Links()
        parser.feed(text)
        out = []
        for attrs, label in parser.links:
            href = attrs.get("href")
            if not href:
                continue
            url = urljoin(base, href)
            parts = urlsplit(url)
            filename = unquote(parts.path.rsplit("/", 1)[-1]) or label
            m = re.search(r"sha256=([0-9a-fA-F]{64})", parts.fragment)
            out.append(
                IndexFile(
                    filename,
                    _strip_fragment(url),
                    m.group(1).lower() if m else None,
                    attrs.get("data-requires-python"),
                    "data-yanked" in attrs,
                )
            )
        return out

    def _local_files(self, project: str) -> list[IndexFile]:
        root = Path(unquote(urlsplit(self.url).path))
        folder = root / project
        if (folder / "index.html").is_file():
            return self._parse_html((folder / "index.html").read_text(), folder.as_uri() + "/")
        # A flat directory of distributions (find-links style).
        folder = folder if folder.is_dir() else root
        if not folder.is_dir():
            return []
        files = []
        for path in sorted(folder.iterdir()):
            if path.is_file() and file_project(path.name) == project:
                files.append(IndexFile(path.name, path.as_uri(), None))
        return files

    # -- download -------------------------------------------------------------------------------

    def download(self, file: IndexFile, dest_dir: Path, expected_sha256: str | None = None) -> Path:
        """Download ``file`` into ``dest_dir``; verify its sha256 against the index and the lock."""
        dest_dir.mkdir(parents=True, exist_ok=True)
        target = dest_dir / file.filename
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(prefix=".dl-", dir=dest_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                if file.url.startswith("file://"):
                    with Path(unquote(urlsplit(file.url).path)).open("rb") as src:
                        while chunk := src.read(1 << 20):
                            digest.update(chunk)
                            out.write(chunk)
                else:
                    try:
                        with self._open(file.url) as resp:
                            while chunk := resp.read(1 << 20):
                                digest.update(chunk)
                                out.write(chunk)
                    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                        reason = getattr(exc, "reason", exc)
                        raise BuildError(
                            f"download of {file.filename} from {self.display} failed: {reason}"
                        ) from None
            actual = digest.hexdigest()
            for label, want in (("the index", file.sha256), ("the lock", expected_sha256)):
                if want and actual != want.removeprefix("sha256:"):
                    raise BuildError(
                        f"sha256 mismatch for {file.filename}: {label} says {want.removeprefix('sha256:')}, "
                        f"downloaded {actual}"
                    )
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return target


def _strip_fragment(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))


# --------------------------------------------------------------------------------------------
# Target tags
# --------------------------------------------------------------------------------------------

_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


def _glibc(platform: str) -> tuple[int, int]:
    triple = defaults.UV_PLATFORM_TRIPLES.get(platform)
    if triple is None:
        raise InputError(
            f"unknown platform {platform!r}: expected one of {', '.join(defaults.PLATFORMS)}"
        )
    m = re.search(r"manylinux_(\d+)_(\d+)", triple)
    assert m, triple
    return int(m.group(1)), int(m.group(2))


def platform_tags(platform: str) -> list[str]:
    """Linux platform tags a target accepts, most specific first (manylinux only)."""
    major, top = _glibc(platform)
    out: list[str] = []
    for minor in range(top, 4, -1):
        out.append(f"manylinux_{major}_{minor}_{platform}")
        legacy = _LEGACY_MANYLINUX.get((major, minor))
        if legacy and (platform in ("x86_64", "i686") or legacy == "manylinux2014"):
            out.append(f"{legacy}_{platform}")
    return out


def target_tags(python_version: str, platform: str) -> list[Tag]:
    """Wheel tags installable on CPython ``python_version`` / Linux ``platform``, best first."""
    major, minor = (int(x) for x in python_version.split("."))
    plats = platform_tags(platform)
    tags = list(cpython_tags((major, minor), platforms=plats))
    tags += list(compatible_tags((major, minor), f"cp{major}{minor}", plats))
    seen: set[Tag] = set()
    ordered = []
    for tag in tags:
        if tag not in seen:
            seen.add(tag)
            ordered.append(tag)
    return ordered


def wheel_rank(filename: str, ranking: dict[Tag, int]) -> int | None:
    """The rank of a wheel for a target (lower is better), or None if it does not install."""
    try:
        tags = parse_wheel_filename(filename)[3]
    except (InvalidWheelFilename, InvalidVersion):
        return None
    ranks = [ranking[t] for t in tags if t in ranking]
    return min(ranks) if ranks else None


def best_wheel(filenames: list[str], python_version: str, platform: str) -> str | None:
    """The most specific wheel among ``filenames`` that installs on the target, or None."""
    ranking = {tag: i for i, tag in enumerate(target_tags(python_version, platform))}
    ranked = [(r, f) for f in filenames if (r := wheel_rank(f, ranking)) is not None]
    return min(ranked)[1] if ranked else None


def copy_into(src: Path, dest_dir: Path, name: str | None = None) -> Path:
    """Copy ``src`` into ``dest_dir`` (atomically) and return the new path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / (name or src.name)
    fd, tmp = tempfile.mkstemp(prefix=".cp-", dir=dest_dir)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target
