"""The build stage: a rendered context -> an image, through the Docker SDK's legacy builder API
(``client.api.build``), which honours ``DOCKER_HOST`` (a remote engine or a build farm works) and
needs no BuildKit."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
from docker.utils import parse_repository_tag

from gateway_builder.dockerd import stream_build
from gateway_builder.errors import BuildError, InputError

LogFn = Callable[[str], None]


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
