"""Which IAM roles each namespace may use, from the Namespace annotations only cluster admins can set.

A kopf index over Namespaces, holding only those that carry one of the access annotations (see
``reconcile.access``), so a cluster with thousands of plain namespaces costs nothing. The ImagePipeline
handlers read it for every reconcile; the decision itself is ``access.for_namespace``.
"""

from __future__ import annotations

from typing import Any

import kopf

from imagescan.reconcile import access

INDEX = "namespace_access"
Access = kopf.Index[str, access.Rules]
_ANNOTATIONS = (access.ALLOWED_ANNOTATION, access.DEFAULT_ANNOTATION, access.EXTERNAL_ID_ANNOTATION)


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.index("", "v1", "namespaces", registry=registry, id=INDEX, when=_has_access_annotations)(index_namespace)


def _has_access_annotations(annotations: kopf.Annotations, **_: Any) -> bool:
    return any(key in annotations for key in _ANNOTATIONS)


def index_namespace(name: str, annotations: kopf.Annotations, **_: Any) -> dict[str, access.Rules]:
    return {name: access.rules_from_annotations(annotations)}


def rules(index: Access | None, namespace: str) -> access.Rules | None:
    """The namespace's rules; None when it has no access annotations (its objects use no role)."""
    if index is None:
        return None
    found = list(index.get(namespace, []))
    return found[0] if found else None
