"""``test-policy``: every sample of a policy folder through the real executor, as a table.

One run reads the folder (a sample that does not parse, or params its schema refuses, is bad
input), starts a :class:`~gateway_builder.devkit.harness.PolicyHarness` (its venv reused while the
requirements are unchanged), runs each sample as the image smoke test does and reports what came
back. ``--watch`` polls the folder's files and reruns after a change.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from gateway_builder.devkit.harness import PolicyHarness, SampleResult
from gateway_builder.devkit.policydir import expect_summary, load_policy_samples, read_policy_dir
from gateway_builder.devkit.venv import PolicyEnv
from gateway_builder.errors import BuildError, GatewayBuilderError, InputError
from gateway_builder.fetch.tree import is_ignored
from gateway_builder.options import PolicyTestOptions
from gateway_builder.ui import UI

#: A folder with more files than this is not watched (a venv or data set inside it, probably).
MAX_WATCHED_FILES = 10_000
#: Looks at a changing folder before a rerun starts anyway.
SETTLE_LOOKS = 10


@dataclass(frozen=True)
class PolicyRun:
    """One run of a folder's samples."""

    policy: str
    version: str
    results: tuple[SampleResult, ...]
    env: PolicyEnv
    #: Wall time of the whole run (venv check, executor start, samples, stop).
    seconds: float

    @property
    def failed(self) -> list[SampleResult]:
        """The samples whose expectation does not hold."""
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        """Every sample passed."""
        return not self.failed

    def table(self) -> str:
        """The result table, then one block per mismatch with its differences."""
        rows = [("sample", "phase", "expected", "got", "ms", "result")]
        for r in self.results:
            rows.append(
                (
                    Path(r.sample.file).name,
                    r.sample.phase,
                    _clip(expect_summary(r.sample.expect)),
                    _clip(r.outcome.summary()),
                    f"{r.ms:.1f}",
                    "ok" if r.ok else "FAIL",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        for r in self.failed:
            lines.append("")
            lines.append(f"FAIL {r.sample.file}: {r.sample.description}")
            lines.extend(f"  - {problem}" for problem in r.problems)
        passed = len(self.results) - len(self.failed)
        lines.append("")
        lines.append(
            f"{self.policy} {self.version}: {passed} of {len(self.results)} samples passed "
            f"in {self.seconds:.2f}s (Python {self.env.python_version}, venv "
            f"{'reused' if self.env.reused else 'created'} from {self.env.origin})"
        )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able report."""
        return {
            "ok": self.ok,
            "policy": self.policy,
            "version": self.version,
            "python": self.env.python_version,
            "venv": {"origin": self.env.origin, "reused": self.env.reused},
            "seconds": round(self.seconds, 3),
            "samples": [
                {
                    "sample": r.sample.file,
                    "phase": r.sample.phase,
                    "description": r.sample.description,
                    "expected": expect_summary(r.sample.expect),
                    "got": r.outcome.summary(),
                    "ok": r.ok,
                    "problems": r.problems,
                    "ms": round(r.ms, 2),
                }
                for r in self.results
            ],
        }


def _clip(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def run_once(options: PolicyTestOptions, ui: UI) -> PolicyRun:
    """Read the folder, run every sample through a fresh executor, stop it."""
    started = time.monotonic()
    policy = read_policy_dir(options.policy_dir)
    samples = load_policy_samples(policy)
    if not samples:
        raise InputError(
            f"{options.policy_dir}: no samples/*.json to run (docs/DESIGN.md, 'Sample requests')"
        )
    harness = PolicyHarness.for_policy(policy, options.env, log=ui.info)
    for sample in samples:  # bad params are bad input, found before anything starts
        try:
            harness.check_params(sample.params)
        except InputError as exc:
            raise InputError(f"{sample.file}: {exc.message}") from None
    with harness:
        results = tuple(harness.run_sample(s) for s in samples)
        assert harness.env is not None
        env = harness.env
    return PolicyRun(
        policy=policy.name,
        version=policy.definition.version,
        results=results,
        env=env,
        seconds=time.monotonic() - started,
    )


def failure(run: PolicyRun) -> BuildError:
    """The exit-1 error of a run with mismatches: its first difference on one line."""
    first = run.failed[0]
    return BuildError(
        f"{run.policy}: {len(run.failed)} of {len(run.results)} samples failed "
        f"({first.sample.file}: {'; '.join(first.problems)})"
    )


# --------------------------------------------------------------------------------------------
# --watch
# --------------------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (mtime_ns, size)}`` of the folder's files (caches and venvs left out)."""
    out: dict[str, tuple[int, int]] = {}
    for folder, dirs, files in os.walk(root):
        rel_dir = PurePosixPath(Path(folder).relative_to(root).as_posix())
        dirs[:] = [d for d in dirs if not is_ignored(rel_dir / d)]
        for name in files:
            rel = rel_dir / name
            if is_ignored(rel):
                continue
            try:
                st = os.stat(os.path.join(folder, name))
            except OSError:  # removed meanwhile: the next look sees it gone
                continue
            out[str(rel)] = (st.st_mtime_ns, st.st_size)
            if len(out) > MAX_WATCHED_FILES:
                raise InputError(
                    f"{root}: more than {MAX_WATCHED_FILES} files to watch; move data and venvs "
                    "out of the policy folder"
                )
    return out


def changed_files(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> list[str]:
    """Files added, removed or modified between two snapshots."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def watch(
    options: PolicyTestOptions,
    ui: UI,
    report: Callable[[PolicyRun | None, GatewayBuilderError | None], None],
) -> PolicyRun | None:
    """Run, then rerun after every change of the folder until interrupted (or ``max_runs``);
    each run's result or error goes to ``report``. Returns the last completed run."""
    root = options.policy_dir.expanduser().resolve()
    runs = 0
    last: PolicyRun | None = None
    state = snapshot(root)
    while True:
        runs += 1
        try:
            last = run_once(options, ui)
            report(last, None)
        except GatewayBuilderError as exc:  # keep watching: the next edit may fix it
            last = None
            report(None, exc)
        if options.max_runs is not None and runs >= options.max_runs:
            return last
        ui.info(f"watching {root} for changes (Ctrl-C to stop)")
        while True:
            time.sleep(options.poll_interval)
            now = snapshot(root)
            changes = changed_files(state, now)
            if not changes:
                continue
            # Let an editor finish writing: wait until one look sees no further change (a folder
            # that never settles is run anyway after a few looks).
            for _ in range(SETTLE_LOOKS):
                time.sleep(options.poll_interval)
                settled = snapshot(root)
                if settled == now:
                    break
                now = settled
            state = now
            ui.info(f"changed: {', '.join(changes[:5])}{' ...' if len(changes) > 5 else ''}")
            break
