"""The BuildPlan: one immutable value holding everything the render and image stages need.

Produced from the loaded manifests, the lock file and the fetched policies by :func:`make_plan`;
consumed by ``render`` and ``image``. Nothing after this stage reads a manifest or the network.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway_builder import __version__, defaults
from gateway_builder.digest import canonical_json
from gateway_builder.errors import InputError, StaleLockError
from gateway_builder.fetch import FetchedPolicy
from gateway_builder.lock.file import Lock
from gateway_builder.manifest import Manifests
from gateway_builder.models import BaseImages, LockedRequirement, PolicyArtifact
from gateway_builder.options import python_version_key


@dataclass(frozen=True)
class PythonPolicyPlan:
    """Everything needed to install and register one Python policy."""

    name: str
    version: str  # from policy-definition.yaml, "vX.Y.Z"
    python_version: str  # "3.12"
    module: str  # import path of the entry module, e.g. "prompt_guard.policy"
    package_dir_name: str  # "<name with - replaced by _>" for simple-dir policies
    #: Simple-dir policy: the fetched directory to copy into the image. None for packaged ones.
    source_dir: Path | None
    #: Packaged policy: its wheel (installed into the venv with --no-deps). None for simple dirs.
    artifact: PolicyArtifact | None
    #: Directory holding policy-definition.yaml (for the engine's derived build file).
    definition_dir: Path
    requirements: tuple[LockedRequirement, ...]  # for BuildPlan.platform, sorted by name
    failure_mode: str
    timeout_ms: int
    isolation: str
    workers: int
    params_json: str  # canonical JSON of the manifest params (frozen)
    source_label: str  # redacted provenance, e.g. "git+https://host/repo.git@<sha>#subdirectory=x"
    resolved: str  # commit SHA, "sha256:<hex>" of the artifact, or content hash of a path
    #: The uid and gid its workers run under (:func:`allocate_uids`), never 0.
    uid: int
    gid: int
    #: The policy's ``samples/`` directory (copied into the context for the smoke test), if any.
    samples_dir: Path | None = None
    #: The time of its source (a git commit's), which its stage's file times follow; None: no
    #: time of its own (path and index sources), the fixed 1980 epoch.
    source_time: int | None = None
    #: Names of the container's environment variables its workers get.
    env: tuple[str, ...] = ()
    #: Index the requirements were locked from (the manifest's ``index_url`` of an index source;
    #: None: the default index). May carry credentials: pass it to download_artifacts, never print.
    index_url: str | None = field(default=None, repr=False, compare=False)
    #: ``InitPolicy`` timeout; None: ``timeout_ms``.
    init_timeout_ms: int | None = None
    #: Memory limit of each worker process, MiB.
    memory_mb: int = defaults.DEFAULT_MEMORY_MB

    @property
    def params(self) -> dict[str, Any]:
        """The manifest params as a fresh dict."""
        value: dict[str, Any] = json.loads(self.params_json)
        return value


@dataclass(frozen=True)
class GoPolicyEntry:
    """A Go policy from build.yaml, passed unchanged to the engine builder."""

    name: str
    gomodule: str | None = None
    file_path: Path | None = None


@dataclass(frozen=True)
class BuildPlan:
    """Everything the render and image stages need, and nothing they must look up again."""

    builder_version: str
    gateway_version: str
    platform: str  # "x86_64" | "aarch64"
    go_policies: tuple[GoPolicyEntry, ...]
    python_policies: tuple[PythonPolicyPlan, ...]  # sorted by name
    executor_python: str  # Python version of the executor venv
    executor_requirements: tuple[LockedRequirement, ...]
    #: Installer used inside the builder stages (pip wheel, pinned and hashed).
    installer_requirements: tuple[LockedRequirement, ...]
    bases: BaseImages
    policy_engine_binary: Path | None  # --policy-engine PATH: skip the engine stage
    lock_digest: str  # "sha256:<hex>" of the lock file
    source_date_epoch: int
    labels: tuple[tuple[str, str], ...] = field(default=())  # extra user labels, sorted

    def stage_epoch(self, source_time: int | None = None) -> int:
        """File times of a builder stage whose inputs have ``source_time`` (None: no time of
        their own, the fixed 1980 epoch), never later than the image's own time.

        Each stage's times follow only its own inputs, so a newer commit of one policy leaves
        every other stage's layer byte-identical; only the last layer carries the image's time.
        """
        own = defaults.DEFAULT_SOURCE_DATE_EPOCH if source_time is None else source_time
        return min(own, self.source_date_epoch)

    @property
    def python_versions(self) -> tuple[str, ...]:
        """Distinct Python versions needed by the policies and the executor, sorted."""
        versions = {p.python_version for p in self.python_policies} | {self.executor_python}
        return tuple(sorted(versions, key=python_version_key))


# --------------------------------------------------------------------------------------------
# make_plan
# --------------------------------------------------------------------------------------------


def allocate_uids(names: Iterable[str]) -> dict[str, int]:
    """A uid per policy name from ``POLICY_UID_FIRST`` .. ``+POLICY_UID_COUNT``, deterministic.

    Derived from a hash of the name, so adding or removing one policy leaves every other
    policy's uid (and the image's user list, apart from that one line) as it was; two names
    with the same hash slot: the later one (in name order) takes the next free uid.
    """
    first, count = defaults.POLICY_UID_FIRST, defaults.POLICY_UID_COUNT
    taken: dict[str, int] = {}
    used: set[int] = set()
    for name in sorted(set(names)):
        slot = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") % count
        for _ in range(count):
            if first + slot not in used:
                break
            slot = (slot + 1) % count
        else:  # pragma: no cover - more policies than uids
            raise InputError(f"more than {count} Python policies: no uid left")
        taken[name] = first + slot
        used.add(first + slot)
    return taken


def default_source_date_epoch(lock: Lock) -> int:
    """``$SOURCE_DATE_EPOCH`` if set, else the newest commit time of the lock's git policies,
    else :data:`defaults.DEFAULT_SOURCE_DATE_EPOCH` (1980-01-01). Never the wall clock."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        try:
            value = int(env)
        except ValueError:
            raise InputError(f"SOURCE_DATE_EPOCH={env!r}: expected an integer (seconds)") from None
        if value < 0:
            raise InputError("SOURCE_DATE_EPOCH must not be negative")
        return value
    times = [p.commit_time for p in lock.policies if p.commit_time is not None]
    return max(times) if times else defaults.DEFAULT_SOURCE_DATE_EPOCH


