"""
Differential test: the embedded API server (:mod:`imagescan.apiserver`) against a real kube-apiserver.

Why it exists: users meet the embedded server in ``imagescan sandbox``, and the fast tests trust it, so it
must answer as a cluster does. Each test sends the same requests (those kopf, kubectl and the sandbox send)
to both servers and compares the status codes and the fields that matter (never uids, timestamps or
resourceVersion values). Where a difference is kept on purpose it is listed in :data:`KNOWN_DIFFERENCES`
with the reason, and :func:`test_known_difference_is_still_there` checks that it still exists, so the
list stays true: when the embedded server catches up, that test fails and the entry must go.

A cluster-scoped resource (InspectorActivation) is compared too: the shared control plane holds every test's
activations, so each test names its own after its namespace, lists them by a label of its own, and removes them
(finalizers first) when it ends.

Needs the real control plane (:func:`tests.support.fixtures.control_plane`): skipped without a Go
toolchain, failed in CI.
"""

from __future__ import annotations

import copy
import json
import pathlib
import time
import urllib.error
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from imagescan.apiserver.server import ApiServer
from tests.support import controlplane
from tests.support.fixtures import namespace_for

Obj = dict[str, Any]
Answer = tuple[int, Any]

ROOT = pathlib.Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = 'imagescan.io', 'v1alpha1', 'imagepipelines'
ACTIVATIONS = 'inspectoractivations'  # cluster-scoped
ARN = 'arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/web-ami'
MERGE, JSON_PATCH = 'application/merge-patch+json', 'application/json-patch+json'
TABLE = 'application/json;as=Table;v=v1;g=meta.k8s.io'
CRDS = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions'


# --- The two servers ------------------------------------------------------------------------------------


@dataclass
class Server:
    """One of the two servers, spoken to in raw HTTP (as both are by kubectl and kopf)."""

    name: str
    send: Callable[..., Answer]

    def http(self, method: str, path: str, body: Any = None, *, content_type: str = 'application/json',
             accept: str = 'application/json') -> Answer:
        return self.send(method, path, body, content_type=content_type, accept=accept)

    def ok(self, method: str, path: str, body: Any = None, **kwargs: str) -> Obj:
        status, answer = self.http(method, path, body, **kwargs)
        assert 200 <= status < 300, f'{self.name}: {method} {path}: {status} {answer}'
        return dict(answer)


def _embedded_http(api: ApiServer) -> Callable[..., Answer]:
    def send(method: str, path: str, body: Any = None, *, content_type: str = 'application/json',
             accept: str = 'application/json') -> Answer:
        return controlplane.raw_request(api.url + path, method, body,
                                        {'Content-Type': content_type, 'Accept': accept})
    return send


@dataclass
class Pair:
    real: Server
    embedded: Server
    namespace: str

    @property
    def both(self) -> tuple[Server, Server]:
        return self.real, self.embedded

    def send(self, method: str, path: str, body: Any = None, **kwargs: str) -> tuple[Answer, Answer]:
        """The same request to both servers (a deep copy each, so that neither sees the other's changes)."""
        return (self.real.http(method, path, copy.deepcopy(body), **kwargs),
                self.embedded.http(method, path, copy.deepcopy(body), **kwargs))

    def path(self, name: str = '', sub: str = '', *, namespace: str | None = None) -> str:
        base = f'/apis/{GROUP}/{VERSION}/namespaces/{namespace or self.namespace}/{PLURAL}'
        return '/'.join(part for part in (base, name, sub) if part)

    def cluster_path(self, name: str = '', sub: str = '') -> str:
        """An InspectorActivation's URL (``name`` is this test's own, see :meth:`own`)."""
        base = f'/apis/{GROUP}/{VERSION}/{ACTIVATIONS}'
        return '/'.join(part for part in (base, self.own(name) if name else '', sub) if part)

    def own(self, name: str) -> str:
        """A cluster-wide name of this test's own (the namespace's name is unique per test)."""
        return f'{self.namespace}-{name}'


@pytest.fixture(scope='module')
def servers(control_plane: controlplane.ControlPlane) -> Iterator[tuple[Server, Server]]:
    """The real control plane and an embedded server, both with the project's CRDs."""
    with ApiServer() as api:
        for crd in sorted((ROOT / 'crds').glob('*.imagescan.io.yaml')):
            control_plane.apply_yaml(crd)
            api.apply_yaml(crd)
        yield Server('real', control_plane.http), Server('embedded', _embedded_http(api))


@pytest.fixture
def pair(servers: tuple[Server, Server], request: pytest.FixtureRequest) -> Pair:
    """Both servers, with a namespace of this test's own on each."""
    namespace = namespace_for(request)
    for server in servers:
        server.ok('POST', '/api/v1/namespaces', {'apiVersion': 'v1', 'kind': 'Namespace',
                                                 'metadata': {'name': namespace}})
    return Pair(*servers, namespace=namespace)


@pytest.fixture
def cluster_pair(pair: Pair) -> Iterator[Pair]:
    """Both servers, for cluster-scoped activations: the ones this test created are removed when it ends,
    finalizers first, so that no operator watching all activations on the shared control plane meets them."""
    yield pair
    for server in pair.both:
        for item in server.ok('GET', f'/apis/{GROUP}/{VERSION}/{ACTIVATIONS}?labelSelector=test%3D{pair.namespace}'
                              )['items']:
            path = f'/apis/{GROUP}/{VERSION}/{ACTIVATIONS}/{item["metadata"]["name"]}'
            if item['metadata'].get('finalizers'):
                server.http('PATCH', path, {'metadata': {'finalizers': None}}, content_type=MERGE)
            server.http('DELETE', path)


# --- What is compared -----------------------------------------------------------------------------------

_VOLATILE = ('uid', 'resourceVersion', 'creationTimestamp', 'managedFields', 'deletionTimestamp')


def essence(obj: Any) -> Any:
    """An object without what differs by nature (uid, timestamps, resourceVersion values, managedFields);
    a deletionTimestamp is kept as whether it is set."""
    if not isinstance(obj, dict) or not isinstance(obj.get('metadata'), dict):
        return obj
    meta = {key: value for key, value in obj['metadata'].items() if key not in _VOLATILE}
    meta['deleting'] = 'deletionTimestamp' in obj['metadata']
    return {**obj, 'metadata': meta}


def shape(answer: Answer) -> Any:
    """An answer as compared: status code and essence, or the Status's kind, code, reason, details, causes."""
    status, body = answer
    if not isinstance(body, dict) or body.get('kind') != 'Status':
        return status, essence(body)
    details = body.get('details') or {}
    causes = sorted((cause.get('reason'), cause.get('field'), cause.get('message'))
                    for cause in details.get('causes') or [])
    return (status, body.get('kind'), body.get('code'), body.get('reason'), _message(body.get('message')),
            {key: details.get(key) for key in ('name', 'group', 'kind')}, causes)


