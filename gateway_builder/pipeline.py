"""The one orchestrator: manifests -> fetch -> lock -> plan -> render -> build -> smoke test.

A :class:`Session` is opened once per command: it loads the manifests, opens the fetch cache and
reads the lock file, each exactly once. :func:`run` takes a build's typed options and stops after
the stage it is asked for (``--render-only`` stops after RENDER, ``--no-smoke`` after BUILD);
``--from-context`` skips the front half. Every stage below is a library call that knows nothing
of the command line.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway_builder import defaults
from gateway_builder.bases import choose_bases
from gateway_builder.build import BuiltImage, build_image, failed_tag, tag_image
from gateway_builder.cache import Cache
from gateway_builder.dockerd import ensure_engine
from gateway_builder.errors import GatewayBuilderError, InputError
from gateway_builder.fetch import FetchedPolicy, fetch_policies
from gateway_builder.lock import (
    LockResult,
    check_lock,
    check_lock_owner,
    default_lock_path,
    lock_policies,
    manifest_name,
    pins_from_lock,
    write_lock,
)
from gateway_builder.lock.file import Lock, read_lock
from gateway_builder.manifest import Manifests, load_manifests
from gateway_builder.models import BaseImages
from gateway_builder.options import (
    BaseImageOptions,
    BuildOptions,
    LockOptions,
    RenderOptions,
    SessionOptions,
    Stage,
    python_version_key,
)
from gateway_builder.plan import BuildPlan, make_plan
from gateway_builder.render import MARKER, RenderResult, fetch_downloader, render, vcs_provenance
from gateway_builder.smoke import SmokeReport, smoke_test
from gateway_builder.ui import UI

#: The base images of a plan, as a function of the Python versions it needs.
BasesChooser = Callable[[tuple[str, ...]], BaseImages]


@dataclass
class Session:
    """Loaded manifests, the fetch cache and the lock file of one command."""

    options: SessionOptions
    manifests: Manifests
    cache: Cache
    lock_path: Path
    previous: Lock | None
    previous_error: InputError | None = None
    #: Set by :meth:`lock` when the lock file was (re)written.
    changed: bool = False

    @classmethod
    def open(cls, options: SessionOptions) -> Session:
        """Load the manifests, open the cache and read the existing lock (once each)."""
        manifests = load_manifests(*options.manifest_paths())
        cache = Cache.open(options.cache_dir, offline=options.offline)
        lock_path = options.lock_file or default_lock_path(manifests)
        previous, error = None, None
        if lock_path.exists():
            try:
                previous = read_lock(lock_path)
            except InputError as exc:
                error = exc
        return cls(options, manifests, cache, lock_path, previous, error)

    @property
    def manifest(self) -> str | None:
        """The manifest the lock belongs to, as the lock records it."""
        return manifest_name(self.manifests, self.lock_path)

    @property
    def base(self) -> Path:
        """Directory that relative paths in the lock are relative to."""
        return self.lock_path.parent

    def fetch(
        self, ui: UI | None, *, upgrade: bool = False, upgrade_policies: Sequence[str] = ()
    ) -> list[FetchedPolicy]:
        """Fetch every Python policy, reusing the lock's pinned sources unless upgrading."""
        check_lock_owner(self.previous, self.manifest, self.lock_path)
        if ui is not None:
            self.cache.warn = ui.warn
        pins = {} if upgrade else pins_from_lock(self.previous, skip=upgrade_policies)
        return fetch_policies(
            self.manifests.python_policies(),
            self.cache,
            base=self.base,
            pins=pins,
            ui=ui,
            host_builds=self.options.allow_host_builds,
        )

    def check(self, fetched: Sequence[FetchedPolicy], opts: LockOptions) -> Lock:
        """The lock file if it matches the manifests (``--check``, ``--locked``)."""
        if self.previous_error is not None:
            raise self.previous_error
        return check_lock(
            fetched,
            self.lock_path,
            cache=self.cache,
            platforms=opts.platforms,
            manifest=self.manifest,
            resolver=opts.resolver,
            jobs=opts.jobs,
        )

    def lock(
        self, fetched: Sequence[FetchedPolicy], opts: LockOptions, ui: UI | None
    ) -> LockResult:
        """Update the lock incrementally and write it if it changed."""
        if self.previous_error is not None and ui is not None:
            ui.warn(f"ignoring the unreadable lock file: {self.previous_error.message}")
        check_lock_owner(self.previous, self.manifest, self.lock_path)
        result = lock_policies(
            fetched,
            cache=self.cache,
            previous=self.previous,
            opts=opts,
            ui=ui,
            manifest=self.manifest,
        )
        if ui is not None:
            for note in result.notes:
                ui.warn(note)
        self.changed = write_lock(self.lock_path, result.lock)
        if ui is not None:
            ui.info(f"{self.lock_path}: {'written' if self.changed else 'unchanged'}")
        return result

    def plan(
        self,
        lock_options: LockOptions,
        render_options: RenderOptions,
        bases: BaseImageOptions | BasesChooser,
        ui: UI,
    ) -> BuildPlan:
        """Fetch, lock (or verify the lock) and freeze everything into a :class:`BuildPlan`."""
        with ui.step("fetch"):
            fetched = self.fetch(ui)
        if lock_options.resolve:
            with ui.step("lock"):
                lock = self.lock(fetched, lock_options, ui).lock
        else:
            with ui.step("check lock"):
                lock = self.check(fetched, lock_options)
        choose = (
            choose_bases(bases, self.manifests.gateway_version, ui)
            if isinstance(bases, BaseImageOptions)
            else bases
        )
        with ui.step("plan"):
            return make_plan(
                self.manifests,
                lock,
                fetched,
                bases=choose(python_versions(fetched, lock)),
                platform=render_options.platform,
                policy_engine_binary=render_options.policy_engine,
                labels=render_options.labels,
                source_date_epoch=render_options.source_date_epoch,
            )

    def render(self, plan: BuildPlan, out_dir: Path, ui: UI) -> RenderResult:
        """Write the build context of ``plan`` into ``out_dir``."""
        build_file, python_file = self.options.manifest_paths()
        revision, source = vcs_provenance(python_file or build_file)
        with ui.step("render"):
            return render(
                plan,
                out_dir,
                download=fetch_downloader(self.cache),
                revision=revision,
                source=source,
            )


