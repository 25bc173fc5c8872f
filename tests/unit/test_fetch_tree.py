"""Untrusted trees: archive members, symlinks and special files that escape are refused;
content hashes are stable and ignore build leftovers."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from gateway_builder.errors import InputError
from gateway_builder.fetch.tree import (
    check_tree,
    content_hash,
    copy_tree,
    extract_tar,
    extract_zip,
    link_stays_inside,
    safe_relpath,
)


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = mode
    return info


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "", "a\\b", "a\x00b"])
def test_safe_relpath_refuses(name: str) -> None:
    with pytest.raises(InputError):
        safe_relpath(name, "t")


def test_safe_relpath_normalizes() -> None:
    assert safe_relpath("./a//b/", "t") == PurePosixPath("a/b")
    assert safe_relpath(".", "t") == PurePosixPath(".")


@pytest.mark.parametrize(
    ("link", "target", "inside"),
    [
        ("a/l", "b", True),
        ("a/l", "../b", True),
        ("a/l", "../../b", False),
        ("l", "..", False),
        ("l", "/etc/passwd", False),
        ("a/b/l", "../../c/d", True),
        ("l", "", False),
    ],
)
def test_link_stays_inside(link: str, target: str, inside: bool) -> None:
    assert link_stays_inside(PurePosixPath(link), target) is inside


def test_extract_tar_refuses_escaping_members(tmp_path: Path) -> None:
    cases: list[list[tuple[tarfile.TarInfo, bytes | None]]] = [
        [(member("../evil"), b"x")],
        [(member("/abs"), b"x")],
        [(member("pol/link", tarfile.SYMTYPE, "../../outside"), None)],
        [(member("pol/link", tarfile.SYMTYPE, "/etc/shadow"), None)],
        [(member("pol/hard", tarfile.LNKTYPE, "etc/passwd"), None)],
        [(member("pol/dev", tarfile.CHRTYPE), None)],
        [(member("pol/fifo", tarfile.FIFOTYPE), None)],
    ]
    for i, members in enumerate(cases):
        archive = make_tar(tmp_path / f"a{i}.tar", members)
        dest = tmp_path / f"out{i}"
        dest.mkdir()
        with pytest.raises(InputError):
            extract_tar(archive, dest, "policy 'p'", strip="pol")
        assert not (tmp_path / "evil").exists() and not (tmp_path / "outside").exists()


def test_extract_tar_strips_the_subdirectory_and_keeps_inner_links(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "ok.tar",
        [
            (member("pol", tarfile.DIRTYPE, mode=0o755), None),
            (member("pol/policy.py", mode=0o755), b"x = 1\n"),
            (member("pol/sub", tarfile.DIRTYPE, mode=0o755), None),
            (member("pol/sub/link", tarfile.SYMTYPE, "../policy.py"), None),
            (member("pol/__pycache__/x.pyc"), b"junk"),
            (member("other/file"), b"not in the policy"),
        ],
    )
    dest = tmp_path / "out"
    dest.mkdir()
    extract_tar(archive, dest, "t", strip="pol")
    assert (dest / "policy.py").read_text() == "x = 1\n"
    assert os.access(dest / "policy.py", os.X_OK)
    assert os.readlink(dest / "sub" / "link") == "../policy.py"
    assert not (dest / "__pycache__").exists()
    assert not (dest / "other").exists()


def test_extract_zip_refuses_traversal_and_symlinks(tmp_path: Path) -> None:
    bad = tmp_path / "bad.whl"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("pkg/../../evil.py", "x")
    with pytest.raises(InputError):
        extract_zip(bad, tmp_path / "o1", "t")
    link = tmp_path / "link.whl"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("pkg/link")
        info.external_attr = (0o120777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(InputError, match="symlink"):
        extract_zip(link, tmp_path / "o2", "t")
    good = tmp_path / "good.whl"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("pkg/policy.py", "x")
        zf.writestr("other/a.py", "y")
    written = extract_zip(good, tmp_path / "o3", "t", only="pkg")
    assert written == [PurePosixPath("pkg/policy.py")]
    assert not (tmp_path / "o3" / "other").exists()


def test_check_tree(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("x")
    os.symlink("f", tmp_path / "a" / "ok")
    check_tree(tmp_path, "t")
    os.symlink("../../x", tmp_path / "a" / "bad")
    with pytest.raises(InputError, match=r"symlink a/bad points outside"):
        check_tree(tmp_path, "t")
    (tmp_path / "a" / "bad").unlink()
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(InputError, match="not a regular file"):
        check_tree(tmp_path, "t")


def test_content_hash_is_stable_and_sensitive(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "sub").mkdir(parents=True)
    (root / "policy.py").write_text("x = 1\n")
    (root / "sub" / "data.txt").write_text("d")
    first = content_hash(root)
    assert first.startswith("sha256:") and content_hash(root) == first
    # Leftovers do not count.
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "policy.cpython-311.pyc").write_bytes(b"\0")
    (root / ".git").mkdir()
    (root / "venv").mkdir()
    (root / "x.pyc").write_bytes(b"\0")
    assert content_hash(root) == first
    # Content, names and the executable bit do.
    (root / "policy.py").write_text("x = 2\n")
    second = content_hash(root)
    assert second != first
    os.chmod(root / "policy.py", 0o755)
    assert content_hash(root) != second
    # A copy hashes the same.
    copy = tmp_path / "copy"
    copy.mkdir()
    copy_tree(root, copy, "t")
    assert content_hash(copy) == content_hash(root)
    assert not (copy / "__pycache__").exists()