def _message(message: Any) -> Any:
    """kube-apiserver lists several field errors in no fixed order ("is invalid: [a, b]", Go map order):
    compare the list's items, not their order. The items are the causes, compared one by one already."""
    if isinstance(message, str) and message.endswith(']') and ': [' in message:
        head, _, _ = message.partition(': [')
        return f'{head}: [...]'
    return message


def assert_same(answers: tuple[Answer, Answer]) -> Any:
    real, embedded = (shape(answer) for answer in answers)
    assert embedded == real, f'\nreal:     {real}\nembedded: {embedded}'
    return real


def pipeline(name: str, *, labels: dict[str, str] | None = None, **spec: Any) -> Obj:
    return {'apiVersion': f'{GROUP}/{VERSION}', 'kind': 'ImagePipeline',
            'metadata': {'name': name, **({'labels': labels} if labels else {})},
            'spec': spec or {'pipelineArn': ARN}}


def activation(pair: Pair, name: str, *, labels: dict[str, str] | None = None, **spec: Any) -> Obj:
    """An InspectorActivation named after the test, labelled with it (what :func:`cluster_pair` removes)."""
    return {'apiVersion': f'{GROUP}/{VERSION}', 'kind': 'InspectorActivation',
            'metadata': {'name': pair.own(name), 'labels': {'test': pair.namespace, **(labels or {})}},
            'spec': spec or {'region': 'eu-west-1'}}


def names(answer: Answer) -> list[str]:
    status, body = answer
    assert status == 200, body
    return [item['metadata']['name'] for item in body['items']]


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.2)


# --- The requests of kopf, kubectl and the sandbox ------------------------------------------------------


def test_create_get_and_list_with_selectors(pair: Pair) -> None:
    assert_same(pair.send('POST', pair.path(), pipeline('web', labels={'tier': 'web', 'team': 'a'})))
    assert_same(pair.send('POST', pair.path(), pipeline('db', labels={'tier': 'db'})))
    assert_same(pair.send('GET', pair.path('web')))
    for query in ('labelSelector=tier%3Dweb', 'labelSelector=tier%20in%20(web,db)', 'labelSelector=!team',
                  'labelSelector=tier!%3Ddb', 'labelSelector=team', 'fieldSelector=metadata.name%3Ddb',
                  f'fieldSelector=metadata.namespace%3D{pair.namespace}',
                  f'fieldSelector=metadata.namespace!%3D{pair.namespace}'):
        real, embedded = pair.send('GET', f'{pair.path()}?{query}')
        assert names(embedded) == names(real), query
    listing = [names(answer) for answer in pair.send('GET', f'/apis/{GROUP}/{VERSION}/{PLURAL}?'
                                                            f'fieldSelector=metadata.namespace%3D{pair.namespace}')]
    assert listing[0] == listing[1] == ['db', 'web']
    assert_same(pair.send('GET', f'{pair.path()}?fieldSelector=spec.pipelineArn%3Dx'))  # 400: not a field label


def test_watch_from_a_resource_version(pair: Pair) -> None:
    created = pair.send('POST', pair.path(), pipeline('one', labels={'tier': 'web'}))
    since = [answer[1]['metadata']['resourceVersion'] for answer in created]
    pair.send('POST', pair.path(), pipeline('two', labels={'tier': 'db'}))
    pair.send('PATCH', pair.path('one'), {'metadata': {'labels': {'x': 'y'}}}, content_type=MERGE)
    pair.send('PATCH', pair.path('one', 'status'), {'status': {'lastSynced': 'now'}}, content_type=MERGE)
    pair.send('DELETE', pair.path('two'))
    seen = []
    for server, rv in zip(pair.both, since, strict=True):
        for query in ('', '&labelSelector=tier%3Ddb'):
            started = time.monotonic()
            status, body = server.http('GET', f'{pair.path()}?watch=true&resourceVersion={rv}&timeoutSeconds=1'
                                              f'{query}')
            assert status == 200 and 0.8 < time.monotonic() - started < 10, (server.name, status)
            lines = body.splitlines() if isinstance(body, str) else [json.dumps(body)]
            seen.append([(event['type'], event['object']['metadata']['name'],
                          essence(event['object'])['metadata'].get('labels'))
                         for event in map(json.loads, lines)])
    assert seen[2:] == seen[:2]
    assert [(kind, name) for kind, name, _ in seen[0]] == [
        ('ADDED', 'two'), ('MODIFIED', 'one'), ('MODIFIED', 'one'), ('DELETED', 'two')]


def test_merge_and_json_patches(pair: Pair) -> None:
    pair.send('POST', pair.path(), pipeline('p'))
    assert_same(pair.send('PATCH', pair.path('p'), {'spec': {'region': 'us-east-2'},
                                                    'metadata': {'labels': {'a': 'b'}}}, content_type=MERGE))
    assert_same(pair.send('PATCH', pair.path('p'), {'metadata': {'labels': {'a': None}}}, content_type=MERGE))
    kopf_like = [{'op': 'test', 'path': '/spec/region', 'value': 'us-east-2'},
                 {'op': 'replace', 'path': '/spec/region', 'value': 'eu-west-1'},
                 {'op': 'add', 'path': '/metadata/finalizers', 'value': ['imagescan.io/finalizer']}]
    assert_same(pair.send('PATCH', pair.path('p'), kopf_like, content_type=JSON_PATCH))
    for failing in ([{'op': 'test', 'path': '/spec/region', 'value': 'nope'}],  # 422, all of them
                    [{'op': 'remove', 'path': '/spec/nothing'}],
                    [{'op': 'bogus', 'path': '/spec'}]):
        assert_same(pair.send('PATCH', pair.path('p'), failing, content_type=JSON_PATCH))
    for undecodable, content_type in (({'a': 1}, JSON_PATCH), ([1], MERGE)):  # 400
        assert_same(pair.send('PATCH', pair.path('p'), undecodable, content_type=content_type))
    assert_same(pair.send('PATCH', pair.path('p'), {'metadata': {'labels': {'a': 'c'}}},  # 415 on a CR
                          content_type='application/strategic-merge-patch+json'))
    assert_same(pair.send('PATCH', pair.path('p'), {'spec': {'managementPolicy': 'Sometimes'}}, content_type=MERGE))


