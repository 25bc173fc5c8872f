"""The fetch cache never derives a name from a credential."""

from __future__ import annotations

from pathlib import Path

from gateway_builder.cache import Cache, strip_userinfo


def test_git_mirror_name_ignores_credentials(tmp_path: Path) -> None:
    cache = Cache.open(tmp_path)
    plain = cache.git_mirror("https://git.example/org/repo.git")
    assert cache.git_mirror("https://user:s3cret@git.example/org/repo.git") == plain
    assert cache.git_mirror("https://TOKEN@git.example/org/repo.git") == plain
    assert cache.git_mirror("https://git.example/org/other.git") != plain
    assert "s3cret" not in str(plain) and plain.parent == tmp_path / "git"


def test_strip_userinfo() -> None:
    assert strip_userinfo("http://u:p@127.0.0.1:8080/r.git") == "http://127.0.0.1:8080/r.git"
    assert strip_userinfo("ssh://git@host/r.git") == "ssh://host/r.git"
    assert strip_userinfo("/local/path") == "/local/path"
    assert strip_userinfo("file:///tmp/r.git") == "file:///tmp/r.git"
