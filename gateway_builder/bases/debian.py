"""The Debian root file system every local base starts from: ``debootstrap --variant=minbase``,
trimmed and configured, then ``docker import``-ed. Needs root (debootstrap mounts and chroots)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import docker
from docker.errors import DockerException

from gateway_builder import defaults
from gateway_builder.bases.keys import ASSETS_DIR, KEY_LABEL, KIND_LABEL
from gateway_builder.dockerd import LogFn, ensure_host_tool
from gateway_builder.errors import BuildError

#: Files laid over the debootstrapped tree (apt and dpkg settings, policy-rc.d).
ROOTFS_OVERLAY = ASSETS_DIR / "debian" / "rootfs"
#: debootstrap's per-package lines ("I: Unpacking bash...", "I: Retrieving libc6 2.36-9").
_PER_PACKAGE_LINE = re.compile(
    r"^I: ((Extracting|Unpacking|Configuring) \S+\.\.\.|(Retrieving|Validating) \S+ \S*\d\S*)$"
)
#: Left out of the image: package caches and lists, logs, man and info pages.
_TRIMMED = (
    "var/cache/apt/*.bin",
    "var/cache/apt/archives/*.deb",
    "var/lib/apt/lists/*",
    "var/log/*.log",
    "var/log/apt/*",
    "var/cache/debconf/*-old",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/lintian/*",
)


def import_debian_image(
    client: docker.DockerClient, tag: str, key: str, *, log: LogFn, detail: LogFn
) -> None:
    """Debootstrap, configure and ``docker import`` the Debian base as ``tag``."""
    if os.geteuid() != 0:
        raise BuildError(
            f"building the Debian base ({tag}) runs debootstrap, which needs root: run "
            "'gateway-builder bases build' once as root (later runs reuse the image)"
        )
    debootstrap = ensure_host_tool("debootstrap", "debootstrap", log=log)
    with tempfile.TemporaryDirectory(prefix="gateway-builder-debian-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        try:
            run_debootstrap(debootstrap, rootfs, log=log, detail=detail)
            configure_rootfs(rootfs, ROOTFS_OVERLAY)
            tarball = Path(tmp) / "rootfs.tar"
            _run_checked(
                ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."],
                "tar of the Debian root file system",
            )
            log(f"debian: importing {tarball.stat().st_size // 2**20} MiB as {tag}")
            _docker_import(client, tarball, tag, key)
        finally:
            unmount_below(rootfs)


def _docker_import(client: docker.DockerClient, tarball: Path, tag: str, key: str) -> None:
    repository, _, image_tag = tag.rpartition(":")
    changes = [
        f'LABEL {KIND_LABEL}="debian" {KEY_LABEL}="{key}"',
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        'CMD ["/bin/bash"]',
    ]
    try:
        client.api.import_image(
            src=str(tarball), repository=repository, tag=image_tag, changes=changes
        )
    except DockerException as exc:
        raise BuildError(f"docker import of the Debian base failed: {exc}") from None


def run_debootstrap(debootstrap: str, rootfs: Path, *, log: LogFn, detail: LogFn) -> None:
    """Run debootstrap into ``rootfs``: phases and problems to ``log``, per-package lines to
    ``detail``; on failure, a BuildError with the output's tail."""
    cmd = [
        debootstrap,
        f"--variant={defaults.LOCAL_DEBIAN_VARIANT}",
        defaults.LOCAL_DEBIAN_SUITE,
        str(rootfs),
        defaults.LOCAL_DEBIAN_MIRROR,
    ]
    log(f"debian: {' '.join(cmd[:1] + cmd[1:3])} ... ({defaults.LOCAL_DEBIAN_MIRROR})")
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
            detail(f"debian: {line}")
        else:
            log(f"debian: {line}")
    if proc.wait() != 0:
        raise BuildError(f"debootstrap failed (exit {proc.returncode})", details="\n".join(tail))


def configure_rootfs(rootfs: Path, overlay: Path) -> None:
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
    for pattern in _TRIMMED:
        for path in rootfs.glob(pattern):
            remove(path)
    for path in (rootfs / "usr/share/locale").glob("*"):
        if path.name != "locale.alias":
            remove(path)
    for doc in (rootfs / "usr/share/doc").glob("*"):
        if doc.is_dir() and not doc.is_symlink():
            for path in doc.iterdir():
                if path.name != "copyright":
                    remove(path)
    (rootfs / "usr/sbin/policy-rc.d").chmod(0o755)  # even if the package lost the mode bits
    for name in ("etc/hostname", "etc/resolv.conf"):
        remove(rootfs / name)
    (rootfs / "etc/machine-id").write_text("")


def unmount_below(root: Path) -> None:
    """Unmount anything a failed debootstrap left mounted under ``root`` (before deleting it)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return
    targets = [line.split()[1] for line in mounts if len(line.split()) > 1]
    inside = [t for t in targets if t == str(root) or t.startswith(f"{root}/")]
    for target in sorted(inside, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)


def remove(path: Path) -> None:
    """Delete a file, symlink or directory tree; nothing if it is gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _run_checked(cmd: Sequence[str], what: str) -> None:
    done = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BuildError(f"{what} failed (exit {done.returncode})", details=done.stderr[-4000:])
