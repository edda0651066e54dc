"""Amazon Inspector's account activation: read the state per resource type, turn types on and off.

Only three inspector2 calls, all about the caller's own account (no ``accountIds``): a member account of an
organization may be denied everything else, and these are what the console's "activate Inspector" step uses.
Errors come out as ``errors.AwsError``; a type Inspector could not change comes back in the result, not raised.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from imagescan.aws import errors


@dataclasses.dataclass(frozen=True)
class TypeState:
    status: str | None
    error_code: str | None = None
    error_message: str | None = None


@dataclasses.dataclass(frozen=True)
class AccountState:
    """BatchGetAccountStatus for the caller's account: overall state and one entry per resource-state member."""

    account_id: str
    status: str | None
    types: dict[str, TypeState]
    """Keyed by the resourceState member name: ec2, ecr, lambda, lambdaCode, codeRepository."""


@dataclasses.dataclass(frozen=True)
class Failure:
    """Enable/Disable could not act on the account: Inspector's error code and message."""

    code: str
    message: str


def account_state(client: Any) -> AccountState:
    try:
        response = client.batch_get_account_status()
    except Exception as exc:
        raise errors.from_exception(exc) from None
    accounts = response.get("accounts") or []
    if not accounts:
        failed = (response.get("failedAccounts") or [{}])[0]
        raise errors.AccessDenied(
            f"BatchGetAccountStatus: {failed.get('errorCode', 'no account returned')}: "
            f"{failed.get('errorMessage', '')}".rstrip(": "), code=str(failed.get("errorCode", "")),
            operation="BatchGetAccountStatus",
        )
    account = accounts[0]
    states = account.get("resourceState") or {}
    return AccountState(
        account_id=str(account.get("accountId", "")),
        status=(account.get("state") or {}).get("status"),
        types={member: _type_state(state) for member, state in states.items() if isinstance(state, dict)},
    )


def _type_state(state: dict[str, Any]) -> TypeState:
    return TypeState(status=state.get("status"), error_code=state.get("errorCode"),
                     error_message=state.get("errorMessage"))


def enable(client: Any, resource_types: Sequence[str], client_token: str) -> Failure | None:
    return _change(client.enable, resource_types, client_token)


def disable(client: Any, resource_types: Sequence[str]) -> Failure | None:
    return _change(client.disable, resource_types, None)


def _change(call: Any, resource_types: Sequence[str], client_token: str | None) -> Failure | None:
    params: dict[str, Any] = {"resourceTypes": list(resource_types)}
    if client_token is not None:
        params["clientToken"] = client_token
    try:
        response = call(**params)
    except Exception as exc:
        raise errors.from_exception(exc) from None
    failed = response.get("failedAccounts") or []
    if not failed:
        return None
    return Failure(code=str(failed[0].get("errorCode", "")), message=str(failed[0].get("errorMessage", "")))
