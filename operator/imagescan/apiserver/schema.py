"""
CRD structural-schema handling for the emulated Kubernetes API server.

The real kube-apiserver defaults, prunes and validates custom resources with
the ``openAPIV3Schema`` of the CRD version. Operators rely on it: unknown
fields vanish, bad values are refused with ``422 Invalid``. kmock stores any
JSON as-is, so this module re-creates the subset of that behaviour which
the project's CRDs use, with error texts formatted like the real server's
``field.Error`` strings (e.g. ``spec.x: Unsupported value: "z": ...``).

Only stdlib here (and :mod:`imagescan.apiserver.re2`).
"""

from __future__ import annotations

import copy
import datetime
import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from imagescan.apiserver import re2

Schema = Mapping[str, Any]

# Kubernetes-side JSON type names (as in "must be of type integer").
_TYPE_CHECKS: dict[str, tuple[type, ...]] = {
    'object': (dict,),
    'array': (list,),
    'string': (str,),
    'boolean': (bool,),
    'integer': (int,),
    'number': (int, float),
}


@dataclass(frozen=True)
class FieldError:
    """One validation failure, rendered like Go's ``field.Error``."""

    field: str
    reason: str  # CauseType, e.g. FieldValueInvalid
    detail: str  # the human text after the field path

    def __str__(self) -> str:
        return f'{self.field}: {self.detail}'


def _quote(value: Any) -> str:
    # Go prints strings quoted and numbers bare; JSON is the closest match.
    return json.dumps(value, separators=(',', ':'))


def _json_type(value: Any) -> str:
    # bool is an int in Python, so it must be checked first.
    if isinstance(value, bool):
        return 'boolean'
    for name in ('integer', 'number', 'string', 'array', 'object'):
        if isinstance(value, _TYPE_CHECKS[name]):
            return name
    return 'null'


def default_and_prune(value: Any, schema: Schema | None) -> Any:
    """Apply ``default`` values and drop the fields the schema does not know."""
    if schema is None or not isinstance(value, (dict, list)):
        return value
    if isinstance(value, list):
        items = schema.get('items')
        return [default_and_prune(item, items) for item in value]
    return _prune_object(value, schema)


def _prune_object(value: dict[str, Any], schema: Schema) -> dict[str, Any]:
    props: Mapping[str, Any] = schema.get('properties') or {}
    extra = schema.get('additionalProperties')
    keep_unknown = bool(schema.get('x-kubernetes-preserve-unknown-fields')) or bool(extra)
    result: dict[str, Any] = {}
    for key, sub in value.items():
        if key in props:
            result[key] = default_and_prune(sub, props[key])
        elif isinstance(extra, Mapping):
            result[key] = default_and_prune(sub, extra)
        elif keep_unknown or schema.get('x-kubernetes-embedded-resource'):
            result[key] = sub
    for key, sub_schema in props.items():
        if key not in result and isinstance(sub_schema, Mapping) and 'default' in sub_schema:
            result[key] = default_and_prune(copy.deepcopy(sub_schema['default']), sub_schema)
    return result


def prune_root(obj: dict[str, Any], schema: Schema | None) -> dict[str, Any]:
    """Prune a whole custom resource; apiVersion/kind/metadata are always kept."""
    if schema is None:
        return obj
    preserved = {key: obj[key] for key in ('apiVersion', 'kind', 'metadata') if key in obj}
    pruned = default_and_prune({k: v for k, v in obj.items() if k not in preserved}, schema)
    return {**preserved, **pruned}


def unknown_fields(obj: Mapping[str, Any], schema: Schema | None) -> list[str]:
    """The dotted paths of the fields that pruning would drop (``fieldValidation=Strict`` refuses them)."""
    if schema is None:
        return []
    body = {key: val for key, val in obj.items() if key not in ('apiVersion', 'kind', 'metadata')}
    return _unknown(body, schema, '')


def _unknown(value: Any, schema: Schema | None, path: str) -> list[str]:
    if schema is None:
        return []
    if isinstance(value, list):
        items = schema.get('items')
        return [found for index, item in enumerate(value) for found in _unknown(item, items, f'{path}[{index}]')]
    if not isinstance(value, dict):
        return []
    props: Mapping[str, Any] = schema.get('properties') or {}
    extra = schema.get('additionalProperties')
    keep_unknown = (bool(schema.get('x-kubernetes-preserve-unknown-fields')) or bool(extra)
                    or bool(schema.get('x-kubernetes-embedded-resource')))
    found: list[str] = []
    for key, sub in value.items():
        if key in props:
            found += _unknown(sub, props[key], _child(path, key))
        elif isinstance(extra, Mapping):
            found += _unknown(sub, extra, _child(path, key))
        elif not keep_unknown:
            found.append(_child(path, key))
    return found


