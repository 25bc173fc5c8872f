"""The fetch stage: every Python policy from git (:mod:`.git`), a package index (:mod:`.index`)
or a path, checked (:mod:`.tree`, :mod:`.definition`), built into a wheel where it is packaged
(:mod:`.wheel`) and cached; :func:`fetch_policies` is the entry point, :mod:`.artifacts` fills
wheelhouses with the locked artifacts later on."""

from __future__ import annotations

from gateway_builder.fetch.artifacts import download_artifacts
from gateway_builder.fetch.policy import (
    FetchedPolicy,
    fetch_policies,
    fetch_policy,
    read_requirements_txt,
    spec_digest,
    summary,
)
from gateway_builder.fetch.sources import SourcePin

__all__ = [
    "FetchedPolicy",
    "SourcePin",
    "download_artifacts",
    "fetch_policies",
    "fetch_policy",
    "read_requirements_txt",
    "spec_digest",
    "summary",
]
