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
import json
import random
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imagescan.apiserver import cel, objectops, schema, tables

Obj = dict[str, Any]
ObjKey = tuple[str, str, str, str]  # group, plural, namespace ('' if cluster-scoped), name
TypeKey = tuple[str, str]  # group, plural

NAMESPACES: TypeKey = ('', 'namespaces')
CRDS: TypeKey = ('apiextensions.k8s.io', 'customresourcedefinitions')
CRD_CLEANUP = 'customresourcecleanup.apiextensions.k8s.io'  # the finalizer of a CRD being deleted
_GENERATE_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'  # the real apiserver's alphabet (no vowels)
_DNS_SUBDOMAIN = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')
ANNOTATIONS_LIMIT = 256 * 1024  # bytes of all keys and values (TotalAnnotationSizeLimitB)
OBJECT_LIMIT = 1536 * 1024  # etcd's default --max-request-bytes: the largest object the real server can store
_OMIT_EMPTY = ('labels', 'annotations', 'finalizers', 'ownerReferences')
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
        # As the real server: no reason or details when there are none (400s, 415s, etcd's 500s).
        return {'apiVersion': 'v1', 'kind': 'Status', 'metadata': {}, 'status': 'Failure',
                'message': self.message, **({'reason': self.reason} if self.reason else {}),
                **({'details': self.details} if self.details else {}), 'code': self.code}


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
    terminating: bool = False  # its CRD is being deleted: instances are read and deleted, never created
    generation: bool = True  # whether metadata.generation is kept (not for kinds without a spec)

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


# Built-in kinds whose objects carry metadata.generation in Kubernetes; the others never have one.
_WITH_GENERATION = ('Pod', 'Deployment', 'CustomResourceDefinition', 'ValidatingWebhookConfiguration')


