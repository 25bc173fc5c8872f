"""``test-policy`` time for each sample policy (and a freshly scaffolded one): the command as a
user runs it (a new ``gateway-builder`` process each time), cold (an empty cache: the policy's
venv is created, its locked artifacts downloaded) and warm (the venv reused: nothing installed);
the CPU time of a warm run (what it costs, whatever the machine's load); plus the warm in-process
harness alone (executor start, every sample, stop), without the CLI's own start-up. No Docker.

Run: ``python benchmarks/bench_test_policy.py`` (the cold runs need the public index). Prints a
table; ``--repeat N`` sets the warm repetitions (median, min and max reported). Target: a warm
run under 3 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway_builder import defaults  # noqa: E402
from gateway_builder.devkit.scaffold import new_policy  # noqa: E402
from gateway_builder.options import NewPolicyOptions  # noqa: E402
from gateway_builder.testing import PolicyHarness  # noqa: E402

LOCK = ROOT / "manifests" / defaults.LOCK_FILE_NAME
SAMPLE_POLICIES = ("prompt-enrichment", "prompt-guard", "token-scorer")
TARGET_S = 3.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli_run(folder: Path, env: dict[str, str], lock: Path | None) -> tuple[float, float]:
    """One ``gateway-builder test-policy`` in a new process: (wall time, CPU time of it and
    everything it started: executor, workers, installers)."""
    argv = [sys.executable, "-m", "gateway_builder", "-q", "test-policy", str(folder)]
    if lock is not None:
        argv += ["--lock-file", str(lock)]
    cpu = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"test-policy {folder.name} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, _children_cpu() - cpu


def harness_run(folder: Path, lock: Path | None) -> float:
    """Start the harness (venv reused), run every sample, stop; the wall time."""
    start = time.perf_counter()
    with PolicyHarness(folder, lock_file=lock) as harness:
        results = harness.run_samples()
    seconds = time.perf_counter() - start
    assert all(r.ok for r in results), [r.problems for r in results if not r.ok]
    return seconds


def measure(folder: Path, lock: Path | None, repeat: int, env: dict[str, str]) -> list[str]:
    cold, _ = cli_run(folder, env, lock)
    runs = [cli_run(folder, env, lock) for _ in range(repeat)]
    warm = [wall for wall, _ in runs]
    inproc = [harness_run(folder, lock) for _ in range(repeat)]
    median = statistics.median(warm)
    return [
        folder.name,
        "lock" if lock is not None else "requirements",
        f"{cold:.2f}",
        f"{median:.2f}",
        f"{min(warm):.2f}-{max(warm):.2f}",
        f"{statistics.median(cpu for _, cpu in runs):.2f}",
        f"{statistics.median(inproc):.2f}",
        "yes" if median < TARGET_S else "NO",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="warm runs per policy")
    args = parser.parse_args()
    rows = [
        [
            "policy",
            "venv from",
            "cold s",
            "warm s",
            "warm min-max",
            "warm CPU s",
            "harness s",
            "<3 s",
        ]
    ]
    with tempfile.TemporaryDirectory(prefix="gwb-bench-tp-") as tmp:
        cache = Path(tmp) / "cache"
        os.environ[defaults.CACHE_ENV] = str(cache)  # the in-process harness too
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for name in SAMPLE_POLICIES:
            rows.append(measure(ROOT / "policy_sources" / name, LOCK, args.repeat, env))
        scaffolded = new_policy(
            NewPolicyOptions(
                name="bench-policy",
                phases=("request_headers", "request_body", "response_headers", "streaming"),
                out=Path(tmp) / "bench-policy",
            )
        ).root
        rows.append(measure(scaffolded, None, args.repeat, env))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    load = os.getloadavg()
    print(
        f"\nwarm = median of {args.repeat} runs of a new `gateway-builder test-policy` process "
        f"(venv reused); warm CPU = user+system time of that process and all it started "
        f"(load-independent); harness = the in-process PolicyHarness alone; "
        f"load average {load[0]:.1f} on {os.cpu_count()} CPUs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
