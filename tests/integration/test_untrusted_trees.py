"""Symlinks are judged by what the kernel resolves, not by their text.

The attack: ``d -> .`` plus ``leak.txt -> d/d/.../d/../../.../<host path>``. Normalizing the link
text gives ``<host path>`` without a leading slash (inside the tree); the kernel turns every ``d``
into the tree root and then climbs ``..`` past it to ``/``, so the link reads the host file. It
must be refused for path and git sources, and no host byte may reach the cache (and so neither
the wheel build nor the image).
"""

from __future__ import annotations

import io
import os
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from gwb_factories import GitRepo, write_packaged_policy, write_policy

from gateway_builder.cache import Cache
from gateway_builder.cli import main
from gateway_builder.errors import InputError
from gateway_builder.fetch import fetch_policy
from gateway_builder.fetch.tree import check_tree, copy_tree, extract_tar
from gateway_builder.manifest import GitSource, PathSource, PythonPolicySpec

pytestmark = pytest.mark.integration


def escape_target(tree: Path, host_file: Path) -> str:
    """A link text that normalizes to a path inside ``tree`` but resolves to ``host_file``."""
    n = len(tree.resolve().parts) + 2
    return "d/" * n + "../" * n + host_file.resolve().as_posix().lstrip("/")


def plant_escape(tree: Path, host_file: Path, name: str = "leak.txt") -> None:
    os.symlink(".", tree / "d")
    os.symlink(escape_target(tree, host_file), tree / name)


def host_secret(tmp_path: Path) -> tuple[Path, str]:
    secret = f"HOST-SECRET-{uuid.uuid4().hex}"
    path = tmp_path / "host" / "secret.txt"
    path.parent.mkdir()
    path.write_text(secret)
    return path, secret


def assert_secret_absent(root: Path, secret: str) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                assert secret.encode() not in path.read_bytes(), f"host file copied into {path}"


def spec(source: GitSource | PathSource, name: str) -> PythonPolicySpec:
    return PythonPolicySpec(
        name=name,
        source=source,
        python=None,
        failure_mode="fail",
        timeout_ms=1000,
        isolation="worker",
        workers=1,
        origin="m/python-build.yaml:4:5",
    )


def test_the_attack_reads_the_host_file_on_this_machine(tmp_path: Path) -> None:
    host, secret = host_secret(tmp_path)
    tree = tmp_path / "a" / "b" / "pol"
    tree.mkdir(parents=True)
    plant_escape(tree, host)
    assert (tree / "leak.txt").read_text() == secret
    assert not os.readlink(tree / "leak.txt").startswith(("/", ".."))


@pytest.mark.parametrize("packaged", [False, True], ids=["simple", "packaged"])
def test_path_source_refuses_a_link_the_kernel_resolves_outside(
    tmp_path: Path, packaged: bool
) -> None:
    host, secret = host_secret(tmp_path)
    folder = tmp_path / "src" / "pol"
    if packaged:
        write_packaged_policy(folder, "pol")
        wheel_json = folder / "wheel.json"
        wheel_json.write_text(
            wheel_json.read_text().replace(
                '"files": {', '"files": {\n  "pol_pkg/leak.txt": "leak.txt",', 1
            )
        )
    else:
        write_policy(folder, "pol")
    plant_escape(folder, host)
    cache = Cache.open(tmp_path / "cache")
    with pytest.raises(InputError, match=r"symlink leak.txt points outside the policy directory"):
        fetch_policy(spec(PathSource(folder), "pol"), cache, base=tmp_path)
    assert_secret_absent(cache.root, secret)


def test_git_source_refuses_a_link_the_kernel_resolves_outside(
    git_repo_factory: Callable[[str], GitRepo], tmp_path: Path
) -> None:
    host, secret = host_secret(tmp_path)
    repo = git_repo_factory("evil")
    folder = repo.path / "policies" / "pol"
    write_policy(folder, "pol")
    # The link text is relative, so the same attack works wherever the cache puts the tree.
    os.symlink(".", folder / "d")
    os.symlink(escape_target(tmp_path / "cache" / "trees" / "git" / "x", host), folder / "leak.txt")
    repo.commit("a policy with an escaping link")
    cache = Cache.open(tmp_path / "cache")
    source = GitSource(repo.url, "HEAD", "policies/pol")
    with pytest.raises(InputError, match=r"symlink leak.txt points outside the policy directory"):
        fetch_policy(spec(source, "pol"), cache, base=tmp_path)
    assert_secret_absent(cache.root, secret)


