"""Builders for fetch/lock tests: policy folders, real wheels and sdists, git repos, a package index.

Wheels are real (zip + METADATA + WHEEL + RECORD with hashes; pip and uv install them). Packaged
policies and sdists use a tiny in-tree PEP 517 backend (``backend-path``), so building them needs
no build dependency from any index.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# One implementation of wheel writing, used by the tests directly and, as source text, by the
# in-tree build backend shipped inside test packages.
BACKEND_SRC = """
import base64, hashlib, json, os, zipfile
from pathlib import Path

def _norm(name):
    import re
    return re.sub(r"[-_.]+", "_", name).lower()

def _write_wheel(out_dir, name, version, files, requires=(), tag="py3-none-any",
                 requires_python=None, top_level=None):
    dist = f"{_norm(name)}-{version}"
    info = f"{dist}.dist-info"
    meta = [f"Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if requires_python:
        meta.append(f"Requires-Python: {requires_python}")
    meta += [f"Requires-Dist: {r}" for r in requires]
    entries = dict(sorted(files.items()))
    entries[f"{info}/METADATA"] = ("\\n".join(meta) + "\\n").encode()
    entries[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\\nGenerator: gwb-test\\nRoot-Is-Purelib: true\\n"
        f"Tag: {tag}\\n"
    ).encode()
    if top_level:
        entries[f"{info}/top_level.txt"] = (top_level + "\\n").encode()
    record = []
    for path, data in entries.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    entries[f"{info}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    target = Path(out_dir) / f"{dist}-{tag}.whl"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in entries.items():
            zi = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data)
    return target.name

def _tree_files(root, package_map):
    files = {}
    for dest, src in package_map.items():
        src_path = Path(root) / src
        if src_path.is_file():
            files[dest] = src_path.read_bytes()
            continue
        for p in sorted(src_path.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                files[f"{dest}/{p.relative_to(src_path).as_posix()}"] = p.read_bytes()
    return files

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    conf = json.loads(Path("wheel.json").read_text())
    files = _tree_files(".", conf["files"])
    return _write_wheel(wheel_directory, conf["name"], conf["version"], files,
                        conf.get("requires", []), top_level=conf.get("top_level"))

def get_requires_for_build_wheel(config_settings=None):
    return []
"""

_backend: dict[str, Any] = {}
exec(BACKEND_SRC, _backend)


def make_wheel(
    dest_dir: Path,
    name: str,
    version: str,
    *,
    files: Mapping[str, bytes | str] | None = None,
    requires: Iterable[str] = (),
    tag: str = "py3-none-any",
    requires_python: str | None = None,
    top_level: str | None = None,
) -> Path:
    """Write a real wheel and return its path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    data = {k: (v.encode() if isinstance(v, str) else v) for k, v in (files or {}).items()}
    if not data:
        pkg = re.sub(r"[-.]+", "_", name).lower()
        data = {f"{pkg}/__init__.py": f"__version__ = {version!r}\n".encode()}
    fname = _backend["_write_wheel"](
        str(dest_dir), name, version, data, list(requires), tag, requires_python, top_level
    )
    return dest_dir / fname


# --------------------------------------------------------------------------------------------
# Policy folders
# --------------------------------------------------------------------------------------------

GOOD_POLICY = textwrap.dedent(
    '''
    """A test policy."""

    from apip_sdk_core import ProcessingMode, RequestHeaderPolicy  # noqa: F401


    def get_policy(metadata, params):
        return None
    '''
)


def definition_yaml(
    name: str, version: str = "v1.0.0", parameters: dict[str, Any] | None = None
) -> str:
    """policy-definition.yaml text."""
    params = (
        parameters
        if parameters is not None
        else {
            "type": "object",
            "additionalProperties": False,
            "properties": {"greeting": {"type": "string", "default": "hi"}},
        }
    )
    return (
        f"name: {name}\nversion: {version}\ndisplayName: {name}\n"
        f"parameters: {json.dumps(params)}\nsystemParameters: {{}}\n"
    )


def write_policy(
    folder: Path,
    name: str,
    *,
    version: str = "v1.0.0",
    requirements: Iterable[str] = (),
    python_version: str | None = None,
    parameters: dict[str, Any] | None = None,
    policy_src: str = GOOD_POLICY,
) -> Path:
    """A simple-directory policy (policy.py + policy-definition.yaml + requirements.txt)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy-definition.yaml").write_text(definition_yaml(name, version, parameters))
    (folder / "policy.py").write_text(policy_src)
    reqs = list(requirements)
    if reqs:
        (folder / "requirements.txt").write_text("\n".join(reqs) + "\n")
    if python_version:
        (folder / "python_version.txt").write_text(python_version + "\n")
    return folder


def write_packaged_policy(
    folder: Path,
    name: str,
    *,
    dist: str | None = None,
    dist_version: str = "1.0.0",
    version: str = "v1.0.0",
    requires: Iterable[str] = (),
    python_version: str | None = None,
) -> Path:
    """A packaged policy (pyproject.toml with the in-tree backend; package ``<name>_pkg``)."""
    folder.mkdir(parents=True, exist_ok=True)
    pkg = name.replace("-", "_") + "_pkg"
    (folder / "src").mkdir(exist_ok=True)
    (folder / "src" / "policy.py").write_text(GOOD_POLICY)
    (folder / "src" / "__init__.py").write_text("")
    (folder / "policy-definition.yaml").write_text(definition_yaml(name, version))
    (folder / "backend.py").write_text(BACKEND_SRC)
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = []
            build-backend = "backend"
            backend-path = ["."]
            """
        )
    )
    (folder / "wheel.json").write_text(
        json.dumps(
            {
                "name": dist or f"gwbtest-{name}",
                "version": dist_version,
                "requires": list(requires),
                "top_level": pkg,
                "files": {
                    f"{pkg}/__init__.py": "src/__init__.py",
                    f"{pkg}/policy.py": "src/policy.py",
                    f"{pkg}/policy-definition.yaml": "policy-definition.yaml",
                },
            },
            indent=1,
        )
    )
    if python_version:
        (folder / "python_version.txt").write_text(python_version + "\n")
    return folder


