"""
Canary: which API-server behaviours plain kmock (0.8) still lacks.

``imagescan/apiserver/`` re-implements these on top of kmock. Each probe
below runs against a fresh, PLAIN ``kmock.KubernetesEmulator`` and reports
whether kmock now behaves like the real API server. When kmock is upgraded
and fixes something, this test fails and names the feature: then drop our
workaround for it and remove it from ``KNOWN_KMOCK_GAPS``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import kmock

# What plain kmock 0.8 lacks, compared to a real kube-apiserver.
# (Probed but present in kmock 0.8: json-patch, finalizers-delay-deletion, merge-patch-null-deletes.)
KNOWN_KMOCK_GAPS = [
    'create-returns-201',
    'crd-registers-discovery',
    'crd-schema-pruning',
    'crd-schema-validation-422',
    'error-status-standard-reasons',
    'field-selectors',
    'generate-name',
    'generation-bumps-on-spec-change',
    'json-patch-test-fails-with-422',
    'label-selectors',
    'list-kind-and-apiversion',
    'list-numeric-resource-version',
    'metadata-uid-creation-timestamp-generation',
    'namespace-from-url',
    'namespaces-endpoint',
    'put-replace',
    'request-log-bounded',
    'resource-version',
    'server-side-apply-refused-with-415',
    'stale-resource-version-conflict-409',
    'status-subresource-separation',
    'watch-resume-from-resource-version',
    'watch-timeout-seconds',
]

WIDGETS = '/apis/example.com/v1/namespaces/ns1/widgets'
Client = aiohttp.ClientSession
Probe = Callable[[Client], Awaitable[bool]]
PROBES: dict[str, Probe] = {}


def probe(name: str) -> Callable[[Probe], Probe]:
    def register(fn: Probe) -> Probe:
        PROBES[name] = fn
        return fn
    return register


async def _create(client: Client, name: str = 'w1', **extra: Any) -> tuple[int, Any]:
    body = {'apiVersion': 'example.com/v1', 'kind': 'Widget',
            'metadata': {'name': name, 'namespace': 'ns1', **extra}, 'spec': {'size': 1}}
    async with client.post(WIDGETS, json=body) as response:
        return response.status, await response.json(content_type=None)


async def _patch(client: Client, patch: Any, ctype: str = 'application/merge-patch+json',
                 suffix: str = '') -> tuple[int, Any]:
    async with client.patch(f'{WIDGETS}/w1{suffix}', data=json.dumps(patch),
                            headers={'Content-Type': ctype}) as response:
        return response.status, await response.json(content_type=None)


async def _get(client: Client, url: str) -> tuple[int, Any]:
    async with client.get(url) as response:
        return response.status, await response.json(content_type=None)


@probe('resource-version')
async def _rv(client: Client) -> bool:
    _, obj = await _create(client)
    return str(obj['metadata'].get('resourceVersion', '')).isdigit()


@probe('create-returns-201')
async def _created(client: Client) -> bool:
    return (await _create(client))[0] == 201


@probe('namespace-from-url')
async def _ns_from_url(client: Client) -> bool:
    async with client.post(WIDGETS, json={'metadata': {'name': 'w1'}}) as response:
        obj = await response.json(content_type=None)
    return bool(obj.get('metadata', {}).get('namespace') == 'ns1')


@probe('metadata-uid-creation-timestamp-generation')
async def _meta(client: Client) -> bool:
    _, obj = await _create(client)
    return {'uid', 'creationTimestamp', 'generation'} <= set(obj['metadata'])


@probe('generate-name')
async def _generate_name(client: Client) -> bool:
    async with client.post(WIDGETS, json={'metadata': {'generateName': 'w-'}}) as response:
        obj = await response.json(content_type=None)
    return str(obj.get('metadata', {}).get('name') or '').startswith('w-')


@probe('stale-resource-version-conflict-409')
async def _conflict(client: Client) -> bool:
    await _create(client)
    return (await _patch(client, {'metadata': {'resourceVersion': '999999'}, 'spec': {'x': 1}}))[0] == 409


@probe('json-patch')
async def _json_patch(client: Client) -> bool:
    await _create(client)
    status, obj = await _patch(client, [{'op': 'add', 'path': '/spec/size', 'value': 2}],
                               'application/json-patch+json')
    return status == 200 and obj.get('spec', {}).get('size') == 2


@probe('json-patch-test-fails-with-422')
async def _json_patch_test(client: Client) -> bool:
    await _create(client)
    ops = [{'op': 'test', 'path': '/metadata/resourceVersion', 'value': 'stale'}]
    return (await _patch(client, ops, 'application/json-patch+json'))[0] == 422


@probe('status-subresource-separation')
async def _status(client: Client) -> bool:
    await _create(client)
    _, obj = await _patch(client, {'status': {'ok': True}})
    return 'status' not in obj


@probe('generation-bumps-on-spec-change')
async def _generation(client: Client) -> bool:
    await _create(client)
    _, obj = await _patch(client, {'spec': {'size': 5}})
    return bool(obj.get('metadata', {}).get('generation') == 2)


@probe('put-replace')
async def _put(client: Client) -> bool:
    await _create(client)
    body = {'apiVersion': 'example.com/v1', 'kind': 'Widget', 'metadata': {'name': 'w1'}, 'spec': {}}
    async with client.put(f'{WIDGETS}/w1', json=body) as response:
        obj = await response.json(content_type=None)
    return response.status == 200 and obj.get('spec') == {}


@probe('list-kind-and-apiversion')
async def _list_kind(client: Client) -> bool:
    _, data = await _get(client, WIDGETS)
    return bool(data.get('kind') == 'WidgetList' and data.get('apiVersion') == 'example.com/v1')


@probe('list-numeric-resource-version')
async def _list_rv(client: Client) -> bool:
    _, data = await _get(client, WIDGETS)
    return str(data.get('metadata', {}).get('resourceVersion')).isdigit()


@probe('label-selectors')
async def _labels(client: Client) -> bool:
    await _create(client, 'w1', labels={'app': 'a'})
    await _create(client, 'w2', labels={'app': 'b'})
    _, data = await _get(client, f'{WIDGETS}?labelSelector=app%3Da')
    return [item['metadata']['name'] for item in data.get('items', [])] == ['w1']


@probe('field-selectors')
async def _fields(client: Client) -> bool:
    await _create(client, 'w1')
    await _create(client, 'w2')
    _, data = await _get(client, f'{WIDGETS}?fieldSelector=metadata.name%3Dw2')
    return [item['metadata']['name'] for item in data.get('items', [])] == ['w2']


@probe('watch-resume-from-resource-version')
async def _watch_resume(client: Client) -> bool:
    await _create(client, 'w1')
    _, listing = await _get(client, WIDGETS)
    since = listing.get('metadata', {}).get('resourceVersion', '')
    async with client.get(WIDGETS, params={'watch': 'true', 'resourceVersion': since}) as response:
        await _create(client, 'w2')
        line = await asyncio.wait_for(response.content.readline(), timeout=2)
    return bool(json.loads(line)['object']['metadata']['name'] == 'w2')


@probe('watch-timeout-seconds')
async def _watch_timeout(client: Client) -> bool:
    async with client.get(WIDGETS, params={'watch': 'true', 'timeoutSeconds': '1'}) as response:
        try:
            await asyncio.wait_for(response.read(), timeout=2.5)
        except TimeoutError:
            return False
    return True


@probe('namespaces-endpoint')
async def _namespaces(client: Client) -> bool:
    return (await _get(client, '/api/v1/namespaces'))[0] == 200


async def _create_crd(client: Client) -> None:
    schema = {'type': 'object', 'properties': {'spec': {'type': 'object', 'properties': {
        'color': {'type': 'string', 'enum': ['red', 'blue']}}}}}
    crd = {'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
           'metadata': {'name': 'gadgets.crd.example.com'},
           'spec': {'group': 'crd.example.com', 'scope': 'Namespaced',
                    'names': {'plural': 'gadgets', 'singular': 'gadget', 'kind': 'Gadget'},
                    'versions': [{'name': 'v1', 'served': True, 'storage': True,
                                  'schema': {'openAPIV3Schema': schema}}]}}
    async with client.post('/apis/apiextensions.k8s.io/v1/customresourcedefinitions', json=crd):
        pass


async def _create_gadget(client: Client, spec: dict[str, Any]) -> tuple[int, Any]:
    body = {'apiVersion': 'crd.example.com/v1', 'kind': 'Gadget', 'metadata': {'name': 'g1'}, 'spec': spec}
    async with client.post('/apis/crd.example.com/v1/namespaces/ns1/gadgets', json=body) as response:
        return response.status, await response.json(content_type=None)


@probe('crd-registers-discovery')
async def _crd_discovery(client: Client) -> bool:
    await _create_crd(client)
    _, data = await _get(client, '/apis/crd.example.com/v1')
    return any(res.get('name') == 'gadgets' and res.get('namespaced') is True
               for res in data.get('resources', []))


@probe('crd-schema-pruning')
async def _crd_pruning(client: Client) -> bool:
    await _create_crd(client)
    _, obj = await _create_gadget(client, {'color': 'red', 'junk': 1})
    return bool(obj.get('spec') == {'color': 'red'})


@probe('crd-schema-validation-422')
async def _crd_validation(client: Client) -> bool:
    await _create_crd(client)
    return (await _create_gadget(client, {'color': 'green'}))[0] == 422


@probe('error-status-standard-reasons')
async def _error_reason(client: Client) -> bool:
    status, data = await _get(client, f'{WIDGETS}/absent')
    return status == 404 and data.get('kind') == 'Status' and data.get('reason') == 'NotFound'


@probe('server-side-apply-refused-with-415')
async def _apply(client: Client) -> bool:
    await _create(client)
    return (await _patch(client, {'spec': {}}, 'application/apply-patch+yaml'))[0] == 415


@probe('finalizers-delay-deletion')
async def _finalizers(client: Client) -> bool:
    await _create(client, finalizers=['x/y'])
    async with client.delete(f'{WIDGETS}/w1'):
        pass
    _, marked = await _get(client, f'{WIDGETS}/w1')
    await _patch(client, {'metadata': {'finalizers': None}})
    gone, _ = await _get(client, f'{WIDGETS}/w1')
    return bool(marked.get('metadata', {}).get('deletionTimestamp')) and gone == 404


@probe('merge-patch-null-deletes')
async def _null_deletes(client: Client) -> bool:
    await _create(client, labels={'a': 'b'})
    _, obj = await _patch(client, {'metadata': {'labels': {'a': None}}})
    return 'a' not in (obj.get('metadata', {}).get('labels') or {})


async def _probe_request_log(emulator: kmock.KubernetesEmulator, client: Client) -> bool:
    for _ in range(30):
        await _get(client, WIDGETS)
    return len(list(emulator.requests)) < 30  # the log grows forever: each request gets slower


async def _run_probe(name: str) -> bool:
    emulator = kmock.KubernetesEmulator()
    emulator.resources['example.com/v1/widgets'] = kmock.ResourceInfo(namespaced=True, kind='Widget')
    async with emulator, kmock.Server(emulator) as server, aiohttp.ClientSession(server.url) as client:
        try:
            if name == 'request-log-bounded':
                return await _probe_request_log(emulator, client)
            return await PROBES[name](client)
        except Exception:  # e.g. a 500 with a non-JSON body, or a broken stream: the feature is absent
            return False


async def test_plain_kmock_still_lacks_the_known_features() -> None:
    # Sequentially: kmock's servers patch aiohttp's DNS resolver globally and clash if concurrent.
    names = [*PROBES, 'request-log-bounded']
    results = [await _run_probe(name) for name in names]
    missing = sorted(name for name, present in zip(names, results, strict=True) if not present)
    fixed = sorted(set(KNOWN_KMOCK_GAPS) - set(missing))
    new_gaps = sorted(set(missing) - set(KNOWN_KMOCK_GAPS))
    assert missing == sorted(KNOWN_KMOCK_GAPS), (
        f'kmock changed. Fixed in kmock now (drop our workarounds): {fixed}; newly missing: {new_gaps}'
    )
