"""Who is calling: the account and region every emulated operation acts for.

Real AWS authorizes each request as the principal behind its access key, in the region the request was signed
for. The emulator does not verify signatures, but it does read the SigV4 credential scope
(``Credential=AKID/date/region/service/aws4_request``): the access key says which account the caller is in,
the scope's region is where the call is made. An access key maps to its account, in this order: an explicit
entry (``Identities[access_key_id] = account_id``, for unit tests), then STS ``GetCallerIdentity`` at a
configured endpoint (moto's server; it tells assumed-role keys apart by account), else the world's account.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from typing import Any

import boto3.session
import botocore.config
import botocore.exceptions

from imagescan.emulator import errors

# SigV4: "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/imagebuilder/aws4_request, SignedHeaders=..."
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/[^/]+/aws4_request")


@dataclasses.dataclass(frozen=True)
class Caller:
    """The principal a request is made as, and the region it is made in."""

    account_id: str
    region: str
    principal_arn: str
    """What AWS names in an AccessDenied message (``User: <arn> is not authorized ...``)."""


@dataclasses.dataclass(frozen=True)
class _Principal:
    account_id: str
    arn: str


def access_key_and_region(authorization: str | None) -> tuple[str | None, str | None]:
    """The access key id and the signing region of a SigV4 ``Authorization`` header (None when unsigned)."""
    match = _CREDENTIAL.search(authorization or "")
    return (match.group(1), match.group(2)) if match else (None, None)


class Identities:
    """Access key id -> account, thread-safe; STS answers are cached per key (keys never change account)."""

    def __init__(self, default_account_id: str, default_region: str, sts_endpoint_url: str | None = None) -> None:
        self.default_account_id = default_account_id
        self.default_region = default_region
        self.sts_endpoint_url = sts_endpoint_url
        self._lock = threading.Lock()
        self._explicit: dict[str, str] = {}
        self._resolved: dict[str, _Principal] = {}

    def __setitem__(self, access_key_id: str, account_id: str) -> None:
        with self._lock:
            self._explicit[access_key_id] = account_id

    def __delitem__(self, access_key_id: str) -> None:
        with self._lock:
            del self._explicit[access_key_id]

    def __contains__(self, access_key_id: object) -> bool:
        with self._lock:
            return access_key_id in self._explicit

    def caller(self, authorization: str | None) -> Caller:
        """The caller of a request with this ``Authorization`` header."""
        access_key_id, region = access_key_and_region(authorization)
        principal = self._principal(access_key_id)
        return Caller(principal.account_id, region or self.default_region, principal.arn)

    def _principal(self, access_key_id: str | None) -> _Principal:
        with self._lock:
            explicit = self._explicit.get(access_key_id or "")
            cached = self._resolved.get(access_key_id or "")
        if explicit is not None:
            return _Principal(explicit, _user_arn(explicit, access_key_id))
        if cached is not None:
            return cached
        if access_key_id is None or self.sts_endpoint_url is None:
            return _Principal(self.default_account_id, _user_arn(self.default_account_id, access_key_id))
        # Asked outside the lock: a slow STS must not stall every other caller; a duplicate answer is harmless.
        principal = _ask_sts(self.sts_endpoint_url, access_key_id, self.default_region)
        with self._lock:
            self._resolved[access_key_id] = principal
        return principal


def _user_arn(account_id: str, access_key_id: str | None) -> str:
    return f"arn:aws:iam::{account_id}:user/{access_key_id or 'anonymous'}"


def _ask_sts(endpoint_url: str, access_key_id: str, region: str) -> _Principal:
    """GetCallerIdentity as that key; moto identifies the key alone, so the secret is a placeholder."""
    client: Any = boto3.session.Session().client(
        "sts",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key="emulator-does-not-sign",
        config=botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 3}),
    )
    try:
        answer = client.get_caller_identity()
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        # What AWS answers for a key it does not know; 403 as every AWS front end sends it.
        raise errors.ApiError(
            "UnrecognizedClientException", f"The security token included in the request is invalid. ({exc})",
            status=403,
        ) from exc
    return _Principal(str(answer["Account"]), str(answer["Arn"]))
