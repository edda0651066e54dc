"""InspectorActivation handlers: every trigger runs one reconcile; ENABLED wakes the pipelines waiting for it.

Thin like the ImagePipeline handlers: parse with the models, run the blocking inspector2 calls in the
runtime's pool, write the whole status, and let the schedule decide when to look again (a type that is
ENABLING is re-read with back-off, not every tick). Every activation is also kept in a kopf index (from its
spec and last status) that the ImagePipeline handlers read to name the activation they wait for, and that
deletion reads to never turn off a type another activation still wants.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
import pydantic

from imagescan import GROUP, VERSION, logs, metrics
from imagescan.aws import clients as aws_clients
from imagescan.aws import errors
from imagescan.handlers import runtime as runtime_
from imagescan.handlers import status as status_
from imagescan.models import inspectoractivation as m
from imagescan.models import kstatus
from imagescan.reconcile import access, activation

RESOURCE = (GROUP, VERSION, "inspectoractivations")
KIND = "InspectorActivation"
INDEX = "inspector_activations"
INDEX_KEY = "all"
INVALID_SPEC_RECHECK = 600.0
Activations = kopf.Index[str, activation.View]
TRIGGERS = {"create": "created", "update": "updated", "resume": "resumed"}  # kopf's reason -> the log's word


def register(registry: kopf.OperatorRegistry, tick: float) -> None:
    kopf.index(*RESOURCE, registry=registry, id=INDEX)(index_activation)
    for decorator, handler_id in (
        (kopf.on.create, "create"), (kopf.on.update, "update"), (kopf.on.resume, "resume"),
    ):
        decorator(*RESOURCE, registry=registry, id=handler_id)(reconcile_now)
    kopf.timer(*RESOURCE, registry=registry, id="resync", interval=tick, initial_delay=tick)(resync)
    kopf.on.delete(*RESOURCE, registry=registry, id="delete")(delete)


def index_activation(
        name: str, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, memo: kopf.Memo, **_: Any,
) -> dict[str, activation.View]:
    try:
        parsed = m.InspectorActivationSpec.model_validate(dict(spec))
    except pydantic.ValidationError:
        return {}  # activates nothing (its own status says why); {} drops what kopf indexed before, None would not
    shared: runtime_.Runtime = memo.runtime
    try:
        previous = m.InspectorActivationStatus.model_validate(dict(status))
    except pydantic.ValidationError:
        previous = m.InspectorActivationStatus()
    deleting = meta.get("deletionTimestamp") is not None
    return {INDEX_KEY: activation.view(name, parsed, previous, _default_region(shared), deleting)}


async def reconcile_now(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger,
                        **kwargs: Any) -> None:
    await _reconcile(body, patch, memo, logger, trigger=TRIGGERS.get(str(kwargs.get("reason")), "changed"))


async def resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    shared: runtime_.Runtime = memo.runtime
    uid = body.meta.uid or ""
    if not shared.lock(uid).locked() and shared.schedule.due(uid).sync:
        await _reconcile(body, patch, memo, logger)


async def _reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger,
                     trigger: str = "resync") -> None:
    shared: runtime_.Runtime = memo.runtime
    uid = body.meta.uid or ""
    async with shared.lock(uid):
        with shared.metrics.reconcile(KIND) as tally:  # timed from here: waiting for the lock is not the reconcile's
            previous = status_.read(m.InspectorActivationStatus, body)
            generation = int(body.meta.get("generation") or 0)
            try:
                spec = m.InspectorActivationSpec.model_validate(dict(body.spec))
            except pydantic.ValidationError as exc:
                _refuse(body, patch, previous, status_.problems(exc), generation, shared, logger, trigger, tally)
                return
            if not (spec.region or _default_region(shared)):
                _refuse(body, patch, previous, "spec.region: required, the operator has no default region "
                        "(imagescan run --region or AWS_REGION)", generation, shared, logger, trigger, tally)
                return
            request = activation.Request(
                spec=spec, uid=uid, generation=generation, region=spec.region or _default_region(shared),
                previous=previous, paused=status_.paused(body.meta.annotations),
            )
            client = shared.clients.inspector2(request.region, _role(spec))
            outcome = await shared.run_blocking(activation.sync, client, request)
            status_.replace(patch, body, outcome.status)
            shared.metrics.settled(KIND, uid, outcome.status.conditions)
            _post_events(body, spec, previous, outcome)
            delay = _reschedule(shared, uid, spec, outcome)
            _log_outcome(logger, trigger, previous, spec, outcome, delay, tally)
            if outcome.status.account_id and outcome.enabled:
                for waiting in shared.inspector_waiters.enabled(outcome.status.account_id, request.region,
                                                                outcome.enabled):
                    shared.wake(waiting)


def _log_outcome(logger: kopf.Logger, trigger: str, previous: m.InspectorActivationStatus,
                 spec: m.InspectorActivationSpec, outcome: activation.Outcome, delay: float,
                 tally: metrics.Tally) -> None:
    """The reconcile's one line: INFO when it wrote, failed or changed status, or on a create or update."""
    actions = []
    if outcome.wrote:
        actions.append(f"asked Amazon Inspector to activate {', '.join(spec.resource_types)}")
    changed = _essence(previous) != _essence(outcome.status)
    if changed and not outcome.wrote:
        actions.append("status changed")
    if outcome.error is not None:
        kind = "Terminal" if outcome.error.terminal else "Recoverable"
        actions.append(f"{outcome.error.message} ({kind} {outcome.error.reason}); next attempt in {delay:.0f}s")
    elif outcome.settling:
        actions.append(f"Inspector is changing state; next read in {delay:.0f}s")
    noteworthy = outcome.wrote or changed or outcome.error is not None or trigger in ("created", "updated")
    message, fields = logs.reconcile_line(trigger, actions, tally.calls, tally.seconds)
    logger.log(logging.INFO if noteworthy else logging.DEBUG, "%s", message, extra=fields)


