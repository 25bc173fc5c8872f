"""Build-stage helper shipped in every rendered context (``build/stage_tool.py``).

Runs inside the builder stages of the generated Dockerfile, with the stage's own CPython
(3.10-3.13, standard library only, no network):

``install``  create a venv without pip, install exactly the locked, hash-checked wheels with a
             pip wheel run from the wheelhouse (pip itself is never installed), check that the
             venv's distributions equal the lock and that it runs the expected Python, compile
             bytecode (unchecked-hash, so no file times inside), then export the venv.
``compile``  compile the ``.py`` files below some directories the same way, then export them.
``export``   copy paths, stripping a CPython prefix of what a runtime does not need (pip, tests,
             headers, static libraries).
``users``    the runtime's ``/etc/passwd`` and ``/etc/group`` plus one user and group per Python
             policy, each policy's private home (mode 0700, owned by it), and the executor's
             launcher: the runtime's ``setpriv`` with file capabilities (permitted only), runnable
             by the runtime group alone.

Exporting moves or copies a path to ``/export`` + the same absolute path and sets the time of
every entry under ``/export`` to SOURCE_DATE_EPOCH.

The runtime stage copies each stage's ``/export/`` onto ``/``: since every entry (parent
directories included) carries fixed times, a rebuilt stage with unchanged files gives a
byte-identical layer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path, PurePosixPath

EXPORT_ROOT = Path("/export")
_STDLIB_DROP = {"ensurepip", "idlelib", "turtledemo", "tkinter", "pydoc_data"}
_TEST_DIRS = {"test", "tests", "idle_test"}
_BIN_DROP = re.compile(r"^(pip|idle|pydoc|2to3|easy_install).*|.*-config$")
_PYDIR = re.compile(r"^python\d+\.\d+$")


def fail(message: str) -> None:
    """Stop the build step with one clear line."""
    sys.stderr.write(f"stage_tool: error: {message}\n")
    raise SystemExit(1)


def canonical(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """``name==version --hash=...`` lines -> {canonical name: version}."""
    pins: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        spec = line.split()[0]
        name, sep, version = spec.partition("==")
        if not sep:
            fail(f"{path}: not an exact pin: {spec}")
        pins[canonical(name)] = version.strip()
    return pins


def site_packages(venv: Path) -> Path:
    """The venv's site-packages directory."""
    found = sorted(venv.glob("lib/python*/site-packages"))
    if len(found) != 1:
        fail(f"{venv}: expected one lib/python*/site-packages, found {len(found)}")
    return found[0]


def installed(site: Path) -> dict[str, str]:
    """{canonical name: version} of every distribution in ``site``."""
    result: dict[str, str] = {}
    for info in sorted(site.glob("*.dist-info")):
        fields: dict[str, str] = {}
        for line in (info / "METADATA").read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
        result[canonical(fields.get("name", info.name))] = fields.get("version", "?")
    return result


def compile_tree(python: str, paths: list[Path]) -> None:
    """Byte-compile with ``python`` (hash-based pycs, so file times do not matter)."""
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        cmd = [python, "-I", "-m", "compileall", "-q", "-j", "0"]
        cmd += ["--invalidation-mode", "unchecked-hash", *existing]
        subprocess.run(cmd, check=True)


def export_moved(paths: list[Path], epoch: int) -> None:
    """Move ``paths`` under /export (same absolute path) and fix every time below /export."""
    for src in paths:
        dst = EXPORT_ROOT / src.relative_to("/")
        dst.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        shutil.move(str(src), str(dst))
    EXPORT_ROOT.mkdir(mode=0o755, exist_ok=True)
    set_times(EXPORT_ROOT, epoch)