def make_plan(
    manifests: Manifests,
    lock: Lock,
    fetched: Sequence[FetchedPolicy],
    *,
    bases: BaseImages,
    platform: str = defaults.DEFAULT_PLATFORM,
    policy_engine_binary: Path | None = None,
    labels: Sequence[tuple[str, str]] = (),
    source_date_epoch: int | None = None,
) -> BuildPlan:
    """Freeze manifests + lock + fetched policies into a :class:`BuildPlan`.

    ``lock`` is already checked against the manifests; ``labels`` are (key, value) pairs;
    ``source_date_epoch`` defaults to :func:`default_source_date_epoch`.
    """
    if platform not in lock.platforms:
        raise InputError(
            f"the lock file has no pins for {platform}: run `gateway-builder lock --platform "
            f"{platform}`"
        )
    policies = []
    uids = allocate_uids(f.name for f in fetched)
    for f in sorted(fetched, key=lambda f: f.name):
        entry = lock.policy(f.name)
        artifact_sha = f.locked_artifact_sha256
        if (
            entry is None
            or entry.resolved != f.resolved
            or entry.artifact_sha256 != artifact_sha
            or entry.env.python != f.python_version
        ):
            raise StaleLockError(
                f"policy '{f.name}': the lock does not match the fetched source; "
                "run `gateway-builder lock`"
            )
        samples = (f.tree / "samples") if f.tree is not None else None
        policies.append(
            PythonPolicyPlan(
                name=f.name,
                version=f.definition.version,
                python_version=f.python_version,
                module=f.module,
                package_dir_name=f.package_dir_name,
                source_dir=f.source_dir,
                artifact=f.artifact,
                definition_dir=f.definition_dir,
                requirements=entry.env.requirements(platform),
                failure_mode=f.spec.failure_mode,
                timeout_ms=f.spec.timeout_ms,
                init_timeout_ms=f.spec.init_timeout_ms,
                isolation=f.spec.isolation,
                workers=f.spec.workers,
                memory_mb=f.spec.memory_mb,
                params_json=canonical_json(f.spec.params),
                source_label=f.display,
                resolved=f.resolved,
                samples_dir=samples if samples is not None and samples.is_dir() else None,
                source_time=f.commit_time,
                index_url=f.index_url,
                uid=uids[f.name],
                gid=uids[f.name],
                env=f.spec.env,
            )
        )
    go = tuple(
        GoPolicyEntry(name=g.name, gomodule=g.gomodule, file_path=g.file_path)
        for g in manifests.go_specs
    )
    return BuildPlan(
        builder_version=__version__,
        gateway_version=manifests.gateway_version,
        platform=platform,
        go_policies=go,
        python_policies=tuple(policies),
        executor_python=lock.executor.python,
        executor_requirements=lock.executor.requirements(platform),
        installer_requirements=lock.installer.requirements(platform),
        bases=bases,
        policy_engine_binary=policy_engine_binary,
        lock_digest=lock.digest,
        source_date_epoch=(
            source_date_epoch if source_date_epoch is not None else default_source_date_epoch(lock)
        ),
        labels=tuple(sorted((str(k), str(v)) for k, v in labels)),
    )