def validate_root(obj: Mapping[str, Any], schema: Schema | None) -> list[FieldError]:
    """Validate a whole custom resource except its metadata (checked elsewhere)."""
    if schema is None:
        return []
    body = {key: val for key, val in obj.items() if key not in ('apiVersion', 'kind', 'metadata')}
    root = {key: val for key, val in schema.items() if key != 'required'}
    errors = validate(body, root, '')
    for key in schema.get('required') or []:
        if key not in obj:
            errors.append(FieldError(key, 'FieldValueRequired', 'Required value'))
    return errors


def validate(value: Any, schema: Schema | None, path: str) -> list[FieldError]:
    """Validate one value against its (sub)schema; ``path`` is the dotted field path."""
    if not schema:
        return []
    if value is None:
        return [] if schema.get('nullable') else _type_errors(value, schema, path)
    type_errors = _type_errors(value, schema, path)
    if type_errors:
        return type_errors  # as the real server: no deeper checks on a mistyped value
    errors = _scalar_errors(value, schema, path)
    if isinstance(value, dict):
        errors += _object_errors(value, schema, path)
    elif isinstance(value, list):
        errors += _array_errors(value, schema, path)
    return errors


def _type_errors(value: Any, schema: Schema, path: str) -> list[FieldError]:
    expected = schema.get('type')
    if schema.get('x-kubernetes-int-or-string'):
        ok = isinstance(value, (int, str)) and not isinstance(value, bool)
        expected = 'integer' if not ok else None
    elif expected is None:
        return []
    else:
        actual = _json_type(value)
        ok = actual == expected or (expected == 'number' and actual == 'integer')
    if ok:
        return []
    shown = 'null' if value is None else _json_type(value)
    return [FieldError(path, 'FieldValueTypeInvalid',
                       f'Invalid value: "{shown}": {path} in body must be of type {expected}: "{shown}"')]


