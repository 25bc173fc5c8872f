"""The command line documents itself: every option and argument has help, the README names every
flag, and the small output rules hold (``--json --version``, ``-q``, counted nouns, the smoke
table)."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway_builder import __version__, cli
from gateway_builder.smoke.report import StepResult, format_table
from gateway_builder.ui import counted

README = Path(__file__).resolve().parents[2] / "README.md"


def parsers() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The top-level parser and every sub-command's, with their command paths."""
    todo = [("gateway-builder", cli.build_parser())]
    while todo:
        name, parser = todo.pop()
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [(f"{name} {cmd}", sub) for cmd, sub in action.choices.items()]


def test_every_option_and_argument_has_help() -> None:
    missing = []
    for name, parser in parsers():
        for action in parser._actions:
            label = "/".join(action.option_strings) or action.dest
            text = action.help
            if not text or text == argparse.SUPPRESS or not text.strip():
                missing.append(f"{name} {label}")
                continue
            if (
                action.choices
                and not action.option_strings
                and not isinstance(action, argparse._SubParsersAction)
            ):
                # A positional with choices says what each choice means.
                missing += [f"{name} {label}: {c}" for c in action.choices if str(c) not in text]
    assert missing == []


def test_the_readme_names_every_flag_and_command() -> None:
    readme = README.read_text(encoding="utf-8")
    missing = []
    for name, parser in parsers():
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help" and flag not in readme:
                    missing.append(f"{name} {flag}")
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"command {c}" for c in action.choices if f"`{c}" not in readme]
    assert missing == []


def test_source_date_epoch_says_it_sets_file_times() -> None:
    build = dict(parsers())["gateway-builder build"]
    (action,) = [a for a in build._actions if "--source-date-epoch" in a.option_strings]
    assert action.help is not None and "file times" in action.help


@pytest.mark.parametrize("argv", [["--json", "--version"], ["--version", "--json"]])
def test_json_version_is_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "version": __version__}


def test_plain_version_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out == f"gateway-builder {__version__}\n"


def test_quiet_prints_no_table_and_counts_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "one").mkdir()
    manifest = tmp_path / "python-build.yaml"
    manifest.write_text("version: v1\npolicies:\n  - name: one\n    source:\n      path: ./one\n")
    assert cli.main(["-q", "validate", "--python-build-file", str(manifest)]) == 0
    assert capsys.readouterr().out == ""
    assert cli.main(["validate", "--python-build-file", str(manifest)]) == 0
    assert capsys.readouterr().out == "ok: 0 Go policies, 1 Python policy\n"
    assert cli.main(["-q", "--json", "validate", "--python-build-file", str(manifest)]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True  # -q keeps the JSON result


def test_counted_nouns() -> None:
    assert counted(1, "Python policy") == "1 Python policy"
    assert counted(0, "Python policy") == "0 Python policies"
    assert counted(3, "layer") == "3 layers"
    assert counted(2, "index", "indexes") == "2 indexes"


def test_the_smoke_table_wraps_long_details_without_cutting_them() -> None:
    detail = " ".join(f"word{i}" for i in range(60)) + " the-end"
    table = format_table([StepResult("protocol", "fail", 1.5, detail)], width=100)
    lines = table.splitlines()
    assert all(len(line) <= 100 for line in lines)
    assert "..." not in table
    body = " ".join(line.strip() for line in lines[2:])
    assert re.sub(r"^protocol\s+FAIL\s+1\.50\s+", "", body) == detail
