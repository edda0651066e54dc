"""Behaviour of the emulated API server, seen through the official ``kubernetes`` client."""

from __future__ import annotations

import time
from typing import Any

import kubernetes.client
import kubernetes.watch
import pytest
from kubernetes.client import ApiException

from imagescan.apiserver.server import ApiServer

GROUP, VERSION, PLURAL = 'test.imagescan.io', 'v1', 'gizmos'
CRD: dict[str, Any] = {
    'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
    'metadata': {'name': f'{PLURAL}.{GROUP}'},
    'spec': {
        'group': GROUP, 'scope': 'Namespaced',
        'names': {'plural': PLURAL, 'singular': 'gizmo', 'kind': 'Gizmo', 'shortNames': ['gz'],
                  'categories': ['imagescan']},
        'versions': [{
            'name': VERSION, 'served': True, 'storage': True, 'subresources': {'status': {}},
            'schema': {'openAPIV3Schema': {'type': 'object', 'properties': {
                'spec': {'type': 'object', 'required': ['color'], 'properties': {
                    'color': {'type': 'string', 'enum': ['red', 'blue']},
                    'size': {'type': 'integer', 'minimum': 1, 'maximum': 10, 'default': 3},
                    'nick': {'type': 'string', 'pattern': '^[a-z]+$', 'maxLength': 8},
                    'tags': {'type': 'array', 'maxItems': 2, 'items': {'type': 'string'}},
                    'when': {'type': 'string', 'format': 'date-time', 'nullable': True},
                    'extra': {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True},
                }},
                'status': {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True},
            }}},
        }],
    },
}


@pytest.fixture
def crs(kube_api: ApiServer, kube_client: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    kubernetes.client.ApiextensionsV1Api(kube_client).create_custom_resource_definition(CRD)
    return kubernetes.client.CustomObjectsApi(kube_client)


def gizmo(name: str = 'g1', **spec: Any) -> dict[str, Any]:
    return {'apiVersion': f'{GROUP}/{VERSION}', 'kind': 'Gizmo', 'metadata': {'name': name},
            'spec': {'color': 'red', **spec}}


def create(crs: kubernetes.client.CustomObjectsApi, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = crs.create_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, body)
    return result


def test_crud_and_metadata(crs: kubernetes.client.CustomObjectsApi, kube_api: ApiServer) -> None:
    obj = create(crs, gizmo(tags=['a']))
    meta = obj['metadata']
    assert meta['namespace'] == 'default' and meta['generation'] == 1
    assert meta['uid'] and meta['creationTimestamp'] and meta['resourceVersion'].isdigit()
    assert obj['spec'] == {'color': 'red', 'size': 3, 'tags': ['a']}  # defaulted
    fetched = crs.get_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'g1')
    assert fetched == obj
    with pytest.raises(ApiException) as exists:
        create(crs, gizmo())
    assert exists.value.status == 409
    replaced = crs.replace_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'g1',
                                                    {**fetched, 'spec': {'color': 'blue'}})
    assert replaced['spec'] == {'color': 'blue', 'size': 3} and replaced['metadata']['generation'] == 2
    crs.delete_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'g1')
    assert kube_api.get(GROUP, VERSION, PLURAL, 'default', 'g1') is None
    with pytest.raises(ApiException) as missing:
        crs.get_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'g1')
    assert missing.value.status == 404 and '"reason":"NotFound"' in missing.value.body.replace(' ', '')


def test_stale_resource_version_conflicts(crs: kubernetes.client.CustomObjectsApi) -> None:
    old = create(crs, gizmo())
    crs.patch_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'g1', {'spec': {'size': 5}})
    with pytest.raises(ApiException) as put:
        crs.replace_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'g1', old)
    assert put.value.status == 409
    stale = {'metadata': {'resourceVersion': old['metadata']['resourceVersion']}, 'spec': {'size': 6}}
    with pytest.raises(ApiException) as patch:
        crs.patch_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'g1', stale)
    assert patch.value.status == 409