def _builtin(group: str, version: str, plural: str, kind: str, namespaced: bool,
             short: Iterable[str] = (), status: bool = False) -> ResourceType:
    return ResourceType(group=group, plural=plural, kind=kind, namespaced=namespaced,
                        versions=[version], short_names=list(short), status_subresource=status,
                        categories=['all'] if kind in ('Pod', 'Service', 'Deployment') else [],
                        generation=kind in _WITH_GENERATION)


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
        check_field_selector(rtype, fields)
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
        self._check_not_terminating(rtype, namespace, name)
        if rtype.key == NAMESPACES:
            obj['spec'] = {'finalizers': ['kubernetes']}
        for key in _SYSTEM_METADATA:
            meta.pop(key, None)
        meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=_now())
        if rtype.generation:
            meta['generation'] = 1
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
        if rtype.custom and not _meta(candidate).get('resourceVersion'):
            self.get(rtype, namespace, name)  # 404 first
            raise self._unconditional_update(rtype, name)
        return self._update(rtype, version, namespace, name, subresource, candidate, field_validation)

    def patch(self, rtype: ResourceType, version: str, namespace: str | None, name: str,
              subresource: str | None, content_type: str, patch: Any, *,
              field_validation: str | None = None) -> Obj:
        current = self.render(rtype, version, self.get(rtype, namespace, name))
        candidate = _patched(rtype, content_type, current, patch)
        return self._update(rtype, version, namespace, name, subresource, candidate, field_validation)

    def delete(self, rtype: ResourceType, namespace: str | None, name: str, options: Any) -> Obj:
        obj = self.get(rtype, namespace, name)
        self._check_preconditions(rtype, obj, options)
        meta = _meta(obj)
        if not meta.get('finalizers') and rtype.key not in (NAMESPACES, CRDS):
            if self.gate is not None:
                self.gate(Change('DELETE', rtype, obj, None))
            return self._remove(rtype, obj)
        if meta.get('deletionTimestamp'):
            return obj  # already being deleted: a no-op, as the real server
        updated = _marked(obj, CRD_CLEANUP if rtype.key == CRDS else None)
        if self.gate is not None:
            self.gate(Change('DELETE', rtype, obj, updated))
        written = self._write(rtype, updated, 'MODIFIED')
        if rtype.key in (NAMESPACES, CRDS):
            self._tear_down(rtype, written)
        return written

    # --- Namespace and CRD deletion --------------------------------------------------------------
    # As kube-controller-manager's namespace controller and the apiextensions server's CRD finalizer do:
    # the namespace (CRD) stays, Terminating, while the objects in it (its instances) are deleted; objects with
    # finalizers stay, marked, until their finalizers are removed; then the namespace (CRD) goes too.

    def _tear_down(self, rtype: ResourceType, owner: Obj) -> None:
        for obj_key in [obj_key for obj_key in self.objects if _owned_by(owner, obj_key)]:
            self._delete_content(obj_key)
        self._finish_teardown(rtype, owner)

    def _delete_content(self, obj_key: ObjKey) -> None:
        rtype, obj = self.types.get(obj_key[:2]), self.objects.get(obj_key)
        if rtype is None or obj is None:
            return
        if not _meta(obj).get('finalizers'):
            self._remove(rtype, obj)
        elif not _meta(obj).get('deletionTimestamp'):
            self._write(rtype, _marked(obj), 'MODIFIED')

    def _finish_teardown(self, rtype: ResourceType, owner: Obj) -> None:
        """Remove a Terminating namespace or CRD once nothing is left in it."""
        meta = _meta(owner)
        if any(_owned_by(owner, obj_key) for obj_key in self.objects):
            return
        finalizers = [f for f in meta.get('finalizers') or [] if f != CRD_CLEANUP]
        if finalizers:  # someone else's finalizer on the CRD: it stays until that is removed too
            if finalizers != meta.get('finalizers'):
                self._write(rtype, {**owner, 'metadata': {**meta, 'finalizers': finalizers}}, 'MODIFIED')
            return
        self._remove(rtype, owner)

    def _after_removal(self, rtype: ResourceType, meta: Obj) -> None:
        """The last object of a Terminating namespace (or CRD) gone: the namespace (CRD) goes too."""
        owners = []
        if rtype.namespaced and meta.get('namespace'):
            owners.append((self.types[NAMESPACES], self.objects.get(('', 'namespaces', '', meta['namespace']))))
        if rtype.terminating:
            owners.append((self.types[CRDS], next((crd for key, crd in self.objects.items() if key[:2] == CRDS
                                                    and _crd_key(crd) == rtype.key), None)))
        for owner_type, owner in owners:
            if owner is not None and _meta(owner).get('deletionTimestamp'):
                self._finish_teardown(owner_type, owner)

    def _check_not_terminating(self, rtype: ResourceType, namespace: str | None, name: str) -> None:
        if rtype.terminating:
            raise ApiError(403, 'Forbidden', f'{rtype.qualified} "{name}" is forbidden: create not allowed while '
                           'custom resource definition is terminating', details=rtype.details(name))
        owner = self.objects.get(('', 'namespaces', '', namespace or ''))
        if owner is not None and _meta(owner).get('deletionTimestamp'):
            raise ApiError(403, 'Forbidden', f'{rtype.qualified} "{name}" is forbidden: unable to create new '
                           f'content in namespace {namespace} because it is being terminated', details={
                               **rtype.details(name), 'causes': [{
                                   'reason': 'NamespaceTerminating', 'field': 'metadata.namespace',
                                   'message': f'namespace {namespace} is being terminated'}]})

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
        new = self._admit(rtype, version, new, field_validation, old)
        if self.gate is not None:  # as the real server, no-op updates are reviewed too
            new = self.gate(Change('UPDATE', rtype, old, new)) or new
        if self._comparable(new) == self._comparable(old):
            return old  # a no-op write: no new resourceVersion, no watch event (as the real server)
        if rtype.generation and self._spec(rtype, new) != self._spec(rtype, old):
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
            listed = ', '.join(json.dumps(finalizer) for finalizer in sorted(added))
            refused = schema.FieldError('metadata.finalizers', 'FieldValueForbidden',
                                        'Forbidden: no new finalizers can be added if the object is being '
                                        f'deleted, found new finalizers []string{{{listed}}}')
            # The real server checks it twice (strategy and generic update): two causes, one message.
            raise self._invalid(rtype, old_meta.get('name', ''), [refused, refused])
        return {**new, 'metadata': meta}

    @staticmethod
    def _comparable(obj: Obj) -> Obj:
        return {**obj, 'apiVersion': None, 'metadata': {**_meta(obj), 'resourceVersion': None}}

    @staticmethod
    def _spec(rtype: ResourceType, obj: Obj) -> Obj:
        # Generation tracks everything but metadata (and status when it is a subresource).
        skipped = {'metadata', 'apiVersion', 'kind'} | ({'status'} if rtype.status_subresource else set())
        return {key: val for key, val in obj.items() if key not in skipped}

    @staticmethod
    def _unconditional_update(rtype: ResourceType, name: str) -> ApiError:
        """Custom resources cannot be replaced blindly (a PUT must carry a resourceVersion); the generic
        registry says so, naming the resource (not the kind, as the schema's errors do)."""
        detail = 'Invalid value: 0: must be specified for an update'
        return ApiError(422, 'Invalid', f'{rtype.qualified} "{name}" is invalid: metadata.resourceVersion: {detail}',
                        details={**rtype.details(name), 'causes': [{
                            'reason': 'FieldValueInvalid', 'message': detail, 'field': 'metadata.resourceVersion'}]})

    def _invalid(self, rtype: ResourceType, name: str, errors: list[schema.FieldError]) -> ApiError:
        texts = list(dict.fromkeys(map(str, errors)))  # the message names each error once, as Go's aggregate
        listed = texts[0] if len(texts) == 1 else '[' + ', '.join(texts) + ']'
        kind = f'{rtype.kind}.{rtype.group}' if rtype.group else rtype.kind
        causes = [{'reason': e.reason, 'message': e.detail, 'field': e.field} for e in errors]
        return ApiError(422, 'Invalid', f'{kind} "{name}" is invalid: {listed}',
                        details={**rtype.details(name), 'kind': rtype.kind, 'causes': causes})

    def _admit(self, rtype: ResourceType, version: str, obj: Obj, field_validation: str | None = None,
               old: Obj | None = None) -> Obj:
        """Prune, default and validate: what admission + validation do in the real server."""
        meta = _meta(obj)
        for key in _OMIT_EMPTY:  # Go's omitempty: an emptied map or list is not stored at all
            if key in meta and not meta[key]:
                del meta[key]
        errors = self._metadata_errors(rtype, meta)
        if rtype.custom and field_validation == 'Strict':  # what kubectl sends (--validate=strict, its default)
            unknown = schema.unknown_fields(obj, rtype.schemas.get(version))
            if unknown:
                raise ApiError(400, 'BadRequest', f'{rtype.kind} in version "{version}" cannot be handled as a '
                               f'{rtype.kind}: strict decoding error: '
                               + ', '.join(f'unknown field "{path}"' for path in unknown))
        if rtype.custom:
            obj = schema.prune_root(obj, rtype.schemas.get(version))
            errors += schema.validate_root(obj, rtype.schemas.get(version))
            errors += _rule_errors(obj, old, rtype.schemas.get(version), errors)
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
                "character (e.g. 'example.com', regex used for validation is "
                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")))
        for field_name in ('labels', 'annotations'):
            values = meta.get(field_name) or {}
            if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
                # The real server fails to even decode such a body; 422 is close enough for tests.
                errors.append(schema.FieldError(f'metadata.{field_name}', 'FieldValueInvalid',
                                                'Invalid value: values must be strings'))
            elif field_name == 'annotations' and _annotations_size(values) > ANNOTATIONS_LIMIT:
                errors.append(schema.FieldError('metadata.annotations', 'FieldValueTooLong',
                                                f'Too long: may not be more than {ANNOTATIONS_LIMIT} bytes'))
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
        if len(json.dumps(obj)) > OBJECT_LIMIT:
            raise ApiError(500, '', 'etcdserver: request is too large')
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
        if rtype.key == NAMESPACES:
            self._remove_contents(lambda key: key[2] == meta['name'])
        if rtype.key == CRDS:
            self._unregister_crd(obj)
        self._after_removal(rtype, meta)
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
            terminating=bool(_meta(crd).get('deletionTimestamp')),
        )
        self.types[rtype.key] = rtype
        conditions = [('NamesAccepted', 'NoConflicts', 'no conflicts found'),
                      ('Established', 'InitialNamesAccepted', 'the initial names have been accepted')]
        if rtype.terminating:
            conditions.append(('Terminating', 'InstanceDeletionInProgress', 'CustomResource deletion is in progress'))
        crd['status'] = {
            'acceptedNames': names,
            'storedVersions': [v['name'] for v in served if v.get('storage')],
            'conditions': [
                {'type': cond, 'status': 'True', 'reason': reason, 'lastTransitionTime': _now(),
                 'message': message}
                for cond, reason, message in conditions
            ],
        }

    def _unregister_crd(self, crd: Obj) -> None:
        spec = crd.get('spec') or {}
        key = (spec.get('group', ''), (spec.get('names') or {}).get('plural', ''))
        self._remove_contents(lambda obj_key: obj_key[:2] == key)
        self.types.pop(key, None)