def test_cli_fetch_refuses_it_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, secret = host_secret(tmp_path)
    folder = write_policy(tmp_path / "src" / "pol", "pol")
    plant_escape(folder, host)
    manifest = tmp_path / "python-build.yaml"
    manifest.write_text("version: v1\npolicies:\n  - name: pol\n    source:\n      path: src/pol\n")
    code = main(["fetch", "--python-build-file", str(manifest), "--cache-dir", str(tmp_path / "c")])
    out = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in out.err and secret not in out.err + out.out
    (line,) = [ln for ln in out.err.splitlines() if ln.startswith("error:")]
    assert "policy 'pol'" in line and "leak.txt points outside" in line
    assert_secret_absent(tmp_path / "c", secret)


@pytest.mark.parametrize(
    ("links", "reason"),
    [
        ({"loop": "loop"}, "loop"),
        ({"a": "b", "b": "a"}, "loop"),
        ({"gone": "missing/file"}, "does not exist"),
        ({"up": "sub/../.."}, "points outside"),
        ({"through": "f/x"}, "does not exist"),
    ],
)
def test_check_tree_resolves_like_the_kernel(
    tmp_path: Path, links: dict[str, str], reason: str
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "f").write_text("x")
    for name, target in links.items():
        os.symlink(target, tmp_path / name)
    with pytest.raises(InputError, match=reason):
        check_tree(tmp_path, "t")


def test_check_tree_accepts_links_that_stay_inside(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "f").write_text("x")
    os.symlink(".", tmp_path / "d")
    os.symlink("d/d/d/f", tmp_path / "ok1")
    os.symlink("../f", tmp_path / "sub" / "ok2")
    os.symlink("../../sub/deeper", tmp_path / "sub" / "deeper" / "ok3")
    os.symlink("sub/deeper/ok3/../../f", tmp_path / "ok4")
    check_tree(tmp_path, "t")


def test_a_link_out_and_back_in_is_refused(tmp_path: Path) -> None:
    """``../pol/f`` ends inside on this machine but not where the tree is copied to."""
    tree = tmp_path / "pol"
    tree.mkdir()
    (tree / "f").write_text("x")
    os.symlink("../pol/f", tree / "l")
    with pytest.raises(InputError, match="points outside"):
        check_tree(tree, "t")


def test_tar_members_are_never_written_through_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "x" / "dest"
    dest.mkdir(parents=True)
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        for name, target in (("d", "."), ("e", escape_target(dest, outside))):
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
        data = b"pwned"
        info = tarfile.TarInfo("e/pwned")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(InputError):
        extract_tar(archive, dest, "t")
    assert not (outside / "pwned").exists()


def test_tar_file_member_never_follows_an_existing_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    dest = tmp_path / "dest"
    dest.mkdir()
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        for name, target in (("d", "."), ("f", escape_target(dest, victim))):
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
        data = b"overwritten"
        info = tarfile.TarInfo("f")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(InputError):
        extract_tar(archive, dest, "t")
    assert victim.read_text() == "original"


def test_copy_tree_never_follows_links_and_checks_the_copy(tmp_path: Path) -> None:
    host, secret = host_secret(tmp_path)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("inside")
    os.symlink("sub/f", src / "ok")
    dst = tmp_path / "dst"
    dst.mkdir()
    copy_tree(src, dst, "t")
    assert os.readlink(dst / "ok") == "sub/f" and (dst / "ok").read_text() == "inside"
    plant_escape(src, host)
    again = tmp_path / "dst2"
    again.mkdir()
    with pytest.raises(InputError, match="points outside"):
        copy_tree(src, again, "t")
    assert_secret_absent(again, secret)
