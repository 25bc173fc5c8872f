"""Shared fixtures of the Docker tests: a running engine and the local base images.

End-to-end tests must run in CI, so nothing here skips: without an engine (and no way to start
one) the fixtures fail with the reason.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import docker
import pytest

from gateway_builder.bases import build_local_bases
from gateway_builder.dockerd import ensure_engine
from gateway_builder.models import BaseImages
from gateway_builder.options import LocalBasesOptions

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

#: Python versions the default manifests need (their policies and the executor).
E2E_PYTHONS = ("3.11", "3.12")

_log = logging.getLogger("gateway_builder.e2e")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client for a running engine; starts a local dockerd when none answers (root only)."""
    client = ensure_engine(log=_log.info)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def e2e_pythons() -> tuple[str, ...]:
    """The Python versions :func:`local_bases` provides."""
    return E2E_PYTHONS


@pytest.fixture(scope="session")
def local_bases(docker_client: docker.DockerClient) -> BaseImages:
    """The local base images for :data:`E2E_PYTHONS` (built once, then reused by tag)."""
    return build_local_bases(
        LocalBasesOptions(pythons=E2E_PYTHONS),
        client=docker_client,
        log=_log.info,
        detail=_log.debug,
    ).bases