def _marked(obj: Obj, finalizer: str | None = None) -> Obj:
    """The object as deletion leaves it while finalizers remain: deletionTimestamp set, generation bumped."""
    updated = copy.deepcopy(obj)
    meta = _meta(updated)
    meta['deletionTimestamp'] = _now()
    if obj.get('kind') != 'Namespace':  # namespaces are finalized, not deleted gracefully
        meta['deletionGracePeriodSeconds'] = 0
    if 'generation' in meta:
        meta['generation'] = int(meta['generation']) + 1
    if finalizer:
        meta['finalizers'] = [*(meta.get('finalizers') or []), finalizer]
    return updated


def _owned_by(owner: Obj, obj_key: ObjKey) -> bool:
    """Whether the object is in the namespace ``owner``, or an instance of the CRD ``owner``."""
    crd = _crd_key(owner)
    if crd is not None:
        return obj_key[:2] == crd
    return obj_key[2] == _meta(owner).get('name') and obj_key[:2] != NAMESPACES


def _crd_key(obj: Obj) -> TypeKey | None:
    if obj.get('kind') != 'CustomResourceDefinition':
        return None
    spec = obj.get('spec') or {}
    return (str(spec.get('group', '')), str((spec.get('names') or {}).get('plural', '')))


def check_field_selector(rtype: ResourceType, selector: str | None) -> None:
    """Custom resources can be selected by metadata.name and, when namespaced, metadata.namespace only (400
    otherwise)."""
    if not rtype.custom or not selector:
        return
    try:
        paths = objectops.field_paths(selector)
    except objectops.SelectorError as e:
        raise ApiError(400, 'BadRequest', str(e)) from None
    labels = ('metadata.name', 'metadata.namespace') if rtype.namespaced else ('metadata.name',)
    for path in paths:
        if path not in labels:
            raise ApiError(400, 'BadRequest', f'field label not supported: {path}')


