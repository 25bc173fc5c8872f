"""Pydantic validation errors -> one ManifestError naming file, line, column, field and what
was expected (the first error in document order: what a person fixes first)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from gateway_builder.errors import ManifestError
from gateway_builder.manifest.yamlpos import PathKey, Positions, format_path

_TYPE_WORDS = {
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "bool_type": "expected true or false",
    "dict_type": "expected a mapping",
    "list_type": "expected a list",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "missing": "required field is missing",
}


def expected_text(err: dict[str, Any], model: type[BaseModel], loc: PathKey) -> str:
    etype = err["type"]
    if etype == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown key{hint}"
    if etype == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"expected {expected}"
    if (
        etype == "string_type"
        and isinstance(err.get("input"), float)
        and loc
        and loc[-1] == "python"
    ):
        return 'expected a quoted string such as "3.12" (an unquoted 3.10 reads as the number 3.1)'
    if etype == "too_short" and err.get("ctx", {}).get("min_length") == 1:
        return (
            "expected at least one entry"
            if isinstance(err.get("input"), list)
            else "expected a non-empty value"
        )
    if etype in ("greater_than", "greater_than_equal", "less_than_equal", "less_than"):
        return err["msg"].replace("Input should be", "expected a number")
    if etype == "value_error":
        msg: str = err.get("ctx", {}).get("error", err["msg"])
        return str(msg).removeprefix("Value error, ")
    if etype in _TYPE_WORDS:
        return _TYPE_WORDS[etype]
    return str(err["msg"]).replace("Input should be", "expected").replace("Value error, ", "")


def _allowed_keys(model: type[BaseModel], loc: PathKey) -> list[str]:
    """Field names valid at ``loc`` (walks the model tree; best effort)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        info = current.model_fields.get(str(part))
        if info is None:
            return []
        current = _model_of(info.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def validate_model(model: type[BaseModel], data: Any, pos: Positions) -> Any:
    if not isinstance(data, dict):
        raise pos.error((), "expected a mapping with 'version' and 'policies'")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)

        # Report the first error in document order: that is what a person fixes first.
        def where(e: Any) -> tuple[int, int]:
            loc = _clean_loc(e["loc"])
            return pos.of_key(loc) if e["type"] == "extra_forbidden" else pos.of_value(loc)

        err = min(errors, key=where)
        loc = _clean_loc(err["loc"])
        expected = expected_text(dict(err), model, loc)
        if err["type"] == "extra_forbidden":
            raise pos.error(loc, expected, at_key=True) from None
        if err["type"] == "missing":
            line, col = pos.of_value(loc[:-1])
            raise ManifestError(pos.file, line, col, format_path(loc), expected) from None
        raise pos.error(loc, expected) from None


def _clean_loc(loc: tuple[Any, ...]) -> PathKey:
    # Drop pydantic's synthetic segments (union member names, "[key]" markers).
    return tuple(
        p for p in loc if isinstance(p, int) or not str(p).startswith(("function-", "union["))
    )
