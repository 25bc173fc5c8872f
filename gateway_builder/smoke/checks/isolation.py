"""Isolation: each policy runs with its own dependency versions.

The expected versions come from the build manifest's lock (the whole venv) or a policy's
``requirements.txt`` pins; the reported ones from the executor's ``HealthCheck``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from packaging.utils import canonicalize_name

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;,]+)")


def parse_pins(text: str) -> dict[str, str]:
    """``name==version`` pins of a requirements or lock file (canonical names).

    Comments, ``--hash`` options, environment markers and backslash continuations are allowed;
    lines that pin nothing (ranges, ``-r``, URLs) are ignored.
    """
    pins: dict[str, str] = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].strip()
        m = _PIN.match(line)
        if m and not line.startswith("#"):
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def manifest_distributions(data: Any) -> dict[str, dict[str, str]]:
    """Per policy, every distribution of its venv from a ``build-manifest.json`` document."""
    found: dict[str, dict[str, str]] = {}
    policies = data.get("python_policies") if isinstance(data, dict) else None
    for entry in policies if isinstance(policies, list) else []:
        dists = entry.get("distributions") if isinstance(entry, dict) else None
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("name"), str)
            and isinstance(dists, dict)
        ):
            found[entry["name"]] = {canonicalize_name(k): str(v) for k, v in dists.items()}
    return found


def canonical_distributions(reported: Mapping[str, str]) -> dict[str, str]:
    """A HealthCheck ``distributions`` map with canonical names."""
    return {canonicalize_name(k): v for k, v in reported.items()}


@dataclass
class IsolationResult:
    """The isolation step's findings."""

    problems: list[str] = field(default_factory=list)
    #: Distributions reported with different versions by different policies: name -> {policy: ver}
    differing: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Pins checked against the reported versions, per policy.
    pins_checked: dict[str, int] = field(default_factory=dict)


def check_isolation(
    reported: Mapping[str, Mapping[str, str]],
    pins: Mapping[str, Mapping[str, str]],
    *,
    complete: Iterable[str] = (),
    sdk: str = "apip-sdk-core",
) -> IsolationResult:
    """Compare each policy's reported distributions with its pins and with the other policies.

    ``reported``: policy -> distributions from HealthCheck; ``pins``: policy -> ``==`` pins (from
    the build manifest's lock, or the policy's requirements.txt; may be empty). Every policy must
    report a non-empty set that holds the SDK and each of its pins at the pinned version; for the
    policies in ``complete`` the pins are the whole venv, so anything else installed is a problem
    too. Where two policies pin one distribution differently, each must report its own version.
    """
    result = IsolationResult()
    whole = set(complete)
    canon = {name: canonical_distributions(d) for name, d in reported.items()}
    for name in sorted(canon):
        dists = canon[name]
        if not dists:
            result.problems.append(f"policy {name} reports no installed distributions")
            continue
        if canonicalize_name(sdk) not in dists:
            result.problems.append(f"policy {name}: {sdk} is not installed in its environment")
        own = {canonicalize_name(k): v for k, v in pins.get(name, {}).items()}
        result.pins_checked[name] = len(own)
        for dist, version in sorted(own.items()):
            got = dists.get(dist)
            if got != version:
                result.problems.append(
                    f"policy {name}: {dist} is {got or 'not installed'}, its lock pins {version}"
                )
        if name in whole:
            extra = sorted(set(dists) - set(own))
            if extra:
                shown = ", ".join(f"{d} {dists[d]}" for d in extra[:5])
                result.problems.append(f"policy {name}: installed but not locked: {shown}")
    all_dists: list[str] = sorted({d for dists in canon.values() for d in dists})
    for shared in all_dists:
        versions = {name: canon[name][shared] for name in sorted(canon) if shared in canon[name]}
        if len(set(versions.values())) > 1:
            result.differing[shared] = versions
    return result