def _essence(status: m.InspectorActivationStatus) -> dict[str, Any]:
    """The status but the time it was read at and the conditions' wording."""
    essence = status.model_dump(exclude={"last_synced": True, "conditions": True})
    essence["conditions"] = [(c.type, c.status, c.reason) for c in status.conditions]
    return essence


def _refuse(body: kopf.Body, patch: kopf.Patch, previous: m.InspectorActivationStatus, message: str,
            generation: int, shared: runtime_.Runtime, logger: kopf.Logger, trigger: str,
            tally: metrics.Tally) -> None:
    """Stalled with InvalidSpec, one Warning per new problem, re-checked at the invalid-spec interval only."""
    before = _ready(previous)
    if before is None or before.reason != "InvalidSpec":
        kopf.warn(body, reason="InvalidSpec", message=message)
    status = status_.replace(patch, body, status_.invalid_spec(previous, message, generation))
    shared.metrics.settled(KIND, body.meta.uid or "", status.conditions)
    delay = shared.schedule.failed(body.meta.uid or "", terminal=True, resync=INVALID_SPEC_RECHECK)
    line, fields = logs.reconcile_line(
        trigger, [f"{message} (Terminal InvalidSpec); next check in {delay:.0f}s"], tally.calls, tally.seconds)
    logger.info("%s", line, extra=fields)


def _role(spec: m.InspectorActivationSpec) -> aws_clients.Role | None:
    grant = access.for_cluster(spec.role_arn, spec.external_id)
    if grant.role_arn is None:
        return None
    return aws_clients.Role(arn=grant.role_arn, session_name=aws_clients.session_name_for(None),
                            external_id=grant.external_id)


def _default_region(shared: runtime_.Runtime) -> str:
    try:
        return shared.clients.default_region
    except ValueError:
        return ""


def _reschedule(shared: runtime_.Runtime, uid: str, spec: m.InspectorActivationSpec,
                outcome: activation.Outcome) -> float:
    """Tell the schedule how it went; returns the delay until the next attempt."""
    resync = spec.resync_seconds
    if outcome.error is not None:
        return shared.schedule.failed(uid, terminal=outcome.error.terminal, resync=resync)
    if outcome.settling:
        return shared.schedule.settling(uid, resync=resync)
    return shared.schedule.succeeded(uid, resync=resync, refresh=resync, findings_refreshed=False)


def _post_events(body: kopf.Body, spec: m.InspectorActivationSpec, previous: m.InspectorActivationStatus,
                 outcome: activation.Outcome) -> None:
    if outcome.wrote:
        message = f"asked Amazon Inspector to activate {', '.join(spec.resource_types)}"
        kopf.event(body, type="Normal", reason="InspectorEnabled", message=message)
    ready = _ready(outcome.status)
    before = _ready(previous)
    if ready is None or ready.status == "True" or (before is not None and before.reason == ready.reason):
        return
    if outcome.error is not None:
        kopf.warn(body, reason=ready.reason, message=ready.message)


def _ready(status: m.InspectorActivationStatus) -> kstatus.Condition | None:
    return kstatus.ready(status.conditions)


async def delete(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> None:
    """deletionPolicy Disable turns off this activation's types that no other activation still wants."""
    shared: runtime_.Runtime = memo.runtime
    uid = body.meta.uid or ""
    try:
        spec = m.InspectorActivationSpec.model_validate(dict(body.spec))
    except pydantic.ValidationError:
        shared.forget(uid)
        return
    if not status_.acts_on_delete(spec.deletion_policy, spec.management_policy, body.meta.annotations):
        shared.forget(uid)
        return
    previous = status_.read(m.InspectorActivationStatus, body)
    this = activation.view(body.meta.name or "", spec, previous, _default_region(shared))
    others: Activations | None = kwargs.get(INDEX)
    types = activation.types_to_disable(this, others.get(INDEX_KEY, []) if others is not None else [])
    client = shared.clients.inspector2(this.region, _role(spec))
    try:
        async with shared.lock(uid):
            wrote = await shared.run_blocking(activation.disable, client, types)
    except errors.AwsError as exc:
        if exc.terminal:
            kopf.warn(body, reason=exc.reason, message=f"could not turn Inspector off: {exc.message}")
            raise kopf.PermanentError(exc.message) from None
        delay = shared.schedule.failed(uid, terminal=False, resync=300)
        raise kopf.TemporaryError(exc.message, delay=delay) from None
    kept = sorted(set(spec.resource_types) - set(types))
    if wrote:
        kopf.event(body, type="Normal", reason="InspectorDisabled",
                   message=f"deletionPolicy Disable: turned off {', '.join(types)}")
    if kept:
        logger.info("kept %s on: another InspectorActivation still wants them", ", ".join(kept))
    shared.forget(uid)
