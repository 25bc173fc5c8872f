"""``gateway-builder build``: validate, fetch, lock, render, build the image, smoke-test it.

The build uses the Docker SDK's legacy builder API (``client.api.build``), which honours
``DOCKER_HOST``, so a remote engine or a build farm works, and needs no BuildKit. Steps can be
skipped like the OpenTelemetry Collector Builder's: ``--render-only`` stops after the context,
``--from-context DIR`` builds an already rendered one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
from docker.utils import parse_repository_tag

from gateway_builder import defaults
from gateway_builder.dockerd import ensure_engine, stream_build
from gateway_builder.errors import BuildError, InputError
from gateway_builder.render import MARKER
from gateway_builder.ui import UI

LogFn = Callable[[str], None]

STANDIN_WARNING = (
    "--bases local: the router (/usr/local/bin/envoy) and the policy engine in this image are "
    "gateway-builder STAND-INS, not Envoy or the upstream policy engine. The image runs your "
    "Python policies for real; do not deploy it as a gateway "
    f"(label {defaults.STANDIN_LABEL}=true)."
)


@dataclass(frozen=True)
class BuiltImage:
    """A built image and what its build cost."""

    id: str
    tags: tuple[str, ...]
    size: int
    layers: tuple[str, ...]  # RootFS diff ids, base layers first
    seconds: float
    steps: int  # Dockerfile steps run
    cached_steps: int  # of which answered from the layer cache
    labels: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "image": self.id,
            "tags": list(self.tags),
            "size": self.size,
            "layers": len(self.layers),
            "seconds": round(self.seconds, 2),
            "steps": self.steps,
            "cached_steps": self.cached_steps,
        }


def check_tags(tags: Sequence[str]) -> tuple[str, ...]:
    """Validate ``--tag`` values (``name[:tag]``); InputError on a bad one."""
    out = []
    for tag in tags:
        repo, version = parse_repository_tag(tag)
        if not repo or repo != repo.lower() or " " in tag or (version is not None and not version):
            raise InputError(
                f"--tag {tag!r}: expected NAME[:TAG] in lower case, e.g. my/gateway:1.0"
            )
        out.append(tag)
    return tuple(out)


def build_image(
    context_dir: Path,
    *,
    client: docker.DockerClient,
    tags: Sequence[str] = (),
    nocache: bool = False,
    labels: Mapping[str, str] | None = None,
    log: LogFn = lambda _: None,
    detail: LogFn | None = None,
) -> BuiltImage:
    """Build the rendered context with the legacy builder; tag it; return what was built.

    ``log`` gets the step lines (live progress), ``detail`` every other output line.
    """
    context_dir = Path(context_dir)
    if not (context_dir / "Dockerfile").is_file():
        raise InputError(f"{context_dir}: no Dockerfile (not a rendered context)")
    counts = {"steps": 0, "cached": 0}
    more = detail or (lambda _: None)

    def progress(line: str) -> None:
        if line.startswith("Step "):
            counts["steps"] += 1
            log(line if len(line) <= 160 else line[:157] + "...")
        elif line.strip() == "---> Using cache":
            counts["cached"] += 1
            more(line)
        else:
            more(line)

    start = time.monotonic()
    kwargs: dict[str, Any] = {"path": str(context_dir), "nocache": nocache}
    if tags:
        kwargs["tag"] = tags[0]
    if labels:
        kwargs["labels"] = dict(labels)
    image_id = stream_build(client, log=progress, **kwargs)
    seconds = time.monotonic() - start
    image = client.images.get(image_id)
    for tag in tags[1:]:
        repo, version = parse_repository_tag(tag)
        if not image.tag(repo, version or "latest"):
            raise BuildError(f"could not tag {image_id} as {tag}")
    image.reload()
    return BuiltImage(
        id=image.id,
        tags=tuple(tags),
        size=int(image.attrs.get("Size") or 0),
        layers=tuple(image.attrs.get("RootFS", {}).get("Layers") or ()),
        seconds=seconds,
        steps=counts["steps"],
        cached_steps=counts["cached"],
        labels=dict(image.labels or {}),
    )


def _label_args(values: Sequence[str]) -> dict[str, str]:
    from gateway_builder.pipeline import parse_labels

    return dict(parse_labels(values))


def _read_context(context: Path) -> dict[str, Any]:
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


def _check_args(args: argparse.Namespace) -> None:
    if args.render_only and args.from_context is not None:
        raise InputError("--render-only and --from-context exclude each other")
    if args.render_only and args.out is None:
        raise InputError("--render-only needs --out DIR (where to keep the context)")
    if args.from_context is not None and args.out is not None:
        raise InputError("--out has no effect with --from-context")


# --- Integration point: the smoke test (gateway_builder/smoke.py, issue 7) -------------------
def run_smoke(image: str, context: Path | None, ui: UI) -> dict[str, Any] | None:
    """Smoke-test the built image (raises on failure); None when no smoke module is installed."""
    try:
        from gateway_builder import smoke
    except ImportError:
        ui.warn("smoke test not available in this installation: skipped")
        return None
    with ui.step("smoke test"):
        report = smoke.smoke_test(image, context_dir=context, ui=ui)
    ui.info(report.table())
    result: dict[str, Any] = report.as_dict()
    return result


def command(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    """``gateway-builder build``."""
    _check_args(args)
    tags = check_tags(args.tag)
    temp: Path | None = None
    try:
        extra_labels: dict[str, str] = {}
        if args.from_context is not None:
            context = Path(args.from_context)
            manifest = _read_context(context)
            standin = bool(manifest.get("standin"))
            policies = [p.get("name") for p in manifest.get("python_policies", [])]
            extra_labels = _label_args(args.label)
            ui.info(f"building the rendered context {context}")
        else:
            from gateway_builder.render import render_from_args

            if args.out is None:
                temp = Path(tempfile.mkdtemp(prefix="gateway-builder-context-"))
                context = temp / "context"
            else:
                context = Path(args.out)
            plan, rendered = render_from_args(args, ui, context)
            standin = plan.bases.standin
            policies = list(rendered.policies)
            if args.render_only:
                data = {"ok": True, "rendered_only": True, **rendered.as_dict(), "standin": standin}
                ui.result(data, f"rendered {rendered.out_dir} (--render-only: not built)")
                return data
        if standin:
            ui.warn(STANDIN_WARNING)
        client = ensure_engine(log=ui.info)
        with ui.step("build"):
            built = build_image(
                context,
                client=client,
                tags=tags,
                nocache=args.no_cache,
                labels=extra_labels,
                log=ui.info,
                detail=ui.debug,
            )
        smoke = None if args.no_smoke else run_smoke(built.id, context, ui)
        data = {
            "ok": True,
            **built.as_dict(),
            "context": str(context) if temp is None else None,
            "python_policies": policies,
            "standin": standin,
            "smoke": smoke,
        }
        human = [
            f"image  {built.id}",
            f"tags   {', '.join(built.tags) or '(none)'}",
            f"size   {built.size / 1e6:.1f} MB, {len(built.layers)} layers; "
            f"{built.cached_steps}/{built.steps} steps from cache, {built.seconds:.1f}s",
        ]
        if standin:
            human.append("NOTE   router and policy engine are stand-ins (--bases local)")
        ui.result(data, "\n".join(human))
        return data
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