def _patched(rtype: ResourceType, content_type: str, current: Obj, patch: Any) -> Obj:
    """The object after the patch, or the real server's answers: 415, 400 (undecodable), 422 (not applicable)."""
    if rtype.custom and content_type == 'application/strategic-merge-patch+json':
        raise ApiError(415, 'UnsupportedMediaType', 'the body of the request was in an unknown format - accepted '
                       'media types include: application/json-patch+json, application/merge-patch+json, '
                       'application/apply-patch+yaml')
    json_patch = content_type == 'application/json-patch+json'
    if not isinstance(patch, list if json_patch else dict):
        go_type = '[]handlers.jsonPatchOp' if json_patch else 'map[string]interface {}'
        found = 'array' if isinstance(patch, list) else 'object' if isinstance(patch, dict) else 'value'
        raise ApiError(400, 'BadRequest', f'error decoding patch: json: cannot unmarshal {found} into Go value '
                       f'of type {go_type}')
    try:
        # Strategic merge (built-in kinds only) is treated as a merge patch: approximate, see KNOWN_DIFFERENCES.
        candidate = objectops.json_patch(current, patch) if json_patch else objectops.merge_patch(current, patch)
    except (objectops.PatchError, ValueError, TypeError):
        raise ApiError(422, 'Invalid', 'the server rejected our request due to an error in our request') from None
    if not isinstance(candidate, dict):
        raise ApiError(422, 'Invalid', 'the server rejected our request due to an error in our request')
    return candidate


