"""
Pure operations on Kubernetes object dicts: patches and selectors.

kmock 0.8 only deep-merges dicts for any PATCH and has no selectors at all,
while kopf sends JSON-patches with a ``test`` op and kubectl/the client use
label/field selectors. These are the server-side semantics re-implemented
without any I/O, so they are easy to test and to reuse outside of tests.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import Any


class PatchError(Exception):
    """A patch cannot be applied; ``test_failed`` marks a failed ``test`` op."""

    def __init__(self, message: str, *, test_failed: bool = False) -> None:
        super().__init__(message)
        self.test_failed = test_failed


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge-patch: dicts merge recursively, ``null`` deletes."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == '':
        return []
    if not path.startswith('/'):
        raise PatchError(f'invalid JSON pointer: {path!r}')
    return [part.replace('~1', '/').replace('~0', '~') for part in path[1:].split('/')]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            raise PatchError(f'path not found: /{"/".join(parts)}')
    return doc


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1])
    key = parts[-1]
    if isinstance(parent, dict):
        parent[key] = value
    elif isinstance(parent, list):
        index = len(parent) if key == '-' else int(key) if key.isdigit() else -1
        if not 0 <= index <= len(parent):
            raise PatchError(f'index out of range: {key}')
        parent.insert(index, value)
    else:
        raise PatchError(f'cannot add to a scalar at /{"/".join(parts)}')
    return doc


def _remove(doc: Any, parts: list[str]) -> tuple[Any, Any]:
    if not parts:
        raise PatchError('cannot remove the root')
    parent = _walk(doc, parts[:-1])
    key = parts[-1]
    if isinstance(parent, dict) and key in parent:
        return doc, parent.pop(key)
    if isinstance(parent, list) and key.isdigit() and int(key) < len(parent):
        return doc, parent.pop(int(key))
    raise PatchError(f'path not found: /{"/".join(parts)}')


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch; all-or-nothing (works on a deep copy)."""
    if not isinstance(ops, list):
        raise PatchError('a JSON patch must be a list of operations')
    doc = copy.deepcopy(target)
    for op in ops:
        doc = _apply_op(doc, op)
    return doc


def _apply_op(doc: Any, op: Mapping[str, Any]) -> Any:
    kind = op.get('op')
    parts = _pointer(str(op.get('path', '')))
    if kind == 'test':
        try:
            actual = _walk(doc, parts)
        except PatchError:
            actual = None
        if actual != op.get('value'):
            raise PatchError(f'testing value {op.get("path")} failed', test_failed=True)
        return doc
    if kind == 'add':
        return _add(doc, parts, copy.deepcopy(op.get('value')))
    if kind == 'remove':
        return _remove(doc, parts)[0]
    if kind == 'replace':
        doc = _remove(doc, parts)[0] if parts else doc
        return _add(doc, parts, copy.deepcopy(op.get('value')))
    if kind in ('move', 'copy'):
        source = _pointer(str(op.get('from', '')))
        value = copy.deepcopy(_walk(doc, source))
        if kind == 'move':
            doc = _remove(doc, source)[0]
        return _add(doc, parts, value)
    raise PatchError(f'unknown JSON patch operation: {kind!r}')


# --- Selectors --------------------------------------------------------------------------------------

Matcher = Callable[[Mapping[str, str]], bool]

_SET_TERM = re.compile(r'^\s*(!?)\s*([^\s!=(),]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$')
_EQ_TERM = re.compile(r'^\s*([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)\s*$')


class SelectorError(ValueError):
    """An unparseable label or field selector (served as 400 BadRequest)."""


def _split_terms(selector: str) -> list[str]:
    # Commas inside "in (a,b)" belong to the term, not to the list of terms.
    terms, depth, current = [], 0, ''
    for char in selector:
        depth += char == '('
        depth -= char == ')'
        if char == ',' and depth == 0:
            terms.append(current)
            current = ''
        else:
            current += char
    terms.append(current)
    return [term for term in terms if term.strip()]


def _term_matcher(term: str) -> Matcher:
    if eq := _EQ_TERM.match(term):
        key, op, value = eq.groups()
        if op == '!=':
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if st := _SET_TERM.match(term):
        negated, key, op, raw_values = st.groups()
        values = {value.strip() for value in (raw_values or '').split(',') if value.strip()}
        if negated and op:
            raise SelectorError(f'unable to parse requirement: {term!r}')
        if op == 'in':
            return lambda labels: key in labels and labels[key] in values
        if op == 'notin':
            return lambda labels: labels.get(key) not in values
        if negated:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise SelectorError(f'unable to parse requirement: {term!r}')


def label_matcher(selector: str | None) -> Matcher:
    """Compile a label selector (``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``)."""
    matchers = [_term_matcher(term) for term in _split_terms(selector or '')]
    return lambda labels: all(matcher(labels) for matcher in matchers)


def _field_value(obj: Mapping[str, Any], dotted: str) -> str:
    value: Any = obj
    for part in dotted.split('.'):
        value = value.get(part) if isinstance(value, Mapping) else None
    return '' if value is None else str(value)


def field_paths(selector: str | None) -> list[str]:
    """The field paths a field selector tests."""
    paths = []
    for term in _split_terms(selector or ''):
        eq = _EQ_TERM.match(term)
        if eq is None:
            raise SelectorError(f'invalid field selector: {term!r}')
        paths.append(eq.group(1))
    return paths


def field_matcher(selector: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """Compile a field selector: ``path=value`` / ``path!=value`` terms over dotted paths."""
    terms: list[tuple[str, str, str]] = []
    for term in _split_terms(selector or ''):
        eq = _EQ_TERM.match(term)
        if eq is None:
            raise SelectorError(f'invalid field selector: {term!r}')
        terms.append((eq.group(1), eq.group(2), eq.group(3)))

    def matches(obj: Mapping[str, Any]) -> bool:
        return all((_field_value(obj, path) == value) != (op == '!=') for path, op, value in terms)
    return matches
