"""Credentials never survive redaction, and harmless parts stay readable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway_builder.cli import main
from gateway_builder.redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:s3cret@example.com/simple", "https://user:****@example.com/simple"),
        ("https://ghp_TOKEN123@github.com/org/repo.git", "https://****@github.com/org/repo.git"),
        ("git+https://x:y@h/r.git", "git+https://x:****@h/r.git"),
        ("ssh://git@github.com/org/repo.git", "ssh://git@github.com/org/repo.git"),
        (
            "https://example.com/simple?token=abc&x=1",
            "https://example.com/simple?token=****&x=****",
        ),
        (
            "https://bucket.example/simple?X-Amz-Signature=abc123&X-Amz-Credential=AKIAX%2F1",
            "https://bucket.example/simple?X-Amz-Signature=****&X-Amz-Credential=****",
        ),
        ("https://h.example/simple?sig=s3cr3t", "https://h.example/simple?sig=****"),
        ("https://user:p@ss@host.example/simple", "https://user:****@host.example/simple"),
        ("https://user:pa ss@host.example/simple", "https://user:****@host.example/simple"),
        ("https://example.com/simple", "https://example.com/simple"),
        ("file:///tmp/index", "file:///tmp/index"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_finds_urls_anywhere() -> None:
    text = "cloning https://bob:hunter2@git.example.com/r.git failed; index https://TOKEN@pypi.example/simple"
    out = redact_text(text)
    assert "hunter2" not in out and "TOKEN" not in out
    assert "https://bob:****@git.example.com/r.git" in out
    assert "https://****@pypi.example/simple" in out


def test_cli_output_is_redacted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "build.yaml"
    p.write_text(
        "version: v1\npolicies:\n  - name: a\n    pipPackage: 'x==1.2@https://u:topsecret@idx.example/simple'\n"
        "  - name: b\n    pipPackage: 'git+https://TOKENXYZ@git.example/r.git@v1'\n"
    )
    assert main(["--json", "-v", "validate", "--build-file", str(p)]) == 0
    captured = capsys.readouterr()
    assert "idx.example" in captured.out and "git.example" in captured.out
    assert "topsecret" not in captured.err + captured.out
    assert "TOKENXYZ" not in captured.err + captured.out


@pytest.mark.parametrize(
    ("text", "secrets", "kept"),
    [
        (
            "GET https://b.example/f.whl?X-Amz-Signature=abc123&X-Amz-Credential=AKIAQQ failed",
            ["abc123", "AKIAQQ"],
            "https://b.example/f.whl?X-Amz-Signature=****&X-Amz-Credential=****",
        ),
        (
            "index https://h.example/simple?sig=s3cr3t&se=2030 unreachable",
            ["s3cr3t"],
            "https://h.example/simple?sig=****&se=****",
        ),
        (
            "cannot read https://user:p@ss@host.example/r.git: 401",
            ["p@ss", "ss@host"],
            "https://user:****@host.example/r.git",
        ),
        (
            "cannot read https://user:pa ss@host.example/r.git: 401",
            ["pa ss", "ss@host"],
            "https://user:****@host.example/r.git",
        ),
        (
            "cannot read https://user:a@b c@host.example/r.git",
            ["a@b", "b c", "c@host"],
            "https://user:****@host.example/r.git",
        ),
    ],
)
def test_redact_text_query_values_and_raw_passwords(
    text: str, secrets: list[str], kept: str
) -> None:
    out = redact_text(text)
    for secret in secrets:
        assert secret not in out, out
    assert kept in out


def test_redact_text_leaves_plain_prose_alone() -> None:
    text = "see https://example.com/docs for help, or mail a@b.example (https://x.example)"
    assert redact_text(text) == text


def test_terminal_controls_and_bidi_overrides_are_escaped() -> None:
    out = redact_text("key\x1b[2J\x1b]0;title\x07 name\u202etxt.exe\r\x00 end\ttab\nline")
    for raw in ("\x1b", "\x07", "\u202e", "\r", "\x00"):
        assert raw not in out
    assert "\\x1b[2J" in out and "\\u202e" in out and "\\x0d" in out
    assert "\ttab\nline" in out  # tabs and newlines stay


def test_cli_escapes_controls_in_manifest_keys_and_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "python-build.yaml"
    p.write_text(
        'version: v1\npolicies:\n  - name: a\n    "bad\\e[2J\\u202ekey": 1\n    source: {path: .}\n'
    )
    for extra in ([], ["--json"]):
        assert main([*extra, "validate", "--python-build-file", str(p)]) == 2
        out = capsys.readouterr()
        text = out.out + out.err
        assert "\x1b" not in text and "\u202e" not in text
        assert "\\x1b[2J" in text or "\\u001b[2J" in text
    q = tmp_path / "p2.yaml"
    q.write_text('version: v1\npolicies:\n  - name: a\n    source: {path: "x\\e[31m\\u202e"}\n')
    assert main(["validate", "--python-build-file", str(q)]) == 2
    err = capsys.readouterr().err
    assert "directory not found" in err and "\x1b" not in err and "\u202e" not in err


@pytest.mark.parametrize(
    "url",
    ["ext::sh -c touch% /tmp/pwned", "fd::3", "transport::address", "-uhelp", "https://h/r\nx"],
)
def test_unsupported_git_urls_are_refused_with_their_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    p = tmp_path / "python-build.yaml"
    p.write_text(
        "version: v1\npolicies:\n  - name: a\n    source:\n      git:\n"
        f"        url: {json.dumps(url)}\n"
    )
    assert main(["validate", "--python-build-file", str(p)]) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert f"{p}:6:14: policies[0].source.git.url:" in line, line


def test_unsupported_pip_package_git_url_is_refused_with_its_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "build.yaml"
    p.write_text(
        "version: v1\npolicies:\n  - name: a\n    pipPackage: 'x @ git+ext::sh -c id@v1'\n"
    )
    assert main(["validate", "--build-file", str(p)]) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert f"{p}:4:17: policies[0].pipPackage:" in line, line