def python_versions(fetched: Sequence[FetchedPolicy], lock: Lock) -> tuple[str, ...]:
    """Python versions the image needs (policies + executor), sorted."""
    versions = {f.python_version for f in fetched} | {lock.executor.python}
    return tuple(sorted(versions, key=python_version_key))


@dataclass
class Outcome:
    """What a :func:`run` produced, stage by stage (None: the stage did not run)."""

    context: Path | None = None
    #: The context is a temporary directory, removed when run() returns.
    temporary_context: bool = False
    plan: BuildPlan | None = None
    rendered: RenderResult | None = None
    standin: bool = False
    python_policies: list[str] = field(default_factory=list)
    built: BuiltImage | None = None
    smoke: SmokeReport | None = None


def read_context_manifest(context: Path) -> dict[str, Any]:
    """The build manifest of an already rendered context (``--from-context``)."""
    marker = context / MARKER
    if not (context / "Dockerfile").is_file() or not marker.is_file():
        raise InputError(
            f"--from-context {context}: not a rendered context (no Dockerfile or {MARKER})"
        )
    try:
        data: dict[str, Any] = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"--from-context {context}: unreadable {MARKER}: {exc}") from None
    return data


@contextmanager
def _context_dir(out: Path | None) -> Iterator[tuple[Path, bool]]:
    if out is not None:
        yield Path(out), False
        return
    temp = Path(tempfile.mkdtemp(prefix="gateway-builder-context-"))
    try:
        yield temp / "context", True
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def run(options: BuildOptions, ui: UI, *, bases: BasesChooser | None = None) -> Outcome:
    """Run the stages of one build up to ``options.until``.

    ``bases`` replaces the choice of base images made from ``options.bases`` (tests and
    benchmarks that bring their own images).
    """
    if options.until < Stage.RENDER:
        raise InputError("a build runs at least up to the render stage")
    with _context_dir(options.out if options.from_context is None else None) as (ctx, temp):
        outcome = Outcome(temporary_context=temp and options.from_context is None)
        extra_labels: dict[str, str] = {}
        if options.from_context is not None:
            outcome.context = Path(options.from_context)
            manifest = read_context_manifest(outcome.context)
            outcome.standin = bool(manifest.get("standin"))
            outcome.python_policies = [p.get("name") for p in manifest.get("python_policies", [])]
            extra_labels = dict(options.render.labels)
            ui.info(f"building the rendered context {outcome.context}")
        else:
            session = Session.open(options.session)
            outcome.plan = session.plan(options.lock, options.render, bases or options.bases, ui)
            outcome.rendered = session.render(outcome.plan, ctx, ui)
            outcome.context = ctx
            outcome.standin = outcome.plan.bases.standin
            outcome.python_policies = list(outcome.rendered.policies)
            if options.until == Stage.RENDER:
                return outcome
        if outcome.standin:
            ui.warn(defaults.STANDIN_WARNING)
        client = ensure_engine(log=ui.info)
        smoke = options.until >= Stage.SMOKE
        with ui.step("build"):
            # A smoke-tested image gets its tags only once it passed.
            outcome.built = build_image(
                outcome.context,
                client=client,
                tags=() if smoke else options.tags,
                nocache=options.no_cache,
                labels=extra_labels,
                log=ui.info,
                detail=ui.debug,
                keep_stages=options.keep_stages,
            )
        if smoke:
            with ui.step("smoke test"):
                try:
                    outcome.smoke = smoke_test(
                        outcome.built.id, options.smoke, context_dir=outcome.context, ui=ui
                    )
                except GatewayBuilderError as exc:
                    exc.message += _failed_image(client, outcome.built.id, options.tags)
                    exc.args = (exc.message,)
                    raise
            ui.info(outcome.smoke.table())
            tag_image(client, outcome.built.id, options.tags)
            outcome.built = replace(outcome.built, tags=options.tags)
        return outcome


def _failed_image(client: Any, image_id: str, tags: Sequence[str]) -> str:
    """Tag an image that failed its smoke test ``<tag>-failed`` (never the requested tags);
    what to add to the error."""
    if not tags:
        return f"; the image {image_id} was not tagged"
    failed = [failed_tag(t) for t in tags]
    tag_image(client, image_id, failed)
    return f"; the image is tagged {', '.join(failed)}, not {', '.join(tags)}"