def test_status_subresource_and_generation(pair: Pair) -> None:
    body = {**pipeline('s'), 'status': {'lastSynced': 'ignored on create'}}
    assert_same(pair.send('POST', pair.path(), body))
    steps: list[tuple[str, Any]] = [
        ('status', {'spec': {'resyncInterval': '20m'}, 'status': {'lastSynced': 'now'}}),  # spec ignored
        ('', {'status': {'lastSynced': 'later'}}),  # status ignored
        ('', {'metadata': {'labels': {'a': 'b'}}}),  # no generation bump
        ('', {'spec': {'resyncInterval': '20m'}}),  # generation 2
        ('status', {'status': {'observedGeneration': 2}}),
    ]
    generations = []
    for sub, patch in steps:
        answer = assert_same(pair.send('PATCH', pair.path('s', sub), patch, content_type=MERGE))
        generations.append(answer[1]['metadata']['generation'])
    assert generations == [1, 1, 1, 2, 2]
    real = assert_same(pair.send('GET', pair.path('s', 'status')))
    assert real[1]['status'] == {'lastSynced': 'now', 'observedGeneration': 2}
    current = real[1]
    replaced = {**current, 'spec': {'pipelineName': 'other'}, 'status': {'lastSynced': 'put'}}
    for server in pair.both:  # PUT with each server's own resourceVersion
        fresh = server.ok('GET', pair.path('s'))
        replaced['metadata'] = {**fresh['metadata']}
        status, answer = server.http('PUT', pair.path('s'), replaced)
        assert status == 200 and answer['spec'] == {'pipelineName': 'other'}, server.name
        assert answer['status']['lastSynced'] == 'now' and answer['metadata']['generation'] == 3, server.name


def test_finalizers_and_deletion(pair: Pair) -> None:
    body = pipeline('f')
    body['metadata']['finalizers'] = ['imagescan.io/finalizer']
    assert_same(pair.send('POST', pair.path(), body))
    marked = assert_same(pair.send('DELETE', pair.path('f')))
    assert marked[1]['metadata']['deleting'] and marked[1]['metadata']['generation'] == 2
    assert_same(pair.send('DELETE', pair.path('f')))  # again: a no-op
    assert_same(pair.send('PATCH', pair.path('f'), {'metadata': {'finalizers': ['imagescan.io/finalizer', 'x/y']}},
                          content_type=MERGE))  # 422: no new finalizers while deleting
    assert_same(pair.send('PATCH', pair.path('f'), {'metadata': {'finalizers': None}}, content_type=MERGE))
    assert_same(pair.send('GET', pair.path('f')))  # 404


def test_error_statuses(pair: Pair) -> None:
    assert_same(pair.send('GET', pair.path('missing')))  # 404
    assert_same(pair.send('DELETE', pair.path('missing')))
    assert_same(pair.send('POST', pair.path(), pipeline('e')))
    assert_same(pair.send('POST', pair.path(), pipeline('e')))  # 409 AlreadyExists
    stale = {**pipeline('e'), 'metadata': {'name': 'e', 'resourceVersion': '1'}}
    assert_same(pair.send('PUT', pair.path('e'), stale))  # 409 Conflict
    invalid = pipeline('bad', pipelineArn=ARN, managementPolicy='Sometimes', findings={'top': 99})
    answer = assert_same(pair.send('POST', pair.path(), invalid))  # 422 Invalid, every cause
    assert answer[0] == 422 and [cause[1] for cause in answer[-1]] == [
        '<nil>', 'spec.findings.top', 'spec.managementPolicy']  # <nil>: CEL rules not evaluated
    assert_same(pair.send('POST', pair.path(), {**pipeline('x'), 'metadata': {'name': 'Not_A_Name'}}))
    assert_same(pair.send('GET', f'/apis/{GROUP}/{VERSION}/namespaces/{pair.namespace}/nothings'))


def test_table_output(pair: Pair) -> None:
    pair.send('POST', pair.path(), pipeline('t'))
    status = {'status': {
        'scanning': {'enabled': True},
        'conditions': [{'type': 'Ready', 'status': 'True', 'reason': 'Scanned',
                        'lastTransitionTime': '2024-01-01T00:00:00Z'}],
        'findings': {'latestImage': {'arn': 'x', 'version': '1.0.0/3',
                                     'severityCounts': {'critical': 3, 'high': 7, 'total': 48}}}}}
    pair.send('PATCH', pair.path('t', 'status'), status, content_type=MERGE)
    pair.send('POST', pair.path(), pipeline('u'))
    for path in (pair.path(), pair.path('t')):
        real, embedded = (answer[1] for answer in pair.send('GET', path, accept=TABLE))
        for key in ('kind', 'apiVersion', 'columnDefinitions'):
            assert embedded[key] == real[key], key
        ages = [name for name, column in enumerate(real['columnDefinitions']) if column['name'] == 'Age']
        cells = [[[cell for index, cell in enumerate(row['cells']) if index not in ages] for row in table['rows']]
                 for table in (real, embedded)]
        assert cells[1] == cells[0]
        assert [essence(row['object']) for row in embedded['rows']] == [essence(row['object']) for row in real['rows']]
    assert [column['name'] for column in real['columnDefinitions']][:7] == [
        'Name', 'Scanning', 'Critical', 'High', 'Total', 'Ready', 'Age']


def test_discovery(servers: tuple[Server, Server]) -> None:
    real, embedded = (server.ok('GET', '/apis') for server in servers)
    group = [[entry for entry in listing['groups'] if entry['name'] == GROUP] for listing in (real, embedded)]
    assert group[1] == group[0] and group[0]
    for path in (f'/apis/{GROUP}', f'/apis/{GROUP}/{VERSION}'):
        real, embedded = (server.ok('GET', path) for server in servers)
        for body in (real, embedded):
            for resource in body.get('resources', []):
                resource['verbs'] = sorted(resource['verbs'])
            body.get('resources', []).sort(key=lambda resource: resource['name'])
        assert embedded == real, path


def test_openapi_v3(servers: tuple[Server, Server]) -> None:
    indexes = [server.ok('GET', '/openapi/v3') for server in servers]
    assert all(f'apis/{GROUP}/{VERSION}' in index['paths'] for index in indexes)
    documents = [server.ok('GET', f'/openapi/v3/apis/{GROUP}/{VERSION}') for server in servers]
    name = f'io.imagescan.{VERSION}.ImagePipeline'
    schemas = [document['components']['schemas'][name] for document in documents]
    assert schemas[1] == schemas[0]
    assert sorted(documents[1]['paths']) == sorted(documents[0]['paths'])
    assert 'x-kubernetes-validations' in schemas[0]['properties']['spec']


# --- The differences the issue found, now the same on both ----------------------------------------------


