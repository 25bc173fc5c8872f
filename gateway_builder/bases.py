"""Local base images built from Debian packages alone (``gateway-builder bases build``).

For sites (and machines like CI here) that cannot pull the upstream images. Every image is
tagged ``gateway-builder-local/<kind>:<key>`` where ``key`` hashes everything the image is made
from (Dockerfile, asset files, build arguments, the parent image id, the interpreter prefix's
file list); an existing tag is reused, so a second run costs seconds.

* ``debian``: ``debootstrap --variant=minbase`` piped into ``docker import``.
* ``python3.11``: Debian's CPython with venv support.
* ``python<X.Y>`` (other versions): a CPython copied from an interpreter prefix (pyenv's by
  default) into ``/opt/python/<X.Y>``, made relocatable, with the libraries it needs.
* ``runtime``: tini, bash, python3.11, those libraries, the non-root user and a router stand-in
  at Envoy's path. Labelled as a stand-in; images built on it inherit the label.
* ``engine-builder``: Debian's Go and a stand-in for the upstream builder that compiles a small
  policy engine registering the policies it is given.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import docker
from docker.errors import DockerException

from gateway_builder import defaults
from gateway_builder.dockerd import ensure_host_tool, image_exists, stream_build
from gateway_builder.errors import BuildError, InputError
from gateway_builder.plan import BaseImages, PythonBase

LogFn = Callable[[str], None]

#: Bump when the way images are assembled changes in code (not in assets): new keys for all.
BASES_FORMAT = 1
ASSETS_DIR = defaults.PACKAGE_DIR / "assets" / "bases"
#: Python version served by Debian's own package (bookworm) instead of a copied prefix.
DEBIAN_PYTHON = "3.11"
KIND_LABEL = "io.gateway-builder.local-base"
KEY_LABEL = "io.gateway-builder.local-base.key"
STANDIN_NOTE_LABEL = f"{defaults.STANDIN_LABEL}.note"
STANDIN_NOTE = (
    "router (/usr/local/bin/envoy) and policy engine are gateway-builder stand-ins, "
    "not Envoy or the upstream policy engine"
)
#: The stand-in builder in the engine-builder base (no system build lock to pass).
LOCAL_ENGINE_BUILDER_COMMAND: tuple[str, ...] = ("/usr/local/bin/gateway-builder",)
#: Debian's tini, installed in the runtime base.
LOCAL_TINI = "/usr/bin/tini"
#: Fixed mtime of files sent in build contexts (1980-01-01), so contexts do not vary.
CONTEXT_MTIME = 315532800
_VERSION_RE = re.compile(r"^3\.\d{1,2}$")
#: debootstrap's per-package lines ("I: Unpacking bash...", "I: Retrieving libc6 2.36-9").
_PER_PACKAGE_LINE = re.compile(
    r"^I: ((Extracting|Unpacking|Configuring) \S+\.\.\.|(Retrieving|Validating) \S+ \S*\d\S*)$"
)


# --------------------------------------------------------------------------------------------
# Pure helpers: keys, arguments, interpreter prefixes
# --------------------------------------------------------------------------------------------


def content_key(parts: Mapping[str, Any]) -> str:
    """A 16-hex-digit key of ``parts`` (canonical JSON), used as the image tag."""
    canonical = json.dumps({"format": BASES_FORMAT, **parts}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


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


def check_python_version(version: str) -> str:
    """``version`` if it is a supported ``X.Y``; InputError otherwise."""
    if not _VERSION_RE.match(version) or version not in defaults.SUPPORTED_PYTHONS:
        raise InputError(
            f"--python {version}: expected one of {', '.join(defaults.SUPPORTED_PYTHONS)}"
        )
    return version


def parse_prefix_args(values: Sequence[str]) -> dict[str, Path]:
    """``["3.12=/path", ...]`` (``--python-prefix``) as ``{"3.12": Path("/path")}``."""
    prefixes: dict[str, Path] = {}
    for value in values:
        version, sep, path = value.partition("=")
        if not sep or not path:
            raise InputError(f"--python-prefix {value}: expected VERSION=DIR, e.g. 3.12=/opt/py312")
        check_python_version(version.strip())
        prefixes[version.strip()] = Path(path).expanduser()
    return prefixes


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


# --------------------------------------------------------------------------------------------
# Build contexts
# --------------------------------------------------------------------------------------------


def _tar_info(name: str, kind: str, size: int = 0, *, executable: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = CONTEXT_MTIME
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


def _context(asset_dir: Path, prefix: Sequence[PrefixEntry] | None = None) -> IO[bytes]:
    """An uncompressed tar build context: the asset directory, plus ``python/`` if given."""
    handle = tempfile.TemporaryFile(prefix="gateway-builder-context-")  # noqa: SIM115 (returned)
    with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_asset_dir(tar, asset_dir)
        if prefix is not None:
            _add_prefix(tar, prefix, "python")
    handle.seek(0)
    return handle


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


@dataclass
class BaseEvent:
    """What happened to one base image in a run (for reports and benchmarks)."""

    kind: str
    tag: str
    cached: bool
    seconds: float
    image_id: str = ""
    size: int = 0


@dataclass
class BasesReport:
    """The bases of one run and what each cost."""

    bases: BaseImages
    events: list[BaseEvent] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (the ``bases build --json`` result)."""
        return {
            "bases": {
                "engine_builder": self.bases.engine_builder,
                "runtime": self.bases.runtime,
                "standin": self.bases.standin,
                "tini": self.bases.tini,
                "engine_builder_command": list(self.bases.engine_builder_command),
                "pythons": [asdict(p) for p in self.bases.pythons],
            },
            "images": [asdict(e) for e in self.events],
        }


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