def test_json_patch_test_op_fails_with_422(crs: kubernetes.client.CustomObjectsApi) -> None:
    obj = create(crs, gizmo())
    rv = obj['metadata']['resourceVersion']
    ops = [{'op': 'test', 'path': '/metadata/resourceVersion', 'value': rv},
           {'op': 'add', 'path': '/metadata/finalizers', 'value': ['x.io/f']}]
    json_patch = 'application/json-patch+json'  # client v37 sends merge-patch unless told otherwise
    patched = crs.patch_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'g1', ops,
                                                 _content_type=json_patch)
    assert patched['metadata']['finalizers'] == ['x.io/f']
    with pytest.raises(ApiException) as failed:
        crs.patch_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'g1', ops,
                                           _content_type=json_patch)
    assert failed.value.status == 422


def test_status_subresource_and_generation(crs: kubernetes.client.CustomObjectsApi) -> None:
    create(crs, {**gizmo(), 'status': {'ignored': True}})
    main = crs.patch_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'g1',
                                              {'status': {'x': 1}, 'metadata': {'labels': {'a': 'b'}}})
    assert 'status' not in main and main['metadata']['generation'] == 1  # metadata: no bump
    status = crs.patch_namespaced_custom_object_status(GROUP, VERSION, 'default', PLURAL, 'g1',
                                                       {'status': {'x': 2}, 'spec': {'size': 9}})
    assert status['status'] == {'x': 2} and status['spec']['size'] == 3
    assert status['metadata']['generation'] == 1
    spec = crs.patch_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'g1', {'spec': {'size': 4}})
    assert spec['metadata']['generation'] == 2 and spec['status'] == {'x': 2}
    same = crs.patch_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'g1', {'spec': {'size': 4}})
    assert same['metadata']['resourceVersion'] == spec['metadata']['resourceVersion']  # no-op


def test_selectors(crs: kubernetes.client.CustomObjectsApi) -> None:
    for name, labels in [('a', {'app': 'x', 'tier': 'web'}), ('b', {'app': 'y'}), ('c', {})]:
        create(crs, {**gizmo(name), 'metadata': {'name': name, 'labels': labels}})

    def names(**kwargs: str) -> list[str]:
        items = crs.list_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, **kwargs)['items']
        return [item['metadata']['name'] for item in items]
    assert names(label_selector='app=x') == ['a']
    assert names(label_selector='app!=x') == ['b', 'c']
    assert names(label_selector='app in (x, y),!tier') == ['b']
    assert names(label_selector='app notin (x)') == ['b', 'c']
    assert names(label_selector='app') == ['a', 'b']
    assert names(field_selector='metadata.name=c') == ['c']
    assert names(field_selector='metadata.namespace=default,metadata.name!=c') == ['a', 'b']
    listing = crs.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    assert listing['kind'] == 'GizmoList' and listing['apiVersion'] == f'{GROUP}/{VERSION}'
    assert listing['metadata']['resourceVersion'].isdigit()


def test_watch_resumes_and_times_out(crs: kubernetes.client.CustomObjectsApi) -> None:
    create(crs, gizmo('old'))
    since = crs.list_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL)['metadata']['resourceVersion']
    crs.patch_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'old', {'spec': {'size': 2}})
    create(crs, gizmo('new'))
    crs.delete_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'new')
    started = time.monotonic()
    stream = kubernetes.watch.Watch().stream(
        crs.list_namespaced_custom_object, GROUP, VERSION, 'default', PLURAL,
        resource_version=since, timeout_seconds=1)
    seen = [(event['type'], event['object']['metadata']['name']) for event in stream]
    assert seen == [('MODIFIED', 'old'), ('ADDED', 'new'), ('DELETED', 'new')]
    assert 0.9 < time.monotonic() - started < 5


def test_finalizers_delay_deletion(crs: kubernetes.client.CustomObjectsApi, kube_api: ApiServer) -> None:
    create(crs, {**gizmo(), 'metadata': {'name': 'g1', 'finalizers': ['x.io/f']}})
    crs.delete_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'g1')
    marked = kube_api.get(GROUP, VERSION, PLURAL, 'default', 'g1')
    assert marked is not None and marked['metadata']['deletionTimestamp']
    with pytest.raises(ApiException) as forbidden:
        crs.patch_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'g1',
                                           {'metadata': {'finalizers': ['x.io/f', 'y.io/g']}})
    assert forbidden.value.status == 422
    crs.patch_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'g1', {'metadata': {'finalizers': None}})
    assert kube_api.get(GROUP, VERSION, PLURAL, 'default', 'g1') is None


