"""Which IAM role an object may make the operator assume: the one place that decides it.

The operator's own role can usually assume many roles, so whatever a tenant writes in ``spec.roleArn`` must
not be enough. Like ACK's cross-account resource management, the grant comes from something only cluster
admins can change: annotations on the Namespace (a namespace's ``edit``/``admin`` users cannot patch their
own Namespace object):

- ``imagescan.io/allowed-role-arns``: the role ARNs objects in this namespace may name in ``spec.roleArn``
  (separated by commas, spaces or new lines; exact ARNs, no wildcards: a pattern is one typo away from
  another tenant's role);
- ``imagescan.io/default-role-arn``: the role used when an object names none (allowed implicitly);
- ``imagescan.io/external-id``: passed to AssumeRole as ``ExternalId`` for this namespace's roles, so a role
  whose trust policy requires it cannot be assumed on behalf of another namespace even if an admin
  mistakenly allows it there (the confused-deputy guard AWS recommends).

Without a role (no spec.roleArn, no default) the operator's own credentials are used, as before.
Cluster-scoped objects (InspectorActivation) can only be created by cluster admins: their role is theirs to
choose. A refusal is Terminal (Stalled, naming the field and the annotation) and nothing is called with the role.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from imagescan import GROUP
from imagescan.aws import errors

ALLOWED_ANNOTATION = f"{GROUP}/allowed-role-arns"
DEFAULT_ANNOTATION = f"{GROUP}/default-role-arn"
EXTERNAL_ID_ANNOTATION = f"{GROUP}/external-id"
_SEPARATORS = re.compile(r"[\s,]+")


class RoleNotAllowed(errors.AwsError):
    """The object names a role its namespace was not granted."""

    terminal = True
    reason = "RoleNotAllowed"


@dataclasses.dataclass(frozen=True)
class Rules:
    """What a namespace's annotations grant."""

    allowed: frozenset[str] = frozenset()
    default: str | None = None
    external_id: str | None = None


@dataclasses.dataclass(frozen=True)
class Grant:
    """The role to assume (None: the operator's own credentials) and its external id."""

    role_arn: str | None
    external_id: str | None = None


def rules_from_annotations(annotations: Mapping[str, str]) -> Rules:
    allowed = frozenset(arn for arn in _SEPARATORS.split(annotations.get(ALLOWED_ANNOTATION, "")) if arn)
    default = annotations.get(DEFAULT_ANNOTATION, "").strip() or None
    external_id = annotations.get(EXTERNAL_ID_ANNOTATION, "").strip() or None
    return Rules(allowed=allowed, default=default, external_id=external_id)


def for_namespace(namespace: str, rules: Rules | None, requested: str | None) -> Grant:
    """The role an object in ``namespace`` asking for ``requested`` (spec.roleArn) gets, or RoleNotAllowed."""
    rules = rules or Rules()
    if requested is None:
        return Grant(role_arn=rules.default, external_id=rules.external_id if rules.default else None)
    if requested == rules.default or requested in rules.allowed:
        return Grant(role_arn=requested, external_id=rules.external_id)
    raise RoleNotAllowed(
        f"spec.roleArn {requested} is not allowed in namespace {namespace}: a cluster admin must list it in "
        f"the namespace's {ALLOWED_ANNOTATION} annotation (nothing was called with this role)",
        code="RoleNotAllowed",
    )


def for_cluster(requested: str | None, external_id: str | None) -> Grant:
    """Cluster-scoped objects: only cluster admins create them, so the role they name is used."""
    return Grant(role_arn=requested, external_id=external_id if requested else None)