class _Builder:
    def __init__(
        self, client: docker.DockerClient, log: LogFn, detail: LogFn, *, rebuild: bool
    ) -> None:
        self.client = client
        self.log = log
        self.detail = detail
        self.rebuild = rebuild
        self.events: list[BaseEvent] = []

    def _image_id(self, tag: str) -> str:
        return str(self.client.images.get(tag).id)

    def _record(self, kind: str, tag: str, cached: bool, start: float) -> str:
        image = self.client.images.get(tag)
        self.events.append(
            BaseEvent(
                kind,
                tag,
                cached,
                round(time.monotonic() - start, 2),
                str(image.id),
                int(image.attrs.get("Size", 0)),
            )
        )
        return tag

    def cached(self, kind: str, tag: str, start: float) -> bool:
        if not self.rebuild and image_exists(self.client, tag):
            self.log(f"{kind}: using cached {tag}")
            self._record(kind, tag, True, start)
            return True
        return False

    # --- debian ---------------------------------------------------------------------------

    def debian(self) -> str:
        start = time.monotonic()
        overlay = ASSETS_DIR / "debian" / "rootfs"
        key = content_key(
            {
                "kind": "debian",
                "suite": defaults.LOCAL_DEBIAN_SUITE,
                "variant": defaults.LOCAL_DEBIAN_VARIANT,
                "mirror": defaults.LOCAL_DEBIAN_MIRROR,
                "security_mirror": defaults.LOCAL_DEBIAN_SECURITY_MIRROR,
                "overlay": asset_digests(overlay),
            }
        )
        tag = local_tag("debian", key)
        if self.cached("debian", tag, start):
            return tag
        if os.geteuid() != 0:
            raise BuildError(
                f"building the Debian base ({tag}) runs debootstrap, which needs root: run "
                "'gateway-builder bases build' once as root (later runs reuse the image)"
            )
        debootstrap = ensure_host_tool("debootstrap", "debootstrap", log=self.log)
        with tempfile.TemporaryDirectory(prefix="gateway-builder-debian-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            try:
                self._debootstrap(debootstrap, rootfs)
                _configure_rootfs(rootfs, overlay)
                tarball = Path(tmp) / "rootfs.tar"
                _run_checked(
                    ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."],
                    "tar of the Debian root file system",
                )
                self.log(f"debian: importing {tarball.stat().st_size // 2**20} MiB as {tag}")
                repository, _, image_tag = tag.rpartition(":")
                changes = [
                    f'LABEL {KIND_LABEL}="debian" {KEY_LABEL}="{key}"',
                    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    'CMD ["/bin/bash"]',
                ]
                try:
                    self.client.api.import_image(
                        src=str(tarball), repository=repository, tag=image_tag, changes=changes
                    )
                except DockerException as exc:
                    raise BuildError(f"docker import of the Debian base failed: {exc}") from None
            finally:
                _unmount_below(rootfs)
        return self._record("debian", tag, False, start)

    def _debootstrap(self, debootstrap: str, rootfs: Path) -> None:
        cmd = [
            debootstrap,
            f"--variant={defaults.LOCAL_DEBIAN_VARIANT}",
            defaults.LOCAL_DEBIAN_SUITE,
            str(rootfs),
            defaults.LOCAL_DEBIAN_MIRROR,
        ]
        self.log(f"debian: {' '.join(cmd[:1] + cmd[1:3])} ... ({defaults.LOCAL_DEBIAN_MIRROR})")
        tail: deque[str] = deque(maxlen=40)
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            tail.append(line)
            # Show phases and problems; per-package lines ("I: Unpacking bash...") go to detail.
            if _PER_PACKAGE_LINE.match(line) or not line.startswith(("I:", "E:", "W:")):
                self.detail(f"debian: {line}")
            else:
                self.log(f"debian: {line}")
        if proc.wait() != 0:
            raise BuildError(
                f"debootstrap failed (exit {proc.returncode})", details="\n".join(tail)
            )

    # --- Dockerfile-built kinds -----------------------------------------------------------

    def dockerfile_image(
        self,
        kind: str,
        asset: str,
        parent: str,
        *,
        buildargs: Mapping[str, str],
        labels: Mapping[str, str] | None = None,
        prefix: Sequence[PrefixEntry] | None = None,
        inputs: Mapping[str, str] | None = None,
    ) -> str:
        start = time.monotonic()
        asset_dir = ASSETS_DIR / asset
        parent_id = self._image_id(parent)
        key = content_key(
            {
                "kind": kind,
                "parent_id": parent_id,
                "assets": asset_digests(asset_dir),
                "buildargs": dict(buildargs),
                "labels": dict(labels or {}),
                "inputs": dict(inputs or {}),
            }
        )
        tag = local_tag(kind, key)
        if self.cached(kind, tag, start):
            return tag
        self.log(f"{kind}: building {tag}")
        all_labels = {KIND_LABEL: kind, KEY_LABEL: key, **(labels or {})}
        with _context(asset_dir, prefix) as context:
            stream_build(
                self.client,
                log=lambda line: (self.log if line.startswith("Step ") else self.detail)(
                    f"{kind}: {line}"
                ),
                fileobj=context,
                custom_context=True,
                tag=tag,
                buildargs={"BASE_IMAGE": parent, **buildargs},
                labels=all_labels,
                nocache=self.rebuild,
            )
        return self._record(kind, tag, False, start)

    def python_from_debian(self, debian: str, version: str) -> PythonBase:
        tag = self.dockerfile_image(
            f"python{version}", "python-debian", debian, buildargs={"PY_VERSION": version}
        )
        return PythonBase(version, tag, f"/usr/bin/python{version}", ())

    def python_from_prefix(self, debian: str, version: str, prefix: Path) -> PythonBase:
        prefix = validate_prefix(prefix, version)
        entries = prefix_entries(prefix, version)
        root = f"{defaults.LOCAL_PYTHON_ROOT}/{version}"
        tag = self.dockerfile_image(
            f"python{version}",
            "python-prefix",
            debian,
            buildargs={
                "PY_VERSION": version,
                "PY_ROOT": root,
                "PYTHON_RUNTIME_PACKAGES": " ".join(defaults.LOCAL_PYTHON_RUNTIME_PACKAGES),
            },
            labels={f"{KIND_LABEL}.python-prefix": str(prefix)},
            prefix=entries,
            inputs={"prefix": str(prefix), "fingerprint": prefix_fingerprint(entries)},
        )
        return PythonBase(version, tag, f"{root}/bin/python{version}", (root,))

    def runtime(self, debian: str) -> str:
        return self.dockerfile_image(
            "runtime",
            "runtime",
            debian,
            buildargs={
                "PYTHON_RUNTIME_PACKAGES": " ".join(defaults.LOCAL_PYTHON_RUNTIME_PACKAGES),
                "RUNTIME_USER": defaults.RUNTIME_USER,
                "RUNTIME_UID": str(defaults.RUNTIME_UID),
                "SOCKET_DIR": defaults.SOCKET_DIR,
                "ENVOY_BINARY": defaults.ENVOY_BINARY,
                "ENVOY_CONFIG": defaults.ENVOY_CONFIG,
            },
            labels={defaults.STANDIN_LABEL: "true", STANDIN_NOTE_LABEL: STANDIN_NOTE},
        )

    def engine_builder(self, debian: str) -> str:
        return self.dockerfile_image(
            "engine-builder",
            "engine-builder",
            debian,
            buildargs={},
            labels={defaults.STANDIN_LABEL: "true", STANDIN_NOTE_LABEL: STANDIN_NOTE},
        )


def _run_checked(cmd: Sequence[str], what: str) -> None:
    done = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BuildError(f"{what} failed (exit {done.returncode})", details=done.stderr[-4000:])


def _unmount_below(root: Path) -> None:
    """Unmount anything a failed debootstrap left mounted under ``root`` (before deleting it)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return
    targets = [line.split()[1] for line in mounts if len(line.split()) > 1]
    inside = [t for t in targets if t == str(root) or t.startswith(f"{root}/")]
    for target in sorted(inside, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)


def _configure_rootfs(rootfs: Path, overlay: Path) -> None:
    """apt sources (plain HTTP), apt/dpkg settings, and no caches, docs or host files."""
    suite = defaults.LOCAL_DEBIAN_SUITE
    (rootfs / "etc/apt/sources.list").write_text(
        f"deb {defaults.LOCAL_DEBIAN_MIRROR} {suite} main\n"
        f"deb {defaults.LOCAL_DEBIAN_MIRROR} {suite}-updates main\n"
        f"deb {defaults.LOCAL_DEBIAN_SECURITY_MIRROR} {suite}-security main\n"
    )
    for path in sorted(overlay.rglob("*")):
        target = rootfs / path.relative_to(overlay)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            shutil.copy2(path, target)
    for pattern in (
        "var/cache/apt/*.bin",
        "var/cache/apt/archives/*.deb",
        "var/lib/apt/lists/*",
        "var/log/*.log",
        "var/log/apt/*",
        "var/cache/debconf/*-old",
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/lintian/*",
    ):
        for path in rootfs.glob(pattern):
            _remove(path)
    for path in (rootfs / "usr/share/locale").glob("*"):
        if path.name != "locale.alias":
            _remove(path)
    for doc in (rootfs / "usr/share/doc").glob("*"):
        if doc.is_dir() and not doc.is_symlink():
            for path in doc.iterdir():
                if path.name != "copyright":
                    _remove(path)
    (rootfs / "usr/sbin/policy-rc.d").chmod(0o755)  # even if the package lost the mode bits
    for name in ("etc/hostname", "etc/resolv.conf"):
        _remove(rootfs / name)
    (rootfs / "etc/machine-id").write_text("")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def build_local_bases_report(
    python_versions: Sequence[str],
    *,
    client: docker.DockerClient,
    log: LogFn,
    python_prefixes: Mapping[str, Path] | None = None,
    engine_builder: bool = True,
    rebuild: bool = False,
    detail: LogFn | None = None,
) -> BasesReport:
    """Like :func:`build_local_bases`, also returning what each image cost (cached or built)."""
    versions = sorted({check_python_version(v) for v in python_versions}, key=_version_key)
    prefixes = dict(python_prefixes or {})
    for version in prefixes:
        check_python_version(version)
    # Resolve every prefix before the slow part, so a bad one fails fast.
    resolved: dict[str, Path | None] = {}
    for version in versions:
        if version in prefixes:
            resolved[version] = validate_prefix(prefixes[version], version)
        elif version == DEBIAN_PYTHON:
            resolved[version] = None
        else:
            resolved[version] = discover_prefix(version)
    builder = _Builder(client, log, detail or log, rebuild=rebuild)
    debian = builder.debian()
    pythons = []
    for version in versions:
        prefix = resolved[version]
        if prefix is None:
            pythons.append(builder.python_from_debian(debian, version))
        else:
            pythons.append(builder.python_from_prefix(debian, version, prefix))
    runtime = builder.runtime(debian)
    engine = builder.engine_builder(debian) if engine_builder else None
    bases = BaseImages(
        engine_builder=engine,
        pythons=tuple(pythons),
        runtime=runtime,
        standin=True,
        tini=LOCAL_TINI,
        engine_builder_command=LOCAL_ENGINE_BUILDER_COMMAND,
    )
    return BasesReport(bases, builder.events)


def build_local_bases(
    python_versions: Sequence[str],
    *,
    client: docker.DockerClient,
    log: LogFn,
    python_prefixes: Mapping[str, Path] | None = None,
    engine_builder: bool = True,
    rebuild: bool = False,
    detail: LogFn | None = None,
) -> BaseImages:
    """Build (or reuse, by content-hash tag) every local base the Dockerfile needs.

    ``python_versions``: the CPython versions the venvs use; 3.11 comes from Debian, others
    from ``python_prefixes[version]`` or else ``pyenv prefix <version>``. ``engine_builder``:
    False when a prebuilt engine is given. ``rebuild``: ignore existing tags and the layer cache.
    ``log`` gets progress lines (steps, cached/built); ``detail`` (default: ``log``) gets the
    full build output (apt, debootstrap per-package lines).
    """
    return build_local_bases_report(
        python_versions,
        client=client,
        log=log,
        python_prefixes=python_prefixes,
        engine_builder=engine_builder,
        rebuild=rebuild,
        detail=detail,
    ).bases


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _log_fn(ui: Any) -> LogFn:
    info = getattr(ui, "info", None)
    if callable(info):
        return info
    if callable(ui):
        return ui
    raise TypeError("ui must have an info(str) method or be a callable")


def _human(report: BasesReport) -> str:
    rows = [("kind", "image", "size", "time")]
    for event in report.events:
        state = "cached" if event.cached else f"{event.seconds:.1f}s"
        rows.append((event.kind, event.tag, f"{event.size / 2**20:.0f} MiB", state))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.append(
        "router and policy engine in these bases are stand-ins (label "
        f"{defaults.STANDIN_LABEL}=true)"
    )
    return "\n".join(lines)


def command(args: argparse.Namespace, ui: Any) -> dict[str, Any]:
    """``gateway-builder bases build [--python X.Y ...] [--python-prefix X.Y=DIR ...]``.

    Reads ``args.pythons`` (default: the default Python), ``args.python_prefix`` and, when
    present, ``args.rebuild``. ``ui``: the CLI's UI (``.info``/``.result``) or a log callable.
    Returns the JSON-able result (also printed through ``ui.result`` when available).
    """
    from gateway_builder.dockerd import ensure_engine

    action = getattr(args, "action", "build")
    if action != "build":
        raise InputError(f"bases {action}: unknown action (expected: build)")
    log = _log_fn(ui)
    prefixes = parse_prefix_args(getattr(args, "python_prefix", None) or [])
    requested = list(getattr(args, "pythons", None) or []) or [defaults.DEFAULT_PYTHON]
    versions = [check_python_version(v) for v in requested]
    for version in prefixes:
        if version not in versions:
            versions.append(version)
    client = ensure_engine(log=log)
    debug = getattr(ui, "debug", None)
    report = build_local_bases_report(
        versions,
        client=client,
        log=log,
        detail=debug if callable(debug) else log,
        python_prefixes=prefixes,
        rebuild=bool(getattr(args, "rebuild", False)),
    )
    result = {"ok": True, **report.as_dict()}
    emit = getattr(ui, "result", None)
    if callable(emit):
        emit(result, _human(report))
    return result
