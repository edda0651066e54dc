"""The slice of Amazon Inspector2 the operator needs: turning scanning on/off and reading account status.

Image Builder refuses to enable image scanning until Inspector is active for the matching resource type, so
tests need to flip Inspector through the same endpoint with the real ``inspector2`` boto3 client. Inspector is
per account and region: every operation acts in the region the request was signed for, and on the caller's
own account unless ``accountIds`` names others. Only a delegated administrator may name other accounts and
the emulator has none, so those come back in ``failedAccounts`` with ACCESS_DENIED. Activation passes
through ENABLING / DISABLING as in the real service (``activation``), for ``Emulator.inspector_delay_s``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from imagescan.emulator import activation, generator, identity, world

Handler = Callable[[world.World, identity.Caller, dict[str, Any]], dict[str, Any]]

# Inspector2 resource type -> the member name used in ResourceStatus / ResourceState.
_MEMBER = {
    "EC2": "ec2",
    "ECR": "ecr",
    "LAMBDA": "lambda",
    "LAMBDA_CODE": "lambdaCode",
    "CODE_REPOSITORY": "codeRepository",
}


def enable(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    """POST /enable: start activating the resource types; an account with a type that failed is reported in
    ``failedAccounts`` (with that type's error) instead of ``accounts``."""
    allowed, failed = _accounts(caller, params)
    accounts = []
    for account_id in allowed:
        scope = (account_id, caller.region)
        failures = w.inspector.enable(scope, list(dict.fromkeys(params["resourceTypes"])))
        if failures:
            failed.append(_failed_account(w, scope, failures))
        else:
            accounts.append(_account(w, scope))
    return {"accounts": accounts, "failedAccounts": failed}


def disable(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    """POST /disable: no resourceTypes means every type, as documented."""
    types = list(params.get("resourceTypes") or generator.INSPECTOR_RESOURCE_TYPES)
    allowed, failed = _accounts(caller, params)
    for account_id in allowed:
        w.inspector.disable((account_id, caller.region), types)
    return {"accounts": [_account(w, (account_id, caller.region)) for account_id in allowed], "failedAccounts": failed}


def batch_get_account_status(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    """POST /status/batch/get."""
    allowed, failed = _accounts(caller, params)
    return {"accounts": [_account_state(w, (account_id, caller.region)) for account_id in allowed],
            "failedAccounts": failed}


def _accounts(caller: identity.Caller, params: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The accounts the caller may act on (its own) and a ``FailedAccount`` for every other one named."""
    named = list(dict.fromkeys(params.get("accountIds") or [caller.account_id]))
    denied = [
        {
            "accountId": account_id,
            "errorCode": "ACCESS_DENIED",
            "errorMessage": f"Account {caller.account_id} is not the Amazon Inspector delegated administrator "
            f"for account {account_id}.",
        }
        for account_id in named
        if account_id != caller.account_id
    ]
    return [account_id for account_id in named if account_id == caller.account_id], denied


def _account(w: world.World, scope: activation.Scope) -> dict[str, Any]:
    """An ``Account``: Enable's and Disable's view of one account."""
    states = w.inspector.states(scope)
    return {
        "accountId": scope[0],
        "status": activation.account_status(states.values()),
        "resourceStatus": {_MEMBER[kind]: state.status for kind, state in states.items()},
    }


def _failed_account(
    w: world.World, scope: activation.Scope, failures: dict[str, activation.TypeState]
) -> dict[str, Any]:
    """A ``FailedAccount`` carrying the first failed type's error."""
    first = next(iter(failures.values()))
    return {**_account(w, scope), "errorCode": first.error_code, "errorMessage": first.error_message}


def _account_state(w: world.World, scope: activation.Scope) -> dict[str, Any]:
    """An ``AccountState``: BatchGetAccountStatus's view, with each type's error when it has one."""
    states = w.inspector.states(scope)
    overall = activation.account_status(states.values())
    error = next((state for state in states.values() if state.error_code), None)
    # An account nothing could be enabled in carries its types' error; one that is ENABLED does not.
    account = dataclasses.replace(error, status=overall) if error and overall != "ENABLED" else None
    return {
        "accountId": scope[0],
        "state": _state(account or activation.TypeState(overall)),
        "resourceState": {_MEMBER[kind]: _state(state) for kind, state in states.items()},
    }


def _state(state: activation.TypeState) -> dict[str, Any]:
    """A ``State``. The model marks errorCode/errorMessage required, yet its ErrorCode enum has no value for
    "no error", so they are sent only when there is one (inventing a code would read as a failure)."""
    shaped: dict[str, Any] = {"status": state.status}
    if state.error_code is not None:
        shaped.update(errorCode=state.error_code, errorMessage=state.error_message)
    return shaped


OPERATIONS: dict[str, Handler] = {
    "Enable": enable,
    "Disable": disable,
    "BatchGetAccountStatus": batch_get_account_status,
}
