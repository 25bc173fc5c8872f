"""Throughput of the entrypoint's output prefixer (``nox -s bench``).

Runs ``prefix_lines`` exactly as ``templates/entrypoint.sh.j2`` defines it (bash, and the tools
it calls) on 100-byte log lines written into a pipe, and the former bash read loop for
comparison, and checks the output (every line prefixed, nothing lost). Target: >= 50 MB/s.

    python benchmarks/bench_prefixer.py [--mib 64]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "templates" / "entrypoint.sh.j2"
LINE = b"2026-12-04 16:48:09,296 [INFO] gateway_executor.engine: InitPolicy prompt-guard:v1 ok\n"
TAG = "[py-pol]"

#: The prefixer before: a bash read loop (one read system call per byte).
BASH_LOOP = r"""
prefix_lines() {
    local tag=$1 line
    while IFS= read -r line || [[ -n $line ]]; do
        printf '%s %s\n' "$tag" "$line"
    done
}
"""


def template_prefixer() -> str:
    """The ``prefix_lines`` function of the entrypoint template (with what it uses)."""
    text = TEMPLATE.read_text(encoding="utf-8")
    match = re.search(
        r"^# Copy stdin to stdout.*?^prefix_lines\(\) \{\n.*?^\}\n", text, re.M | re.S
    )
    if match is None:
        raise SystemExit(f"{TEMPLATE}: no prefix_lines function")
    return match.group(0)


def measure(function: str, data: Path, size: int) -> float:
    """MB/s of ``function`` from a pipe (``cat``) to a file; checks the output."""
    out = data.with_suffix(".out")
    script = f'{function}\ncat "$1" | prefix_lines "$2" > "$3"\n'
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", script, "bench", str(data), TAG, str(out)], check=True)
    took = time.perf_counter() - t0
    lines = out.read_bytes().split(b"\n")
    want = size // len(LINE)
    prefixed = TAG.encode() + b" " + LINE[:-1]
    if lines[-1] != b"" or len(lines) - 1 != want or any(x != prefixed for x in lines[:-1]):
        raise SystemExit("the prefixer's output is not every input line with its prefix")
    return size / took / 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=64, help="input size for the entrypoint prefixer")
    ap.add_argument("--loop-mib", type=int, default=4, help="input size for the old bash loop")
    args = ap.parse_args(argv)
    if shutil.which("bash") is None:
        print("SKIP  no bash")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-prefixer-") as tmp:
        rows = []
        for name, function, mib in (
            ("entrypoint prefix_lines", template_prefixer(), args.mib),
            ("bash read loop (before)", BASH_LOOP, args.loop_mib),
        ):
            data = Path(tmp) / f"in-{mib}"
            count = mib * 1024 * 1024 // len(LINE)
            data.write_bytes(LINE * count)
            rows.append((name, mib, measure(function, data, count * len(LINE))))
    print(f"\nentrypoint output prefixer, {len(LINE)}-byte lines through a pipe\n")
    print(f"| {'prefixer':<24} | {'MiB':>4} | {'MB/s':>7} |")
    print(f"|{'-' * 26}|{'-' * 6}|{'-' * 9}|")
    for name, mib, rate in rows:
        print(f"| {name:<24} | {mib:>4} | {rate:>7.1f} |")
    rate = rows[0][2]
    print(f"\n{'PASS' if rate >= 50 else 'FAIL'}  entrypoint prefixer >= 50 MB/s: {rate:.0f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
