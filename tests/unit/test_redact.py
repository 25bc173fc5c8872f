"""Credentials never survive redaction, and harmless parts stay readable."""

from __future__ import annotations

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
        ("https://example.com/simple?token=abc&x=1", "https://example.com/simple?token=****&x=1"),
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
