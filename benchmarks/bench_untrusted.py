"""Refusing hostile inputs: time and peak memory until each is refused, and one sandboxed wheel
build (needs Docker and the local Python 3.11 base).

Each input is loaded in a fresh child process (its peak RSS includes the interpreter and the
builder's imports, about 65 MB). Targets: every refusal under 2 s and 200 MB.

Run: ``python benchmarks/bench_untrusted.py [--no-sandbox]``. Prints a table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_CHILD = """
import json, resource, sys, time
from collections.abc import Sequence
from pathlib import Path
start = time.monotonic()
kind, path = sys.argv[1], Path(sys.argv[2])
error = ""
try:
    if kind == "definition":
        from gateway_builder.fetch.definition import load_definition
        load_definition(path.parent, "policy 'p'")
    elif kind == "manifest":
        from gateway_builder.manifest import load_python_manifest
        load_python_manifest(path)
    else:
        from gateway_builder.fetch.definition import check_entry_module
        check_entry_module(path, "policy 'p'")
except Exception as exc:
    error = type(exc).__name__
print(json.dumps({"seconds": time.monotonic() - start,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "error": error}))
"""


def _laughs(levels: int) -> list[str]:
    lines = ["x0: &a0 {type: string}"]
    for i in range(1, levels + 1):
        lines.append(f"x{i}: &a{i} {{allOf: [" + ", ".join([f"*a{i - 1}"] * 10) + "]}")
    return lines


def inputs(tmp: Path) -> list[tuple[str, str, Path]]:
    """(label, kind, file) of every hostile input."""
    cases: list[tuple[str, str, Path]] = []

    def add(label: str, kind: str, name: str, text: str) -> None:
        folder = tmp / str(len(cases))
        folder.mkdir()
        (folder / name).write_text(text)
        cases.append((label, kind, folder / name))

    head = "name: p\nversion: v1.0.0\n"
    add(
        "definition: billion laughs (10^9 allOf)",
        "definition",
        "policy-definition.yaml",
        head + "\n".join(_laughs(9)) + "\nparameters: *a9\n",
    )
    add(
        "definition: 16 MB",
        "definition",
        "policy-definition.yaml",
        head + "description: " + "x" * (16 << 20) + "\n",
    )
    entry = "  - name: p{i}\n    source: {{path: .}}\n    params: {{a: 1, b: [1, 2]}}\n"
    add(
        "manifest: 16 MB, 400k entries",
        "manifest",
        "python-build.yaml",
        "version: v1\npolicies:\n" + "".join(entry.format(i=i) for i in range(400_000)),
    )
    add(
        "manifest: 0.8 MB, 400k values",
        "manifest",
        "python-build.yaml",
        "version: v1\npolicies: []\nx: [" + "1," * 400_000 + "1]\n",
    )
    add(
        "manifest: alias bomb (10^11)",
        "manifest",
        "python-build.yaml",
        "version: v1\npolicies: []\n"
        + "\n".join(
            ["y0: &b0 [lol]"]
            + [f"y{i}: &b{i} [" + ", ".join([f"*b{i - 1}"] * 10) + "]" for i in range(1, 12)]
        )
        + "\n",
    )
    body = "def get_policy(metadata, params):\n    return None\n\nX = "
    add("policy.py: 1+1+... (200k terms)", "policy", "policy.py", body + "+".join(["1"] * 200_000))
    add(
        "policy.py: 1+1+... (512 KiB)",
        "policy",
        "policy.py",
        body + "+".join(["1"] * 300_000)[: (512 << 10) - 80] + "1\n",
    )
    return cases


def refusals() -> None:
    rows = [("input", "seconds", "peak RSS MB", "refused with")]
    tmp = Path(tempfile.mkdtemp(prefix="gwb-bench-untrusted-"))
    try:
        for label, kind, path in inputs(tmp):
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, kind, str(path)],
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
                env={"PYTHONPATH": str(ROOT)},
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            rows.append(
                (label, f"{result['seconds']:.2f}", f"{result['rss_mb']:.0f}", result["error"])
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _table(rows)


def sandbox_build() -> None:
    from gateway_builder.cache import Cache
    from gateway_builder.fetch.wheel import build_wheel

    rows = [("sandboxed wheel build (prompt-guard, cold cache)", "seconds")]
    cache = Cache.open(Path(tempfile.mkdtemp(prefix="gwb-bench-sandbox-")))
    try:
        for run in range(3):
            start = time.monotonic()
            build_wheel(
                ROOT / "policy_sources" / "prompt-guard",
                cache,
                what="prompt-guard",
                python_version="3.11",
                index_url=None,
                source_date_epoch=315_532_800,
            )
            rows.append((f"run {run + 1}", f"{time.monotonic() - start:.1f}"))

    finally:
        shutil.rmtree(cache.root, ignore_errors=True)
    _table(rows)


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-sandbox", action="store_true", help="skip the Docker build")
    args = parser.parse_args()
    refusals()
    if not args.no_sandbox:
        sandbox_build()


if __name__ == "__main__":
    main()
