"""The slice of Amazon Inspector2 the operator needs: turning scanning on/off and reading account status.

Image Builder refuses to enable image scanning until Inspector is active for the matching resource type, so
tests need to flip Inspector through the same endpoint with the real ``inspector2`` boto3 client.
Activation is instantaneous here (real Inspector passes through ENABLING for a short while).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from imagescan.emulator import generator, world

Handler = Callable[[world.World, dict[str, Any]], dict[str, Any]]

# Inspector2 resource type -> the member name used in ResourceStatus / ResourceState.
_MEMBER = {
    "EC2": "ec2",
    "ECR": "ecr",
    "LAMBDA": "lambda",
    "LAMBDA_CODE": "lambdaCode",
    "CODE_REPOSITORY": "codeRepository",
}


def enable(w: world.World, params: dict[str, Any]) -> dict[str, Any]:
    """POST /enable: activate the resource types for each account (the caller's by default)."""
    return _set(w, params, list(params["resourceTypes"]), "ENABLED")


def disable(w: world.World, params: dict[str, Any]) -> dict[str, Any]:
    """POST /disable: no resourceTypes means every type, as documented."""
    types = list(params.get("resourceTypes") or generator.INSPECTOR_RESOURCE_TYPES)
    return _set(w, params, types, "DISABLED")


def _set(w: world.World, params: dict[str, Any], types: list[str], status: str) -> dict[str, Any]:
    accounts = _accounts(w, params)
    for account_id in accounts:
        w.set_inspector(account_id, dict.fromkeys(types, status))
    return {"accounts": [_account(w, account_id) for account_id in accounts], "failedAccounts": []}


def batch_get_account_status(w: world.World, params: dict[str, Any]) -> dict[str, Any]:
    """POST /status/batch/get."""
    return {"accounts": [_account_state(w, account_id) for account_id in _accounts(w, params)], "failedAccounts": []}


def _accounts(w: world.World, params: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(params.get("accountIds") or [w.account_id]))


def _overall(states: dict[str, str]) -> str:
    return "ENABLED" if "ENABLED" in states.values() else "DISABLED"


def _account(w: world.World, account_id: str) -> dict[str, Any]:
    states = w.inspector_status(account_id)
    return {
        "accountId": account_id,
        "status": _overall(states),
        "resourceStatus": {_MEMBER[kind]: status for kind, status in states.items()},
    }


def _account_state(w: world.World, account_id: str) -> dict[str, Any]:
    states = w.inspector_status(account_id)
    return {
        "accountId": account_id,
        "state": {"status": _overall(states)},
        "resourceState": {_MEMBER[kind]: {"status": status} for kind, status in states.items()},
    }


OPERATIONS: dict[str, Handler] = {
    "Enable": enable,
    "Disable": disable,
    "BatchGetAccountStatus": batch_get_account_status,
}
