"""
Server-side printing: ``meta.k8s.io`` Tables, as ``kubectl get`` asks for them.

``kubectl get`` does not format objects itself: it sends
``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` (with fallbacks) and
prints the ``Table`` the server answers. For custom resources the columns come
from the CRD version's ``additionalPrinterColumns``, whose cells the server
evaluates with a JSONPath; priority>0 columns are only shown by ``-o wide``.
Built-in kinds get the server's default table: Name and Created At.

This module holds that conversion and the JSONPath subset CRDs use
(``.a.b``, ``.a[0].b``, ``.a[*].b``, ``['a.b']``, and filters such as
``.status.conditions[?(@.type=="Ready")].status``). Pure functions, no I/O.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

GROUP = 'meta.k8s.io'
_VERSIONS = ('v1', 'v1beta1')
_JSON_TYPES = ('application/json', 'application/*', '*/*')
INCLUDE_OBJECT = ('Metadata', 'Object', 'None')

# The texts of the real server (from ObjectMeta's API documentation).
_NAME_DESCRIPTION = (
    'Name must be unique within a namespace. Is required when creating resources, although some resources '
    'may allow a client to request the generation of an appropriate name automatically. Name is primarily '
    'intended for creation idempotence and configuration definition. Cannot be updated. More info: '
    'https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names')
_CREATED_DESCRIPTION = (
    'CreationTimestamp is a timestamp representing the server time when this object was created. It is not '
    'guaranteed to be set in happens-before order across separate operations. Clients may not set this value. '
    'It is represented in RFC3339 form and is in UTC.')


# --- Content negotiation ------------------------------------------------------------------------------


def requested_version(accept: str | None) -> str | None:
    """The ``meta.k8s.io`` Table version that ``Accept`` prefers, or None if plain JSON comes first.

    Media types are tried in order, as the real server does: the first one it can serve wins.
    """
    for media_range in (accept or '').split(','):
        media_type, *raw_params = (part.strip() for part in media_range.split(';'))
        if media_type.lower() not in _JSON_TYPES:
            continue  # e.g. protobuf: not served, try the next one
        params = {key.strip(): value.strip() for key, _, value in (p.partition('=') for p in raw_params)}
        if 'as' not in params:
            return None
        if params['as'] == 'Table' and params.get('g') == GROUP and params.get('v') in _VERSIONS:
            return params['v']
    return None


# --- JSONPath ---------------------------------------------------------------------------------------


class JsonPathError(ValueError):
    """A JSONPath outside of the supported subset, or malformed."""


Step = Callable[[Any], Iterable[Any]]

_NAME = re.compile(r'[A-Za-z0-9_\-/]+')
_FILTER = re.compile(r'^\s*@((?:\.[A-Za-z0-9_\-/]+|\[\d+\])*)\s*(?:(==|!=|<=|>=|<|>)\s*(.+?))?\s*$')
_MISSING = object()


def _field(name: str) -> Step:
    return lambda value: [value[name]] if isinstance(value, Mapping) and name in value else []


def _index(index: int) -> Step:
    def step(value: Any) -> list[Any]:
        if isinstance(value, list) and -len(value) <= index < len(value):
            return [value[index]]
        return []
    return step


def _wildcard(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return [value[key] for key in sorted(value)]  # Go's JSONPath walks maps in key order
    return list(value) if isinstance(value, list) else []


def _literal(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in '"\'':
        return text[1:-1]
    if text in ('true', 'false'):
        return text == 'true'
    try:
        return json.loads(text)
    except ValueError:
        raise JsonPathError(f'unrecognized literal in a filter: {text!r}') from None


def _compare(left: Any, op: str, right: Any) -> bool:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right))
    if op == '==':
        return bool(left == right) and (numbers or type(left) is type(right))
    if op == '!=':
        return not _compare(left, '==', right)
    if not numbers:
        return False
    return bool({'<': left < right, '>': left > right, '<=': left <= right, '>=': left >= right}[op])


def _filter(expression: str) -> Step:
    match = _FILTER.match(expression)
    if match is None:
        raise JsonPathError(f'unsupported filter: {expression!r}')
    subpath, op, raw_literal = match.groups()
    steps = _parse(subpath)
    literal = _literal(raw_literal) if op else _MISSING

    def keep(item: Any) -> bool:
        found = _run(steps, item)
        if literal is _MISSING:
            return bool(found)
        return bool(found) and _compare(found[0], op, literal)

    def step(value: Any) -> list[Any]:
        return [item for item in value if keep(item)] if isinstance(value, list) else []
    return step


def _closing_bracket(path: str, start: int) -> int:
    """The index of the ``]`` closing the ``[`` at ``start``, skipping quoted text."""
    quote = ''
    for pos in range(start + 1, len(path)):
        char = path[pos]
        if quote:
            quote = '' if char == quote else quote
        elif char in '"\'':
            quote = char
        elif char == ']':
            return pos
    raise JsonPathError(f'unclosed bracket in {path!r}')


def _bracket(content: str) -> Step:
    content = content.strip()
    if content == '*':
        return _wildcard
    if re.fullmatch(r'-?\d+', content):
        return _index(int(content))
    if len(content) >= 2 and content[0] == content[-1] and content[0] in '"\'':
        return _field(content[1:-1])
    if content.startswith('?(') and content.endswith(')'):
        return _filter(content[2:-1])
    raise JsonPathError(f'unsupported subscript: [{content}]')


def _parse(path: str) -> list[Step]:
    steps: list[Step] = []
    pos = 1 if path.startswith('$') else 0
    while pos < len(path):
        char = path[pos]
        if char == '.':
            if path.startswith('..', pos):
                raise JsonPathError(f'recursive descent is not supported: {path!r}')
            if path.startswith('.*', pos):
                steps.append(_wildcard)
                pos += 2
                continue
            name = _NAME.match(path, pos + 1)
            if name is None:
                raise JsonPathError(f'a field name is expected at position {pos + 1} of {path!r}')
            steps.append(_field(name.group()))
            pos = name.end()
        elif char == '[':
            end = _closing_bracket(path, pos)
            steps.append(_bracket(path[pos + 1:end]))
            pos = end + 1
        else:
            raise JsonPathError(f'unexpected {char!r} at position {pos} of {path!r}')
    return steps


def _run(steps: Sequence[Step], root: Any) -> list[Any]:
    values = [root]
    for step in steps:
        values = [found for value in values for found in step(value)]
    return values


def compile_jsonpath(path: str) -> Callable[[Any], list[Any]]:
    """Compile a JSONPath of the supported subset into a function returning all its matches.

    The path may be wrapped in ``{...}`` (kubectl's template form). Missing keys and
    out-of-range indexes yield no match rather than an error, as in the API server.
    """
    text = path.strip()
    if text.startswith('{') and text.endswith('}'):
        text = text[1:-1].strip()
    if not text.startswith(('.', '$', '[')):
        raise JsonPathError(f'a JSONPath must start with "." or "$": {path!r}')
    steps = _parse(text)
    return lambda root: _run(steps, root)


def jsonpath(obj: Any, path: str) -> list[Any]:
    """All values of ``obj`` at ``path`` (see :func:`compile_jsonpath`)."""
    return compile_jsonpath(path)(obj)


# --- Tables -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of a Table; ``cell`` turns an object into the column's cell value."""

    name: str
    type: str
    format: str
    description: str
    priority: int
    cell: Callable[[Obj], Any]

    def definition(self) -> Obj:
        return {'name': self.name, 'type': self.type, 'format': self.format,
                'description': self.description, 'priority': self.priority}


def human_duration(seconds: float) -> str:
    """A duration as kubectl shows ages: ``45s``, ``5m3s``, ``3h20m``, ``4d2h``, ``2y30d``."""
    secs = int(seconds)
    if secs < -1:
        return '<invalid>'
    if secs < 120:
        return f'{max(secs, 0)}s'
    minutes, hours, days = secs // 60, secs // 3600, secs // 86400
    if minutes < 10:
        return f'{minutes}m{secs % 60}s' if secs % 60 else f'{minutes}m'
    if minutes < 180:
        return f'{minutes}m'
    if hours < 8:
        return f'{hours}h{minutes % 60}m' if minutes % 60 else f'{hours}h'
    if hours < 48:
        return f'{hours}h'
    if hours < 192:
        return f'{days}d{hours % 24}h' if hours % 24 else f'{days}d'
    if days < 730:
        return f'{days}d'
    if days < 2920:
        return f'{days // 365}y{days % 365}d' if days % 365 else f'{days // 365}y'
    return f'{days // 365}y'


def _parse_time(value: str) -> datetime.datetime | None:
    try:
        parsed = datetime.datetime.fromisoformat(value.replace('Z', '+00:00'))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return json.dumps(value, separators=(',', ':'))


def cell_value(column_type: str, value: Any, *, now: datetime.datetime | None = None) -> Any:
    """A JSON value as a cell of a typed column; None (shown as ``<none>``) if it does not fit."""
    if value is None:
        return None
    if column_type == 'string':
        return _text(value)
    if column_type == 'boolean':
        return value if isinstance(value, bool) else None
    if isinstance(value, bool):
        return None
    if column_type == 'integer' and isinstance(value, (int, float)):
        return int(value)
    if column_type == 'number' and isinstance(value, (int, float)):
        return value
    if column_type == 'date' and isinstance(value, str):
        # The API server itself turns dates into ages; kubectl prints the cell as it comes.
        when = _parse_time(value)
        if when is None:
            return '<invalid>'
        return human_duration(((now or datetime.datetime.now(datetime.UTC)) - when).total_seconds())
    return None


def _name_cell(obj: Obj) -> Any:
    return (obj.get('metadata') or {}).get('name', '')


def _name_column() -> Column:
    return Column('Name', 'string', 'name', _NAME_DESCRIPTION, 0, _name_cell)


def _created_at_cell(obj: Obj) -> Any:
    return (obj.get('metadata') or {}).get('creationTimestamp')


def default_columns() -> list[Column]:
    """What the server prints for kinds without printer columns of their own (the built-in kinds here)."""
    return [_name_column(), Column('Created At', 'date', '', _CREATED_DESCRIPTION, 0, _created_at_cell)]


def custom_columns(printer_columns: Sequence[Mapping[str, Any]] | None) -> list[Column]:
    """The columns of a CRD version: Name, then its ``additionalPrinterColumns`` (default: Age)."""
    specs = list(printer_columns or []) or [
        {'name': 'Age', 'type': 'date', 'jsonPath': '.metadata.creationTimestamp'}]
    columns = [_name_column()]
    for spec in specs:
        path = str(spec.get('jsonPath', ''))
        column_type = str(spec.get('type', 'string'))
        find = compile_jsonpath(path)

        def cell(obj: Obj, find: Callable[[Any], list[Any]] = find, column_type: str = column_type) -> Any:
            found = find(obj)
            return cell_value(column_type, found[0]) if found else None
        description = spec.get('description') or f'Custom resource definition column (in JSONPath format): {path}'
        columns.append(Column(str(spec.get('name', '')), column_type, str(spec.get('format') or ''),
                              str(description), int(spec.get('priority') or 0), cell))
    return columns


def row(columns: Sequence[Column], obj: Obj, *, include_object: str = 'Metadata', version: str = 'v1') -> Obj:
    """One Table row: the cells, and the object as ``includeObject`` asks (PartialObjectMetadata by default)."""
    result: Obj = {'cells': [column.cell(obj) for column in columns]}
    if include_object == 'Object':
        result['object'] = obj
    elif include_object == 'Metadata':
        result['object'] = {'kind': 'PartialObjectMetadata', 'apiVersion': f'{GROUP}/{version}',
                            'metadata': obj.get('metadata') or {}}
    return result


def table(columns: Sequence[Column], objects: Iterable[Obj], *, version: str = 'v1',
          include_object: str = 'Metadata', metadata: Obj | None = None) -> Obj:
    """A ``meta.k8s.io`` Table of the objects (``metadata`` is the list's, e.g. its resourceVersion)."""
    if include_object not in INCLUDE_OBJECT:
        raise ValueError(f'includeObject must be one of {", ".join(INCLUDE_OBJECT)}: {include_object!r}')
    return {
        'kind': 'Table', 'apiVersion': f'{GROUP}/{version}', 'metadata': dict(metadata or {}),
        'columnDefinitions': [column.definition() for column in columns],
        'rows': [row(columns, obj, include_object=include_object, version=version) for obj in objects],
    }
