"""Lock time: the default manifests and a policy with a dozen dependencies, uv vs pip-tools,
cold cache (empty --cache-dir: resolver caches, wheel builds, pip-tools venvs) and warm cache.

Run: ``python benchmarks/bench_lock.py`` (needs the public index). Prints a table.
``--repeat N`` sets the warm repetitions (median reported).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway_builder import defaults  # noqa: E402
from gateway_builder.cache import Cache  # noqa: E402
from gateway_builder.cli import main  # noqa: E402
from gateway_builder.lock.resolve import ResolveRequest, dedupe, get_resolver  # noqa: E402

#: Twelve direct dependencies (more transitively), typical of an ML-free policy.
DOZEN = (
    "requests",
    "pydantic",
    "jinja2",
    "pyyaml",
    "click",
    "rich",
    "httpx",
    "attrs",
    "python-dateutil",
    "tenacity",
    "orjson",
    "regex",
)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _lock(cache: Path, lock_file: Path, resolver: str, what: str) -> None:
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        code = main(
            [
                "lock",
                "--python-build-file",
                str(ROOT / defaults.DEFAULT_PYTHON_BUILD_FILE),
                "--lock-file",
                str(lock_file),
                "--cache-dir",
                str(cache),
                "--resolver",
                resolver,
            ]
        )
    if code != 0:
        raise SystemExit(f"{what} with {resolver} failed (exit {code})")


def lock_default(cache: Path, lock_file: Path, resolver: str) -> None:
    """Lock the default manifests from scratch (no previous lock)."""
    lock_file.unlink(missing_ok=True)
    _lock(cache, lock_file, resolver, "lock")


def noop_relock(cache: Path, lock_file: Path, resolver: str) -> None:
    """Relock with an up-to-date lock in place (nothing to resolve)."""
    _lock(cache, lock_file, resolver, "relock")


def resolve_dozen(cache: Path, resolver: str) -> int:
    request = ResolveRequest(
        label="bench policy",
        requirements=dedupe([*DOZEN, defaults.SDK_REQUIREMENT]),
        python_version="3.11",
        platform="x86_64",
    )
    return len(get_resolver(resolver, Cache.open(cache)).resolve(request))


def bench_resolver(
    resolver: str, work: Path, repeat: int
) -> tuple[list[tuple[str, str, str, float]], float]:
    """Rows for one resolver, and its warm median on the dozen-dependency policy."""
    rows: list[tuple[str, str, str, float]] = []
    cache = work / f"cache-{resolver}"
    lock_file = work / f"{resolver}.lock"
    rows.append(
        (
            "default manifests",
            resolver,
            "cold",
            timed(lambda: lock_default(cache, lock_file, resolver)),
        )
    )
    warm = [timed(lambda: lock_default(cache, lock_file, resolver)) for _ in range(repeat)]
    rows.append(("default manifests", resolver, "warm", statistics.median(warm)))
    noop = [timed(lambda: noop_relock(cache, lock_file, resolver)) for _ in range(repeat)]
    rows.append(("default manifests, no-op relock", resolver, "warm", statistics.median(noop)))
    # The dozen-dependency policy: resolver time only (fetch excluded).
    dozen_cache = work / f"dozen-{resolver}"
    if resolver == "pip-tools":
        # The one-time pip-tools venv creation is setup, not resolution.
        get_resolver(resolver, Cache.open(dozen_cache))._venv("3.11")  # type: ignore[attr-defined]
    counts: list[int] = []
    rows.append(
        (
            "12 direct deps",
            resolver,
            "cold",
            timed(lambda: counts.append(resolve_dozen(dozen_cache, resolver))),
        )
    )
    warm = [
        timed(lambda: counts.append(resolve_dozen(dozen_cache, resolver))) for _ in range(repeat)
    ]
    rows.append(
        (f"12 direct deps ({counts[-1]} pinned)", resolver, "warm", statistics.median(warm))
    )
    shutil.rmtree(cache, ignore_errors=True)
    return rows, statistics.median(warm)


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows: list[tuple[str, str, str, float]] = []
    ratio: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="gwb-bench-") as tmp:
        for resolver in ("uv", "pip-tools"):
            more, ratio[resolver] = bench_resolver(resolver, Path(tmp), args.repeat)
            rows += more
    width = max(len(r[0]) for r in rows)
    print(f"| {'scenario':<{width}} | resolver  | cache | seconds |")
    print(f"|{'-' * (width + 2)}|-----------|-------|---------|")
    for scenario, resolver, cache_state, seconds in rows:
        print(f"| {scenario:<{width}} | {resolver:<9} | {cache_state:<5} | {seconds:7.2f} |")
    print(
        f"\n12 direct deps, warm: pip-tools / uv = {ratio['pip-tools'] / ratio['uv']:.1f}x "
        "(target: >= 10x)"
    )


if __name__ == "__main__":
    main_bench()
