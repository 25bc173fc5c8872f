"""Query-string credentials on an index URL (a signed URL's ``sig=``, ``X-Amz-Signature=``,
``X-Amz-Credential=``) reach the index and nothing else: not the output (text or --json), not
errors, not the lock file, not the image labels or the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gwb_factories import LocalIndex

from gateway_builder import defaults
from gateway_builder.cli import main
from gateway_builder.models import BaseImages, PythonBase
from gateway_builder.options import LockOptions, RenderOptions, SessionOptions
from gateway_builder.pipeline import Session
from gateway_builder.render.labels import labels_for
from gateway_builder.render.registry import registry_json
from gateway_builder.ui import UI

pytestmark = pytest.mark.integration

SECRETS = ("SIGs3cr3t", "AMZs3cr3t", "AKIAs3cr3t")


def _manifest(folder: Path, index_url: str, package: str = "gwbtest-index-policy") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "python-build.yaml"
    path.write_text(
        "version: v1\npolicies:\n  - name: index-policy\n    source:\n      pip:\n"
        f"        package: {package}\n        version: '==1.0.0'\n"
        f'        index_url: "{index_url}"\n'
    )
    return path


def _bases(versions: tuple[str, ...]) -> BaseImages:
    return BaseImages(
        engine_builder=None,
        pythons=tuple(PythonBase(v, f"python:{v}", f"/usr/local/bin/python{v}") for v in versions),
        runtime="runtime:test",
    )


def test_signed_index_url_stays_secret(
    local_index: LocalIndex,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(defaults.INDEX_URL_ENV, local_index.http_url)
    signed = (
        f"{local_index.http_url}?sig={SECRETS[0]}&X-Amz-Signature={SECRETS[1]}"
        f"&X-Amz-Credential={SECRETS[2]}%2F20300101"
    )
    manifest = _manifest(tmp_path / "project", signed)
    cache = tmp_path / "cache"
    common = ["--python-build-file", str(manifest), "--cache-dir", str(cache)]
    texts: dict[str, str] = {}

    assert main(["--json", "fetch", *common]) == 0
    out = capsys.readouterr()
    texts["fetch --json"] = out.out + out.err
    (policy,) = json.loads(out.out)["policies"]
    assert "sig=****" in policy["source"] and "X-Amz-Signature=****" in policy["source"]

    assert main(["lock", *common]) == 0
    out = capsys.readouterr()
    texts["lock"] = out.out + out.err
    texts["lock file"] = (manifest.parent / defaults.LOCK_FILE_NAME).read_text()

    session = Session.open(SessionOptions(python_build_file=manifest, cache_dir=cache))
    plan = session.plan(LockOptions(resolve=False), RenderOptions(), _bases, UI(verbosity=-1))
    texts["labels"] = json.dumps(labels_for(plan))
    texts["registry"] = registry_json(plan)
    assert "****" in texts["labels"]

    missing = _manifest(tmp_path / "missing", signed, package="no-such-package")
    for extra in ([], ["--json"]):
        code = main(
            [*extra, "fetch", "--python-build-file", str(missing), "--cache-dir", str(cache)]
        )
        out = capsys.readouterr()
        assert code != 0
        texts[f"error {extra}"] = out.out + out.err
        assert "not found" in out.err

    for label, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret} in {label}"
