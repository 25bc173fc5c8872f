"""Developer sessions. Run through ``bash scripts/test.sh`` (which sets up .venv), or directly:
``.venv/bin/nox --no-venv -s tests``. Sessions use the current interpreter (no nested venvs), so
one ``.venv`` serves them all.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "typecheck", "tests"]

ROOT = Path(__file__).parent
PY = sys.executable
LINT_PATHS = [
    "gateway_builder",
    "gateway_executor",
    "tests",
    "benchmarks",
    "policy_sources",
    "scripts",
    "noxfile.py",
]


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.run(PY, "-m", "ruff", "check", *LINT_PATHS)
    session.run(PY, "-m", "ruff", "format", "--check", *LINT_PATHS)


@nox.session(venv_backend="none")
def typecheck(session: nox.Session) -> None:
    """mypy over the build-time and runtime packages."""
    session.run(PY, "-m", "mypy", "gateway_builder", "gateway_executor", "benchmarks")
    # Every sample policy has a module named ``policy``: check each folder on its own.
    for folder in sorted(
        p for p in (ROOT / "policy_sources").iterdir() if (p / "policy.py").exists()
    ):
        session.run(PY, "-m", "mypy", str(folder))


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """Unit and integration tests, plus the sample policies' own tests (no Docker)."""
    session.run(
        PY,
        "-m",
        "pytest",
        "-m",
        "not e2e",
        *session.posargs,
        env={"TESTCONTAINERS_RYUK_DISABLED": "true"},
    )


@nox.session(venv_backend="none")
def busy(session: nox.Session) -> None:
    """The ``tests`` session with two CPU hogs running (a shared CI machine): every timed
    assertion must hold with other work on the CPUs. The hogs stop with the tests (at the latest
    after two hours)."""
    session.run(
        PY,
        str(ROOT / "scripts" / "cpu_hogs.py"),
        "2",
        "7200",
        "--",
        PY,
        "-m",
        "pytest",
        "-m",
        "not e2e",
        *session.posargs,
        env={"TESTCONTAINERS_RYUK_DISABLED": "true"},
    )


@nox.session(venv_backend="none")
def e2e(session: nox.Session) -> None:
    """End-to-end tests against a real Docker engine (started if needed)."""
    session.run("bash", str(ROOT / "scripts" / "ensure-docker.sh"), external=True)
    session.run(
        PY,
        "-m",
        "pytest",
        "-m",
        "e2e",
        "tests/e2e",
        *session.posargs,
        env={"TESTCONTAINERS_RYUK_DISABLED": "true"},
    )


@nox.session(venv_backend="none")
def registry(session: nox.Session) -> None:
    """Refresh the committed registry/policy-registry.json from the default manifests (the
    render stage never writes into the source checkout)."""
    from gateway_builder import defaults
    from gateway_builder.options import (
        BaseImageOptions,
        LockOptions,
        RenderOptions,
        SessionOptions,
    )
    from gateway_builder.pipeline import Session
    from gateway_builder.render.registry import registry_json
    from gateway_builder.ui import UI

    options = SessionOptions(
        build_file=ROOT / defaults.DEFAULT_BUILD_FILE,
        python_build_file=ROOT / defaults.DEFAULT_PYTHON_BUILD_FILE,
    )
    plan = Session.open(options).plan(
        LockOptions(resolve=False), RenderOptions(), BaseImageOptions(), UI()
    )
    target = ROOT / defaults.COMMITTED_REGISTRY_DIR / defaults.REGISTRY_FILE_NAME
    target.write_text(registry_json(plan), encoding="utf-8")
    session.log(f"wrote {target.relative_to(ROOT)}")


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Benchmarks: each script prints a table of numbers."""
    scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    wanted = set(session.posargs)
    for script in scripts:
        if wanted and script.stem not in wanted:
            continue
        session.log(f"--- {script.name}")
        session.run(PY, str(script), env={"PYTHONPATH": str(ROOT), **os.environ})