def cmd_install(args: argparse.Namespace) -> None:
    venv = Path(args.venv)
    expected = args.python_version
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if running != expected:
        fail(f"{sys.executable} is Python {running}; this venv needs {expected}")
    import venv as venv_module

    venv_module.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(str(venv))
    for empty in [*sorted(venv.glob("include/*")), venv / "include"]:
        if empty.is_dir() and not any(empty.iterdir()):
            empty.rmdir()  # venv makes an empty include dir; nothing is compiled here
    python = str(venv / "bin" / "python")
    pip = [python, str(Path(args.installer) / "pip"), "install", "--isolated"]
    pip += ["--no-index", "--find-links", args.wheelhouse, "--require-hashes", "--no-deps"]
    pip += ["--only-binary", ":all:", "--no-compile", "--no-cache-dir"]
    pip += ["--disable-pip-version-check", "--no-warn-script-location", "--progress-bar", "off"]
    pip += ["--root-user-action", "ignore", "-r", args.lock]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent", "LC_ALL": "C.UTF-8"}
    subprocess.run(pip, check=True, env=env)

    site = site_packages(venv)
    want, got = read_lock(Path(args.lock)), installed(site)
    if want != got:
        missing = sorted(f"{n}=={v}" for n, v in want.items() if got.get(n) != v)
        extra = sorted(f"{n}=={v}" for n, v in got.items() if want.get(n) != v)
        fail(f"{venv} does not match its lock: missing {missing or '-'}, unexpected {extra or '-'}")
    probe = subprocess.run(
        [python, "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        check=True,
        capture_output=True,
        text=True,
    )
    if probe.stdout.strip() != expected:
        fail(f"{python} runs Python {probe.stdout.strip()}, expected {expected}")
    compile_tree(python, [site])
    export_moved([venv], args.epoch)
    print(f"stage_tool: {venv}: {len(got)} distributions, Python {expected}, as locked")


def cmd_compile(args: argparse.Namespace) -> None:
    paths = [Path(p) for p in args.paths]
    compile_tree(sys.executable, paths)
    export_moved(paths, args.epoch)


def stripped(path: PurePosixPath) -> bool:
    """Whether a runtime does not need ``path`` (inside a copied CPython prefix)."""
    parts = path.parts
    name = parts[-1]
    if "site-packages" in parts[:-1] or name.endswith(".a"):
        return True
    for i in range(len(parts) - 1):
        if parts[i] == "lib" and _PYDIR.match(parts[i + 1]):
            below = parts[i + 2 :]
            if below and (below[0] in _STDLIB_DROP or below[0].startswith("config-")):
                return True
            return any(p in _TEST_DIRS for p in below)
    if "include" in parts or "pkgconfig" in parts or ("share" in parts and "man" in parts):
        return True
    return len(parts) >= 2 and parts[-2] == "bin" and bool(_BIN_DROP.match(name))


def _copy_entry(src: Path, dst: Path) -> None:
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        dst.mkdir(mode=0o755, exist_ok=True)
    else:
        shutil.copy2(src, dst, follow_symlinks=False)


def copy_into(src: Path, dst: Path, strip: bool) -> None:
    """Copy ``src`` (file, symlink or tree) to ``dst``, symlinks kept, stripped if asked."""
    if strip and stripped(PurePosixPath(src)):
        return
    _copy_entry(src, dst)
    if src.is_symlink() or not src.is_dir():
        return
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        kept = []
        for name in sorted(dirs):
            child = Path(root) / name
            if strip and stripped(PurePosixPath(child)):
                continue
            _copy_entry(child, dst / rel / name)
            if not child.is_symlink():
                kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            child = Path(root) / name
            if not (strip and stripped(PurePosixPath(child))):
                _copy_entry(child, dst / rel / name)


def set_times(root: Path, epoch: int) -> None:
    """Set atime/mtime of ``root`` and everything below it (symlinks themselves) to ``epoch``."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(Path(dirpath) / name, (epoch, epoch), follow_symlinks=False)
    os.utime(root, (epoch, epoch), follow_symlinks=False)


def cmd_export(args: argparse.Namespace) -> None:
    for raw in args.paths:
        src = Path(raw)
        if not src.is_absolute() or not (src.exists() or src.is_symlink()):
            fail(f"cannot export {raw}: not an existing absolute path")
        dst = EXPORT_ROOT / src.relative_to("/")
        dst.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        copy_into(src, dst, args.strip_python)
    EXPORT_ROOT.mkdir(mode=0o755, exist_ok=True)
    set_times(EXPORT_ROOT, args.epoch)


#: Capability numbers (linux/capability.h) of the names ``users --spec`` may list.
CAPABILITIES = {"chown": 0, "kill": 5, "setgid": 6, "setuid": 7, "net_bind_service": 10}
#: ``security.capability`` xattr, revision 2: magic, then (permitted, inheritable) low and high.
VFS_CAP_REVISION_2 = 0x02000000


def _table(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line.strip()]


def file_caps(names: list[str]) -> bytes:
    """The ``security.capability`` value granting ``names`` as permitted capabilities only (no
    effective bit: the program raises them itself, and a container without them can still run
    it, getting none)."""
    bits = 0
    for name in names:
        if name not in CAPABILITIES:
            fail(f"unknown capability {name!r}")
        bits |= 1 << CAPABILITIES[name]
    return struct.pack("<5I", VFS_CAP_REVISION_2, bits & 0xFFFFFFFF, 0, bits >> 32, 0)


def cmd_users(args: argparse.Namespace) -> None:
    spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
    runtime = Path(args.runtime)
    passwd = (runtime / "passwd").read_text(encoding="utf-8")
    group = (runtime / "group").read_text(encoding="utf-8")
    users, groups = _table(passwd), _table(group)
    run_uid, run_gid = spec["runtime_uid"], spec["runtime_gid"]
    if not any(len(u) > 3 and u[2] == str(run_uid) and u[3] == str(run_gid) for u in users):
        fail(f"the runtime base has no user with uid {run_uid} and gid {run_gid}")
    user_names, uids = {u[0] for u in users}, {u[2] for u in users if len(u) > 2}
    group_names, gids = {g[0] for g in groups}, {g[2] for g in groups if len(g) > 2}
    new_users, new_groups = [], []
    for p in spec["policies"]:
        name, uid, gid, home = p["user"], p["uid"], p["gid"], p["home"]
        if name in user_names or str(uid) in uids or name in group_names or str(gid) in gids:
            fail(f"policy {p['name']}: user {name}, uid {uid} or gid {gid} is taken in the runtime")
        user_names.add(name)
        group_names.add(name)
        uids.add(str(uid))
        gids.add(str(gid))
        new_users.append(
            f"{name}:x:{uid}:{gid}:gateway policy {p['name']}:{home}:/usr/sbin/nologin"
        )
        new_groups.append(f"{name}:x:{gid}:")
    etc = EXPORT_ROOT / "etc"
    etc.mkdir(mode=0o755, parents=True, exist_ok=True)
    for file, text, lines in (("passwd", passwd, new_users), ("group", group, new_groups)):
        out = etc / file
        out.write_text(text.rstrip("\n") + "\n" + "".join(f"{line}\n" for line in lines))
        out.chmod(0o644)
    homes = EXPORT_ROOT / spec["homes_dir"].lstrip("/")
    homes.mkdir(mode=0o755, parents=True, exist_ok=True)
    for p in spec["policies"]:
        home = EXPORT_ROOT / p["home"].lstrip("/")
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(home, p["uid"], p["gid"])
        home.chmod(0o700)
    launcher = EXPORT_ROOT / spec["launcher"].lstrip("/")
    launcher.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    shutil.copyfile(runtime / "setpriv", launcher)
    # chown clears file capabilities, so they come last.
    os.chown(launcher, 0, run_gid)
    launcher.chmod(0o750)
    caps = file_caps(spec["capabilities"])
    os.setxattr(launcher, "security.capability", caps)
    if os.getxattr(launcher, "security.capability") != caps:
        fail(f"{launcher}: the file capabilities did not stick")
    set_times(EXPORT_ROOT, args.epoch)
    print(
        f"stage_tool: {len(new_users)} policy users; {spec['launcher']} with {spec['capabilities']}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="stage_tool.py", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install", help="create a venv and install its lock")
    p.add_argument("--venv", required=True)
    p.add_argument("--python-version", required=True)
    p.add_argument("--lock", required=True)
    p.add_argument("--wheelhouse", required=True)
    p.add_argument("--installer", required=True, help="path of the pip wheel")
    p.add_argument("--epoch", type=int, required=True)
    p.set_defaults(func=cmd_install)
    p = sub.add_parser("compile", help="byte-compile directories, then export them")
    p.add_argument("--epoch", type=int, required=True)
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=cmd_compile)
    p = sub.add_parser("export", help="copy paths under /export with fixed times")
    p.add_argument("--epoch", type=int, required=True)
    p.add_argument("--strip-python", action="store_true")
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("users", help="policy users, their homes and the executor's launcher")
    p.add_argument("--spec", required=True, help="users.json of the build context")
    p.add_argument("--runtime", required=True, help="directory with passwd, group, setpriv")
    p.add_argument("--epoch", type=int, required=True)
    p.set_defaults(func=cmd_users)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
