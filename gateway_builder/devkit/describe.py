"""``describe-policy``: a policy folder's reference page (Markdown) or its data (JSON), for docs
sites. Read from the folder alone: the definition, ``policy.py``'s classes (not run) and the
samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway_builder import defaults
from gateway_builder.devkit.policydir import (
    expect_summary,
    implemented_phases,
    load_policy_samples,
    read_policy_dir,
)
from gateway_builder.errors import InputError
from gateway_builder.options import DescribePolicyOptions

FORMATS = ("markdown", "json")


def _type_of(prop: dict[str, Any]) -> str:
    """A parameter's type in a few words: ``string``, ``array of string``, ``one of: a, b``."""
    if "enum" in prop:
        return "one of: " + ", ".join(json.dumps(v) for v in prop["enum"])
    kind = prop.get("type")
    if isinstance(kind, list):
        kind = " or ".join(str(k) for k in kind)
    if kind == "array" and isinstance(prop.get("items"), dict):
        inner = _type_of(prop["items"])
        return f"array of {inner}" if inner else "array"
    if kind is None and "const" in prop:
        return f"always {json.dumps(prop['const'])}"
    return str(kind or "")


def parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The top-level parameters of a ``parameters`` JSON Schema, in declaration order."""
    props = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    out = []
    for name, prop in props.items():
        prop = prop if isinstance(prop, dict) else {}
        out.append(
            {
                "name": name,
                "type": _type_of(prop),
                "default": prop.get("default"),
                "has_default": "default" in prop,
                "required": name in required,
                "description": " ".join(str(prop.get("description") or "").split()),
            }
        )
    return out


def describe_policy(options: DescribePolicyOptions) -> dict[str, Any]:
    """Everything the reference page shows, as data."""
    if options.format not in FORMATS:
        raise InputError(f"--format {options.format}: expected one of {', '.join(FORMATS)}")
    policy = read_policy_dir(options.policy_dir)
    definition = policy.definition
    samples = load_policy_samples(policy)
    return {
        "name": definition.name,
        "version": definition.version,
        "display_name": definition.display_name,
        "description": " ".join((definition.description or "").split()) or None,
        "python": policy.python_version,
        "layout": "packaged" if policy.packaged else "simple",
        "requirements": list(policy.requirements),
        "phases": list(implemented_phases(policy)),
        "parameters": parameters(definition.parameters),
        "samples": [
            {
                "file": Path(s.file).name,
                "phase": s.phase,
                "description": s.description,
                "params": s.params,
                "expect": s.expect,
            }
            for s in samples
        ],
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(value: Any) -> str:
    return "`" + json.dumps(value, ensure_ascii=False).replace("`", "'") + "`"


def to_markdown(data: dict[str, Any]) -> str:
    """The reference page."""
    title = data["display_name"] or data["name"]
    lines = [f"# {title}", "", f"`{data['name']}` {data['version']}", ""]
    if data["description"]:
        lines += [data["description"], ""]
    phases = ", ".join(f"`{p}`" for p in data["phases"]) or "none found in policy.py"
    python = data["python"] or f"{defaults.DEFAULT_PYTHON} (the default)"
    lines += [f"- Phases: {phases}", f"- Python: {python}"]
    reqs = ", ".join(f"`{r}`" for r in data["requirements"]) or "none besides the SDK"
    lines += [f"- Requirements: {reqs}", "", "## Parameters", ""]
    if data["parameters"]:
        lines += [
            "| name | type | default | required | description |",
            "|---|---|---|---|---|",
        ]
        for p in data["parameters"]:
            default = _code(p["default"]) if p["has_default"] else ""
            lines.append(
                f"| `{p['name']}` | {_cell(p['type'])} | {_cell(default)} | "
                f"{'yes' if p['required'] else 'no'} | {_cell(p['description'])} |"
            )
    else:
        lines.append("This policy takes no parameters.")
    lines += ["", "## Samples", ""]
    if data["samples"]:
        lines += ["| sample | phase | what it shows | params | expected |", "|---|---|---|---|---|"]
        for s in data["samples"]:
            params = _code(s["params"]) if s["params"] else ""
            lines.append(
                f"| `{s['file']}` | `{s['phase']}` | {_cell(s['description'])} | "
                f"{_cell(params)} | {_cell(expect_summary(s['expect']))} |"
            )
    else:
        lines.append("No samples.")
    return "\n".join(lines) + "\n"