def policy_wheel(dest_dir: Path, name: str, dist: str, dist_version: str, **kw: Any) -> Path:
    """A policy wheel as an index would serve it (package ``<name>_pkg``)."""
    pkg = name.replace("-", "_") + "_pkg"
    return make_wheel(
        dest_dir,
        dist,
        dist_version,
        files={
            f"{pkg}/__init__.py": "",
            f"{pkg}/policy.py": GOOD_POLICY,
            f"{pkg}/policy-definition.yaml": definition_yaml(name, kw.pop("version", "v1.0.0")),
        },
        top_level=pkg,
        **kw,
    )


def policy_sdist(
    dest_dir: Path, name: str, dist: str, dist_version: str, requires: Iterable[str] = ()
) -> Path:
    """An sdist of a packaged policy (in-tree backend)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".src-{dist}"
    shutil.rmtree(tmp, ignore_errors=True)
    write_packaged_policy(tmp, name, dist=dist, dist_version=dist_version, requires=requires)
    base = f"{re.sub(r'[-.]+', '_', dist).lower()}-{dist_version}"
    (tmp / "PKG-INFO").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {dist_version}\n")
    target = dest_dir / f"{base}.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        for path in sorted(tmp.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=f"{base}/{path.relative_to(tmp).as_posix()}")
            info.mtime = 315532800
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_file():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    shutil.rmtree(tmp)
    return target


# --------------------------------------------------------------------------------------------
# Git
# --------------------------------------------------------------------------------------------


class GitRepo:
    """A real git repository in a temp dir, driven with the git CLI."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", "--initial-branch=main")
        self.git("config", "user.email", "t@example.invalid")
        self.git("config", "user.name", "test")
        self.git("config", "commit.gpgsign", "false")
        self.git("config", "tag.gpgsign", "false")
        self._clock = 1_700_000_000

    def git(self, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_DATE": f"@{getattr(self, '_clock', 1_700_000_000)} +0000",
            "GIT_COMMITTER_DATE": f"@{getattr(self, '_clock', 1_700_000_000)} +0000",
        }
        return subprocess.run(
            ["git", *args], cwd=self.path, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()

    def commit(self, message: str) -> str:
        """Stage everything and commit; return the SHA."""
        self._clock += 60
        self.git("add", "-A")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def tag(self, name: str, *, annotated: bool = False, force: bool = False) -> None:
        """Tag HEAD."""
        args = ["tag"]
        if force:
            args.append("-f")
        if annotated:
            args += ["-a", "-m", name]
        self.git(*args, name)

    @property
    def url(self) -> str:
        """file:// URL of the repository."""
        return self.path.as_uri()


# --------------------------------------------------------------------------------------------
# Package index
# --------------------------------------------------------------------------------------------


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project_of(filename: str) -> str:
    if filename.endswith(".whl"):
        return _canonical(filename.split("-")[0])
    return _canonical(filename.rsplit("-", 1)[0])


class LocalIndex:
    """A PEP 503 simple index in a directory; ``serve()`` exposes it over http on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = root / "files"
        self.simple = root / "simple"
        self.files.mkdir(parents=True, exist_ok=True)
        self.simple.mkdir(parents=True, exist_ok=True)
        self.requires_python: dict[str, str] = {}
        self._proc: subprocess.Popen[str] | None = None
        self.http_url = ""

    def add(self, path: Path, *, requires_python: str | None = None) -> Path:
        """Put a distribution file on the index and regenerate the pages."""
        target = self.files / path.name
        if path.resolve() != target.resolve():
            shutil.copyfile(path, target)
        if requires_python:
            self.requires_python[path.name] = requires_python
        self.regenerate()
        return target

    def regenerate(self) -> None:
        """Write simple/index.html and one page per project (with sha256 fragments)."""
        projects: dict[str, list[Path]] = {}
        for f in sorted(self.files.iterdir()):
            projects.setdefault(_project_of(f.name), []).append(f)
        links = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(projects))
        (self.simple / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
        for project, files in projects.items():
            folder = self.simple / project
            folder.mkdir(exist_ok=True)
            rows = []
            for f in files:
                sha = hashlib.sha256(f.read_bytes()).hexdigest()
                rp = self.requires_python.get(f.name)
                attr = f' data-requires-python="{html.escape(rp)}"' if rp else ""
                rows.append(f'<a href="../../files/{f.name}#sha256={sha}"{attr}>{f.name}</a><br>\n')
            (folder / "index.html").write_text(
                "<html><body>\n" + "".join(rows) + "</body></html>\n"
            )

    @property
    def file_url(self) -> str:
        """file:// URL of the simple index."""
        return self.simple.as_uri()

    def serve(self) -> str:
        """Start ``python -m http.server`` on 127.0.0.1 (random port); return the simple URL."""
        if self._proc is not None:
            return self.http_url
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
                str(self.root),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self._proc.stdout is not None
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline:
            line = self._proc.stdout.readline()
            m = re.search(r"port (\d+)", line)
            if m:
                self.http_url = f"http://127.0.0.1:{m.group(1)}/simple"
                return self.http_url
        self.stop()
        raise RuntimeError(f"http.server did not start: {line!r}")

    def stop(self) -> None:
        """Stop the server (by its own pid)."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None


def sdk_wheel(dest_dir: Path, version: str = "0.2.3") -> Path:
    """A stand-in apip-sdk-core wheel for the local index (every policy's set includes it)."""
    return make_wheel(
        dest_dir,
        "apip-sdk-core",
        version,
        files={
            "apip_sdk_core/__init__.py": "class ProcessingMode: ...\nclass RequestHeaderPolicy: ...\n"
        },
        top_level="apip_sdk_core",
    )


def tar_with(path: Path, members: Iterable[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """A tar file with hand-made members (for escape tests)."""
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path