def test_a_pipeline_without_arn_or_name_is_refused_by_the_cel_rule(pair: Pair) -> None:
    answer = assert_same(pair.send('POST', pair.path(), pipeline('none', region='us-east-1')))
    assert answer[0] == 422 and answer[-1][0][1] == 'spec'
    assert_same(pair.send('POST', pair.path(), pipeline('named', pipelineName='web')))
    assert_same(pair.send('PATCH', pair.path('named'), {'spec': {'pipelineName': None}}, content_type=MERGE))
    # A blocking schema error: the real server does not evaluate the rules and says so.
    assert_same(pair.send('POST', pair.path(), pipeline('typed', region=7)))


def test_annotations_over_256_kib_are_refused(pair: Pair) -> None:
    body = pipeline('big')
    body['metadata']['annotations'] = {'a': 'x' * (128 * 1024), 'b': 'y' * (128 * 1024)}
    answer = assert_same(pair.send('POST', pair.path(), body))
    assert answer[0] == 422
    body['metadata']['annotations'] = {'a': 'x' * (250 * 1024)}
    assert_same(pair.send('POST', pair.path(), body))


def test_large_objects_up_to_etcds_limit_are_accepted(pair: Pair) -> None:
    def sized(name: str, kib: int) -> Obj:
        # Labels: the spec's strings are bounded by the CRD, annotations by 256 KiB; labels are not, in total.
        return pipeline(name, labels={f'l{i:06d}': 'v' * 63 for i in range(kib * 1024 // 80)})
    answer = assert_same(pair.send('POST', pair.path(), sized('k560', 560)))
    assert answer[0] == 201
    assert_same(pair.send('POST', pair.path(), sized('k1200', 1200)))  # over aiohttp's default 1 MiB
    assert_same(pair.send('POST', pair.path(), sized('k1700', 1700)))  # 500: etcd's request limit
    # 413: the request limit. kube-apiserver answers 413 or, when it stops reading first, closes the
    # connection before the whole body is sent (the client sees a broken pipe): refused either way.
    try:
        real: Any = pair.real.http('POST', pair.path(), sized('k3200', 3200))[0]
    except (urllib.error.URLError, ConnectionError):
        real = 413
    assert real == 413
    assert pair.embedded.http('POST', pair.path(), sized('k3200', 3200))[0] == 413


def test_an_arn_ending_in_a_newline_is_refused(pair: Pair) -> None:
    answer = assert_same(pair.send('POST', pair.path(), pipeline('nl', pipelineArn=ARN + '\n')))
    assert answer[0] == 422


def test_a_crd_describing_metadata_is_refused(servers: tuple[Server, Server]) -> None:
    def crd(metadata: Obj) -> Obj:
        return {'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
                'metadata': {'name': 'widgets.differential.io'},
                'spec': {'group': 'differential.io', 'scope': 'Namespaced',
                         'names': {'plural': 'widgets', 'kind': 'Widget'},
                         'versions': [{'name': 'v1', 'served': True, 'storage': True, 'schema': {
                             'openAPIV3Schema': {'type': 'object', 'properties': {'metadata': metadata}}}}]}}
    real, embedded = servers
    for metadata in ({'type': 'object', 'description': 'meta'},
                     {'type': 'object', 'properties': {'labels': {'type': 'object'}}}):
        answer = assert_same((real.http('POST', CRDS, crd(metadata)), embedded.http('POST', CRDS, crd(metadata))))
        assert answer[0] == 422


def test_namespace_deletion_waits_for_finalizers(pair: Pair) -> None:
    body = pipeline('kept')
    body['metadata']['finalizers'] = ['imagescan.io/finalizer']
    pair.send('POST', pair.path(), body)
    pair.send('POST', pair.path(), pipeline('plain'))
    deleting = assert_same(pair.send('DELETE', f'/api/v1/namespaces/{pair.namespace}'))
    assert deleting[1]['status']['phase'] == 'Terminating'
    assert deleting[1]['spec'] == {'finalizers': ['kubernetes']}
    for server in pair.both:  # the namespace controller runs a few seconds later in the real control plane
        wait_until(lambda server=server: server.http('GET', pair.path('plain'))[0] == 404)
        wait_until(lambda server=server: server.ok('GET', pair.path('kept'))['metadata'].get('deletionTimestamp'))
    assert_same(pair.send('GET', pair.path('kept')))
    real, embedded = pair.send('GET', f'/api/v1/namespaces/{pair.namespace}')
    real[1]['status'].pop('conditions', None)  # see KNOWN_DIFFERENCES['synchronous-namespace-deletion']
    namespace = assert_same((real, embedded))
    assert namespace[1]['status']['phase'] == 'Terminating'
    assert_same(pair.send('POST', pair.path(), pipeline('late')))  # 403 NamespaceTerminating
    assert_same(pair.send('PATCH', pair.path('kept'), {'metadata': {'finalizers': None}}, content_type=MERGE))
    for server in pair.both:
        wait_until(lambda server=server: server.http('GET', f'/api/v1/namespaces/{pair.namespace}')[0] == 404)


def _gadgets_crd() -> Obj:
    return {'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
            'metadata': {'name': 'gadgets.differential.io'},
            'spec': {'group': 'differential.io', 'scope': 'Namespaced',
                     'names': {'plural': 'gadgets', 'singular': 'gadget', 'kind': 'Gadget', 'shortNames': ['gd']},
                     'versions': [{'name': 'v1', 'served': True, 'storage': True, 'schema': {'openAPIV3Schema': {
                         'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}}}]}}


def test_crd_deletion_while_objects_exist(pair: Pair) -> None:
    gadgets = f'/apis/differential.io/v1/namespaces/{pair.namespace}/gadgets'
    for server in pair.both:
        server.ok('POST', CRDS, _gadgets_crd())
        wait_until(lambda server=server: server.http('GET', gadgets)[0] == 200)
    pair.send('POST', gadgets, {'apiVersion': 'differential.io/v1', 'kind': 'Gadget', 'metadata': {'name': 'plain'}})
    pair.send('POST', gadgets, {'apiVersion': 'differential.io/v1', 'kind': 'Gadget',
                                'metadata': {'name': 'kept', 'finalizers': ['x.io/f']}})
    pair.send('DELETE', f'{CRDS}/gadgets.differential.io')
    for server in pair.both:
        wait_until(lambda server=server: names(server.http('GET', gadgets)) == ['kept'])
    crds = [answer[1] for answer in pair.send('GET', f'{CRDS}/gadgets.differential.io')]
    assert [crd['metadata']['finalizers'] for crd in crds] == [['customresourcecleanup.apiextensions.k8s.io']] * 2
    assert [[c['type'] for c in crd['status']['conditions'] if c['status'] == 'True'] for crd in crds] == [
        ['NamesAccepted', 'Established', 'Terminating']] * 2
    assert_same(pair.send('GET', f'{gadgets}/kept'))
    assert_same(pair.send('POST', gadgets, {'apiVersion': 'differential.io/v1', 'kind': 'Gadget',
                                            'metadata': {'name': 'late'}}))  # 403
    listings = [server.ok('GET', '/apis/differential.io/v1')['resources'] for server in pair.both]
    assert [sorted(listing[0]['verbs']) for listing in listings] == [
        ['delete', 'deletecollection', 'get', 'list', 'watch']] * 2
    assert_same(pair.send('PATCH', f'{gadgets}/kept', {'metadata': {'finalizers': None}}, content_type=MERGE))
    for server in pair.both:
        wait_until(lambda server=server: server.http('GET', f'{CRDS}/gadgets.differential.io')[0] == 404)


# --- A cluster-scoped custom resource: InspectorActivation ----------------------------------------------


def test_cluster_scoped_create_get_and_list_with_selectors(cluster_pair: Pair) -> None:
    pair = cluster_pair
    created = assert_same(pair.send('POST', pair.cluster_path(), activation(pair, 'web', labels={'tier': 'web'})))
    assert created[0] == 201 and 'namespace' not in created[1]['metadata']
    assert_same(pair.send('POST', pair.cluster_path(), activation(pair, 'db', labels={'tier': 'db'},
                                                                  resourceTypes=['ECR'])))
    assert_same(pair.send('GET', pair.cluster_path('web')))
    mine = f'labelSelector=test%3D{pair.namespace}'
    for query in (mine, f'{mine},tier%3Dweb', f'{mine},tier%20in%20(web,db)', f'{mine},!tier', f'{mine},tier!%3Ddb',
                  f'fieldSelector=metadata.name%3D{pair.own("db")}'):
        real, embedded = pair.send('GET', f'{pair.cluster_path()}?{query}')
        assert names(embedded) == names(real), query
        assert real[1]['kind'] == embedded[1]['kind'] == 'InspectorActivationList'
    assert names(real) == [pair.own('db')]
    # No namespace to select by: 400, as for any field but metadata.name.
    assert_same(pair.send('GET', f'{pair.cluster_path()}?fieldSelector=metadata.namespace%3Dx'))
    assert_same(pair.send('GET', f'{pair.cluster_path()}?fieldSelector=spec.region%3Deu-west-1'))


def test_cluster_scoped_status_subresource_and_generation(cluster_pair: Pair) -> None:
    pair = cluster_pair
    body = {**activation(pair, 's'), 'status': {'region': 'ignored on create'}}
    assert_same(pair.send('POST', pair.cluster_path(), body))
    steps: list[tuple[str, Any]] = [
        ('status', {'spec': {'resyncInterval': '20m'}, 'status': {'region': 'eu-west-1'}}),  # spec ignored
        ('', {'status': {'accountId': '123456789012'}}),  # status ignored
        ('', {'metadata': {'labels': {'a': 'b'}}}),  # no generation bump
        ('', {'spec': {'resyncInterval': '20m'}}),  # generation 2
        ('status', {'status': {'observedGeneration': 2}}),
    ]
    generations = []
    for sub, patch in steps:
        answer = assert_same(pair.send('PATCH', pair.cluster_path('s', sub), patch, content_type=MERGE))
        generations.append(answer[1]['metadata']['generation'])
    assert generations == [1, 1, 1, 2, 2]
    real = assert_same(pair.send('GET', pair.cluster_path('s', 'status')))
    assert real[1]['status'] == {'region': 'eu-west-1', 'observedGeneration': 2}
    for server in pair.both:  # PUT with each server's own resourceVersion
        fresh = server.ok('GET', pair.cluster_path('s'))
        replaced = {**fresh, 'spec': {'region': 'us-east-1'}, 'status': {'region': 'put'}}
        status, answer = server.http('PUT', pair.cluster_path('s'), replaced)
        assert status == 200 and answer['spec'] == {'region': 'us-east-1'}, server.name
        assert answer['status']['region'] == 'eu-west-1' and answer['metadata']['generation'] == 3, server.name
    # Without a resourceVersion a custom resource is not replaced: 422 (the registry's, naming the resource).
    assert_same(pair.send('PUT', pair.cluster_path('s'), activation(pair, 's')))
    assert_same(pair.send('PUT', pair.cluster_path('s', 'status'), activation(pair, 's')))


def test_cluster_scoped_merge_patch(cluster_pair: Pair) -> None:
    pair = cluster_pair
    pair.send('POST', pair.cluster_path(), activation(pair, 'p'))
    assert_same(pair.send('PATCH', pair.cluster_path('p'), {'spec': {'resourceTypes': ['EC2', 'LAMBDA']},
                                                            'metadata': {'labels': {'a': 'b'}}}, content_type=MERGE))
    assert_same(pair.send('PATCH', pair.cluster_path('p'), {'metadata': {'labels': {'a': None}}}, content_type=MERGE))
    assert_same(pair.send('PATCH', pair.cluster_path('p'), {'spec': {'region': None}}, content_type=MERGE))
    for refused in ({'managementPolicy': 'Sometimes'},  # enum
                    {'region': 'mars-north-1'},  # pattern
                    {'resyncInterval': '200h'},  # CEL rule
                    {'resourceTypes': ['EC2', 'EC2']},  # list-type set
                    {'roleArn': 'arn:aws:iam::123:role/x', 'externalId': 'x'}):  # two patterns
        answer = assert_same(pair.send('PATCH', pair.cluster_path('p'), {'spec': refused}, content_type=MERGE))
        assert answer[0] == 422, refused
    assert_same(pair.send('PATCH', pair.cluster_path('p'), {'metadata': {'labels': {'a': 'c'}}},  # 415 on a CR
                          content_type='application/strategic-merge-patch+json'))


def test_cluster_scoped_finalizers_and_deletion(cluster_pair: Pair) -> None:
    pair = cluster_pair
    body = activation(pair, 'f')
    body['metadata']['finalizers'] = ['imagescan.io/finalizer']
    assert_same(pair.send('POST', pair.cluster_path(), body))
    marked = assert_same(pair.send('DELETE', pair.cluster_path('f')))
    assert marked[1]['metadata']['deleting'] and marked[1]['metadata']['generation'] == 2
    assert_same(pair.send('DELETE', pair.cluster_path('f')))  # again: a no-op
    assert_same(pair.send('PATCH', pair.cluster_path('f'), {'status': {'region': 'eu-west-1'}},
                          content_type=MERGE, ))  # status ignored, still deleting
    assert_same(pair.send('PATCH', pair.cluster_path('f'),
                          {'metadata': {'finalizers': ['imagescan.io/finalizer', 'x/y']}},
                          content_type=MERGE))  # 422: no new finalizers while deleting
    assert_same(pair.send('PATCH', pair.cluster_path('f'), {'metadata': {'finalizers': None}}, content_type=MERGE))
    assert_same(pair.send('GET', pair.cluster_path('f')))  # 404
    assert_same(pair.send('POST', pair.cluster_path(), activation(pair, 'g')))
    assert_same(pair.send('DELETE', pair.cluster_path('g')))  # no finalizers: gone at once
    assert_same(pair.send('GET', pair.cluster_path('g')))


def test_cluster_scoped_error_statuses(cluster_pair: Pair) -> None:
    pair = cluster_pair
    assert_same(pair.send('GET', pair.cluster_path('missing')))  # 404
    assert_same(pair.send('DELETE', pair.cluster_path('missing')))
    assert_same(pair.send('PATCH', pair.cluster_path('missing'), {'spec': {}}, content_type=MERGE))
    assert_same(pair.send('POST', pair.cluster_path(), activation(pair, 'e')))
    answer = assert_same(pair.send('POST', pair.cluster_path(), activation(pair, 'e')))  # 409 AlreadyExists
    assert answer[:4] == (409, 'Status', 409, 'AlreadyExists')
    stale = activation(pair, 'e')
    stale['metadata']['resourceVersion'] = '1'
    answer = assert_same(pair.send('PUT', pair.cluster_path('e'), stale))  # 409 Conflict
    assert answer[:4] == (409, 'Status', 409, 'Conflict')
    invalid = activation(pair, 'bad', region='nowhere', managementPolicy='Sometimes', resourceTypes=[])
    answer = assert_same(pair.send('POST', pair.cluster_path(), invalid))  # 422 Invalid, every cause
    assert answer[0] == 422 and [cause[1] for cause in answer[-1]] == [  # sorted by reason, then field
        '<nil>', 'spec.region', 'spec.resourceTypes', 'spec.managementPolicy']  # <nil>: CEL rules not evaluated
    no_spec = activation(pair, 'nospec')
    del no_spec['spec']
    assert_same(pair.send('POST', pair.cluster_path(), no_spec))  # 422 Required
    assert_same(pair.send('GET', f'/apis/{GROUP}/{VERSION}/nothings'))  # the mux's plain 404


def test_cluster_scoped_table_output(cluster_pair: Pair) -> None:
    pair = cluster_pair
    pair.send('POST', pair.cluster_path(), activation(pair, 't'))
    status = {'status': {
        'region': 'eu-west-1', 'accountId': '123456789012', 'state': 'ENABLED',
        'resourceState': {'ec2': {'status': 'ENABLED'}, 'ecr': {'status': 'ENABLING'}},
        'conditions': [  # Ready is not the first: the column's filter must find it
            {'type': 'Reconciling', 'status': 'True', 'reason': 'Enabling',
             'lastTransitionTime': '2024-01-01T00:00:00Z'},
            {'type': 'Ready', 'status': 'False', 'reason': 'EcrEnabling',
             'lastTransitionTime': '2024-01-01T00:00:00Z'}]}}
    pair.send('PATCH', pair.cluster_path('t', 'status'), status, content_type=MERGE)
    pair.send('POST', pair.cluster_path(), activation(pair, 'u'))  # no status: empty cells
    for path in (f'{pair.cluster_path()}?labelSelector=test%3D{pair.namespace}', pair.cluster_path('t')):
        real, embedded = (answer[1] for answer in pair.send('GET', path, accept=TABLE))
        for key in ('kind', 'apiVersion', 'columnDefinitions'):
            assert embedded[key] == real[key], key
        ages = [index for index, column in enumerate(real['columnDefinitions']) if column['name'] == 'Age']
        cells = [[[cell for index, cell in enumerate(row['cells']) if index not in ages] for row in table['rows']]
                 for table in (real, embedded)]
        assert cells[1] == cells[0]
        assert [essence(row['object']) for row in embedded['rows']] == [essence(row['object']) for row in real['rows']]
    assert cells[0] == [[pair.own('t'), 'eu-west-1', '123456789012', 'ENABLED', 'ENABLING', 'False', 'EcrEnabling']]
    assert [column['name'] for column in real['columnDefinitions']] == [
        'Name', 'Region', 'Account', 'EC2', 'ECR', 'Ready', 'Age', 'Reason']


def test_cluster_scoped_discovery(servers: tuple[Server, Server]) -> None:
    entries = [[resource for resource in server.ok('GET', f'/apis/{GROUP}/{VERSION}')['resources']
                if resource['name'].startswith(ACTIVATIONS)] for server in servers]
    for listing in entries:
        for resource in listing:
            resource['verbs'] = sorted(resource['verbs'])
    assert entries[1] == entries[0]
    assert [(entry['name'], entry['namespaced']) for entry in entries[0]] == [
        (ACTIVATIONS, False), (f'{ACTIVATIONS}/status', False)]
    assert entries[0][0]['shortNames'] == ['inspact'] and entries[0][0]['categories'] == ['imagescan']


def test_cluster_scoped_openapi_v3(servers: tuple[Server, Server]) -> None:
    documents = [server.ok('GET', f'/openapi/v3/apis/{GROUP}/{VERSION}') for server in servers]
    paths = [sorted(path for path in document['paths'] if ACTIVATIONS in path) for document in documents]
    assert paths[1] == paths[0] == [f'/apis/{GROUP}/{VERSION}/{ACTIVATIONS}',
                                    f'/apis/{GROUP}/{VERSION}/{ACTIVATIONS}/{{name}}',
                                    f'/apis/{GROUP}/{VERSION}/{ACTIVATIONS}/{{name}}/status']
    name = f'io.imagescan.{VERSION}.InspectorActivation'
    schemas = [document['components']['schemas'][name] for document in documents]
    assert schemas[1] == schemas[0]
    assert 'x-kubernetes-validations' in schemas[0]['properties']['spec']['properties']['resyncInterval']
    for document in documents:  # the object's URL takes a name, and no namespace
        parameters = document['paths'][f'/apis/{GROUP}/{VERSION}/{ACTIVATIONS}/{{name}}'].get('parameters', [])
        assert 'name' in [parameter.get('name') for parameter in parameters]
        assert 'namespace' not in json.dumps(parameters)


def test_a_cluster_scoped_object_sent_to_a_namespaced_url(cluster_pair: Pair) -> None:
    pair = cluster_pair
    namespaced = f'/apis/{GROUP}/{VERSION}/namespaces/{pair.namespace}/{ACTIVATIONS}'
    one = activation(pair, 'n')
    for method, path, body in (('POST', namespaced, one), ('GET', namespaced, None),
                               ('GET', f'{namespaced}?watch=true&timeoutSeconds=1', None),
                               ('DELETE', namespaced, None), ('GET', f'{namespaced}/{pair.own("n")}', None),
                               ('PUT', f'{namespaced}/{pair.own("n")}', one),
                               ('PATCH', f'{namespaced}/{pair.own("n")}/status', {}),
                               ('DELETE', f'{namespaced}/{pair.own("n")}', None)):
        answers = pair.send(method, path, body, content_type=MERGE if method == 'PATCH' else 'application/json')
        assert answers[0] == answers[1] == (404, '404 page not found\n'), (method, path)
    assert_same(pair.send('GET', pair.cluster_path('n')))  # 404: nothing was created
    # A namespaced resource's object without its namespace: the same plain 404.
    answers = pair.send('GET', f'/apis/{GROUP}/{VERSION}/{PLURAL}/anything')
    assert answers[0] == answers[1] == (404, '404 page not found\n')


def test_a_namespace_in_the_metadata_of_a_cluster_scoped_object_is_cleared(cluster_pair: Pair) -> None:
    pair = cluster_pair
    for name, namespace in (('existing', pair.namespace), ('missing', 'no-such-namespace')):
        body = activation(pair, name)
        body['metadata']['namespace'] = namespace
        created = assert_same(pair.send('POST', pair.cluster_path(), body))
        assert created[0] == 201 and 'namespace' not in created[1]['metadata']
    patched = assert_same(pair.send('PATCH', pair.cluster_path('existing'), {'metadata': {'namespace': 'x'}},
                                    content_type=MERGE))
    assert 'namespace' not in patched[1]['metadata']
    for server in pair.both:  # PUT with each server's own resourceVersion
        fresh = server.ok('GET', pair.cluster_path('existing'))
        fresh['metadata']['namespace'] = pair.namespace
        status, answer = server.http('PUT', pair.cluster_path('existing'), fresh)
        assert status == 200 and 'namespace' not in answer['metadata'], (server.name, status, answer)
    # Listed at the cluster URL only, without a namespace.
    real, embedded = pair.send('GET', f'{pair.cluster_path()}?labelSelector=test%3D{pair.namespace}')
    assert [essence(item) for item in embedded[1]['items']] == [essence(item) for item in real[1]['items']]
    assert not any('namespace' in item['metadata'] for item in real[1]['items'])


# --- CRD patterns: what Go's regexp compiles ------------------------------------------------------------

# Refused by a cluster (RE2 has no lookaround, backreference, possessive repeat, repeat count above 1000...)
# and accepted (RE2-only syntax, repeats at the limit). Each is sent to both servers in a CRD of its own.
PATTERNS = (
    '^[a-z]{2,1224}$', 'a{1001}', '(a{500}){3}', '^(?=a)b$', '^(?!a)$', '(?<=a)b', '(?#c)', r'^(a)\1$', r'\8',
    r'\Z', r'\G', r'\h', r'\C', 'a++', 'a**', 'x{2}{3}', 'a*??', '*', 'a|+', '(', ')', '[a', '[z-a]', '[[:foo:]]',
    r'\pX', r'\x4', r'\x{zz}', '(?i', '(?-)', '(?P=x)', '(?<1x>a)', 'a\\',
    'a{1000}', '((a{10}){10}){10}', '[[:alpha:]]', r'\p{Greek}', r'\p{greek}', r'\p{Letter}', r'\pL', r'\p{^L}',
    r'\z', '(?P<x>a)', '(?<x>a)', '(?i)a', '(?i-s:a.)', 'a{,5}', r'\Qa.b\E', r'\x{41}', r'\12', r'[\d-z]', 'a*?',
    '^$', r'[\]]', '[]a]', r'\_',
)


def _pattern_crd(plural: str, version_patterns: list[Obj]) -> Obj:
    return {'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
            'metadata': {'name': f'{plural}.differential.io'},
            'spec': {'group': 'differential.io', 'scope': 'Cluster', 'names': {'plural': plural, 'kind': 'Pattern'},
                     'versions': [{'name': f'v{index + 1}', 'served': True, 'storage': index == 0, 'schema': {
                         'openAPIV3Schema': {'type': 'object', 'properties': {'spec': spec}}}}
                                  for index, spec in enumerate(version_patterns)]}}


def _string_with(pattern: str) -> Obj:
    return {'type': 'object', 'properties': {'a': {'type': 'string', 'pattern': pattern}}}


def _send_crd(servers: tuple[Server, Server], crd: Obj) -> Any:
    answers = [server.http('POST', CRDS, crd) for server in servers]
    for server in servers:
        server.http('DELETE', f'{CRDS}/{crd["metadata"]["name"]}')
    if answers[0][0] == 201:  # accepted: the CRDs differ in defaults and status, compared elsewhere
        assert answers[1][0] == 201, answers[1]
        return answers[0]
    return assert_same((answers[0], answers[1]))


@pytest.mark.parametrize('index', range(len(PATTERNS)), ids=lambda index: PATTERNS[index])
def test_a_crd_whose_pattern_re2_cannot_compile_is_refused(servers: tuple[Server, Server], index: int) -> None:
    answer = _send_crd(servers, _pattern_crd(f'patterns{index}', [_string_with(PATTERNS[index])]))
    if answer[0] == 422:
        assert [cause[1] for cause in answer[-1]] == [
            'spec.validation.openAPIV3Schema.properties[spec].properties[a].pattern']


def test_pattern_errors_are_reported_where_they_are(servers: tuple[Server, Server]) -> None:
    nested = {'type': 'object', 'properties': {
        'l': {'type': 'array', 'items': {'type': 'string', 'pattern': '(?=a)'}},
        'm': {'type': 'object', 'additionalProperties': {'type': 'string', 'pattern': r'\1'}},
        'ok': {'type': 'string', 'pattern': '^[a-z]{1,1000}$'}}}
    answer = _send_crd(servers, _pattern_crd('patternsnested', [nested]))
    assert answer[0] == 422 and len(answer[-1]) == 2
    # Two versions with schemas of their own: each is named by its index.
    answer = _send_crd(servers, _pattern_crd('patternsversions', [_string_with('(?!a)'), _string_with('a{2000}')]))
    assert [cause[1].split('.')[0:2] for cause in answer[-1]] == [['spec', 'versions[0]'], ['spec', 'versions[1]']]


# --- Differences kept on purpose ------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """A difference kept on purpose: why, and a check that returns True while it still exists."""

    reason: str
    still_there: Callable[[Pair], bool]


def _server_side_apply(pair: Pair) -> bool:
    body = pipeline('ssa')
    real, embedded = pair.send('PATCH', f'{pair.path("ssa")}?fieldManager=t', body,
                               content_type='application/apply-patch+yaml')
    return real[0] == 201 and 'managedFields' in real[1]['metadata'] and embedded[0] == 415


def _strategic_merge_on_builtins(pair: Pair) -> bool:
    service = {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 's'},
               'spec': {'ports': [{'name': 'a', 'port': 80}]}}
    path = f'/api/v1/namespaces/{pair.namespace}/services'
    pair.send('POST', path, service)
    patch = {'spec': {'ports': [{'name': 'b', 'port': 81}]}}
    real, embedded = pair.send('PATCH', f'{path}/s', patch, content_type='application/strategic-merge-patch+json')
    return len(real[1]['spec']['ports']) == 2 and len(embedded[1]['spec']['ports']) == 1  # merged by key


def _protobuf(pair: Pair) -> bool:
    real, embedded = pair.send('GET', f'/api/v1/namespaces/{pair.namespace}/configmaps',
                               accept='application/vnd.kubernetes.protobuf')
    return real[0] == 200 and isinstance(real[1], str) and isinstance(embedded[1], dict)


def _authentication(pair: Pair) -> bool:
    status, _ = pair.real.send('GET', '/api/v1/namespaces', None, content_type='application/json',
                               accept='application/json', token='not-a-token')
    return status == 401 and pair.embedded.http('GET', '/api/v1/namespaces')[0] == 200


def _custom_crd(pair: Pair, plural: str, rule: Obj) -> tuple[Answer, Answer]:
    crd = _gadgets_crd()
    crd['metadata']['name'] = f'{plural}.differential.io'
    crd['spec']['names'] = {'plural': plural, 'kind': plural.capitalize()}
    crd['spec']['versions'][0]['schema']['openAPIV3Schema'] = {'type': 'object', 'properties': {'spec': {
        'type': 'object', 'x-kubernetes-validations': [rule], 'properties': {
            'a': {'type': 'string'}, 'l': {'type': 'array', 'items': {'type': 'string'}}}}}}
    answers = pair.send('POST', CRDS, crd)
    pair.send('DELETE', f'{CRDS}/{plural}.differential.io')
    return answers


def _cel_cost(pair: Pair) -> bool:
    real, embedded = _custom_crd(pair, 'costs', {'rule': 'self.l.all(x, self.l.all(y, x.contains(y)))'})
    return real[0] == 422 and 'cost' in real[1]['message'] and embedded[0] == 201


def _cel_type_check(pair: Pair) -> bool:
    real, embedded = _custom_crd(pair, 'checks', {'rule': 'self.nope == 1'})
    return real[0] == 422 and embedded[0] == 201


def _builtin_field_selectors(pair: Pair) -> bool:
    real, embedded = pair.send('GET', f'/api/v1/namespaces/{pair.namespace}/configmaps?fieldSelector=data.x%3Dy')
    return real[0] == 400 and embedded[0] == 200


def _builtin_tables(pair: Pair) -> bool:
    real, embedded = pair.send('GET', f'/api/v1/namespaces/{pair.namespace}/configmaps', accept=TABLE)
    columns = [[column['name'] for column in answer[1]['columnDefinitions']] for answer in (real, embedded)]
    return columns == [['Name', 'Data', 'Age'], ['Name', 'Created At']]


def _synchronous_namespace_deletion(pair: Pair) -> bool:
    pair.send('DELETE', f'/api/v1/namespaces/{pair.namespace}')
    real, embedded = pair.send('GET', f'/api/v1/namespaces/{pair.namespace}')
    return real[0] == 200 and 'conditions' not in embedded[1].get('status', {})


def _unicode_script_names(pair: Pair) -> bool:
    crd = _pattern_crd('patternsscripts', [_string_with(r'\p{Foo}')])
    real, embedded = (server.http('POST', CRDS, crd)[0] for server in pair.both)
    for server in pair.both:
        server.http('DELETE', f'{CRDS}/patternsscripts.differential.io')
    return real == 422 and embedded == 201


def _object_meta_schema(pair: Pair) -> bool:
    real, embedded = (answer[1]['components']['schemas'] for answer in pair.send(
        'GET', f'/openapi/v3/apis/{GROUP}/{VERSION}'))
    meta = 'io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry'
    return meta in real and meta not in embedded


KNOWN_DIFFERENCES: dict[str, Difference] = {
    'server-side-apply': Difference(
        'Needs managedFields tracking and field ownership; kopf, the operator and `kubectl apply` (client-side) '
        'do not use it. Refused with 415 so that a client falls back or fails loudly.', _server_side_apply),
    'strategic-merge-on-builtins': Difference(
        'Strategic merge needs the Go struct tags (patchMergeKey) of every built-in kind; treated as a merge '
        'patch (lists replaced). Custom resources refuse it with 415, as the real server.',
        _strategic_merge_on_builtins),
    'protobuf': Difference(
        'Only JSON (and YAML bodies) are served; clients ask for protobuf with a JSON fallback.', _protobuf),
    'authentication-and-rbac': Difference(
        'The sandbox has a single user; any or no token is the admin. RBAC is tested on the real control '
        'plane only.', _authentication),
    'cel-cost-estimation': Difference(
        'The CEL cost estimator and budgets are those of the Go implementation; rules are evaluated without '
        'them.', _cel_cost),
    'cel-type-checking': Difference(
        'Rules are compiled (syntax) but not type-checked against the schema when the CRD is stored; an '
        'undefined field fails at evaluation instead.', _cel_type_check),
    'builtin-field-selectors': Difference(
        'Each built-in kind has its own field labels (spec.nodeName, involvedObject.name...); any dotted '
        'path is accepted for them. Custom resources accept only metadata.name/namespace, as the real server.',
        _builtin_field_selectors),
    'builtin-table-columns': Difference(
        'Built-in kinds get the generic Name/Created At table, not their own printers (CRDs print alike).',
        _builtin_tables),
    'synchronous-namespace-deletion': Difference(
        'The namespace controller runs inside the write: an empty namespace is gone at once (seconds later on '
        'a cluster), and no NamespaceDeletion* conditions are reported.', _synchronous_namespace_deletion),
    'unicode-script-names-in-patterns': Difference(
        'A CRD pattern\'s \\p{Name} is checked against the Unicode categories; Go\'s list of scripts is not '
        'copied, so any name of three letters or more passes as one (\\p{Foo} is accepted).', _unicode_script_names),
    'minimal-object-meta-schema': Difference(
        'OpenAPI documents carry a minimal ObjectMeta (no ManagedFieldsEntry, OwnerReference... schemas); '
        'enough for kubectl explain and validation.', _object_meta_schema),
}


@pytest.mark.parametrize('name', sorted(KNOWN_DIFFERENCES))
def test_known_difference_is_still_there(pair: Pair, name: str) -> None:
    difference = KNOWN_DIFFERENCES[name]
    assert difference.still_there(pair), (
        f'{name} is no longer a difference: remove it from KNOWN_DIFFERENCES ({difference.reason})')