def _scalar_errors(value: Any, schema: Schema, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    enum = schema.get('enum')
    if enum is not None and value not in enum:
        supported = ', '.join(_quote(item) for item in enum)
        errors.append(FieldError(path, 'FieldValueNotSupported',
                                 f'Unsupported value: {_quote(value)}: supported values: {supported}'))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        errors += _number_errors(value, schema, path)
    if isinstance(value, str):
        errors += _string_errors(value, schema, path)
    return errors


def _invalid(path: str, value: Any, message: str) -> FieldError:
    return FieldError(path, 'FieldValueInvalid', f'Invalid value: {_quote(value)}: {path} in body {message}')


def _number_errors(value: float, schema: Schema, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    minimum, maximum = schema.get('minimum'), schema.get('maximum')
    if minimum is not None:
        if schema.get('exclusiveMinimum') and value <= minimum:
            errors.append(_invalid(path, value, f'should be greater than {minimum}'))
        elif value < minimum:
            errors.append(_invalid(path, value, f'should be greater than or equal to {minimum}'))
    if maximum is not None:
        if schema.get('exclusiveMaximum') and value >= maximum:
            errors.append(_invalid(path, value, f'should be less than {maximum}'))
        elif value > maximum:
            errors.append(_invalid(path, value, f'should be less than or equal to {maximum}'))
    return errors


def _string_errors(value: str, schema: Schema, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    min_length, max_length = schema.get('minLength'), schema.get('maxLength')
    if min_length is not None and len(value) < min_length:
        errors.append(_invalid(path, value, f'should be at least {min_length} chars long'))
    if max_length is not None and len(value) > max_length:
        errors.append(FieldError(path, 'FieldValueTooLong',
                                 f'Too long: may not be more than {max_length} bytes'))
    pattern = schema.get('pattern')
    if pattern is not None and re2_search(pattern, value) is None:
        errors.append(_invalid(path, value, f"should match '{pattern}'"))
    if schema.get('format') == 'date-time' and not _is_datetime(value):
        errors.append(FieldError(path, 'FieldValueTypeInvalid',
                                 f'Invalid value: {_quote(value)}: {path} in body must be of type '
                                 f'date-time: {_quote(value)}'))
    return errors


def re2_pattern(pattern: str) -> str:
    """A Go (RE2) pattern as a Python one: ``$`` outside classes becomes ``\\Z``, and so does ``\\z``.

    In RE2 (Go's regexp, what the real server validates ``pattern`` with) ``$`` matches only at the very end;
    in Python it also matches before a trailing newline, so ``"arn...\\n"`` would pass ``^arn...$``. RE2's
    ``\\z`` is Python's ``\\Z`` (Python before 3.14 has no ``\\z``).
    """
    out, in_class, escaped = [], False, False
    for char in pattern:
        if escaped:
            escaped = False
            if char == 'z' and not in_class:
                char = 'Z'
        elif char == '\\':
            escaped = True
        elif char == '[':
            in_class = True
        elif char == ']':
            in_class = False
        elif char == '$' and not in_class:
            char = r'\Z'
        out.append(char)
    return ''.join(out)


@functools.lru_cache(maxsize=512)
def _compiled_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(re2_pattern(pattern))


def re2_search(pattern: str, value: str) -> re.Match[str] | None:
    """``pattern`` searched in ``value`` with RE2's anchors (see :func:`re2_pattern`)."""
    return _compiled_pattern(pattern).search(value)


def _is_datetime(value: str) -> bool:
    # Loose RFC 3339: whatever Python's ISO parser accepts, with a "Z" suffix allowed.
    try:
        datetime.datetime.fromisoformat(value.replace('Z', '+00:00'))
    except ValueError:
        return False
    return True


def subschemas(node: Schema | None, path: str) -> Iterator[tuple[Schema, str]]:
    """Every schema node under ``node`` with its path as the real server names it in CRD errors
    (``...properties[spec].properties[a].items``)."""
    if not isinstance(node, Mapping):
        return
    yield node, path
    for key, sub in (node.get('properties') or {}).items():
        yield from subschemas(sub, f'{path}.properties[{key}]')
    if isinstance(node.get('additionalProperties'), Mapping):
        yield from subschemas(node['additionalProperties'], f'{path}.additionalProperties')
    if isinstance(node.get('items'), Mapping):
        yield from subschemas(node['items'], f'{path}.items')


def pattern_errors(root: Schema | None, path: str) -> list[FieldError]:
    """Every ``pattern`` Go's regexp cannot compile, refused as the real server does when the CRD is stored:
    Python's ``re`` compiles lookarounds, backreferences and any repeat count, a cluster does not."""
    errors: list[FieldError] = []
    for node, node_path in subschemas(root, path):
        pattern = node.get('pattern')
        problem = re2.error(pattern) if isinstance(pattern, str) else None
        if problem is not None:
            shown = json.dumps(pattern, ensure_ascii=False)  # Go's %q keeps printable non-ASCII as it is
            errors.append(FieldError(f'{node_path}.pattern', 'FieldValueInvalid',
                                     f"Invalid value: {shown}: must be a valid regular expression, but isn't: "
                                     f'{problem}'))
    return errors


def _child(path: str, key: str) -> str:
    return f'{path}.{key}' if path else key


def _object_errors(value: dict[str, Any], schema: Schema, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    props: Mapping[str, Any] = schema.get('properties') or {}
    extra = schema.get('additionalProperties')
    for key in schema.get('required') or []:
        if key not in value:
            errors.append(FieldError(_child(path, key), 'FieldValueRequired', 'Required value'))
    for key, sub in sorted(value.items()):  # in key order, as the real server reports them
        if key in props:
            errors += validate(sub, props[key], _child(path, key))
        elif isinstance(extra, Mapping):
            errors += validate(sub, extra, _child(path, key))
    return errors


def _array_errors(value: list[Any], schema: Schema, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    min_items, max_items = schema.get('minItems'), schema.get('maxItems')
    if min_items is not None and len(value) < min_items:
        errors.append(_invalid(path, len(value), f'should have at least {min_items} items'))
    if max_items is not None and len(value) > max_items:
        errors.append(FieldError(path, 'FieldValueTooMany',
                                 f'Too many: {len(value)}: must have at most {max_items} items'))
    items = schema.get('items')
    if isinstance(items, Mapping):
        for index, item in enumerate(value):
            errors += validate(item, items, f'{path}[{index}]')
    if schema.get('x-kubernetes-list-type') == 'set':
        errors += _duplicates(value, path)
    return errors


def _duplicates(value: list[Any], path: str) -> list[FieldError]:
    """A ``set`` list refuses each repeated item, named by the index of its repetition."""
    seen: list[Any] = []
    errors: list[FieldError] = []
    for index, item in enumerate(value):
        if item in seen:
            errors.append(FieldError(f'{path}[{index}]', 'FieldValueDuplicate', f'Duplicate value: {_quote(item)}'))
        else:
            seen.append(item)
    return errors
