"""
The HTTP layer of the embedded Kubernetes API server (tests and ``imagescan sandbox``).

No kube-apiserver can be installed where the tests run, yet the operator must
be exercised for real: kopf, the ``kubernetes`` client and ``kubectl`` talking
HTTP to something that behaves like Kubernetes. This module builds it on
kmock 0.8's ``KubernetesEmulator``:

* kept from kmock: the handler class hierarchy (the aiohttp low-level handler
  protocol), the ``/version`` payload;
* replaced here, and why:

  - the request entry point (``__call__``): kmock appends every request to an
    ever-growing log and re-sorts/filters all reactions per request, so long
    runs get slower and slower; kmock's URL parser also crashes on
    ``/api/v1/namespaces`` (it always expects a namespace name after it);
  - the object store (see :mod:`imagescan.apiserver.store`): kmock's has no
    resourceVersion, so kopf's JSON-patch with a ``test`` op fails with 500;
  - discovery: kmock cannot register CRD-defined resources at runtime and
    reports ``namespaced: null`` for unknown ones, which kubectl rejects;
  - watching: kmock neither resumes from a resourceVersion nor honours
    ``timeoutSeconds``.

:class:`ApiServer` runs it in a background thread with its own event loop, so
that synchronous tests, kopf in another thread, and ``kubectl`` subprocesses
can all use it. Dependencies: stdlib, aiohttp, yaml, kmock only.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import functools
import hashlib
import json
import logging
import pathlib
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import aiohttp.web
import kmock
import yaml

from imagescan.apiserver import admission, objectops, openapi, store, tables

logger = logging.getLogger(__name__)

T = TypeVar('T')

_JSON = 'application/json'
_PATCH_TYPES = ('application/json-patch+json', 'application/merge-patch+json',
                'application/strategic-merge-patch+json')
_WRITES = ('POST', 'PUT', 'PATCH', 'DELETE')
_RW_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch']
_TERMINATING_VERBS = ['delete', 'deletecollection', 'get', 'list', 'watch']  # a CRD being deleted
# The real server's limit on request bodies (3 MiB); objects are limited by etcd, see store.OBJECT_LIMIT.
REQUEST_LIMIT = 3 * 1024 * 1024


@dataclass(frozen=True)
class Route:
    """A resource URL split into its parts (``namespace`` is None for cluster-wide URLs)."""

    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_route(path: str) -> Route | None:
    """Split ``/api(s)/…`` resource URLs; None for discovery and non-resource URLs."""
    parts = [part for part in path.split('/') if part]
    if len(parts) >= 3 and parts[0] == 'api':
        group, version, rest = '', parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == 'apis':
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    # "/namespaces/NS/status" is the namespace's own subresource, not a resource named "status".
    if len(rest) >= 3 and rest[0] == 'namespaces' and rest[2] not in ('status', 'finalize'):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    return Route(group, version, rest[0], namespace,
                 rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None)


def _misrouted(route: Route, rtype: store.ResourceType) -> bool:
    """A custom resource's URL with the wrong scope: a namespace for a cluster-scoped one (any verb: a client
    must not create one there), an object of a namespaced one without its namespace. The CRD handler then
    hands the request to the mux's not-found handler; built-in kinds answer with a Status instead."""
    if not rtype.custom:
        return False
    if rtype.namespaced:
        return route.namespace is None and route.name is not None
    return route.namespace is not None


def _deleted(rtype: store.ResourceType, obj: store.Obj) -> store.Obj:
    """What the real server answers when a custom resource is gone at once: a Status, not the object (one
    still held by finalizers is returned, marked)."""
    return {'apiVersion': 'v1', 'kind': 'Status', 'metadata': {}, 'status': 'Success',
            'details': {**rtype.details(obj['metadata']['name']), 'uid': obj['metadata'].get('uid')}}


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """As the real server: the first 8 bytes of SHA-256 of ``group/version/Kind``, base64."""
    return base64.b64encode(hashlib.sha256(f'{group}/{version}/{kind}'.encode()).digest()[:8]).decode()


