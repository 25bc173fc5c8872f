"""Base images of the Dockerfile: choosing them (upstream, overridden, or local) and building the
local ones from Debian packages alone (``gateway-builder bases build``).

Local bases are for sites (and machines like CI here) that cannot pull the upstream images. Every
image is tagged ``gateway-builder-local/<kind>:<key>`` where ``key`` hashes everything the image is
made from (Dockerfile, asset files, build arguments, the parent image id, the interpreter prefix's
file list); an existing tag is reused, so a second run costs seconds.

* ``debian``: ``debootstrap --variant=minbase`` piped into ``docker import`` (:mod:`.debian`).
* ``python3.11``: Debian's CPython with venv support.
* ``python<X.Y>`` (other versions): a CPython copied from an interpreter prefix (pyenv's by
  default, :mod:`.prefixes`) into ``/opt/python/<X.Y>``, made relocatable, with the libraries it
  needs.
* ``runtime``: tini, bash, python3.11, those libraries, the non-root user and a router stand-in
  at Envoy's path. Labelled as a stand-in; images built on it inherit the label.
* ``engine-builder``: Debian's Go and a stand-in for the upstream builder that compiles a small
  policy engine registering the policies it is given.

Modules: :mod:`.keys` (content keys, tags, labels, assets), :mod:`.prefixes`, :mod:`.context`
(normalized build contexts), :mod:`.debian`, :mod:`.builder` (:func:`build_local_bases` and its
report) and :mod:`.choose` (:func:`choose_bases`).
"""

from __future__ import annotations

from gateway_builder.bases.builder import (
    LOCAL_ENGINE_BUILDER_COMMAND,
    STANDIN_NOTE_LABEL,
    BaseEvent,
    BasesReport,
    build_local_bases,
)
from gateway_builder.bases.choose import (
    Chooser,
    apply_overrides,
    choose_bases,
    official_python_base,
    upstream_bases,
)
from gateway_builder.bases.keys import (
    ASSETS_DIR,
    KEY_LABEL,
    KIND_LABEL,
    asset_digests,
    content_key,
    local_tag,
)
from gateway_builder.bases.prefixes import (
    PrefixEntry,
    discover_prefix,
    prefix_entries,
    prefix_fingerprint,
    validate_prefix,
)

__all__ = [
    "ASSETS_DIR",
    "KEY_LABEL",
    "KIND_LABEL",
    "LOCAL_ENGINE_BUILDER_COMMAND",
    "STANDIN_NOTE_LABEL",
    "BaseEvent",
    "BasesReport",
    "Chooser",
    "PrefixEntry",
    "apply_overrides",
    "asset_digests",
    "build_local_bases",
    "choose_bases",
    "content_key",
    "discover_prefix",
    "local_tag",
    "official_python_base",
    "prefix_entries",
    "prefix_fingerprint",
    "upstream_bases",
    "validate_prefix",
]
