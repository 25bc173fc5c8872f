"""``new-policy``: a complete, working policy folder from the templates in ``assets/policy/``.

The folder is a *simple* policy (no ``pyproject.toml``): fetch copies it as it is and locks its
``requirements.txt``, so it passes ``validate``, ``fetch``, ``lock``, ``test-policy`` and a
build without a wheel build or any edit. Everything is rendered into a temporary directory
beside the target and renamed into place, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from gateway_builder import defaults
from gateway_builder.errors import InputError
from gateway_builder.manifest.schema import NAME_RE
from gateway_builder.options import NewPolicyOptions, check_python_version

TEMPLATES = defaults.PACKAGE_DIR / "assets" / "policy"

#: What each phase's example code does (README, docstrings, definition).
_EFFECTS = {
    "request_headers": "sets the `x-{h}` request header",
    "request_body": "adds a `note` field to JSON object request bodies",
    "response_headers": "sets the `x-{h}` response header",
    "response_body": "adds a `note` field to JSON object response bodies",
    "streaming": "appends a line to the end of streamed response bodies",
}
_USES = {
    "request_headers": "the x-{h} request header",
    "request_body": "the note of JSON request bodies",
    "response_headers": "the x-{h} response header",
    "response_body": "the note of JSON response bodies",
    "streaming": "the last line of streamed response bodies",
}
#: Per phase: the SDK interface, the mode field and value, the extra SDK names the code uses.
_PHASE_CODE: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "request_headers": (
        "RequestHeaderPolicy",
        "request_header_mode",
        "HeaderProcessingMode.PROCESS",
        ("RequestHeaderAction", "RequestHeaderContext", "UpstreamRequestHeaderModifications"),
    ),
    "request_body": (
        "RequestPolicy",
        "request_body_mode",
        "BodyProcessingMode.BUFFER",
        ("Body", "RequestAction", "RequestContext", "UpstreamRequestModifications"),
    ),
    "response_headers": (
        "ResponseHeaderPolicy",
        "response_header_mode",
        "HeaderProcessingMode.PROCESS",
        (
            "DownstreamResponseHeaderModifications",
            "ResponseHeaderAction",
            "ResponseHeaderContext",
        ),
    ),
    "response_body": (
        "ResponsePolicy",
        "response_body_mode",
        "BodyProcessingMode.BUFFER",
        ("Body", "DownstreamResponseModifications", "ResponseAction", "ResponseContext"),
    ),
    "streaming": (
        "StreamingResponsePolicy",
        "response_body_mode",
        "BodyProcessingMode.STREAM",
        (
            "DownstreamResponseModifications",
            "ForwardResponseChunk",
            "ResponseAction",
            "ResponseContext",
            "ResponseStreamContext",
            "StreamBody",
            "StreamingResponseAction",
        ),
    ),
}
_MODE_FIELDS = (
    ("request_header_mode", "HeaderProcessingMode"),
    ("request_body_mode", "BodyProcessingMode"),
    ("response_header_mode", "HeaderProcessingMode"),
    ("response_body_mode", "BodyProcessingMode"),
)
#: Sample file name per phase.
SAMPLE_FILES = {
    "request_headers": "request-headers.json",
    "request_body": "request-body.json",
    "response_headers": "response-headers.json",
    "response_body": "response-body.json",
    "streaming": "streaming-fallback.json",
}


@dataclass(frozen=True)
class NewPolicy:
    """What ``new-policy`` wrote."""

    name: str
    root: Path
    phases: tuple[str, ...]
    files: tuple[str, ...]  # relative to root, sorted


def check_options(options: NewPolicyOptions) -> tuple[str, tuple[str, ...], Path]:
    """The name, the phases (deduplicated, in order) and the target; InputError otherwise."""
    name = options.name
    if not NAME_RE.match(name):
        raise InputError(
            f"policy name {name!r}: expected lowercase letters, digits, '-' or '_' "
            "(starting with a letter or digit, at most 63 characters)"
        )
    phases = tuple(dict.fromkeys(options.phases or defaults.DEFAULT_SCAFFOLD_PHASES))
    unknown = [p for p in phases if p not in defaults.SCAFFOLD_PHASES]
    if unknown:
        raise InputError(
            f"--phase {unknown[0]}: expected one of {', '.join(defaults.SCAFFOLD_PHASES)}"
        )
    if "streaming" in phases and "response_body" in phases:
        raise InputError(
            "--phase streaming already handles the response body (it includes the buffered "
            "fallback): drop --phase response_body"
        )
    if options.python is not None:
        check_python_version(options.python)
    target = (options.out if options.out is not None else Path(name)).expanduser()
    if target.is_symlink() or (target.exists() and (not target.is_dir() or any(target.iterdir()))):
        raise InputError(
            f"{target}: already exists; new-policy never overwrites (pick another --out)"
        )
    return name, phases, target


def _class_name(name: str) -> str:
    words = [w for w in name.replace("_", "-").split("-") if w]
    camel = "".join(w[:1].upper() + w[1:] for w in words)
    camel = camel if camel[:1].isalpha() else f"Policy{camel}"
    return camel if camel.endswith("Policy") else f"{camel}Policy"


def _class_header(class_name: str, bases: list[str]) -> str:
    """``class X(A, B):`` laid out as ruff format would (100 columns)."""
    one_line = f"class {class_name}({', '.join(bases)}):"
    if len(one_line) <= 100:
        return one_line
    inner = "    " + ", ".join(bases)
    if len(inner) <= 100:
        return f"class {class_name}(\n{inner}\n):"
    return f"class {class_name}(\n" + "".join(f"    {b},\n" for b in bases) + "):"


def template_values(name: str, phases: tuple[str, ...], python: str | None) -> dict[str, Any]:
    """Everything the templates use."""
    header = name.replace("_", "-")
    bases = [_PHASE_CODE[p][0] for p in phases]
    modes = {field: f"{kind}.SKIP" for field, kind in _MODE_FIELDS}
    symbols = {"ExecutionContext", "PolicyMetadata", "ProcessingMode", *bases}
    for phase in phases:
        _, field, value, extra = _PHASE_CODE[phase]
        modes[field] = value
        symbols.update(extra)
    symbols.update(value.split(".")[0] for value in modes.values())
    has_json_body = bool({"request_body", "response_body"} & set(phases))
    return {
        "name": name,
        "version": defaults.SCAFFOLD_VERSION,
        "display_name": " ".join(w.capitalize() for w in header.split("-") if w),
        "class_name": _class_name(name),
        "header": header,
        "header_name": f"x-{header}",
        "default_message": f"hello from {name}",
        "phases": list(phases),
        "bases": bases,
        "imports": sorted(symbols),
        "mode": list(modes.items()),
        "expected_mode": {field: value.split(".")[1] for field, value in modes.items()},
        "effects": [_EFFECTS[p].format(h=header) for p in phases],
        "uses": [_USES[p].format(h=header) for p in phases],
        "class_header": _class_header(_class_name(name), bases),
        "has_json_body": has_json_body,
        "python": python,
    }


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render_files(values: dict[str, Any]) -> dict[str, str]:
    """``{relative path: text}`` of the new folder."""
    env = _environment()
    files = {
        defaults.POLICY_DEFINITION_FILE: "policy-definition.yaml.j2",
        f"{defaults.POLICY_ENTRY_MODULE}.py": "policy.py.j2",
        "requirements.txt": "requirements.txt.j2",
        "README.md": "README.md.j2",
        "tests/test_policy.py": "tests/test_policy.py.j2",
    }
    for phase in values["phases"]:
        files[f"{defaults.POLICY_SAMPLES_DIR}/{SAMPLE_FILES[phase]}"] = f"samples/{phase}.json.j2"
    out = {path: env.get_template(template).render(**values) for path, template in files.items()}
    if values["python"]:
        out[defaults.PYTHON_VERSION_FILE] = f"{values['python']}\n"
    return out


def new_policy(options: NewPolicyOptions) -> NewPolicy:
    """Write the folder (atomically); refuses to overwrite anything."""
    name, phases, target = check_options(options)
    files = render_files(template_values(name, phases, options.python))
    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=parent))
    except OSError as exc:
        raise InputError(f"{target}: cannot create it: {exc.strerror or exc}") from None
    try:
        for rel, text in files.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        os.chmod(staging, 0o755)
        if target.is_dir():  # an empty directory (checked above) is replaced
            target.rmdir()
        os.rename(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise InputError(f"{target}: cannot write it: {exc.strerror or exc}") from None
    return NewPolicy(name=name, root=target, phases=phases, files=tuple(sorted(files)))
