"""Server-side input validation against botocore's input shapes.

botocore only checks required members, types and *minimum* lengths client-side (and not at all with
``parameter_validation=False``); the real service front end also enforces maximums, ranges, enums and patterns.
Code that passes here must not be rejected by AWS for shape reasons, so every request is walked in full.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from botocore import model as bmodel

_NUMBER_TYPES = ("integer", "long", "double", "float")


def problems(shape: bmodel.Shape, value: Any, path: str = "") -> list[str]:
    """All constraint violations of ``value`` against ``shape``, in AWS's message style."""
    checker = _CHECKERS.get(shape.type_name, _check_scalar)
    return checker(shape, value, path)


def describe(found: list[str]) -> str:
    """AWS's summary line, e.g. ``1 validation error detected: Value ... failed to satisfy constraint``."""
    noun = "error" if len(found) == 1 else "errors"
    return f"{len(found)} validation {noun} detected: " + "; ".join(found)


def _label(path: str) -> str:
    return path or "input"


def _check_structure(shape: bmodel.Shape, value: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"Value at '{_label(path)}' failed to satisfy constraint: Member must be a structure"]
    assert isinstance(shape, bmodel.StructureShape)
    found: list[str] = []
    for name in shape.required_members:
        if value.get(name) is None:
            found.append(f"Value null at '{_join(path, name)}' failed to satisfy constraint: Member must not be null")
    for name, member_value in value.items():
        member = shape.members.get(name)
        if member is not None and member_value is not None:  # unknown members are ignored, as AWS does
            found.extend(problems(member, member_value, _join(path, name)))
    return found


def _check_list(shape: bmodel.Shape, value: Any, path: str) -> list[str]:
    if not isinstance(value, list):
        return [f"Value at '{_label(path)}' failed to satisfy constraint: Member must be a list"]
    assert isinstance(shape, bmodel.ListShape)
    found = _check_size(shape, value, len(value), path, "length")
    for index, item in enumerate(value, start=1):
        found.extend(problems(shape.member, item, f"{path}.{index}.member"))
    return found


def _check_map(shape: bmodel.Shape, value: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"Value at '{_label(path)}' failed to satisfy constraint: Member must be a map"]
    assert isinstance(shape, bmodel.MapShape)
    found = _check_size(shape, value, len(value), path, "length")
    for key, item in value.items():
        found.extend(problems(shape.key, key, f"{path}.key"))
        found.extend(problems(shape.value, item, f"{path}.{key}"))
    return found


def _check_string(shape: bmodel.Shape, value: Any, path: str) -> list[str]:
    if not isinstance(value, str):
        return [f"Value '{value}' at '{_label(path)}' failed to satisfy constraint: Member must be a string"]
    found = _check_size(shape, value, len(value), path, "length")
    enum = shape.metadata.get("enum")
    if enum and value not in enum:
        found.append(
            f"Value '{value}' at '{_label(path)}' failed to satisfy constraint: "
            f"Member must satisfy enum value set: [{', '.join(enum)}]"
        )
    pattern = shape.metadata.get("pattern")
    if pattern and not _matches(pattern, value):
        found.append(
            f"Value '{value}' at '{_label(path)}' failed to satisfy constraint: "
            f"Member must satisfy regular expression pattern: {pattern}"
        )
    return found


def _check_scalar(shape: bmodel.Shape, value: Any, path: str) -> list[str]:
    kind = shape.type_name
    if kind == "boolean":
        ok = isinstance(value, bool)
    elif kind in _NUMBER_TYPES:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and kind in ("integer", "long"):
            ok = float(value).is_integer()
    else:  # timestamp, blob: accepted as sent
        ok = isinstance(value, str | int | float) and not isinstance(value, bool)
    if not ok:
        return [f"Value '{value}' at '{_label(path)}' failed to satisfy constraint: Member must be of type {kind}"]
    if kind in _NUMBER_TYPES:
        return _check_size(shape, value, value, path, "value")
    return []


def _check_size(shape: bmodel.Shape, value: Any, size: float, path: str, what: str) -> list[str]:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    shown = value if what == "value" else _short(value)
    if low is not None and size < low:
        bound = f"greater than or equal to {low}"
    elif high is not None and size > high:
        bound = f"less than or equal to {high}"
    else:
        return []
    return [f"Value '{shown}' at '{_label(path)}' failed to satisfy constraint: Member must have {what} {bound}"]


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str] | None:
    """Model patterns are Java regexes; the few Python can't compile are skipped rather than guessed."""
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _matches(pattern: str, value: str) -> bool:
    compiled = _compiled(pattern)
    return compiled is None or compiled.search(value) is not None


_CHECKERS = {
    "structure": _check_structure,
    "list": _check_list,
    "map": _check_map,
    "string": _check_string,
}
