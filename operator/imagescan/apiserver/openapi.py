"""
OpenAPI v3 documents of the emulated API server: what ``kubectl explain`` reads.

kubectl 1.32 fetches ``/openapi/v3`` (an index of group-versions), then the
document of one group-version, and looks in ``components.schemas`` for the
schema whose ``x-kubernetes-group-version-kind`` names the kind: ``explain``
prints its field descriptions. ``kubectl apply``/``create`` (``--validate``,
strict by default) check in the same document whether the PATCH operation of
the kind accepts the ``fieldValidation`` query parameter: if it does, kubectl
leaves the validation to the server (no client-side OpenAPI v2 needed).

As the real server does, CRD schemas are published as-is, under
reverse-DNS names (``io.imagescan.v1alpha1.ImagePipeline``), with
``metadata`` referring to a (here minimal) ``ObjectMeta``. Built-in kinds get
an open schema: enough for kubectl to find them, not a full API reference.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from imagescan.apiserver import store

Obj = dict[str, Any]

_META = 'io.k8s.apimachinery.pkg.apis.meta.v1'
OBJECT_META = f'{_META}.ObjectMeta'
LIST_META = f'{_META}.ListMeta'
_REF = '#/components/schemas/'

_API_VERSION_DOC = (
    'APIVersion defines the versioned schema of this representation of an object. Servers should convert '
    'recognized schemas to the latest internal value, and may reject unrecognized values. More info: '
    'https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources')
_KIND_DOC = (
    'Kind is a string value representing the REST resource this object represents. Servers may infer this '
    'from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: '
    'https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds')
_METADATA_DOC = ("Standard object's metadata. More info: "
                 'https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata')
_STRING_MAP = {'type': 'object', 'additionalProperties': {'type': 'string', 'default': ''}}
_STRINGS = {'type': 'array', 'items': {'type': 'string', 'default': ''}}

# A minimal ObjectMeta: the fields people set or read, with the real descriptions shortened.
_OBJECT_META: Obj = {
    'description': 'ObjectMeta is metadata that all persisted resources must have, which includes all objects '
                   'users must create.',
    'type': 'object',
    'properties': {
        'name': {'type': 'string', 'description': 'Name must be unique within a namespace. Is required when '
                 'creating resources, although some resources may allow a client to request the generation of '
                 'an appropriate name automatically. Cannot be updated.'},
        'generateName': {'type': 'string', 'description': 'GenerateName is an optional prefix, used by the '
                         'server, to generate a unique name ONLY IF the Name field has not been provided.'},
        'namespace': {'type': 'string', 'description': 'Namespace defines the space within which each name '
                      'must be unique. Cannot be updated.'},
        'labels': {**_STRING_MAP, 'description': 'Map of string keys and values that can be used to organize '
                   'and categorize (scope and select) objects.'},
        'annotations': {**_STRING_MAP, 'description': 'Annotations is an unstructured key value map stored '
                        'with a resource that may be set by external tools to store and retrieve arbitrary '
                        'metadata.'},
        'finalizers': {**_STRINGS, 'x-kubernetes-list-type': 'set', 'x-kubernetes-patch-strategy': 'merge',
                       'description': 'Must be empty before the object is deleted from the registry.'},
        'ownerReferences': {'type': 'array', 'description': 'List of objects depended by this object.',
                            'items': {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}},
        'uid': {'type': 'string', 'description': 'UID is the unique in time and space value for this object. '
                'Populated by the system. Read-only.'},
        'resourceVersion': {'type': 'string', 'description': 'An opaque value that represents the internal '
                            'version of this object, used for optimistic concurrency. Read-only.'},
        'generation': {'type': 'integer', 'format': 'int64', 'description': 'A sequence number representing a '
                       'specific generation of the desired state. Populated by the system. Read-only.'},
        'creationTimestamp': {'type': 'string', 'format': 'date-time', 'description': 'CreationTimestamp is a '
                              'timestamp representing the server time when this object was created. Read-only.'},
        'deletionTimestamp': {'type': 'string', 'format': 'date-time', 'description': 'DeletionTimestamp is '
                              'RFC 3339 date and time at which this resource will be deleted. Read-only.'},
        'deletionGracePeriodSeconds': {'type': 'integer', 'format': 'int64', 'description': 'Number of seconds '
                                       'allowed for this object to gracefully terminate. Read-only.'},
    },
}
_LIST_META: Obj = {
    'description': 'ListMeta describes metadata that synthetic resources must have, including lists.',
    'type': 'object',
    'properties': {
        'resourceVersion': {'type': 'string', 'description': "String that identifies the server's internal "
                            'version of this object. Read-only.'},
        'continue': {'type': 'string', 'description': 'Set if the user can retrieve more results.'},
        'remainingItemCount': {'type': 'integer', 'format': 'int64',
                               'description': 'The number of subsequent items in the list.'},
    },
}


def gv_path(group: str, version: str) -> str:
    """The key of a group-version in ``/openapi/v3``: ``api/v1`` or ``apis/<group>/<version>``."""
    return f'apis/{group}/{version}' if group else f'api/{version}'


def schema_name(group: str, version: str, kind: str) -> str:
    """The real server's component name: ``io.imagescan.v1alpha1.ImagePipeline``, ``io.k8s.api.core.v1.Pod``."""
    if not group:
        prefix = 'io.k8s.api.core'
    elif group == 'apiextensions.k8s.io':
        prefix = 'io.k8s.apiextensions-apiserver.pkg.apis.apiextensions'
    elif group.endswith('.k8s.io') or '.' not in group:
        prefix = f'io.k8s.api.{group.removesuffix(".k8s.io")}'
    else:
        prefix = '.'.join(reversed(group.split('.')))
    return f'{prefix}.{version}.{kind}'


