"""Go's regexp errors for CRD patterns (:mod:`imagescan.apiserver.re2`), as kube-apiserver v1.37 reported them.

The differential test sends these patterns to a real server too; this one runs without it.
"""

from __future__ import annotations

import pytest

from imagescan.apiserver import re2, store

REFUSED = {
    '^[a-z]{2,1224}$': 'invalid repeat count: `{2,1224}`',
    'a{1001}': 'invalid repeat count: `{1001}`',
    '(a{500}){3}': 'invalid repeat count: `{3}`',  # nested counts multiply
    '^(?=a)b$': 'invalid or unsupported Perl syntax: `(?=`',
    '^(?!a)$': 'invalid or unsupported Perl syntax: `(?!`',
    '(?#c)': 'invalid or unsupported Perl syntax: `(?#`',
    '(?<=a)b': 'invalid named capture: `(?<=a)b`',
    r'^(a)\1$': r'invalid escape sequence: `\1`',
    r'\Z': r'invalid escape sequence: `\Z`',
    r'\G': r'invalid escape sequence: `\G`',
    r'\h': r'invalid escape sequence: `\h`',
    'a++': 'invalid nested repetition operator: `++`',
    'a**': 'invalid nested repetition operator: `**`',
    'x{2}{3}': 'invalid nested repetition operator: `{2}{3}`',
    '(': 'missing closing ): `(`',
}
ACCEPTED = ('a{1000}', '((a{10}){10}){10}', '[[:alpha:]]', r'\p{Greek}', r'\p{greek}', '(?P<x>a)', '(?<x>a)', r'\z',
            '(?i)a', r'\d\w\s', r'\x{41}', r'\Qa.b\E', 'a{,5}', 'a*?', '[]a]', r'\_', r'\12')


@pytest.mark.parametrize('pattern', sorted(REFUSED))
def test_refused_as_go_does(pattern: str) -> None:
    assert re2.error(pattern) == f'error parsing regexp: {REFUSED[pattern]}'


@pytest.mark.parametrize('pattern', ACCEPTED)
def test_accepted_as_go_does(pattern: str) -> None:
    assert re2.error(pattern) is None


def test_a_crd_with_such_a_pattern_is_refused_with_the_field_path() -> None:
    db = store.Store()
    crds = db.types[store.CRDS]
    crd = {'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
           'metadata': {'name': 'widgets.example.io'},
           'spec': {'group': 'example.io', 'scope': 'Cluster', 'names': {'plural': 'widgets', 'kind': 'Widget'},
                    'versions': [{'name': 'v1', 'served': True, 'storage': True, 'schema': {'openAPIV3Schema': {
                        'type': 'object', 'properties': {'spec': {'type': 'object', 'properties': {
                            'id': {'type': 'string', 'pattern': '^[a-z]{2,1224}$'}}}}}}}]}}
    with pytest.raises(store.ApiError) as refused:
        db.create(crds, 'v1', None, crd)
    status = refused.value.status()
    assert status['code'] == 422 and status['details']['causes'] == [{
        'reason': 'FieldValueInvalid',
        'field': 'spec.validation.openAPIV3Schema.properties[spec].properties[id].pattern',
        'message': 'Invalid value: "^[a-z]{2,1224}$": must be a valid regular expression, but isn\'t: error parsing '
                   'regexp: invalid repeat count: `{2,1224}`'}]
