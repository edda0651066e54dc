"""
In-memory object store with the write semantics of the real kube-apiserver.

kmock 0.8's ``KubernetesEmulator`` keeps objects, but mutates them before
routing with a naive dict-merge and no resourceVersion, so optimistic
concurrency (409/422), status-subresource separation, generation, finalizer
flows and CRD schemas cannot be layered on top of it. This store replaces
that part of kmock: it owns the objects, the resource types (built-in and
CRD-defined, used for discovery too), the global resourceVersion counter and
the watch-event history used to resume watches.

It is synchronous and single-threaded by design: the HTTP layer calls it from
one event loop, so every write is atomic without locks.
"""

from __future__ import annotations

import collections
import copy
import datetime
import random
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imagescan.apiserver import objectops, schema, tables

Obj = dict[str, Any]
ObjKey = tuple[str, str, str, str]  # group, plural, namespace ('' if cluster-scoped), name
TypeKey = tuple[str, str]  # group, plural

_GENERATE_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'  # the real apiserver's alphabet (no vowels)
_DNS_SUBDOMAIN = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')
_SYSTEM_METADATA = ('name', 'namespace', 'uid', 'creationTimestamp', 'deletionTimestamp',
                    'deletionGracePeriodSeconds', 'generation', 'resourceVersion')


class ApiError(Exception):
    """A failure that the server renders as a ``kind: Status`` body."""

    def __init__(self, code: int, reason: str, message: str, *,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details or {})

    def status(self) -> Obj:
        return {'apiVersion': 'v1', 'kind': 'Status', 'metadata': {}, 'status': 'Failure',
                'message': self.message, 'reason': self.reason, 'details': self.details,
                'code': self.code}


@dataclass
class ResourceType:
    """What discovery says about a resource, plus the CRD schemas per version."""

    group: str
    plural: str
    kind: str
    namespaced: bool
    versions: list[str]  # served versions, the preferred one first
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    status_subresource: bool = False
    schemas: dict[str, Any] = field(default_factory=dict)  # version -> openAPIV3Schema
    printer_columns: dict[str, list[Obj]] = field(default_factory=dict)  # version -> additionalPrinterColumns
    custom: bool = False  # defined by a CRD (gets pruning/validation)
    singular: str = ''

    @property
    def key(self) -> TypeKey:
        return (self.group, self.plural)

    @property
    def qualified(self) -> str:
        # As in the real server's messages: 'kexes.kopf.dev "x" not found', 'pods "x" not found'.
        return f'{self.plural}.{self.group}' if self.group else self.plural

    def api_version(self, version: str) -> str:
        return f'{self.group}/{version}' if self.group else version

    def details(self, name: str | None) -> Obj:
        return {'name': name or '', 'group': self.group, 'kind': self.plural}


@dataclass(frozen=True)
class Change:
    """A write about to be persisted: what admission webhooks review (see :attr:`Store.gate`)."""

    operation: str  # CREATE, UPDATE or DELETE
    rtype: ResourceType
    old: Obj | None  # the stored object (UPDATE, DELETE)
    new: Obj | None  # the object to store (CREATE, UPDATE; DELETE with finalizers), None if removed


@dataclass(frozen=True)
class WatchEvent:
    """One change, kept in the history so that watches can resume from a resourceVersion."""

    rv: int
    type: str
    type_key: TypeKey
    namespace: str
    obj: Obj


def _builtin(group: str, version: str, plural: str, kind: str, namespaced: bool,
             short: Iterable[str] = (), status: bool = False) -> ResourceType:
    return ResourceType(group=group, plural=plural, kind=kind, namespaced=namespaced,
                        versions=[version], short_names=list(short), status_subresource=status,
                        categories=['all'] if kind in ('Pod', 'Service', 'Deployment') else [])


