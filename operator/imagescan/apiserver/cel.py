"""
CEL validation rules of CRD schemas (``x-kubernetes-validations``), evaluated as kube-apiserver does.

Why it exists: the project's CRDs refuse, with a CEL rule, an ImagePipeline that names no pipeline
(``has(self.pipelineArn) || has(self.pipelineName)``). The real server evaluates such rules after schema
validation; the embedded one must too, or the sandbox would accept what a cluster refuses. Rules are
compiled and run with cel-python (``celpy``), a maintained CEL implementation; results and messages follow
the real server's (``spec: Invalid value: <message>``, a scalar's value shown, ``reason`` and ``fieldPath`` honoured).

Not emulated (see tests/kubeapi/test_differential.py, KNOWN_DIFFERENCES): the Kubernetes CEL libraries
(``quantity()``, ``url()``...; such rules fail to compile here and the CRD is refused loudly), type-checking of
rules against the schema when the CRD is stored, and cost estimation and budgets.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import celpy
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError

from imagescan.apiserver import schema

Schema = Mapping[str, Any]
MISSING: Any = object()
_PREFIXES = {
    'FieldValueInvalid': 'Invalid value: ',
    'FieldValueForbidden': 'Forbidden: ',
    'FieldValueRequired': 'Required value: ',
    'FieldValueDuplicate': 'Duplicate value: ',
}
_KEYS = {'rule', 'message', 'messageExpression', 'reason', 'fieldPath', 'optionalOldSelf'}
# The schema errors after which the real server does not run CEL rules at all (apiextensions' hasBlockingErr).
_BLOCKING = {'FieldValueNotSupported', 'FieldValueRequired', 'FieldValueTooLong', 'FieldValueTooMany',
             'FieldValueTypeInvalid'}
SKIPPED = schema.FieldError('<nil>', 'FieldValueInvalid', 'Invalid value: null: some validation rules were not '
                            'checked because the object was invalid; correct the existing errors to complete '
                            'validation')


class RuleError(ValueError):
    """A rule that cannot be compiled (the CRD carrying it is refused)."""


@dataclass(frozen=True)
class Rule:
    """One ``x-kubernetes-validations`` entry."""

    rule: str
    message: str = ''
    message_expression: str = ''
    reason: str = 'FieldValueInvalid'
    field_path: str = ''

    @classmethod
    def parse(cls, raw: Any) -> Rule:
        if not isinstance(raw, Mapping) or not isinstance(raw.get('rule'), str):
            raise RuleError('each x-kubernetes-validations entry needs a rule')
        unknown = set(raw) - _KEYS
        if unknown:
            raise RuleError(f'unsupported x-kubernetes-validations fields: {sorted(unknown)}')
        reason = str(raw.get('reason') or 'FieldValueInvalid')
        if reason not in _PREFIXES:
            raise RuleError(f'Unsupported value: "{reason}": supported values: {", ".join(_PREFIXES)}')
        return cls(rule=raw['rule'], message=str(raw.get('message') or ''),
                   message_expression=str(raw.get('messageExpression') or ''), reason=reason,
                   field_path=str(raw.get('fieldPath') or ''))

    @property
    def transition(self) -> bool:
        return 'oldSelf' in self.rule


@functools.lru_cache(maxsize=512)
def compiled(expression: str) -> celpy.Runner:
    """A CEL program, compiled once per text."""
    environment = celpy.Environment()
    try:
        return environment.program(environment.compile(expression))
    except CELParseError as e:
        raise RuleError(f'compilation failed: {e}') from None


def check_schema(root: Schema | None, path: str) -> list[schema.FieldError]:
    """Errors for every rule of a CRD schema that cannot be parsed or compiled (refused as the real server)."""
    errors: list[schema.FieldError] = []
    for node, node_path in schema.subschemas(root, path):
        for index, raw in enumerate(node.get('x-kubernetes-validations') or []):
            try:
                rule = Rule.parse(raw)
                compiled(rule.rule)
                if rule.message_expression:
                    compiled(rule.message_expression)
            except RuleError as e:
                errors.append(schema.FieldError(f'{node_path}.x-kubernetes-validations[{index}].rule',
                                                'FieldValueInvalid', f'Invalid value: {e}'))
    return errors


def has_rules(root: Schema | None) -> bool:
    return any(node.get('x-kubernetes-validations') for node, _ in schema.subschemas(root, ''))


def blocked(errors: list[schema.FieldError]) -> bool:
    """Whether schema errors keep the real server from evaluating rules."""
    return any(error.reason in _BLOCKING for error in errors)


def errors(value: Any, old: Any, node: Schema | None, path: str) -> list[schema.FieldError]:
    """The failures of every rule in ``node`` and below, for ``value`` (``old``: the stored value, on updates)."""
    if not isinstance(node, Mapping) or value is None:
        return []
    found = [error for raw in node.get('x-kubernetes-validations') or []
             for error in _evaluate(Rule.parse(raw), value, old, path)]
    return found + _children(value, old, node, path)


def _children(value: Any, old: Any, node: Schema, path: str) -> list[schema.FieldError]:
    found: list[schema.FieldError] = []
    old_map = old if isinstance(old, Mapping) else {}
    if isinstance(value, Mapping):
        properties: Mapping[str, Any] = node.get('properties') or {}
        extra = node.get('additionalProperties')
        for key, sub in value.items():
            sub_schema = properties.get(key, extra if isinstance(extra, Mapping) else None)
            sub_path = f'{path}.{key}' if key in properties else f'{path}[{key}]'
            found += errors(sub, old_map.get(key, MISSING), sub_schema, sub_path.lstrip('.'))
    elif isinstance(value, list) and isinstance(node.get('items'), Mapping):
        for index, item in enumerate(value):  # list items are not correlated with old ones (atomic lists)
            found += errors(item, MISSING, node['items'], f'{path}[{index}]')
    return found


def _evaluate(rule: Rule, value: Any, old: Any, path: str) -> list[schema.FieldError]:
    if rule.transition and old is MISSING:
        return []  # transition rules only run when there is an old value
    activation = {'self': json_to_cel(value)}
    if rule.transition:
        activation['oldSelf'] = json_to_cel(old)
    field = path + rule.field_path if rule.field_path else path
    try:
        result = compiled(rule.rule).evaluate(activation)
    except Exception as e:  # CELEvalError, or a type mismatch inside celpy: the rule could not be evaluated
        return [schema.FieldError(field, 'FieldValueInvalid', f'Invalid value: {rule.rule}: {e}')]
    if isinstance(result, celpy.celtypes.BoolType) and bool(result):
        return []
    if not isinstance(result, celpy.celtypes.BoolType):
        return [schema.FieldError(field, 'FieldValueInvalid', f'Invalid value: {rule.rule}: no boolean result')]
    return [schema.FieldError(field, rule.reason, _prefix(rule.reason, value) + _message(rule, activation))]


def _prefix(reason: str, value: Any) -> str:
    """The real server shows the value a rule refused when it is a scalar (``Invalid value: "200h": ...``), never
    an object or a list."""
    if reason == 'FieldValueInvalid' and isinstance(value, (str, int, float, bool)):
        return f'{_PREFIXES[reason]}{json.dumps(value, ensure_ascii=False)}: '
    return _PREFIXES[reason]


def _message(rule: Rule, activation: dict[str, Any]) -> str:
    if rule.message_expression:
        with contextlib.suppress(Exception):  # as the real server: fall back to the message
            return str(compiled(rule.message_expression).evaluate(activation))
    return rule.message or f'failed rule: {rule.rule}'
