"""Keep Amazon Inspector active for the resource types an InspectorActivation asks for, and say so in status.

The same shape as the pipeline reconciler: read (BatchGetAccountStatus), compare the requested types with
Inspector's state (delta), Enable what is off (Manage only), read back. Inspector activates asynchronously
(ENABLING, then ENABLED): a type still on its way is reported as Reconciling, and the handler re-reads it with
back-off. Nothing here knows about kopf: the inspector2 client comes in, a new status and the error go out.

Also here, because they are facts about activations that other objects read: which resource type a pipeline
needs (``needed_type``), what an ImagePipeline waiting for Inspector should be told (``explain``), and which
types a deleted activation may turn off without taking them from another (``types_to_disable``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any, Literal

from imagescan.aws import errors
from imagescan.aws import inspector as aws_inspector
from imagescan.models import inspectoractivation as m
from imagescan.models import kstatus

TRANSIENT = frozenset({"ENABLING", "DISABLING", "SUSPENDING"})
# Inspector error codes that only a change in AWS (permissions, organization policy, quotas) clears.
TERMINAL_CODES = frozenset({
    "ACCESS_DENIED", "BLOCKED_BY_ORGANIZATION_POLICY", "ACCOUNT_IS_ISOLATED", "RESOURCE_NOT_FOUND",
    "DISASSOCIATE_ALL_MEMBERS", "EC2_SSM_RESOURCE_DATA_SYNC_LIMIT_EXCEEDED",
    "EC2_SSM_ASSOCIATION_VERSION_LIMIT_EXCEEDED",
})


INFORMATIONAL_CODES = frozenset({
    "ALREADY_ENABLED", "ENABLE_IN_PROGRESS", "DISABLE_IN_PROGRESS", "SUSPEND_IN_PROGRESS",
})


class ActivationFailed(errors.AwsError):
    reason = "ActivationFailed"


@dataclasses.dataclass(frozen=True)
class Request:
    spec: m.InspectorActivationSpec
    uid: str
    generation: int
    region: str
    previous: m.InspectorActivationStatus
    paused: bool = False


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: m.InspectorActivationStatus
    error: errors.AwsError | None = None
    wrote: bool = False
    settling: bool = False
    """Some requested type is on its way (ENABLING ...): re-read soon, with back-off."""
    enabled: tuple[str, ...] = ()
    """The requested types Inspector reports ENABLED."""


def needed_type(pipeline_kind: str) -> str:
    """The Inspector resource type Image Builder's scanning of a pipeline needs: ECR for container images,
    EC2 for AMIs."""
    return "ECR" if pipeline_kind == "Container" else "EC2"


def _mode(request: Request) -> Literal["Manage", "Observe"]:
    return "Observe" if request.paused else request.spec.management_policy


def sync(client: Any, request: Request, now: Callable[[], str] = kstatus.now_rfc3339) -> Outcome:
    state: aws_inspector.AccountState | None = None
    wrote = False
    error: errors.AwsError | None = None
    try:
        state = aws_inspector.account_state(client)
        missing = _to_enable(request.spec.resource_types, state)
        if missing and _mode(request) == "Manage":
            failure = aws_inspector.enable(client, missing, _token(request, state))
            wrote = True
            state = aws_inspector.account_state(client)
            if failure is not None:
                raise _failed(f"Enable {', '.join(missing)}", failure.code, failure.message)
        _raise_type_errors(request.spec.resource_types, state)
    except errors.AwsError as exc:
        error = exc
    return _outcome(request, state, error, wrote, now)


def _to_enable(wanted: Iterable[str], state: aws_inspector.AccountState) -> list[str]:
    """Requested types that are off and not on their way somewhere."""
    return [t for t in wanted if _status(state, t) not in TRANSIENT | {"ENABLED"}]


def _status(state: aws_inspector.AccountState | None, resource_type: str) -> str | None:
    if state is None:
        return None
    found = state.types.get(m.STATE_MEMBERS[resource_type])
    return found.status if found else None


def _raise_type_errors(wanted: Iterable[str], state: aws_inspector.AccountState) -> None:
    """A type that ended up off with an error code is a failure; botocore's model makes errorCode a required
    member of every State, so codes that only describe the state (ALREADY_ENABLED, *_IN_PROGRESS) are not."""
    for resource_type in wanted:
        found = state.types.get(m.STATE_MEMBERS[resource_type])
        if (found and found.error_code and found.error_code not in INFORMATIONAL_CODES
                and found.status not in TRANSIENT | {"ENABLED"}):
            raise _failed(resource_type, found.error_code, found.error_message or "")


def _failed(what: str, code: str, message: str) -> ActivationFailed:
    error = ActivationFailed(f"Inspector could not activate {what}: {code}: {message}".rstrip(": "), code=code)
    error.terminal = code in TERMINAL_CODES
    return error


def _token(request: Request, state: aws_inspector.AccountState) -> str:
    """A retry after a crash replays the same Enable; a new attempt after the state changed is a new one."""
    seen = {member: s.status for member, s in sorted(state.types.items())}
    material = json.dumps([request.uid, request.generation, sorted(request.spec.resource_types), seen])
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def _outcome(request: Request, state: aws_inspector.AccountState | None, error: errors.AwsError | None,
             wrote: bool, now: Callable[[], str]) -> Outcome:
    previous = request.previous
    wanted = request.spec.resource_types
    enabled = tuple(t for t in wanted if _status(state, t) == "ENABLED")
    settling = error is None and any(_status(state, t) in TRANSIENT for t in wanted)
    status = m.InspectorActivationStatus(
        observed_generation=request.generation,
        conditions=kstatus.merge(previous.conditions, _conditions(request, state, error, wrote, enabled, settling)),
        account_id=state.account_id if state else previous.account_id,
        region=request.region,
        state=state.status if state else previous.state,
        resource_state=_resource_state(state) if state else previous.resource_state,
        last_synced=now(),
    )
    return Outcome(status=status, error=error, wrote=wrote, settling=settling, enabled=enabled)


def _resource_state(state: aws_inspector.AccountState) -> m.ResourceState:
    # Every member Inspector reports (ami too, which no Enable type maps to); the model ignores unknown ones.
    members: dict[str, Any] = {
        member: m.TypeState(status=s.status, error_code=s.error_code, error_message=s.error_message)
        for member, s in state.types.items()
    }
    return m.ResourceState.model_validate(members)


def _conditions(request: Request, state: aws_inspector.AccountState | None, error: errors.AwsError | None,
                wrote: bool, enabled: tuple[str, ...], settling: bool) -> list[kstatus.Condition]:
    generation = request.generation
    wanted = request.spec.resource_types
    where = f"account {state.account_id if state else '?'} in {request.region}"
    pending = ", ".join(f"{t} is {_status(state, t) or 'unknown'}" for t in wanted if t not in enabled)
    result: list[kstatus.Condition] = []
    if error is not None:
        result.append(kstatus.make(kstatus.Type.READY, "False", error.reason, error.message, generation))
        kind = kstatus.Type.STALLED if error.terminal else kstatus.Type.RECONCILING
        result.append(kstatus.make(kind, "True", error.reason, error.message, generation))
    elif settling:
        message = f"Inspector is changing state in {where}: {pending}"
        result.append(kstatus.make(kstatus.Type.READY, "False", "Progressing", message, generation))
        result.append(kstatus.make(kstatus.Type.RECONCILING, "True", "Progressing", message, generation))
    elif pending:
        message = f"Observe mode: nothing written. In {where}: {pending}"
        result.append(kstatus.make(kstatus.Type.READY, "False", "NotEnabled", message, generation))
    else:
        reason = "Enabled" if _mode(request) == "Manage" else "Observed"
        message = f"Inspector scans {', '.join(wanted)} in {where}" + (" (enabled by the operator)" if wrote else "")
        result.append(kstatus.make(kstatus.Type.READY, "True", reason, message, generation))
    if request.paused:
        result.append(kstatus.make(
            kstatus.Type.PAUSED, "True", "Paused",
            "annotation imagescan.io/paused=true: Inspector is read but never changed", generation,
        ))
    return result


# --- what other objects read ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class View:
    """One InspectorActivation as the index of all of them holds it (from its spec and last status)."""

    name: str
    account_id: str | None
    region: str
    resource_types: tuple[str, ...]
    states: tuple[tuple[str, str], ...] = ()
    """(type, Inspector status) as last read."""
    ready: bool = False
    deleting: bool = False


def view(name: str, spec: m.InspectorActivationSpec, status: m.InspectorActivationStatus, default_region: str,
         deleting: bool = False) -> View:
    """Where an activation points: the account it read last, else its role's; the region it read, else its
    spec's, else the operator's."""
    account = status.account_id or (spec.role_arn.split(":")[4] if spec.role_arn else None)
    region = status.region or spec.region or default_region
    states = tuple(
        (t, found.status) for t in spec.resource_types
        if status.resource_state and (found := status.resource_state.of(t)) and found.status
    )
    condition = kstatus.ready(status.conditions)
    ready = condition is not None and condition.status == "True"
    return View(name=name, account_id=account, region=region, resource_types=tuple(spec.resource_types),
                states=states, ready=ready, deleting=deleting)


def explain(views: Iterable[View], account_id: str, region: str, resource_type: str) -> str:
    """What to tell an ImagePipeline waiting for Inspector: the activation that would fix it and its state,
    or that none exists for that account, region and type."""
    here = [v for v in views if v.account_id == account_id and v.region == region and not v.deleting]
    covering = [v for v in here if resource_type in v.resource_types]
    if covering:
        shown = "; ".join(
            f"InspectorActivation {v.name} requests it: {dict(v.states).get(resource_type, 'not read yet')}"
            for v in covering)
        return f"{shown}. The pipeline is retried as soon as it reports ENABLED."
    if here:
        names = ", ".join(v.name for v in here)
        return (f"InspectorActivation {names} covers account {account_id} in {region} but not {resource_type}: "
                f"add {resource_type} to its spec.resourceTypes.")
    return (f"No InspectorActivation covers {resource_type} in account {account_id}, region {region}: create one "
            f"(kind InspectorActivation, spec.resourceTypes [{resource_type}]"
            f"{', spec.roleArn for that account' if account_id else ''}, spec.region {region}).")


def types_to_disable(this: View, views: Iterable[View]) -> list[str]:
    """The types a deleted activation (deletionPolicy Disable) may turn off: its own, minus every type another
    activation for the same account and region still wants."""
    kept = {t for v in views if v.name != this.name and not v.deleting
            and v.account_id == this.account_id and v.region == this.region for t in v.resource_types}
    return [t for t in this.resource_types if t not in kept]


def disable(client: Any, resource_types: list[str]) -> bool:
    """Turn the types off (deletionPolicy Disable); returns whether anything was written."""
    if not resource_types:
        return False
    state = aws_inspector.account_state(client)
    on = [t for t in resource_types if _status(state, t) not in {"DISABLED", "DISABLING", None}]
    if not on:
        return False
    failure = aws_inspector.disable(client, on)
    if failure is not None:
        raise _failed(f"Disable {', '.join(on)}", failure.code, failure.message)
    return True


class Waiters:
    """ImagePipelines waiting for Inspector in an account, region and type, woken when it is ENABLED.

    In memory: after a restart every pipeline is reconciled once anyway and registers again if still waiting.
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str, str], set[str]] = {}
        self._by_uid: dict[str, tuple[str, str, str]] = {}

    def wait(self, uid: str, account_id: str, region: str, resource_type: str) -> None:
        self.release(uid)
        key = (account_id, region, resource_type)
        self._by_key.setdefault(key, set()).add(uid)
        self._by_uid[uid] = key

    def release(self, uid: str) -> None:
        key = self._by_uid.pop(uid, None)
        if key is not None:
            self._by_key.get(key, set()).discard(uid)

    def enabled(self, account_id: str, region: str, resource_types: Iterable[str]) -> set[str]:
        """The waiting pipelines these now-ENABLED types unblock (they stop waiting)."""
        woken: set[str] = set()
        for resource_type in resource_types:
            woken |= self._by_key.pop((account_id, region, resource_type), set())
        for uid in woken:
            self._by_uid.pop(uid, None)
        return woken
