"""Hypothesis strategies for botocore shapes: any value the service model accepts, read off the model itself.

Field-preservation properties must cover every member UpdateImagePipeline can carry, including ones a later
botocore adds; so the strategies are built from the installed model (patterns, lengths, ranges, enums,
required members) rather than hand-written per field. Sizes are capped so examples stay small and fast;
``overrides`` replaces the strategy at a dotted path where the service checks more than the model says
(Image Builder accepts only ``cron(...)`` schedule expressions).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore import model as bmodel
from hypothesis import strategies as st

MAX_ITEMS = 3
MAX_TEXT = 40
_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))


def for_shape(shape: bmodel.Shape, overrides: Mapping[str, st.SearchStrategy[Any]] | None = None,
              path: str = "") -> st.SearchStrategy[Any]:
    """A strategy for values of ``shape``; ``path`` is the dotted member path used by ``overrides``."""
    overrides = overrides or {}
    if path in overrides:
        return overrides[path]
    if isinstance(shape, bmodel.StructureShape):
        return _structure(shape, overrides, path)
    if isinstance(shape, bmodel.ListShape):
        low = int(shape.metadata.get("min", 0))
        return st.lists(for_shape(shape.member, overrides, f"{path}[]"), min_size=low, max_size=max(low, MAX_ITEMS))
    if isinstance(shape, bmodel.MapShape):
        low = int(shape.metadata.get("min", 0))
        keys = for_shape(shape.key, overrides, f"{path}{{key}}")
        return st.dictionaries(keys, for_shape(shape.value, overrides, f"{path}{{}}"), min_size=low,
                               max_size=max(low, MAX_ITEMS))
    return _scalar(shape)


def _structure(shape: bmodel.StructureShape, overrides: Mapping[str, st.SearchStrategy[Any]],
               path: str) -> st.SearchStrategy[dict[str, Any]]:
    required = set(shape.required_members)
    members = {name: for_shape(member, overrides, f"{path}.{name}".lstrip(".")) for name, member in
               shape.members.items()}
    return st.fixed_dictionaries(
        {name: strategy for name, strategy in members.items() if name in required},
        optional={name: strategy for name, strategy in members.items() if name not in required},
    )


def _scalar(shape: bmodel.Shape) -> st.SearchStrategy[Any]:
    meta = shape.metadata
    if shape.type_name == "boolean":
        return st.booleans()
    if shape.type_name in ("integer", "long"):
        return st.integers(min_value=meta.get("min", 0), max_value=meta.get("max", 10_000))
    if shape.type_name != "string":
        raise NotImplementedError(f"no strategy for {shape.name} ({shape.type_name})")
    if "enum" in meta:
        return st.sampled_from(list(meta["enum"]))
    low, high = int(meta.get("min", 0)), meta.get("max")
    if "pattern" in meta:  # the pattern bounds the length; the model's min/max still apply
        limit = int(high) if high is not None else 1 << 30
        return st.from_regex(str(meta["pattern"]), fullmatch=True, alphabet=_CHARS).filter(
            lambda text: low <= len(text) <= limit)
    top = min(int(high), MAX_TEXT) if high is not None else MAX_TEXT
    return st.text(alphabet=_CHARS, min_size=low, max_size=max(low, top))


def cron() -> st.SearchStrategy[str]:
    """An Image Builder cron expression (six fields), as the console writes them."""
    minute = st.integers(0, 59).map(str)
    hour = st.integers(0, 23).map(str)
    days = st.sampled_from(["MON-FRI", "*", "SUN", "MON,WED,FRI"])
    return st.builds(lambda m, h, d: f"cron({m} {h} ? * {d} *)", minute, hour, days)