def group_versions(types: Iterable[store.ResourceType]) -> list[tuple[str, str]]:
    found = {(rtype.group, version) for rtype in types for version in rtype.versions}
    return sorted(found)


def index(types: Iterable[store.ResourceType]) -> Obj:
    """``GET /openapi/v3``: where each group-version's document is, with a hash of its content."""
    types = list(types)
    paths: Obj = {}
    for group, version in group_versions(types):
        path = gv_path(group, version)
        digest = hashlib.sha512(json.dumps(document(types, group, version), sort_keys=True).encode())
        paths[path] = {'serverRelativeURL': f'/openapi/v3/{path}?hash={digest.hexdigest().upper()}'}
    return {'paths': paths}


def document(types: Iterable[store.ResourceType], group: str, version: str) -> Obj:
    """``GET /openapi/v3/apis/<group>/<version>``: schemas and paths of the group-version's kinds."""
    selected = [rtype for rtype in types if rtype.group == group and version in rtype.versions]
    if not selected:
        raise store.ApiError(404, 'NotFound', 'the server could not find the requested resource')
    schemas: Obj = {OBJECT_META: copy.deepcopy(_OBJECT_META), LIST_META: copy.deepcopy(_LIST_META)}
    paths: Obj = {}
    for rtype in sorted(selected, key=lambda rtype: rtype.plural):
        schemas[schema_name(group, version, rtype.kind)] = kind_schema(rtype, version)
        schemas[schema_name(group, version, f'{rtype.kind}List')] = list_schema(rtype, version)
        paths.update(resource_paths(rtype, version))
    title = 'Kubernetes CRD Swagger' if any(rtype.custom for rtype in selected) else 'Kubernetes'
    return {'openapi': '3.0.0', 'info': {'title': title, 'version': 'v0.1.0'},
            'paths': paths, 'components': {'schemas': schemas}}


def _gvk(rtype: store.ResourceType, version: str, kind: str | None = None) -> list[Obj]:
    return [{'group': rtype.group, 'version': version, 'kind': kind or rtype.kind}]


def _ref(name: str, description: str, **extra: Any) -> Obj:
    # The real server wraps references in allOf, so that a description can stand next to them.
    return {'allOf': [{'$ref': _REF + name}], 'description': description, **extra}


def kind_schema(rtype: store.ResourceType, version: str) -> Obj:
    """The kind's schema: the CRD's ``openAPIV3Schema`` (or an open one), with the standard fields."""
    source = rtype.schemas.get(version)
    schema: Obj = copy.deepcopy(source) if isinstance(source, dict) else {
        'type': 'object', 'description': f'{rtype.kind} (a built-in kind; its fields are not described here).',
        'x-kubernetes-preserve-unknown-fields': True}
    properties = schema.setdefault('properties', {})
    properties['apiVersion'] = {'type': 'string', 'description': _API_VERSION_DOC}
    properties['kind'] = {'type': 'string', 'description': _KIND_DOC}
    properties['metadata'] = _ref(OBJECT_META, _METADATA_DOC)  # no default, as the real server
    schema['x-kubernetes-group-version-kind'] = _gvk(rtype, version)
    return schema


