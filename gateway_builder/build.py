"""The build stage: a rendered context -> an image, through the Docker SDK's legacy builder API
(``client.api.build``), which honours ``DOCKER_HOST`` (a remote engine or a build farm works) and
needs no BuildKit.

The legacy builder leaves an image behind for every step of every builder stage (the last of each
stage shows as ``<none>``): they are its layer cache. A build removes the ones it created itself
(read from its own step output, so an image some other build or user made is never touched),
unless asked to keep them for fast rebuilds; the result and its parents always stay.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound
from docker.utils import parse_repository_tag

from gateway_builder.dockerd import stream_build
from gateway_builder.errors import BuildError, InputError

LogFn = Callable[[str], None]
_STEP_IMAGE = re.compile(r"^---> ([0-9a-f]{12,64})$")


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
    #: Intermediate images this build created and removed again (none with keep_stages).
    removed_images: int = 0

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
            "removed_images": self.removed_images,
        }


class _StepImages:
    """Reads the builder's step output: which step images this build created (not a FROM base,
    not a cache hit)."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self._from = False
        self._cached = False

    def line(self, line: str) -> None:
        text = line.strip()
        if text.startswith("Step "):
            instruction = text.split(" : ", 1)[-1]
            self._from = instruction.upper().startswith("FROM ")
            self._cached = False
        elif text == "---> Using cache":
            self._cached = True
        elif (m := _STEP_IMAGE.match(text)) and not (self._from or self._cached):
            self.created.append(m.group(1))


def _ancestors(client: docker.DockerClient, image_id: str) -> set[str]:
    """``image_id`` and every parent image of it (the legacy builder records them)."""
    out: set[str] = set()
    current: str | None = image_id
    while current and current not in out and len(out) < 10_000:
        out.add(current)
        try:
            current = client.api.inspect_image(current).get("Parent") or None
        except (ImageNotFound, APIError):
            break
    return out


def remove_created_images(
    client: docker.DockerClient, created: Sequence[str], keep: str | None, log: LogFn
) -> int:
    """Remove the untagged step images of ``created`` (newest first), except ``keep`` and its
    parents; one image at a time (``noprune``), so nothing this build did not create goes.
    Returns how many were removed; an image something else now uses stays (a debug line)."""
    kept = _ancestors(client, keep) if keep else set()
    removed = 0
    for short in reversed(created):
        try:
            attrs = client.api.inspect_image(short)
        except (ImageNotFound, APIError):
            continue
        image_id = attrs["Id"]
        if image_id in kept or attrs.get("RepoTags"):
            continue
        try:
            client.api.remove_image(image_id, noprune=True)
            removed += 1
        except (APIError, DockerException) as exc:  # a child or a container uses it now
            log(f"keeping the step image {short}: {exc}")
    return removed


def build_image(
    context_dir: Path,
    *,
    client: docker.DockerClient,
    tags: Sequence[str] = (),
    nocache: bool = False,
    labels: Mapping[str, str] | None = None,
    log: LogFn = lambda _: None,
    detail: LogFn | None = None,
    keep_stages: bool = True,
) -> BuiltImage:
    """Build the rendered context with the legacy builder; tag it; return what was built.

    ``log`` gets the step lines (live progress), ``detail`` every other output line. Unless
    ``keep_stages``, the step images this build created are removed afterwards (the result and
    its parents stay), whether the build succeeded or not.
    """
    context_dir = Path(context_dir)
    if not (context_dir / "Dockerfile").is_file():
        raise InputError(f"{context_dir}: no Dockerfile (not a rendered context)")
    counts = {"steps": 0, "cached": 0}
    more = detail or (lambda _: None)
    step_images = _StepImages()

    def progress(line: str) -> None:
        step_images.line(line)
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
    image_id: str | None = None
    removed = 0
    try:
        image_id = stream_build(client, log=progress, **kwargs)
    finally:
        if not keep_stages:
            removed = remove_created_images(client, step_images.created, image_id, more)
            more(f"removed {removed} step image(s) this build created")
    seconds = time.monotonic() - start
    image = client.images.get(image_id)
    tag_image(client, image.id, tags[1:])
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
        removed_images=removed,
    )


def tag_image(client: docker.DockerClient, image_id: str, tags: Sequence[str]) -> None:
    """Give ``image_id`` each of ``tags`` (``name[:tag]``, default ``latest``)."""
    image = client.images.get(image_id)
    for tag in tags:
        repo, version = parse_repository_tag(tag)
        if not image.tag(repo, version or "latest"):
            raise BuildError(f"could not tag {image_id} as {tag}")


def failed_tag(tag: str) -> str:
    """``repo:1.0`` -> ``repo:1.0-failed`` (``repo`` -> ``repo:latest-failed``)."""
    repo, version = parse_repository_tag(tag)
    return f"{repo}:{version or 'latest'}-failed"