def _make_request(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> aiohttp.web.BaseRequest:
    """aiohttp's request, with the real server's body limit instead of aiohttp's 1 MiB."""
    return aiohttp.web.BaseRequest(message, payload, protocol, writer, task, asyncio.get_running_loop(),
                                   client_max_size=REQUEST_LIMIT)


def _json(data: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.json_response(data, status=status)


class KubeApiEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the real API server's semantics (see the module docstring)."""

    def __init__(self, *, history: int = 10_000, service_urls: dict[str, str] | None = None) -> None:
        super().__init__()
        self.store = store.Store(history=history)
        self.admission = admission.Admission(self.store, service_urls=service_urls)
        self.request_count = 0

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # Replaces kmock's entry point: no request log, no reaction scan (see the module docstring).
        self.request_count += 1
        try:
            return await self._dispatch(raw)
        except store.ApiError as e:
            response = _json(e.status(), e.code)
            for warning in e.warnings if isinstance(e, admission.Rejection) else []:
                response.headers.add('Warning', admission.warning_header(warning))
            return response
        except Exception as e:  # any bug must reach the client as a readable Status, not a hang
            logger.exception('The emulated API server failed on %s %s', raw.method, raw.path_qs)
            return _json(store.ApiError(500, 'InternalError', repr(e)).status(), 500)

    # --- Routing -------------------------------------------------------------------------------

    async def _dispatch(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        route = parse_route(raw.path)
        if route is None:
            if raw.method != 'GET':
                raise store.ApiError(405, 'MethodNotAllowed', 'the server does not allow this method')
            return _json(await self._discovery(raw.path))
        rtype = self.store.types.get((route.group, route.plural))
        if rtype is None or route.version not in rtype.versions or _misrouted(route, rtype):
            # The real server's mux answers in plain text.
            return aiohttp.web.Response(status=404, text='404 page not found\n', content_type='text/plain')
        if rtype.namespaced != (route.namespace is not None) and route.name is not None:
            raise store.ApiError(404, 'NotFound', 'the server could not find the requested resource')
        if route.subresource not in (None, 'status') or (
                route.subresource == 'status' and not rtype.status_subresource):
            raise store.ApiError(404, 'NotFound', 'the server could not find the requested resource')
        if raw.method == 'GET' and raw.query.get('watch') in ('true', '1'):
            return await self._watch(raw, route, rtype)
        body = self._parse_body(raw.content_type, await self._read(raw))
        dry_run = raw.method in _WRITES and self._dry_run(raw.query)
        if raw.method in _WRITES and (dry_run or self.admission.active):  # else no cost at all
            status, data, warnings = await self._serve_admitted(raw, route, rtype, body, dry_run)
            response = _json(data, status)
            for warning in warnings:
                response.headers.add('Warning', admission.warning_header(warning))
            return response
        status, data = self._serve(raw.method, raw.query, route, rtype, raw.content_type, body)
        table_version = tables.requested_version(raw.headers.get('Accept')) if raw.method == 'GET' else None
        if table_version and route.subresource is None:
            data = self._table(route, rtype, table_version, raw.query, data)
        return _json(data, status)

    def _serve(self, method: str, query: Any, route: Route, rtype: store.ResourceType,
               content_type: str, body: Any) -> tuple[int, store.Obj]:
        db, version = self.store, route.version
        strict = query.get('fieldValidation')  # kubectl's --validate; Ignore and Warn are both lenient here
        if method == 'GET' and route.name is None:
            return 200, self._list(route, rtype, query)
        if method == 'POST' and route.name is None:
            return 201, db.render(rtype, version, db.create(rtype, version, route.namespace, body,
                                                            field_validation=strict))
        if method == 'DELETE' and route.name is None:
            return 200, self._delete_collection(route, rtype, query, body)
        if route.name is None:
            raise store.ApiError(405, 'MethodNotAllowed', f'{method} is not allowed on a collection')
        name, namespace, sub = route.name, route.namespace, route.subresource
        if method == 'GET':
            obj = db.get(rtype, namespace, name)
        elif method == 'PUT':
            obj = db.replace(rtype, version, namespace, name, sub, body, field_validation=strict)
        elif method == 'PATCH':
            obj = db.patch(rtype, version, namespace, name, sub, self._patch_type(content_type), body,
                           field_validation=strict)
        elif method == 'DELETE':
            obj = db.delete(rtype, namespace, name, body)
            if rtype.custom and not obj['metadata'].get('deletionTimestamp'):
                return 200, _deleted(rtype, obj)
        else:
            raise store.ApiError(405, 'MethodNotAllowed', f'{method} is not allowed on an object')
        return 200, db.render(rtype, version, obj)

    @staticmethod
    def _dry_run(query: Any) -> bool:
        values = query.getall('dryRun', []) if hasattr(query, 'getall') else []
        for value in values:
            if value != 'All':
                raise store.ApiError(400, 'BadRequest', f'Invalid value: "{value}": supported values: "All"')
        return bool(values)

    async def _serve_admitted(self, raw: aiohttp.web.BaseRequest, route: Route, rtype: store.ResourceType,
                              body: Any, dry_run: bool) -> tuple[int, store.Obj, list[str]]:
        """A write reviewed by the admission webhooks that match it (see :mod:`imagescan.apiserver.admission`)."""
        request = admission.Request(version=route.version, subresource=route.subresource, dry_run=dry_run,
                                    query=raw.query, body=body)
        if raw.method == 'DELETE' and route.name is None:  # each object reviewed on its own, as the real server
            deleted: list[store.Obj] = []
            warnings: list[str] = []
            for obj in self.store.select(rtype, route.namespace, raw.query.get('labelSelector'),
                                         raw.query.get('fieldSelector')):
                meta = obj['metadata']
                try:
                    result, change, more = await self.admission.run(functools.partial(
                        self.store.delete, rtype, meta.get('namespace'), meta['name'], body), request)
                except store.ApiError as e:
                    if e.code == 404:
                        continue  # deleted meanwhile
                    raise
                done = change.old if change is not None else result
                deleted.append(done if done is not None else obj)
                warnings += more
            return 200, self._collection(route, rtype, deleted), warnings
        served, change, warnings = await self.admission.run(functools.partial(
            self._serve, raw.method, raw.query, route, rtype, raw.content_type, body), request)
        if served is not None:
            return served[0], served[1], warnings
        assert change is not None  # a dry run: what would have been stored
        would_be = change.new if change.new is not None else change.old
        status = 201 if change.operation == 'CREATE' else 200
        return status, self.store.render(rtype, route.version, would_be or {}), warnings

    @staticmethod
    def _patch_type(content_type: str) -> str:
        if content_type in _PATCH_TYPES:
            return content_type
        # Server-side apply would need managed fields tracking; refuse it loudly instead of faking it.
        raise store.ApiError(415, 'UnsupportedMediaType',
                       f'the body of the request was in an unknown format - accepted media types '
                       f'include: {", ".join(_PATCH_TYPES)} (server-side apply is not emulated)')

    @staticmethod
    async def _read(raw: aiohttp.web.BaseRequest) -> bytes:
        try:
            return await raw.read()
        except aiohttp.web.HTTPRequestEntityTooLarge:
            raise store.ApiError(413, 'RequestEntityTooLarge',
                                 f'Request entity too large: limit is {REQUEST_LIMIT}') from None

    @staticmethod
    def _parse_body(content_type: str, data: bytes) -> Any:
        if not data.strip():
            return None
        if 'protobuf' in content_type:  # kubectl create sends built-in kinds so; 415 makes it retry in JSON
            raise store.ApiError(415, 'UnsupportedMediaType', f'the body of the request was in an unknown '
                                 f'format - accepted media types include: {_JSON}, application/yaml')
        try:
            if 'yaml' in content_type:
                return yaml.safe_load(data)
            return json.loads(data)
        except ValueError as e:
            raise store.ApiError(400, 'BadRequest', f'the request body cannot be decoded: {e}') from None

    def _list(self, route: Route, rtype: store.ResourceType, query: Any) -> store.Obj:
        items = self.store.select(rtype, route.namespace, query.get('labelSelector'),
                                  query.get('fieldSelector'))
        return {
            'apiVersion': rtype.api_version(route.version),
            'kind': f'{rtype.kind}List',
            'metadata': {'resourceVersion': str(self.store.rv)},
            'items': [self.store.render(rtype, route.version, obj) for obj in items],
        }

    def _delete_collection(self, route: Route, rtype: store.ResourceType, query: Any, body: Any) -> store.Obj:
        doomed = self.store.select(rtype, route.namespace, query.get('labelSelector'),
                                   query.get('fieldSelector'))
        deleted = [self.store.delete(rtype, obj['metadata'].get('namespace'), obj['metadata']['name'], body)
                   for obj in doomed]
        return self._collection(route, rtype, deleted)

    def _collection(self, route: Route, rtype: store.ResourceType, deleted: list[store.Obj]) -> store.Obj:
        return {'apiVersion': rtype.api_version(route.version), 'kind': f'{rtype.kind}List',
                'metadata': {'resourceVersion': str(self.store.rv)},
                'items': [self.store.render(rtype, route.version, obj) for obj in deleted]}

    # --- Server-side printing (kubectl get) ----------------------------------------------------

    def _table(self, route: Route, rtype: store.ResourceType, table_version: str, query: Any,
               data: store.Obj) -> store.Obj:
        """The list or object as a ``meta.k8s.io`` Table, as ``kubectl get`` asks for it."""
        columns = self._columns(rtype, route.version)
        include = self._include_object(query)
        if route.name is None:
            return tables.table(columns, data.get('items') or [], version=table_version, include_object=include,
                                metadata=data.get('metadata'))
        rv = (data.get('metadata') or {}).get('resourceVersion')
        return tables.table(columns, [data], version=table_version, include_object=include,
                            metadata={'resourceVersion': rv} if rv else {})

    @staticmethod
    def _columns(rtype: store.ResourceType, version: str) -> list[tables.Column]:
        if rtype.custom:
            return tables.custom_columns(rtype.printer_columns.get(version))
        return tables.default_columns()

    @staticmethod
    def _include_object(query: Any) -> str:
        include = str(query.get('includeObject') or 'Metadata')
        if include not in tables.INCLUDE_OBJECT:
            raise store.ApiError(400, 'BadRequest', f'includeObject: Unsupported value: "{include}": supported '
                                 f'values: {", ".join(repr(v) for v in tables.INCLUDE_OBJECT)}')
        return include

    def _table_events(self, route: Route, rtype: store.ResourceType,
                      raw: aiohttp.web.BaseRequest) -> Callable[[store.Obj], store.Obj]:
        """For ``kubectl get -w``: turn watch events into events of one-row Tables, if asked so."""
        table_version = tables.requested_version(raw.headers.get('Accept'))
        if table_version is None:
            return lambda event: event
        columns, include = self._columns(rtype, route.version), self._include_object(raw.query)

        def convert(event: store.Obj) -> store.Obj:
            if event.get('type') not in ('ADDED', 'MODIFIED', 'DELETED'):
                return event
            obj = event['object']
            rv = {'resourceVersion': (obj.get('metadata') or {}).get('resourceVersion')}
            return {**event, 'object': tables.table(columns, [obj], version=table_version,
                                                    include_object=include, metadata=rv)}
        return convert

    # --- Watching ------------------------------------------------------------------------------

    async def _watch(self, raw: aiohttp.web.BaseRequest, route: Route,
                     rtype: store.ResourceType) -> aiohttp.web.StreamResponse:
        queue: asyncio.Queue[store.WatchEvent | None] = asyncio.Queue()
        self.store.listeners.add(queue.put_nowait)  # subscribe first: nothing slips in between
        try:
            convert = self._table_events(route, rtype, raw)
            initial = [convert(event) for event in self._initial_events(raw.query, route, rtype)]
            response = aiohttp.web.StreamResponse(headers={'Content-Type': _JSON})
            await response.prepare(raw)
            timeout = float(raw.query['timeoutSeconds']) if raw.query.get('timeoutSeconds') else None
            with contextlib.suppress(TimeoutError, ConnectionError):
                async with asyncio.timeout(timeout):
                    await self._stream(response, initial, queue, self._matcher(route, rtype, raw.query),
                                       lambda event: convert(self._event(event.type, rtype, route, event.obj)))
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
            return response
        finally:
            self.store.listeners.discard(queue.put_nowait)

    def _initial_events(self, query: Any, route: Route, rtype: store.ResourceType) -> list[store.Obj]:
        """What to send before live events: the current state, or the history since an RV."""
        since = query.get('resourceVersion')
        if not since or since == '0' or query.get('sendInitialEvents') == 'true':
            select = self.store.select(rtype, route.namespace, query.get('labelSelector'),
                                       self._field_selector(route, query))
            events = [self._event('ADDED', rtype, route, obj) for obj in select]
            if query.get('sendInitialEvents') == 'true':
                events.append(self._bookmark(rtype, route, initial_end=True))
            return events
        if not since.isdigit():
            raise store.ApiError(400, 'BadRequest', f'invalid resourceVersion: {since!r}')
        history = self.store.history
        if history.maxlen and len(history) == history.maxlen and history[0].rv > int(since) + 1:
            gone = store.ApiError(410, 'Expired', f'too old resource version: {since} ({history[0].rv - 1})')
            return [{'type': 'ERROR', 'object': gone.status()}]
        matches = self._matcher(route, rtype, query)
        return [self._event(e.type, rtype, route, e.obj) for e in history
                if e.rv > int(since) and matches(e)]

    async def _stream(self, response: aiohttp.web.StreamResponse, initial: list[store.Obj],
                      queue: asyncio.Queue[store.WatchEvent | None], matches: Callable[[store.WatchEvent], bool],
                      render: Callable[[store.WatchEvent], store.Obj]) -> None:
        last_rv = self.store.rv  # everything up to here is covered by the initial events
        for event in initial:
            await response.write(json.dumps(event).encode() + b'\n')
            if event['type'] == 'ERROR':
                return
        while (change := await queue.get()) is not None:
            if change.rv > last_rv and matches(change):
                await response.write(json.dumps(render(change)).encode() + b'\n')

    def _matcher(self, route: Route, rtype: store.ResourceType, query: Any) -> Callable[[store.WatchEvent], bool]:
        store.check_field_selector(rtype, query.get('fieldSelector'))
        labels = objectops.label_matcher(query.get('labelSelector'))
        fields = objectops.field_matcher(self._field_selector(route, query))

        def matches(event: store.WatchEvent) -> bool:
            if event.type_key != rtype.key or (route.namespace and event.namespace != route.namespace):
                return False
            return labels(event.obj.get('metadata', {}).get('labels') or {}) and fields(event.obj)
        return matches

    @staticmethod
    def _field_selector(route: Route, query: Any) -> str:
        # Watching one object by URL is the same as a metadata.name field selector.
        selectors = [query.get('fieldSelector') or '']
        if route.name:
            selectors.append(f'metadata.name={route.name}')
        return ','.join(selector for selector in selectors if selector)

    def _event(self, event_type: str, rtype: store.ResourceType, route: Route, obj: store.Obj) -> store.Obj:
        return {'type': event_type, 'object': self.store.render(rtype, route.version, obj)}

    def _bookmark(self, rtype: store.ResourceType, route: Route, *, initial_end: bool) -> store.Obj:
        annotations = {'k8s.io/initial-events-end': 'true'} if initial_end else {}
        return {'type': 'BOOKMARK', 'object': {
            'apiVersion': rtype.api_version(route.version), 'kind': rtype.kind,
            'metadata': {'resourceVersion': str(self.store.rv), 'annotations': annotations}}}

    # --- Discovery -----------------------------------------------------------------------------

    async def _discovery(self, path: str) -> store.Obj:
        parts = [part for part in path.split('/') if part]
        if parts == ['version']:
            data = await self._serve_server_version(kmock.Request())  # kmock's own payload
            return dict(data) if isinstance(data, dict) else {}
        if parts == ['api']:
            return {'kind': 'APIVersions', 'versions': ['v1'],
                    'serverAddressByClientCIDRs': [{'clientCIDR': '0.0.0.0/0', 'serverAddress': ''}]}
        if parts == ['apis']:
            return {'apiVersion': 'v1', 'kind': 'APIGroupList', 'groups': self._groups()}
        if len(parts) == 2 and parts[0] == 'apis':
            for group in self._groups():
                if group['name'] == parts[1]:
                    return {'apiVersion': 'v1', 'kind': 'APIGroup', **group}
        if len(parts) == 2 and parts == ['api', 'v1']:
            return self._resource_list('', 'v1')
        if len(parts) == 3 and parts[0] == 'apis':
            listing = self._resource_list(parts[1], parts[2])
            if listing['resources']:
                return listing
        if parts == ['openapi', 'v3']:
            return openapi.index(self.store.types.values())
        if parts[:3] == ['openapi', 'v3', 'api'] and len(parts) == 4:
            return openapi.document(self.store.types.values(), '', parts[3])
        if parts[:3] == ['openapi', 'v3', 'apis'] and len(parts) == 5:
            return openapi.document(self.store.types.values(), parts[3], parts[4])
        if parts == []:
            return {'paths': ['/api', '/api/v1', '/apis', '/openapi/v3', '/version']}
        raise store.ApiError(404, 'NotFound', 'the server could not find the requested resource')

    def _groups(self) -> list[store.Obj]:
        versions: dict[str, list[str]] = {}
        for rtype in self.store.types.values():
            if rtype.group:
                known = versions.setdefault(rtype.group, [])
                known += [version for version in rtype.versions if version not in known]
        return [{
            'name': group,
            'versions': [{'groupVersion': f'{group}/{v}', 'version': v} for v in group_versions],
            'preferredVersion': {'groupVersion': f'{group}/{group_versions[0]}', 'version': group_versions[0]},
        } for group, group_versions in sorted(versions.items())]

    def _resource_list(self, group: str, version: str) -> store.Obj:
        resources: list[store.Obj] = []
        for rtype in self.store.types.values():
            if rtype.group == group and version in rtype.versions:
                verbs = _TERMINATING_VERBS if rtype.terminating else _RW_VERBS
                resources.append(self._resource_entry(rtype, rtype.plural, verbs))
                if rtype.status_subresource:
                    resources.append(self._resource_entry(rtype, f'{rtype.plural}/status',
                                                          ['get', 'patch', 'update']))
        group_version = f'{group}/{version}' if group else version
        return {'apiVersion': 'v1', 'kind': 'APIResourceList', 'groupVersion': group_version,
                'resources': resources}

    @staticmethod
    def _resource_entry(rtype: store.ResourceType, name: str, verbs: Iterable[str]) -> store.Obj:
        is_main = '/' not in name
        entry = {
            'name': name, 'kind': rtype.kind, 'namespaced': rtype.namespaced, 'verbs': list(verbs),
            'singularName': (rtype.singular or rtype.kind.lower()) if is_main else '',
            **({'shortNames': rtype.short_names, 'categories': rtype.categories} if is_main else {}),
        }
        if is_main and rtype.custom:
            entry['storageVersionHash'] = storage_version_hash(rtype.group, rtype.versions[0], rtype.kind)
        return entry


class ApiServer:
    """The emulated API server on ``127.0.0.1:<free port>``, served from a background thread."""

    def __init__(self, *, host: str = '127.0.0.1', port: int = 0, history: int = 10_000,
                 service_urls: dict[str, str] | None = None) -> None:
        """``service_urls``: where admission webhooks given as ``clientConfig.service`` are reached,
        ``{"<namespace>/<name>[:<port>]": "https://host:port"}`` (see :mod:`imagescan.apiserver.admission`)."""
        self._host, self._port, self._history = host, port, history
        self._service_urls = dict(service_urls or {})
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: aiohttp.web.BaseRunner | None = None
        self._emulator: KubeApiEmulator | None = None
        self.url = ''

    # --- Lifecycle -----------------------------------------------------------------------------

    def start(self) -> str:
        if self._thread is not None:
            raise RuntimeError('The API server is already started.')
        started: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._serve_forever, args=(started,),
                                        name='kubeapi', daemon=True)
        self._thread.start()
        self.url = started.result(timeout=30)
        return self.url

    def _serve_forever(self, started: concurrent.futures.Future[str]) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            started.set_result(loop.run_until_complete(self._setup()))
        except BaseException as e:
            started.set_exception(e)
            loop.close()
            return
        loop.run_forever()
        loop.run_until_complete(self._teardown())
        loop.close()

    async def _setup(self) -> str:
        self._emulator = KubeApiEmulator(history=self._history, service_urls=self._service_urls)
        # handler_cancellation: a client dropping its watch-stream must end the stream's task.
        server = aiohttp.web.Server(self._emulator, handler_cancellation=True, request_factory=_make_request)
        self._runner = aiohttp.web.ServerRunner(server, shutdown_timeout=1)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f'http://{host}:{port}'

    async def _teardown(self) -> None:
        if self._emulator is not None:
            for listener in list(self._emulator.store.listeners):
                listener(None)  # type: ignore[arg-type]  # ends live watch-streams gracefully
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        self._thread = self._loop = None

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- Direct access (thread-safe: executed in the server's loop) ----------------------------

    def call(self, fn: Callable[[store.Store], T]) -> T:
        """Run ``fn(db)`` inside the server's thread, where the store ``db`` lives."""
        if self._loop is None or self._emulator is None:
            raise RuntimeError('The API server is not started.')
        db = self._emulator.store

        async def run() -> T:
            return fn(db)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    @property
    def request_count(self) -> int:
        return self._emulator.request_count if self._emulator is not None else 0

    def objects(self, group: str, version: str, plural: str, namespace: str | None = None) -> list[store.Obj]:
        def read(db: store.Store) -> list[store.Obj]:
            rtype = db.find_type(group, version, plural)
            return [db.render(rtype, version, obj) for obj in db.select(rtype, namespace)]
        return self.call(read)

    def get(self, group: str, version: str, plural: str, namespace: str | None, name: str) -> store.Obj | None:
        def read(db: store.Store) -> store.Obj | None:
            rtype = db.find_type(group, version, plural)
            try:
                return db.render(rtype, version, db.get(rtype, namespace, name))
            except store.ApiError:
                return None
        return self.call(read)

    # --- Client-side helpers -------------------------------------------------------------------

    def write_kubeconfig(self, path: pathlib.Path, *, namespace: str = 'default') -> pathlib.Path:
        config = {
            'apiVersion': 'v1', 'kind': 'Config', 'preferences': {},
            'clusters': [{'name': 'kubeapi', 'cluster': {'server': self.url}}],
            'users': [{'name': 'kubeapi', 'user': {'token': 'kubeapi-emulator'}}],
            'contexts': [{'name': 'kubeapi', 'context': {'cluster': 'kubeapi', 'user': 'kubeapi',
                                                          'namespace': namespace}}],
            'current-context': 'kubeapi',
        }
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config), encoding='utf-8')
        return path

    def apply_yaml(self, source: pathlib.Path | str, *, namespace: str = 'default') -> list[store.Obj]:
        """Create-or-replace every document of a YAML file (or text) via the HTTP API."""
        text = source.read_text(encoding='utf-8') if isinstance(source, pathlib.Path) else source
        return [self.apply(doc, namespace=namespace) for doc in yaml.safe_load_all(text) if doc]

    def apply(self, body: store.Obj, *, namespace: str = 'default') -> store.Obj:
        """Create the object, or replace it (keeping its status) if it already exists."""
        def locate(db: store.Store) -> tuple[store.ResourceType, str]:
            return db.type_for_kind(str(body.get('apiVersion')), str(body.get('kind')))
        rtype, version = self.call(locate)
        prefix = f'/apis/{rtype.group}/{version}' if rtype.group else f'/api/{version}'
        ns = (body.get('metadata') or {}).get('namespace') or namespace
        collection = f'{prefix}/namespaces/{ns}/{rtype.plural}' if rtype.namespaced else f'{prefix}/{rtype.plural}'
        try:
            return self.http('POST', collection, body)
        except HttpError as e:
            if e.code != 409:
                raise
        url = f'{collection}/{body["metadata"]["name"]}'
        current = self.http('GET', url)
        fresh = {**body, 'metadata': {**body['metadata'],
                                      'resourceVersion': current['metadata']['resourceVersion']}}
        return self.http('PUT', url, fresh)

    def http(self, method: str, path: str, body: Any = None,
             content_type: str = _JSON) -> store.Obj:
        """A tiny synchronous client; raises :class:`HttpError` with the Status on failures."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={'Content-Type': content_type, 'Accept': _JSON})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                result: store.Obj = json.loads(response.read())
                return result
        except urllib.error.HTTPError as e:
            status = json.loads(e.read() or b'{}')
            raise HttpError(e.code, status) from None


class HttpError(Exception):
    """A non-2xx answer of the emulated server, with its ``kind: Status`` body."""

    def __init__(self, code: int, status: store.Obj) -> None:
        super().__init__(f'HTTP {code}: {status.get("message")}')
        self.code = code
        self.status = status