def test_generate_name_and_events(kube_client: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(kube_client)
    body = {'metadata': {'generateName': 'evt-'}, 'involvedObject': {'name': 'g1'}, 'reason': 'Test'}
    event = core.create_namespaced_event('default', body)
    assert event.metadata.name.startswith('evt-') and len(event.metadata.name) == 9
    assert [e.reason for e in core.list_namespaced_event('default').items] == ['Test']


def test_schema_pruning_and_validation(crs: kubernetes.client.CustomObjectsApi) -> None:
    obj = create(crs, gizmo(junk=1, extra={'anything': [1]}, when=None))
    assert obj['spec'] == {'color': 'red', 'size': 3, 'extra': {'anything': [1]}, 'when': None}
    bad = gizmo('bad', color='green', size=11, nick='UP', tags=['a', 'b', 'c'], when='yesterday')
    with pytest.raises(ApiException) as invalid:
        create(crs, bad)
    assert invalid.value.status == 422
    message = invalid.value.body
    for expected in ['Gizmo.test.imagescan.io \\"bad\\" is invalid',
                     'spec.color: Unsupported value: \\"green\\": supported values: \\"red\\", \\"blue\\"',
                     'spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10',
                     "spec.nick: Invalid value: \\\"UP\\\": spec.nick in body should match '^[a-z]+$'",
                     'spec.tags: Too many: 3: must have at most 2 items',
                     'spec.when: Invalid value: \\"yesterday\\"']:
        assert expected in message
    with pytest.raises(ApiException) as required:
        create(crs, {**gizmo('nocolor'), 'spec': {'size': 'big'}})
    assert 'spec.color: Required value' in required.value.body
    assert 'spec.size in body must be of type integer: \\"string\\"' in required.value.body


def test_discovery(crs: kubernetes.client.CustomObjectsApi, kube_client: kubernetes.client.ApiClient) -> None:
    groups = kubernetes.client.ApisApi(kube_client).get_api_versions()
    assert GROUP in [group.name for group in groups.groups]
    resources = kubernetes.client.CustomObjectsApi(kube_client).get_api_resources(GROUP, VERSION)
    by_name = {res.name: res for res in resources.resources}
    assert by_name[PLURAL].namespaced and by_name[PLURAL].kind == 'Gizmo'
    assert by_name[PLURAL].short_names == ['gz'] and by_name[PLURAL].categories == ['imagescan']
    assert 'watch' in by_name[PLURAL].verbs and f'{PLURAL}/status' in by_name
    core = kubernetes.client.CoreV1Api(kube_client).get_api_resources()
    assert any(res.name == 'namespaces' and not res.namespaced for res in core.resources)


def test_namespaces(kube_client: kubernetes.client.ApiClient, kube_api: ApiServer) -> None:
    core = kubernetes.client.CoreV1Api(kube_client)
    core.create_namespace({'metadata': {'name': 'extra'}})
    assert {'default', 'extra'} <= {ns.metadata.name for ns in core.list_namespace().items}
    assert core.read_namespace('extra').status.phase == 'Active'
    core.create_namespaced_config_map('extra', {'metadata': {'name': 'cm'}, 'data': {'a': 'b'}})
    with pytest.raises(ApiException) as missing:
        core.create_namespaced_config_map('nowhere', {'metadata': {'name': 'cm'}})
    assert missing.value.status == 404
    core.delete_namespace('extra')
    assert kube_api.objects('', 'v1', 'configmaps') == []


def test_server_side_apply_is_refused(crs: kubernetes.client.CustomObjectsApi, kube_api: ApiServer) -> None:
    create(crs, gizmo())
    with pytest.raises(Exception) as refused:
        kube_api.http('PATCH', f'/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}/g1', gizmo(),
                      content_type='application/apply-patch+yaml')
    assert getattr(refused.value, 'code', None) == 415


def test_many_requests_stay_fast(kube_api: ApiServer, kube_client: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(kube_client)
    core.create_namespaced_config_map('default', {'metadata': {'name': 'cm'}})

    def batch() -> float:
        started = time.monotonic()
        for _ in range(300):
            core.read_namespaced_config_map('cm', 'default')
        return time.monotonic() - started
    first = batch()
    for _ in range(3):
        batch()
    assert batch() < first * 2 + 0.5
    assert kube_api.request_count >= 1500
