"""The pure parts of server-side printing: content negotiation, the JSONPath subset, cells."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from imagescan.apiserver import tables

OBJ: dict[str, Any] = {
    'metadata': {'name': 'p1', 'labels': {'app.kubernetes.io/name': 'x'}},
    'spec': {'ports': [{'port': 80, 'name': 'http'}, {'port': 443, 'name': 'https'}]},
    'status': {
        'conditions': [{'type': 'Reconciling', 'status': 'False'},
                       {'type': 'Ready', 'status': 'True', 'reason': 'Scanned'}],
        'count': 3, 'flag': False, 'none': None,
    },
}


@pytest.mark.parametrize(('path', 'expected'), [
    ('.metadata.name', ['p1']),
    ('$.metadata.name', ['p1']),
    ('{.metadata.name}', ['p1']),
    ('.spec.ports[0].port', [80]),
    ('.spec.ports[-1].name', ['https']),
    ('.spec.ports[5].port', []),
    ('.spec.ports[*].port', [80, 443]),
    ('.spec.ports.*.name', ['http', 'https']),
    ('.status.conditions[?(@.type=="Ready")].status', ['True']),
    (".status.conditions[?(@.type=='Ready')].reason", ['Scanned']),
    ('.status.conditions[?(@.type != "Ready")].type', ['Reconciling']),
    ('.status.conditions[?(@.reason)].type', ['Ready']),
    ('.spec.ports[?(@.port > 100)].name', ['https']),
    ('.status.conditions[?(@.type=="Stalled")].status', []),
    ("['metadata'].labels['app.kubernetes.io/name']", ['x']),
    ('.status.missing.deeper', []),
    ('.status.count.deeper', []),
    ('.status.flag', [False]),
    ('.status.none', [None]),
])
def test_jsonpath_subset(path: str, expected: list[Any]) -> None:
    assert tables.jsonpath(OBJ, path) == expected


@pytest.mark.parametrize('path', ['metadata.name', '..name', '.spec.ports[0:1]', '.a[?(@.x =~ "y")]',
                                  '.spec.ports[0', '.a b'])
def test_jsonpath_refuses_the_unsupported(path: str) -> None:
    with pytest.raises(tables.JsonPathError):
        tables.compile_jsonpath(path)


@pytest.mark.parametrize(('accept', 'version'), [
    ('application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,'
     'application/json', 'v1'),
    ('application/json;as=Table;v=v1beta1;g=meta.k8s.io', 'v1beta1'),
    ('application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json', None),
    ('application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json', None),
    ('application/json, */*', None),
    ('', None),
    (None, None),
])
def test_requested_table_version(accept: str | None, version: str | None) -> None:
    assert tables.requested_version(accept) == version


NOW = datetime.datetime(2024, 1, 10, 12, 0, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(('column_type', 'value', 'cell'), [
    ('integer', 5, 5), ('integer', 5.0, 5), ('integer', '5', None), ('integer', True, None),
    ('number', 1.5, 1.5), ('boolean', True, True), ('boolean', 'true', None),
    ('string', 'x', 'x'), ('string', 3, '3'), ('string', False, 'false'), ('string', {'a': 1}, '{"a":1}'),
    ('date', '2024-01-10T11:55:00Z', '5m'), ('date', 'yesterday', '<invalid>'),
    ('integer', None, None),
])
def test_cells(column_type: str, value: Any, cell: Any) -> None:
    assert tables.cell_value(column_type, value, now=NOW) == cell


@pytest.mark.parametrize(('seconds', 'text'), [
    (-5, '<invalid>'), (-1, '0s'), (0, '0s'), (119, '119s'), (125, '2m5s'), (600, '10m'), (179 * 60, '179m'),
    (3 * 3600 + 20 * 60, '3h20m'), (10 * 3600, '10h'), (50 * 3600, '2d2h'), (9 * 86400, '9d'),
    (800 * 86400, '2y70d'), (3000 * 86400, '8y'),
])
def test_human_duration(seconds: float, text: str) -> None:
    assert tables.human_duration(seconds) == text


def test_table_of_custom_columns() -> None:
    columns = tables.custom_columns([
        {'name': 'Ready', 'type': 'string', 'jsonPath': '.status.conditions[?(@.type=="Ready")].status'},
        {'name': 'Count', 'type': 'integer', 'jsonPath': '.status.count', 'priority': 1, 'description': 'How many'},
    ])
    table = tables.table(columns, [OBJ], metadata={'resourceVersion': '7'})
    assert table['metadata'] == {'resourceVersion': '7'}
    assert [(c['name'], c['type'], c['priority']) for c in table['columnDefinitions']] == [
        ('Name', 'string', 0), ('Ready', 'string', 0), ('Count', 'integer', 1)]
    assert table['columnDefinitions'][1]['description'] == (
        'Custom resource definition column (in JSONPath format): .status.conditions[?(@.type=="Ready")].status')
    assert table['rows'] == [{'cells': ['p1', 'True', 3], 'object': {
        'kind': 'PartialObjectMetadata', 'apiVersion': 'meta.k8s.io/v1', 'metadata': OBJ['metadata']}}]
    assert [c['name'] for c in tables.table(tables.custom_columns(None), [])['columnDefinitions']] == ['Name', 'Age']
    with pytest.raises(ValueError, match='includeObject'):
        tables.table(columns, [OBJ], include_object='Everything')