def _annotations_size(annotations: Mapping[str, str]) -> int:
    return sum(len(key.encode()) + len(value.encode()) for key, value in annotations.items())


def _rule_errors(obj: Obj, old: Obj | None, root: schema.Schema | None,
                 found: list[schema.FieldError]) -> list[schema.FieldError]:
    """CEL rules (``x-kubernetes-validations``), skipped after blocking errors as in the real server."""
    if not cel.has_rules(root):
        return []
    if cel.blocked(found):
        return [cel.SKIPPED]
    return cel.errors(obj, old if old is not None else cel.MISSING, root, '')


def _crd_schema_errors(spec: Obj) -> list[schema.FieldError]:
    """What the real server checks in the schemas: metadata is ``type: object`` only, patterns and rules
    compile."""
    versions = [v for v in spec.get('versions') or [] if isinstance(v, dict)]
    schemas = [(v.get('schema') or {}).get('openAPIV3Schema') for v in versions]
    # The real server names one shared schema spec.validation (its internal form), per-version ones by index.
    shared = len({json.dumps(s, sort_keys=True) for s in schemas}) == 1
    errors: list[schema.FieldError] = []
    for index, root in enumerate(schemas[:1] if shared else schemas):
        path = ('spec.validation.openAPIV3Schema' if shared
                else f'spec.versions[{index}].schema.openAPIV3Schema')
        errors += (_metadata_schema_errors(root, path) + schema.pattern_errors(root, path)
                   + cel.check_schema(root, path))
    return errors


def _metadata_schema_errors(root: Any, path: str) -> list[schema.FieldError]:
    metadata = ((root or {}).get('properties') or {}).get('metadata') if isinstance(root, dict) else None
    if not isinstance(metadata, dict):
        return []
    errors: list[schema.FieldError] = []
    where = f'{path}.properties[metadata]'
    if metadata.get('type') != 'object':
        errors.append(schema.FieldError(f'{where}.type', 'FieldValueInvalid',
                                        f'Invalid value: {json.dumps(metadata.get("type"))}: must be object'))
    rest = {key: value for key, value in metadata.items() if key != 'type'}
    properties = dict(rest.pop('properties', None) or {})
    for key in ('name', 'generateName'):  # string checks of these two are allowed, nothing else
        if isinstance(properties.get(key), dict) and properties[key].get('type') == 'string':
            properties.pop(key)
    if rest or properties:
        errors.append(schema.FieldError(where, 'FieldValueForbidden', 'Forbidden: must not specify anything '
                                        'other than name and generateName, but metadata is implicitly specified'))
    return errors


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
    return errors + _crd_schema_errors(spec) + _printer_column_errors(spec.get('versions'))


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
