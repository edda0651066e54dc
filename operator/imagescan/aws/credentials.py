"""Credentials for another account: an IAM role assumed with botocore's own refreshing credentials.

botocore already knows how to assume a role and keep the credentials fresh: ``AssumeRoleCredentialFetcher``
calls AssumeRole with the operator's own credentials (whatever the default chain found: environment, IRSA or
EKS Pod Identity, a profile), and ``DeferredRefreshableCredentials`` calls it lazily, at the first signed
request, then again before the credentials expire, under its own lock. This module only wires them together
and makes a failure recognisable: botocore would raise the STS client's exception as it is, from inside an
Image Builder or Inspector call, where nothing says which role it was about.

Session names identify the namespace that asked, not the object: clients are shared per (service, region,
role) and a role's credentials by every client using it, so a per-object session name would mean one
AssumeRole and one set of clients per object. The namespace is what CloudTrail readers and trust policies
(``sts:RoleSessionName`` conditions) need to tell tenants apart.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
from collections.abc import Callable
from typing import Any

from botocore import credentials as botocore_credentials
from botocore import exceptions as botocore_exceptions

METHOD = "assume-role"
"""How botocore labels credentials of this kind (``Credentials.method``)."""

_PREFIX = "imagescan@"
_CLUSTER = "_cluster"  # "_" is in no namespace name: no namespace can get the cluster-scoped session name
_MAX_SESSION_NAME = 64  # STS RoleSessionName: 2 to 64 of [\w+=,.@-]
_HASH_CHARS = 16
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")


@dataclasses.dataclass(frozen=True)
class Role:
    """An IAM role to assume, and how to name the session (see ``session_name_for``)."""

    arn: str
    session_name: str
    external_id: str | None = None


def session_name_for(namespace: str | None) -> str:
    """``imagescan@<namespace>`` (``imagescan@_cluster`` for cluster-scoped objects), valid for STS.

    A namespace too long for STS's 64 characters keeps its start and gets a hash of the whole name after a
    ``.``, which no namespace name contains: a shortened name equals neither another namespace's nor a
    short one's.
    """
    name = _PREFIX + (namespace if namespace is not None else _CLUSTER)
    if len(name) > _MAX_SESSION_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_CHARS]
        name = f"{name[:_MAX_SESSION_NAME - _HASH_CHARS - 1]}.{digest}"
    if not _SESSION_NAME.fullmatch(name):
        raise ValueError(f"not a Kubernetes namespace name: {namespace!r}")
    return name


class AssumeRoleError(botocore_exceptions.CredentialRetrievalError):
    """AssumeRole failed while botocore fetched or refreshed a role's credentials; the cause is chained."""

    def __init__(self, *, role_arn: str, error_msg: str, provider: str = METHOD) -> None:
        super().__init__(provider=provider, error_msg=error_msg, role_arn=role_arn)
        self.role_arn = role_arn


class _NoCache(dict[str, Any]):
    """The fetcher's cache, holding nothing: the credentials object already keeps the current credentials and
    decides on its own clock when they are due; a second cache with a clock of its own could answer a due
    refresh with the very credentials being replaced."""

    def __contains__(self, key: object) -> bool:
        return False

    def __setitem__(self, key: str, value: Any) -> None:
        pass


ClientCreator = Callable[..., Any]
"""Makes the STS client from keyword arguments, like ``botocore.session.Session.create_client``."""
Source = Callable[[], botocore_credentials.Credentials | None]
"""The operator's own credentials (None: there are none), asked for at the first AssumeRole."""


def assumed(
    role: Role,
    source: Source,
    sts_client: ClientCreator,
    clock: Callable[[], datetime.datetime] | None = None,
) -> botocore_credentials.DeferredRefreshableCredentials:
    """Credentials of ``role``, assumed with the ``source`` credentials on first use and again before they
    expire. Every failure, missing source credentials included, surfaces from the call being signed.

    ``clock`` is botocore's ``time_fetcher`` (timezone-aware "now"); tests move it to reach the expiry.
    """
    extra: dict[str, Any] = {"RoleSessionName": role.session_name}
    if role.external_id is not None:
        extra["ExternalId"] = role.external_id
    fetchers: list[botocore_credentials.AssumeRoleCredentialFetcher] = []

    def fetch() -> dict[str, Any]:  # botocore calls it under the credentials' own refresh lock
        try:
            if not fetchers:
                source_credentials = source()
                if source_credentials is None:
                    raise botocore_exceptions.NoCredentialsError()
                fetchers.append(botocore_credentials.AssumeRoleCredentialFetcher(
                    client_creator=sts_client, source_credentials=source_credentials, role_arn=role.arn,
                    extra_args=extra, cache=_NoCache(),
                ))
            fetched: dict[str, Any] = fetchers[0].fetch_credentials()
        except Exception as exc:
            raise AssumeRoleError(role_arn=role.arn, error_msg=f"{role.arn}: {exc}") from exc
        return fetched

    if clock is None:
        return botocore_credentials.DeferredRefreshableCredentials(refresh_using=fetch, method=METHOD)
    return botocore_credentials.DeferredRefreshableCredentials(refresh_using=fetch, method=METHOD, time_fetcher=clock)