def builtin_types() -> list[ResourceType]:
    """The few built-in resources that the operator, kopf, kubectl and tests touch."""
    return [
        _builtin('', 'v1', 'namespaces', 'Namespace', False, ['ns'], status=True),
        _builtin('', 'v1', 'events', 'Event', True, ['ev']),
        _builtin('', 'v1', 'configmaps', 'ConfigMap', True, ['cm']),
        _builtin('', 'v1', 'secrets', 'Secret', True),
        _builtin('', 'v1', 'serviceaccounts', 'ServiceAccount', True, ['sa']),
        _builtin('', 'v1', 'pods', 'Pod', True, ['po'], status=True),
        _builtin('', 'v1', 'services', 'Service', True, ['svc'], status=True),
        _builtin('apps', 'v1', 'deployments', 'Deployment', True, ['deploy'], status=True),
        _builtin('events.k8s.io', 'v1', 'events', 'Event', True, ['ev']),
        _builtin('coordination.k8s.io', 'v1', 'leases', 'Lease', True),
        _builtin('apiextensions.k8s.io', 'v1', 'customresourcedefinitions', 'CustomResourceDefinition',
                 False, ['crd', 'crds'], status=True),
        _builtin('admissionregistration.k8s.io', 'v1', 'validatingwebhookconfigurations',
                 'ValidatingWebhookConfiguration', False),
    ]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def _meta(obj: Mapping[str, Any]) -> Obj:
    meta = obj.get('metadata')
    return meta if isinstance(meta, dict) else {}


