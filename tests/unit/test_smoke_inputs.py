"""Where the smoke test finds its inputs: a rendered context or files copied out of an image."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from gateway_builder import defaults
from gateway_builder.errors import InputError
from gateway_builder.options import SmokeOptions
from gateway_builder.smoke import load_inputs, smoke_test
from gateway_builder.smoke.inputs import _safe_extract
from gateway_builder.ui import UI

REPO = Path(__file__).resolve().parents[2]


def _entry(name: str) -> dict[str, object]:
    return {
        "name": name,
        "version": "v1.0.0",
        "module": f"{name.replace('-', '_')}.policy",
        "python": f"{defaults.VENVS_DIR}/{name}/bin/python",
        "python_version": "3.11",
    }


def _context(root: Path, names: tuple[str, ...] = ("prompt-guard", "prompt-enrichment")) -> Path:
    """The parts of a rendered context the smoke test reads (layout of render.py)."""
    registry = root / "rootfs" / defaults.REGISTRY_PATH.lstrip("/")
    registry.parent.mkdir(parents=True)
    registry.write_text(
        json.dumps(
            {
                "format": "gateway-builder/policy-registry",
                "format_version": 1,
                "policies": [_entry(n) for n in sorted(names)],
            }
        )
    )
    for name in names:
        shutil.copytree(
            REPO / "policy_sources" / name / "samples",
            root / "rootfs" / defaults.SAMPLES_DIR.lstrip("/") / name / "samples",
        )
    manifest = {
        "python_policies": [
            {"name": "prompt-guard", "distributions": {"MarkupSafe": "3.0.2"}},
        ]
    }
    (root / "build-manifest.json").write_text(json.dumps(manifest))
    return root


def test_a_rendered_context(tmp_path: Path) -> None:
    inputs = load_inputs(_context(tmp_path), "context X", registry_required=True)
    assert [e.name for e in inputs.entries] == ["prompt-enrichment", "prompt-guard"]
    assert set(inputs.samples) == {"prompt-enrichment", "prompt-guard"}
    guard = inputs.samples["prompt-guard"]
    assert guard and all(
        s.file.startswith("rootfs/app/policy-samples/prompt-guard/samples/") for s in guard
    )
    # Pins: the build manifest's complete lock wins; nothing else is made up.
    assert inputs.pins == {"prompt-guard": {"markupsafe": "3.0.2"}}
    assert inputs.complete_pins == {"prompt-guard"}


def test_requirements_next_to_samples_are_the_fallback_pins(tmp_path: Path) -> None:
    root = _context(tmp_path)
    (root / "build-manifest.json").unlink()
    (
        root
        / "rootfs"
        / defaults.SAMPLES_DIR.lstrip("/")
        / "prompt-enrichment"
        / "requirements.txt"
    ).write_text("MarkupSafe==2.1.5\n")
    inputs = load_inputs(root, "context X", registry_required=True)
    assert inputs.pins == {"prompt-enrichment": {"markupsafe": "2.1.5"}}
    assert inputs.complete_pins == set()


def test_missing_or_bad_registry(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^context X: no policy-registry.json found"):
        load_inputs(tmp_path, "context X", registry_required=True)
    empty = load_inputs(tmp_path, "image Y", registry_required=False)
    assert empty.entries == [] and empty.samples == {}

    registry = tmp_path / defaults.REGISTRY_FILE_NAME
    registry.write_text('{"format": "gateway-builder/policy-registry", "format_version": 9}')
    with pytest.raises(InputError, match="format_version 9 is not supported"):
        load_inputs(tmp_path, "context X", registry_required=True)
    registry.write_text("{nope")
    with pytest.raises(InputError, match=r"^context X: policy-registry.json: cannot read"):
        load_inputs(tmp_path, "context X", registry_required=True)


def test_a_broken_sample_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    root = _context(tmp_path, ("prompt-guard",))
    bad = root / "rootfs/app/policy-samples/prompt-guard/samples/zz-bad.json"
    bad.write_text(json.dumps({"description": "x", "phase": "request_body", "request": {}}))
    with pytest.raises(
        InputError,
        match=r"^rootfs/app/policy-samples/prompt-guard/samples/zz-bad.json: missing key",
    ):
        load_inputs(root, "context X", registry_required=True)


def _tar(members: dict[str, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.SYMTYPE
                info.linkname = "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_safe_extract_keeps_only_files_inside(tmp_path: Path) -> None:
    data = _tar(
        {
            "policies/a/samples/x.json": b"{}",
            "../escape.txt": b"no",
            "/abs.txt": b"no",
            "policies/link": None,
        }
    )
    _safe_extract(data, tmp_path / "out")
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["out/policies/a/samples/x.json"]
    assert not (tmp_path / "out" / "policies" / "link").exists()


def test_a_bad_timeout_is_an_input_error() -> None:
    with pytest.raises(InputError, match="--timeout: expected a positive number"):
        smoke_test("any", SmokeOptions(timeout=0), ui=UI(verbosity=-1))


def test_an_unknown_transport_is_an_input_error() -> None:
    with pytest.raises(InputError, match="--transport: expected one of auto, unix, tcp"):
        smoke_test("any", SmokeOptions(transport="udp"), ui=UI(verbosity=-1))