def list_schema(rtype: store.ResourceType, version: str) -> Obj:
    name = schema_name(rtype.group, version, rtype.kind)
    return {
        'description': f'{rtype.kind}List is a list of {rtype.kind}', 'type': 'object', 'required': ['items'],
        'properties': {
            'apiVersion': {'type': 'string', 'description': _API_VERSION_DOC},
            'kind': {'type': 'string', 'description': _KIND_DOC},
            'items': {'type': 'array', 'description': f'List of {rtype.plural}.',
                      'items': {'$ref': _REF + name}},
            'metadata': _ref(LIST_META, 'Standard list metadata.', default={}),
        },
        'x-kubernetes-group-version-kind': _gvk(rtype, version, f'{rtype.kind}List'),
    }


_WRITE_PARAMS = [
    {'name': 'dryRun', 'in': 'query', 'schema': {'type': 'string', 'uniqueItems': True},
     'description': 'When present, indicates that modifications should not be persisted.'},
    {'name': 'fieldManager', 'in': 'query', 'schema': {'type': 'string', 'uniqueItems': True},
     'description': 'A name associated with the actor or entity that is making these changes.'},
    # Announcing it makes kubectl leave --validate to the server instead of needing OpenAPI v2.
    {'name': 'fieldValidation', 'in': 'query', 'schema': {'type': 'string', 'uniqueItems': True},
     'description': 'Ignore, Warn or Strict: how the server handles unknown fields in the body.'},
]
_PATCH_TYPES = ('application/json-patch+json', 'application/merge-patch+json')


def _operation(rtype: store.ResourceType, version: str, action: str, verb: str, kind: str,
               response: str, *, body: Iterable[str] = (), write: bool = False, suffix: str = '') -> Obj:
    operation: Obj = {
        'tags': [gv_path(rtype.group, version).replace('/', '_')],
        'operationId': f'{verb}{rtype.kind}{suffix}',
        'responses': {'200': {'description': 'OK', 'content': {
            'application/json': {'schema': {'$ref': _REF + response}}}}},
        'x-kubernetes-action': action,
        # a single GVK on operations, a list of them on schemas: as the real server
        'x-kubernetes-group-version-kind': _gvk(rtype, version, kind)[0],
    }
    if write:
        operation['parameters'] = copy.deepcopy(_WRITE_PARAMS)
    content_types = list(body)
    if content_types:
        operation['requestBody'] = {'required': True, 'content': {
            media: {'schema': {'$ref': _REF + schema_name(rtype.group, version, rtype.kind)}}
            for media in content_types}}
    return operation


def resource_paths(rtype: store.ResourceType, version: str) -> Obj:
    """A minimal ``paths`` section: list/create, get/replace/patch/delete, and the status subresource."""
    prefix = f'/{gv_path(rtype.group, version)}'
    scope = f'{prefix}/namespaces/{{namespace}}/{rtype.plural}' if rtype.namespaced else f'{prefix}/{rtype.plural}'
    kind, list_kind = rtype.kind, f'{rtype.kind}List'
    own = schema_name(rtype.group, version, kind)
    listed = schema_name(rtype.group, version, list_kind)
    params = [{'name': 'name', 'in': 'path', 'required': True, 'schema': {'type': 'string', 'uniqueItems': True},
               'description': f'name of the {rtype.kind}'}]
    if rtype.namespaced:
        params.append({'name': 'namespace', 'in': 'path', 'required': True,
                       'schema': {'type': 'string', 'uniqueItems': True},
                       'description': 'object name and auth scope, such as for teams and projects'})
    paths: Obj = {
        scope: {
            'get': _operation(rtype, version, 'list', 'list', kind, listed),
            'post': _operation(rtype, version, 'post', 'create', kind, own, body=['application/json'], write=True),
            'parameters': params[1:],
        },
        f'{scope}/{{name}}': {
            'get': _operation(rtype, version, 'get', 'read', kind, own),
            'put': _operation(rtype, version, 'put', 'replace', kind, own, body=['application/json'], write=True),
            'patch': _operation(rtype, version, 'patch', 'patch', kind, own, body=_PATCH_TYPES, write=True),
            'delete': _operation(rtype, version, 'delete', 'delete', kind, own),
            'parameters': params,
        },
    }
    if rtype.status_subresource:
        paths[f'{scope}/{{name}}/status'] = {
            'get': _operation(rtype, version, 'get', 'read', kind, own, suffix='Status'),
            'put': _operation(rtype, version, 'put', 'replace', kind, own, body=['application/json'], write=True,
                              suffix='Status'),
            'patch': _operation(rtype, version, 'patch', 'patch', kind, own, body=_PATCH_TYPES, write=True,
                                suffix='Status'),
            'parameters': params,
        }
    if rtype.namespaced:
        paths[f'{prefix}/{rtype.plural}'] = {
            'get': _operation(rtype, version, 'list', 'list', kind, listed, suffix='ForAllNamespaces')}
    return paths
