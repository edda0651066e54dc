"""How the operator's botocore sessions parse responses: botocore's own parsers, made cheaper in two ways.

A profile of the operator at 1,000 pipelines (docs/bench-results/2026-12-07/profile.md) found response parsing
the largest single cost, and most of it in one operation, ListImageScanFindings: pages of up to 100 findings
of 4-5 KB each, decoded from JSON and then walked by botocore field by field against the service model, which
copies every structure and every list into new ones.

- Epoch timestamps become UTC ``datetime`` at once. botocore's default builds a fresh ``dateutil`` tzlocal per
  value and converts to local time; UTC is also what status shows (``Z``). Other forms (ISO 8601, RFC 822)
  still go to botocore's parser.
- For the outputs in ``LIGHT_OUTPUTS``, a part of the response in which the service model has nothing to
  convert (no timestamp, no blob, no tagged union, no member whose JSON name differs from its own) is kept as
  JSON decoded it instead of being copied field by field. What is plain is read from botocore's model of the
  shape, never written by hand, so a new botocore or service model is followed. The one difference from
  botocore's walk: keys the model does not know and ``null`` values stay in those parts (botocore drops them);
  readers here use ``.get`` and treat a missing field and ``null`` alike.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from botocore import model as botocore_model
from botocore import parsers as botocore_parsers
from botocore import session as botocore_session
from botocore import utils as botocore_utils

LIGHT_OUTPUTS = frozenset({"ListImageScanFindingsResponse"})
"""Output shapes parsed the lighter way: the large read-only listings the operator only summarises."""
_CONVERTED = frozenset({"timestamp", "blob"})
"""Scalar types botocore's JSON parsers convert; every other scalar is returned as decoded."""
_MAX_DEPTH = 32
"""Deeper (or recursive) shapes are walked by botocore as usual."""


def install(session: botocore_session.Session) -> None:
    """Every client the session creates from now on parses its responses this way."""
    session.register_component("response_parser_factory", _Factory())


def timestamp(value: Any) -> datetime.datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.datetime.fromtimestamp(value, datetime.UTC)
        except (OverflowError, OSError, ValueError):
            pass  # out of the platform's range: botocore's parser has a fallback for that
    parsed: datetime.datetime = botocore_utils.parse_timestamp(value)
    return parsed


def plain(shape: botocore_model.Shape, depth: int = 0) -> bool:
    """Whether botocore's JSON parsers would return this part of a response as JSON decoded it, but for
    dropping unknown keys and ``null`` values: nothing in it to convert or rename."""
    if depth > _MAX_DEPTH:
        return False
    if isinstance(shape, botocore_model.StructureShape):
        if shape.is_document_type:
            return True
        if shape.is_tagged_union:
            return False
        return all(
            "name" not in member.serialization and plain(member, depth + 1) for member in shape.members.values()
        )
    if isinstance(shape, botocore_model.ListShape):
        return plain(shape.member, depth + 1)
    if isinstance(shape, botocore_model.MapShape):
        return plain(shape.key, depth + 1) and plain(shape.value, depth + 1)
    return shape.type_name not in _CONVERTED


class _Light:
    """Mixed into botocore's JSON parsers (one instance per response): skips the walk of plain parts of a
    ``LIGHT_OUTPUTS`` response."""

    _light = False
    _plain: dict[str, bool]

    def parse(self, response: Mapping[str, Any], shape: botocore_model.Shape) -> Any:
        self._light = shape is not None and shape.name in LIGHT_OUTPUTS
        self._plain = {}
        return super().parse(response, shape)  # type: ignore[misc]

    def _parse_shape(self, shape: botocore_model.Shape, node: Any) -> Any:
        if self._light and node is not None and self._is_plain(shape):
            return node
        return super()._parse_shape(shape, node)  # type: ignore[misc]

    def _is_plain(self, shape: botocore_model.Shape) -> bool:
        # Shape names are unique within a service, and a parser serves one response of one service.
        known = self._plain.get(shape.name)
        if known is None:
            known = self._plain[shape.name] = plain(shape)
        return known


class _LightJSONParser(_Light, botocore_parsers.JSONParser):
    pass


class _LightRestJSONParser(_Light, botocore_parsers.RestJSONParser):
    pass


_LIGHT_PARSERS: dict[str, type[botocore_parsers.ResponseParser]] = {
    "json": _LightJSONParser,
    "rest-json": _LightRestJSONParser,
}


class _Factory(botocore_parsers.ResponseParserFactory):
    def __init__(self) -> None:
        super().__init__()
        self.set_parser_defaults(timestamp_parser=timestamp)

    def create_parser(self, protocol_name: str) -> botocore_parsers.ResponseParser:
        parser_cls = _LIGHT_PARSERS.get(protocol_name)
        if parser_cls is None:
            return super().create_parser(protocol_name)
        return parser_cls(timestamp_parser=timestamp)