class Store:
    """Objects, types, resourceVersions and watch history of one emulated cluster."""

    def __init__(self, *, history: int = 10_000) -> None:
        self.types: dict[TypeKey, ResourceType] = {}
        self.objects: dict[ObjKey, Obj] = {}
        self.rv = 0
        self.history: collections.deque[WatchEvent] = collections.deque(maxlen=history)
        self.listeners: set[Callable[[WatchEvent], None]] = set()
        # Called with every create/update/delete after validation, right before it is persisted; it may raise
        # ApiError to refuse it, or return the object to store instead (see imagescan.apiserver.admission).
        self.gate: Callable[[Change], Obj | None] | None = None
        for rtype in builtin_types():
            self.types[rtype.key] = rtype
        for name in ('default', 'kube-system', 'kube-public'):
            self.create(self.types['', 'namespaces'], 'v1', None, {'metadata': {'name': name}})

    # --- Types ---------------------------------------------------------------------------------

    def find_type(self, group: str, version: str, plural: str) -> ResourceType:
        rtype = self.types.get((group, plural))
        if rtype is None or version not in rtype.versions:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        return rtype

    def type_for_kind(self, api_version: str, kind: str) -> tuple[ResourceType, str]:
        group, _, version = api_version.rpartition('/')
        for rtype in self.types.values():
            if rtype.group == group and rtype.kind == kind and version in rtype.versions:
                return rtype, version
        raise ApiError(404, 'NotFound', f'no matches for kind "{kind}" in version "{api_version}"')

    # --- Reads ---------------------------------------------------------------------------------

    def render(self, rtype: ResourceType, version: str, obj: Obj) -> Obj:
        # Conversion strategy "None": the same body under the requested apiVersion.
        return {**copy.deepcopy(obj), 'apiVersion': rtype.api_version(version), 'kind': rtype.kind}

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self.objects.get(self._key(rtype, namespace, name))
        if obj is None:
            raise ApiError(404, 'NotFound', f'{rtype.qualified} "{name}" not found',
                           details=rtype.details(name))
        return obj

    def select(self, rtype: ResourceType, namespace: str | None,
               labels: str | None = None, fields: str | None = None) -> list[Obj]:
        try:
            label_ok = objectops.label_matcher(labels)
            field_ok = objectops.field_matcher(fields)
        except objectops.SelectorError as e:
            raise ApiError(400, 'BadRequest', str(e)) from None
        return [obj for (group, plural, ns, _), obj in sorted(self.objects.items())
                if (group, plural) == rtype.key and (namespace is None or ns == namespace)
                and label_ok(_meta(obj).get('labels') or {}) and field_ok(obj)]

    # --- Writes --------------------------------------------------------------------------------

    def create(self, rtype: ResourceType, version: str, namespace: str | None, body: Any, *,
               field_validation: str | None = None) -> Obj:
        obj = self._check_body(rtype, version, body)
        meta = _meta(obj)
        namespace = self._creation_namespace(rtype, namespace, meta)
        name = meta.get('name') or self._generate_name(rtype, namespace, meta.get('generateName'))
        self._check_absent(rtype, namespace, name)
        for key in _SYSTEM_METADATA:
            meta.pop(key, None)
        meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        if namespace:
            meta['namespace'] = namespace
        if rtype.status_subresource and rtype.custom:
            obj.pop('status', None)  # the main endpoint ignores status, even on creation
        obj['metadata'] = meta
        obj = self._admit(rtype, version, obj, field_validation)
        if self.gate is not None:
            obj = self.gate(Change('CREATE', rtype, None, obj)) or obj
            self._check_absent(rtype, namespace, _meta(obj)['name'])
        return self._write(rtype, obj, 'ADDED')

    def replace(self, rtype: ResourceType, version: str, namespace: str | None, name: str,
                subresource: str | None, body: Any, *, field_validation: str | None = None) -> Obj:
        candidate = self._check_body(rtype, version, body)
        body_name = _meta(candidate).get('name')
        if body_name and body_name != name:
            raise ApiError(400, 'BadRequest',
                           f'the name of the object ({body_name}) does not match the name on the URL ({name})')
        return self._update(rtype, version, namespace, name, subresource, candidate, field_validation)

    def patch(self, rtype: ResourceType, version: str, namespace: str | None, name: str,
              subresource: str | None, content_type: str, patch: Any, *,
              field_validation: str | None = None) -> Obj:
        current = self.render(rtype, version, self.get(rtype, namespace, name))
        try:
            if content_type == 'application/json-patch+json':
                candidate = objectops.json_patch(current, patch)
            elif isinstance(patch, dict):
                # Strategic merge is treated as a merge-patch: fine for CRs, approximate for builtins.
                candidate = objectops.merge_patch(current, patch)
            else:
                raise objectops.PatchError('a merge patch must be a JSON object')
        except objectops.PatchError as e:
            if e.test_failed:
                raise ApiError(422, 'Invalid', 'the server rejected our request due to an error '
                               f'in our request: {e}', details=rtype.details(name)) from None
            raise ApiError(400, 'BadRequest', str(e)) from None
        if not isinstance(candidate, dict):
            raise ApiError(400, 'BadRequest', 'the patched object is not a JSON object')
        return self._update(rtype, version, namespace, name, subresource, candidate, field_validation)

    def delete(self, rtype: ResourceType, namespace: str | None, name: str, options: Any) -> Obj:
        obj = self.get(rtype, namespace, name)
        self._check_preconditions(rtype, obj, options)
        meta = _meta(obj)
        if not meta.get('finalizers'):
            if self.gate is not None:
                self.gate(Change('DELETE', rtype, obj, None))
            return self._remove(rtype, obj)
        if meta.get('deletionTimestamp'):
            return obj  # already being deleted: a no-op, as the real server
        updated = copy.deepcopy(obj)
        _meta(updated).update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0)
        if self.gate is not None:
            self.gate(Change('DELETE', rtype, obj, updated))
        return self._write(rtype, updated, 'MODIFIED')

    # --- Internals -----------------------------------------------------------------------------

    def _key(self, rtype: ResourceType, namespace: str | None, name: str) -> ObjKey:
        return (rtype.group, rtype.plural, (namespace or '') if rtype.namespaced else '', name)

    def _check_body(self, rtype: ResourceType, version: str, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise ApiError(400, 'BadRequest', 'the request body must be a JSON object')
        obj = copy.deepcopy(body)
        api_version, kind = obj.get('apiVersion'), obj.get('kind')
        if api_version not in (None, rtype.api_version(version)) or kind not in (None, rtype.kind):
            raise ApiError(400, 'BadRequest', f'the API version in the data ({api_version}) or kind '
                           f'({kind}) does not match the expected {rtype.api_version(version)} {rtype.kind}')
        obj['apiVersion'], obj['kind'] = rtype.api_version(version), rtype.kind
        if not isinstance(obj.get('metadata', {}), dict):
            raise ApiError(400, 'BadRequest', 'metadata must be a JSON object')
        obj['metadata'] = dict(obj.get('metadata') or {})
        return obj

    def _check_absent(self, rtype: ResourceType, namespace: str | None, name: str) -> None:
        if self._key(rtype, namespace, name) in self.objects:
            raise ApiError(409, 'AlreadyExists', f'{rtype.qualified} "{name}" already exists',
                           details=rtype.details(name))

    def _creation_namespace(self, rtype: ResourceType, namespace: str | None, meta: Obj) -> str | None:
        if not rtype.namespaced:
            return None
        body_ns = meta.get('namespace')
        if namespace and body_ns and body_ns != namespace:
            raise ApiError(400, 'BadRequest', 'the namespace of the provided object does not match '
                           'the namespace sent on the request')
        namespace = namespace or body_ns
        if not namespace:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        if ('', 'namespaces', '', namespace) not in self.objects:
            raise ApiError(404, 'NotFound', f'namespaces "{namespace}" not found',
                           details={'name': namespace, 'kind': 'namespaces'})
        return str(namespace)

    def _generate_name(self, rtype: ResourceType, namespace: str | None, prefix: Any) -> str:
        if not prefix:
            raise self._invalid(rtype, '', [schema.FieldError(
                'metadata.name', 'FieldValueRequired', 'Required value: name or generateName is required')])
        while True:  # the real server returns 409 on a clash; regenerating is friendlier and as valid
            name = str(prefix) + ''.join(random.choices(_GENERATE_ALPHABET, k=5))
            if self._key(rtype, namespace, name) not in self.objects:
                return name

    def _update(self, rtype: ResourceType, version: str, namespace: str | None, name: str,
                subresource: str | None, candidate: Obj, field_validation: str | None = None) -> Obj:
        old = self.get(rtype, namespace, name)
        wanted_rv = _meta(candidate).get('resourceVersion')
        if wanted_rv and wanted_rv != _meta(old).get('resourceVersion'):
            raise ApiError(409, 'Conflict', f'Operation cannot be fulfilled on {rtype.qualified} "{name}": '
                           'the object has been modified; please apply your changes to the latest '
                           'version and try again', details=rtype.details(name))
        new = self._split_status(rtype, old, candidate, subresource)
        new = self._keep_system_metadata(rtype, old, new)
        new = self._admit(rtype, version, new, field_validation)
        if self.gate is not None:  # as the real server, no-op updates are reviewed too
            new = self.gate(Change('UPDATE', rtype, old, new)) or new
        if self._comparable(new) == self._comparable(old):
            return old  # a no-op write: no new resourceVersion, no watch event (as the real server)
        if self._spec(rtype, new) != self._spec(rtype, old):
            _meta(new)['generation'] = int(_meta(old).get('generation', 1)) + 1
        written = self._write(rtype, new, 'MODIFIED')
        meta = _meta(written)
        if meta.get('deletionTimestamp') and not meta.get('finalizers'):
            self._remove(rtype, written)
        return written

    def _split_status(self, rtype: ResourceType, old: Obj, candidate: Obj, subresource: str | None) -> Obj:
        if subresource == 'status':
            new = copy.deepcopy(old)
            source = candidate
        elif rtype.status_subresource:
            new = candidate
            source = old
        else:
            return candidate
        if 'status' in source:
            new['status'] = copy.deepcopy(source['status'])
        else:
            new.pop('status', None)
        return new

    def _keep_system_metadata(self, rtype: ResourceType, old: Obj, new: Obj) -> Obj:
        old_meta, meta = _meta(old), dict(_meta(new))
        for key in _SYSTEM_METADATA:
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        added = set(meta.get('finalizers') or []) - set(old_meta.get('finalizers') or [])
        if old_meta.get('deletionTimestamp') and added:
            raise self._invalid(rtype, old_meta.get('name', ''), [schema.FieldError(
                'metadata.finalizers', 'FieldValueForbidden',
                'Forbidden: no new finalizers can be added if the object is being deleted, '
                f'found new finalizers {sorted(added)!r}')])
        return {**new, 'metadata': meta}

    @staticmethod
    def _comparable(obj: Obj) -> Obj:
        return {**obj, 'apiVersion': None, 'metadata': {**_meta(obj), 'resourceVersion': None}}

    @staticmethod
    def _spec(rtype: ResourceType, obj: Obj) -> Obj:
        # Generation tracks everything but metadata (and status when it is a subresource).
        skipped = {'metadata', 'apiVersion', 'kind'} | ({'status'} if rtype.status_subresource else set())
        return {key: val for key, val in obj.items() if key not in skipped}

    def _invalid(self, rtype: ResourceType, name: str, errors: list[schema.FieldError]) -> ApiError:
        listed = str(errors[0]) if len(errors) == 1 else '[' + ', '.join(map(str, errors)) + ']'
        kind = f'{rtype.kind}.{rtype.group}' if rtype.group else rtype.kind
        causes = [{'reason': e.reason, 'message': e.detail, 'field': e.field} for e in errors]
        return ApiError(422, 'Invalid', f'{kind} "{name}" is invalid: {listed}',
                        details={**rtype.details(name), 'kind': rtype.kind, 'causes': causes})

    def _admit(self, rtype: ResourceType, version: str, obj: Obj, field_validation: str | None = None) -> Obj:
        """Prune, default and validate: what admission + validation do in the real server."""
        errors = self._metadata_errors(rtype, _meta(obj))
        if rtype.custom and field_validation == 'Strict':  # what kubectl sends (--validate=strict, its default)
            unknown = schema.unknown_fields(obj, rtype.schemas.get(version))
            if unknown:
                raise ApiError(400, 'BadRequest', f'{rtype.kind} in version "{version}" cannot be handled as a '
                               f'{rtype.kind}: strict decoding error: '
                               + ', '.join(f'unknown field "{path}"' for path in unknown))
        if rtype.custom:
            obj = schema.prune_root(obj, rtype.schemas.get(version))
            errors += schema.validate_root(obj, rtype.schemas.get(version))
        if rtype.key == ('apiextensions.k8s.io', 'customresourcedefinitions'):
            errors += _crd_errors(obj)
        if errors:
            raise self._invalid(rtype, str(_meta(obj).get('name', '')), errors)
        if rtype.key == ('', 'namespaces'):  # as the real server, so that namespaceSelectors can name them
            meta = _meta(obj)
            meta['labels'] = {**(meta.get('labels') or {}), 'kubernetes.io/metadata.name': str(meta.get('name'))}
        return obj

    def _metadata_errors(self, rtype: ResourceType, meta: Obj) -> list[schema.FieldError]:
        errors: list[schema.FieldError] = []
        name = str(meta.get('name', ''))
        if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            errors.append(schema.FieldError('metadata.name', 'FieldValueInvalid', (
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                'character')))
        for field_name in ('labels', 'annotations'):
            values = meta.get(field_name) or {}
            if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
                # The real server fails to even decode such a body; 422 is close enough for tests.
                errors.append(schema.FieldError(f'metadata.{field_name}', 'FieldValueInvalid',
                                                'Invalid value: values must be strings'))
        return errors

    def _check_preconditions(self, rtype: ResourceType, obj: Obj, options: Any) -> None:
        pre = options.get('preconditions') if isinstance(options, dict) else None
        for key in ('resourceVersion', 'uid'):
            wanted, actual = (pre or {}).get(key), _meta(obj).get(key)
            if wanted and wanted != actual:
                raise ApiError(409, 'Conflict', f'Operation cannot be fulfilled on {rtype.qualified} '
                               f'"{_meta(obj).get("name")}": Precondition failed: {key[0].upper()}'
                               f'{key[1:]} in precondition: {wanted}, {key[0].upper()}{key[1:]} in '
                               f'object meta: {actual}', details=rtype.details(_meta(obj).get('name')))

    def _write(self, rtype: ResourceType, obj: Obj, event_type: str) -> Obj:
        self.rv += 1
        _meta(obj)['resourceVersion'] = str(self.rv)
        if rtype.key == ('', 'namespaces'):
            obj['status'] = {'phase': 'Terminating' if _meta(obj).get('deletionTimestamp') else 'Active'}
        if rtype.key == ('apiextensions.k8s.io', 'customresourcedefinitions'):
            self._register_crd(obj)
        self.objects[self._key(rtype, _meta(obj).get('namespace'), _meta(obj)['name'])] = obj
        self._emit(rtype, event_type, obj)
        return obj

    def _remove(self, rtype: ResourceType, obj: Obj) -> Obj:
        meta = _meta(obj)
        self.objects.pop(self._key(rtype, meta.get('namespace'), meta['name']), None)
        self.rv += 1  # the deletion is a change of its own, as an etcd revision
        gone = {**obj, 'metadata': {**meta, 'resourceVersion': str(self.rv)}}
        self._emit(rtype, 'DELETED', gone)
        if rtype.key == ('', 'namespaces'):
            self._remove_contents(lambda key: key[2] == meta['name'])
        if rtype.key == ('apiextensions.k8s.io', 'customresourcedefinitions'):
            self._unregister_crd(obj)
        return gone

    def _remove_contents(self, predicate: Callable[[ObjKey], bool]) -> None:
        # Cascading deletion ignores finalizers: good enough for namespace/CRD teardown in tests.
        for key in [key for key in self.objects if predicate(key)]:
            rtype = self.types.get(key[:2])
            if rtype is not None and key in self.objects:
                self._remove(rtype, self.objects[key])

    def _emit(self, rtype: ResourceType, event_type: str, obj: Obj) -> None:
        event = WatchEvent(rv=self.rv, type=event_type, type_key=rtype.key,
                           namespace=str(_meta(obj).get('namespace') or ''), obj=copy.deepcopy(obj))
        self.history.append(event)
        for listener in list(self.listeners):
            listener(event)

    # --- CRDs ----------------------------------------------------------------------------------

    def _register_crd(self, crd: Obj) -> None:
        spec = crd.get('spec') or {}
        names = spec.get('names') or {}
        served = [v for v in spec.get('versions') or [] if v.get('served', True)]
        served.sort(key=lambda v: not v.get('storage', False))  # the storage version is preferred
        rtype = ResourceType(
            group=spec['group'], plural=names['plural'], kind=names['kind'],
            namespaced=spec.get('scope', 'Namespaced') == 'Namespaced',
            versions=[v['name'] for v in served], short_names=list(names.get('shortNames') or []),
            categories=list(names.get('categories') or []), custom=True,
            singular=names.get('singular') or names['kind'].lower(),
            status_subresource=any('status' in (v.get('subresources') or {}) for v in served),
            schemas={v['name']: (v.get('schema') or {}).get('openAPIV3Schema') for v in served},
            printer_columns={v['name']: list(v.get('additionalPrinterColumns') or []) for v in served},
        )
        self.types[rtype.key] = rtype
        crd['status'] = {
            'acceptedNames': names,
            'storedVersions': [v['name'] for v in served if v.get('storage')],
            'conditions': [
                {'type': cond, 'status': 'True', 'reason': reason, 'lastTransitionTime': _now(),
                 'message': message}
                for cond, reason, message in (
                    ('NamesAccepted', 'NoConflicts', 'no conflicts found'),
                    ('Established', 'InitialNamesAccepted', 'the initial names have been accepted'))
            ],
        }

    def _unregister_crd(self, crd: Obj) -> None:
        spec = crd.get('spec') or {}
        key = (spec.get('group', ''), (spec.get('names') or {}).get('plural', ''))
        self._remove_contents(lambda obj_key: obj_key[:2] == key)
        self.types.pop(key, None)


def _crd_errors(crd: Obj) -> list[schema.FieldError]:
    spec = crd.get('spec') or {}
    names = spec.get('names') or {}
    errors: list[schema.FieldError] = []
    for path, value in (('spec.group', spec.get('group')), ('spec.names.plural', names.get('plural')),
                        ('spec.names.kind', names.get('kind'))):
        if not value:
            errors.append(schema.FieldError(path, 'FieldValueRequired', 'Required value'))
    expected = f'{names.get("plural")}.{spec.get("group")}'
    name = _meta(crd).get('name')
    if not errors and name != expected:
        errors.append(schema.FieldError('metadata.name', 'FieldValueInvalid',
                                        f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'))
    if not spec.get('versions'):
        errors.append(schema.FieldError('spec.versions', 'FieldValueRequired', 'Required value'))
    return errors + _printer_column_errors(spec.get('versions'))


def _printer_column_errors(versions: Any) -> list[schema.FieldError]:
    # Checked on creation, as the real server does, so that `kubectl get` never meets a bad path.
    errors: list[schema.FieldError] = []
    for index, version in enumerate(versions if isinstance(versions, list) else []):
        columns = version.get('additionalPrinterColumns') if isinstance(version, dict) else None
        for column_index, column in enumerate(columns if isinstance(columns, list) else []):
            path = str(column.get('jsonPath', '')) if isinstance(column, dict) else ''
            try:
                tables.compile_jsonpath(path)
            except tables.JsonPathError as e:
                errors.append(schema.FieldError(
                    f'spec.versions[{index}].additionalPrinterColumns[{column_index}].jsonPath',
                    'FieldValueInvalid', f'Invalid value: "{path}": {e}'))
    return errors
