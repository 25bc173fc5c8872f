"""Ref classification and version-prefix resolution (the upstream rules), URL checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_builder.errors import InputError
from gateway_builder.fetch.git import classify_ref, normalize_url, pick_version_tag

TAGS = ["v1.0.0", "v1.2.0", "v1.2.1-rc1", "v2.0.0", "v1.10.0", "v1.9.3", "v1.2.x", "release"]


@pytest.mark.parametrize(
    ("ref", "kind"),
    [
        ("v1", "major"),
        ("v1.2", "minor"),
        ("v1.2.3", "exact"),
        ("policies/x/v2", "major"),
        ("policies/x/v2.1", "minor"),
        ("policies/x/v2.1.0", "exact"),
        ("main", "none"),
        ("v1.2.1-rc1", "none"),
        ("1.2", "none"),
        ("abc123", "none"),
    ],
)
def test_classify_ref(ref: str, kind: str) -> None:
    assert classify_ref(ref) == kind


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("v1", "v1.10.0"),  # numeric, not lexical, ordering
        ("v1.2", "v1.2.0"),  # the rc and the non-numeric v1.2.x never match
        ("v1.9", "v1.9.3"),
        ("v2", "v2.0.0"),
        ("v3", None),
        ("main", None),
    ],
)
def test_pick_version_tag(ref: str, expected: str | None) -> None:
    assert pick_version_tag(ref, TAGS) == expected


def test_pick_version_tag_monorepo_prefix_is_exact() -> None:
    tags = ["policies/a/v1.0.0", "policies/a/v1.4.2", "policies/ab/v1.9.0", "v1.8.0"]
    assert pick_version_tag("policies/a/v1", tags) == "policies/a/v1.4.2"
    assert pick_version_tag("policies/ab/v1", tags) == "policies/ab/v1.9.0"
    assert pick_version_tag("v1", tags) == "v1.8.0"


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/org/repo.git",
        "http://127.0.0.1:8080/repo",
        "ssh://git@example.com/org/repo.git",
        "git://example.com/repo",
        "file:///srv/repo",
        "git@example.com:org/repo.git",
    ],
)
def test_allowed_urls_pass_unchanged(url: str) -> None:
    assert normalize_url(url, Path("/base")) == url


def test_git_ssh_scheme_and_local_paths() -> None:
    assert normalize_url("git+ssh://git@h/r.git", Path("/b")) == "ssh://git@h/r.git"
    assert normalize_url("../repo", Path("/base/manifests")) == "/base/repo"
    assert normalize_url("/abs/repo", Path("/b")) == "/abs/repo"


@pytest.mark.parametrize(
    "url", ["ext::sh -c id", "fd::17", "-uploadpack=x", "svn://example.com/r", "s3://b/k"]
)
def test_dangerous_or_unknown_transports_are_refused(url: str) -> None:
    with pytest.raises(InputError):
        normalize_url(url, Path("/b"))


def test_refused_url_is_redacted_in_the_error() -> None:
    with pytest.raises(InputError) as info:
        normalize_url("svn://user:hunter2@example.com/r", Path("/b"))
    assert "hunter2" not in str(info.value)
