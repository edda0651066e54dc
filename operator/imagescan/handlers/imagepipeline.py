"""ImagePipeline handlers: every trigger (create, update, resume, the resync timer) runs one reconcile.

A handler parses the object with the models, hands the blocking AWS work to the runtime's thread pool,
writes the complete status the reconciler returns, and posts Events for what a person should notice.
AWS failures never raise into kopf: they become conditions, and the schedule decides when to try again.
The PolicyCompliant condition is written here too, from the verdicts the namespace's FindingsPolicies last
recorded (``runtime.verdicts``, never judged here): on every reconcile, and on timer ticks in between.
Each reconcile logs one line: INFO when it changed something or failed, DEBUG when a resync found all as it was.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import kopf
import pydantic

from imagescan import GROUP, VERSION, logs, metrics
from imagescan.aws import errors
from imagescan.handlers import inspectoractivation, namespaces
from imagescan.handlers import runtime as runtime_
from imagescan.handlers import status as status_
from imagescan.models import findingspolicy as fp
from imagescan.models import imagepipeline as m
from imagescan.models import kstatus
from imagescan.reconcile import activation, pipeline, policy

RESOURCE = (GROUP, VERSION, "imagepipelines")
KIND = "ImagePipeline"
RECONCILE_ANNOTATION = f"{GROUP}/reconcile-requested-at"
# An invalid spec has no resyncInterval of its own; the default's. Fixing the spec reconciles at once anyway.
INVALID_SPEC_RECHECK = 600.0
POLICY_INDEX = "policies_by_namespace"  # registered by handlers.findingspolicy
Policies = kopf.Index[str | None, tuple[str, fp.FindingsPolicySpec]]
TRIGGERS = {"create": "created", "update": "updated", "resume": "resumed"}  # kopf's reason -> the log's word
TIMER_REST = 0.5
"""kopf's pause between two calls of the resync timer. The timer's own wait (``Runtime.pause``: until due, or
woken) is where the time passes; kopf's sleep cannot be woken, so it is kept short."""


def register(registry: kopf.OperatorRegistry) -> None:
    for decorator, handler_id in (
        (kopf.on.create, "create"), (kopf.on.update, "update"), (kopf.on.resume, "resume"),
    ):
        decorator(*RESOURCE, registry=registry, id=handler_id)(reconcile_now)
    # No initial delay: the timer's first pause waits for the create or resume handler's reconcile (the schedule
    # does not know the object before), and is then woken by the events about it, however soon they come.
    kopf.timer(*RESOURCE, registry=registry, id="resync", interval=TIMER_REST)(resync)
    kopf.on.delete(*RESOURCE, registry=registry, id="delete")(delete)


async def reconcile_now(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any,
) -> None:
    shared: runtime_.Runtime = memo.runtime
    try:
        await _reconcile(body, patch, memo, logger, kwargs,
                         trigger=TRIGGERS.get(str(kwargs.get("reason")), "changed"))
    finally:
        shared.rescheduled(body.meta.uid or "")


async def resync(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any,
) -> None:
    shared: runtime_.Runtime = memo.runtime
    uid = body.meta.uid or ""
    stopped: kopf.DaemonStopped = kwargs.pop("stopped")  # kopf passes it to timers; not in its TimerFn type
    await shared.pause(uid, stopped, shared.config.tick)
    if stopped or shared.lock(uid).locked():
        return  # a reconcile is running; it reschedules the object when it ends
    due = shared.schedule.due(uid)
    if due.sync:
        await _reconcile(body, patch, memo, logger, kwargs, refresh_findings=due.findings, notified=due.notified,
                         trigger="event" if due.notified else "resync")
        return
    # Not due (woken by a policy's verdict, or the first tick after the create handler): only PolicyCompliant
    # may have changed. Compared with what was written without reading the 16 KB status back.
    verdict = _compliance(body, kwargs.get(POLICY_INDEX), shared)
    if shared.compliance_written(uid) == (verdict.status, verdict.reason, verdict.message):
        return
    previous = shared.last_written(uid)
    if previous is not None:
        judged = _with_compliance(previous, previous, verdict)
        if judged.conditions != previous.conditions:
            shared.remember(uid, status_.replace(patch, body, judged))


async def delete(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> None:
    shared: runtime_.Runtime = memo.runtime
    uid = body.meta.uid or ""
    try:
        spec = m.ImagePipelineSpec.model_validate(dict(body.spec))
    except pydantic.ValidationError:
        shared.forget(uid)
        return  # never reconciled, so nothing of ours is in AWS
    if not status_.acts_on_delete(spec.deletion_policy, spec.management_policy, body.meta.annotations):
        shared.forget(uid)
        return
    request = _request(body, spec, kwargs)
    try:
        async with shared.lock(uid):
            wrote = await shared.run_blocking(pipeline.disable, shared.clients, request)
    except errors.NotFound:
        wrote = False
    except errors.AwsError as exc:
        if exc.terminal:
            kopf.warn(body, reason=exc.reason, message=f"could not turn scanning off: {exc.message}")
            raise kopf.PermanentError(exc.message) from None
        delay = shared.schedule.failed(uid, terminal=False, resync=300)
        raise kopf.TemporaryError(exc.message, delay=delay) from None
    if wrote:
        logger.info("deletionPolicy Disable: turned scanning off")
    shared.forget(uid)


async def _reconcile(
        body: kopf.Body,
        patch: kopf.Patch,
        memo: kopf.Memo,
        logger: kopf.Logger,
        indexes: dict[str, Any],
        *,
        refresh_findings: bool = False,
        notified: bool = False,
        trigger: str = "resync",
) -> None:
    policies: Policies | None = indexes.get(POLICY_INDEX)
    shared: runtime_.Runtime = memo.runtime
    uid = body.meta.uid or ""
    async with shared.lock(uid):
        with shared.metrics.reconcile(KIND) as tally:  # timed from here: waiting for the lock is not the reconcile's
            previous = shared.last_written(uid) or status_.read(m.ImagePipelineStatus, body)
            try:
                spec = m.ImagePipelineSpec.model_validate(dict(body.spec))
            except pydantic.ValidationError as exc:
                status = _write_invalid_spec(body, patch, previous, exc)
                shared.remember(uid, status)
                shared.metrics.settled(KIND, uid, status.conditions)
                delay = shared.schedule.failed(uid, terminal=True, resync=INVALID_SPEC_RECHECK)
                _log(logger, trigger, [f"{status_.problems(exc)} (Terminal InvalidSpec); next check in {delay:.0f}s"],
                     tally, logging.INFO)
                return
            request = _request(body, spec, indexes, previous, refresh_findings, notified)
            started = shared.schedule.now()
            outcome = await shared.run_blocking(
                pipeline.sync, shared.clients, shared.buckets, request, kstatus.now_rfc3339,
                _explainer(indexes.get(inspectoractivation.INDEX)),
            )
            _wait_for_inspector(shared, uid, outcome)
            status = outcome.status.model_copy(
                update={"last_handled_reconcile_at": _echoed(body.meta.annotations.get(RECONCILE_ANNOTATION))},
            )
            status = _with_compliance(status, previous, _compliance(body, policies, shared))
            shared.remember(uid, status_.replace(patch, body, pipeline.fit(status)))
            shared.targets.note(uid, status)
            shared.metrics.settled(KIND, uid, status.conditions)
            shared.metrics.findings(uid, body.meta.namespace or "", body.meta.name or "", status)
            _post_events(body, previous, outcome)
            delay = _reschedule(shared, uid, spec, outcome, started)
            _log_outcome(logger, trigger, previous, status, outcome, delay, tally)


def _log_outcome(logger: kopf.Logger, trigger: str, previous: m.ImagePipelineStatus, status: m.ImagePipelineStatus,
                 outcome: pipeline.Outcome, delay: float, tally: metrics.Tally) -> None:
    """The reconcile's one line: what it did, at INFO unless it was a resync or restart that changed nothing."""
    actions = []
    if outcome.wrote:
        actions.append(f"turned image scanning {_scanning(outcome.status)}")
    if outcome.findings_refreshed:
        actions.append("findings refreshed")
    changed = _essence(previous) != _essence(status)
    if changed and not outcome.wrote:
        actions.append("status changed")
    error = outcome.error
    if error is not None:
        kind = "Terminal" if error.terminal else "Recoverable"
        actions.append(f"{error.message} ({kind} {error.reason}); next attempt in {delay:.0f}s")
    noteworthy = outcome.wrote or changed or error is not None or trigger in ("created", "updated")
    _log(logger, trigger, actions, tally, logging.INFO if noteworthy else logging.DEBUG)


def _log(logger: kopf.Logger, trigger: str, actions: list[str], tally: metrics.Tally, level: int) -> None:
    message, fields = logs.reconcile_line(trigger, actions, tally.calls, tally.seconds)
    logger.log(level, "%s", message, extra=fields)


def _essence(status: m.ImagePipelineStatus) -> dict[str, Any]:
    """What tells whether a reconcile changed anything: the status but the times it was read at and the
    conditions' wording (after a write, "(updated by the operator)" leaves the message at the next resync)."""
    essence = status.model_dump(exclude={"last_synced": True, "findings": {"last_refreshed"}, "conditions": True})
    essence["conditions"] = [(c.type, c.status, c.reason) for c in status.conditions]
    return essence


def _scanning(status: m.ImagePipelineStatus) -> str:
    return "on" if status.scanning and status.scanning.enabled else "off"


def _echoed(requested: str | None) -> str | None:
    """The annotation as status.lastHandledReconcileAt shows it: as written up to 256 characters; a longer
    value (annotations may hold 256 KiB) as its SHA-256, still different for every new value, so status
    stays within its 32 KiB whatever the user writes."""
    if requested is None or len(requested) <= m.MAX_ECHOED_ANNOTATION:
        return requested
    return "sha256:" + hashlib.sha256(requested.encode()).hexdigest()


def _reschedule(
        shared: runtime_.Runtime, uid: str, spec: m.ImagePipelineSpec, outcome: pipeline.Outcome, started: float,
) -> float:
    """Tell the schedule how it went: the only thing that decides when the timer reconciles again. Returns
    the delay until the next attempt."""
    if outcome.error is None:
        latest = outcome.status.findings.latest_image if outcome.status.findings else None
        # A scan still running ends without an event for many builds (no CVE found): poll it on its own intervals.
        safety_net = None if pipeline.scanning(latest) else shared.safety_net()
        return shared.schedule.succeeded(
            uid, resync=spec.resync_seconds, refresh=spec.refresh_seconds,
            findings_refreshed=outcome.findings_refreshed, safety_net=safety_net, started=started,
        )
    return shared.schedule.failed(uid, terminal=outcome.error.terminal, resync=spec.resync_seconds)


def _compliance(body: kopf.Body, policies: Policies | None, shared: runtime_.Runtime) -> policy.Compliance:
    """What the namespace's policies last recorded of this pipeline."""
    names = [name for name, _ in policies.get(body.meta.namespace, [])] if policies is not None else []
    return shared.compliance(body.meta.namespace, body.meta.name or "", names)


def _with_compliance(
        status: m.ImagePipelineStatus, previous: m.ImagePipelineStatus, verdict: policy.Compliance,
) -> m.ImagePipelineStatus:
    """The status with its PolicyCompliant condition as ``verdict`` says."""
    wanted = kstatus.make(kstatus.Type.POLICY_COMPLIANT, verdict.status, verdict.reason, verdict.message,
                          status.observed_generation)
    before = [c for c in previous.conditions if c.type == kstatus.Type.POLICY_COMPLIANT]
    others = [c for c in status.conditions if c.type != kstatus.Type.POLICY_COMPLIANT]
    return status.model_copy(update={"conditions": others + kstatus.merge(before, [wanted])})


def _explainer(activations: inspectoractivation.Activations | None) -> pipeline.Explain:
    """activation.explain over the activations as kopf's index holds them when the reconcile asks."""
    def explain(account_id: str, region: str, resource_type: str) -> str:
        views = list(activations.get(inspectoractivation.INDEX_KEY, [])) if activations is not None else []
        return activation.explain(views, account_id, region, resource_type)
    return explain


def _wait_for_inspector(shared: runtime_.Runtime, uid: str, outcome: pipeline.Outcome) -> None:
    """A pipeline refused for want of Inspector waits for the activation that turns it on (which wakes it
    within a tick); any other outcome stops waiting."""
    if outcome.waiting_for is not None:
        shared.inspector_waiters.wait(uid, *outcome.waiting_for)
    else:
        shared.inspector_waiters.release(uid)


def _request(
        body: kopf.Body,
        spec: m.ImagePipelineSpec,
        indexes: dict[str, Any],
        previous: m.ImagePipelineStatus | None = None,
        refresh_findings: bool = False,
        notified: bool = False,
) -> pipeline.Request:
    namespace = body.meta.namespace or ""
    return pipeline.Request(
        spec=spec, uid=body.meta.uid or "", generation=int(body.meta.get("generation") or 0),
        previous=previous if previous is not None else status_.read(m.ImagePipelineStatus, body),
        paused=status_.paused(body.meta.annotations),
        refresh_findings=refresh_findings, notified=notified,
        namespace=namespace, access=namespaces.rules(indexes.get(namespaces.INDEX), namespace),
    )


def _write_invalid_spec(
        body: kopf.Body, patch: kopf.Patch, previous: m.ImagePipelineStatus, exc: pydantic.ValidationError,
) -> m.ImagePipelineStatus:
    message = status_.problems(exc)
    if _ready_reason(previous) != "InvalidSpec":
        kopf.warn(body, reason="InvalidSpec", message=message)
    generation = int(body.meta.get("generation") or 0)
    return status_.replace(patch, body, status_.invalid_spec(previous, message, generation))


def _ready(status: m.ImagePipelineStatus) -> kstatus.Condition | None:
    return kstatus.ready(status.conditions)


def _ready_reason(status: m.ImagePipelineStatus) -> str | None:
    ready = _ready(status)
    return ready.reason if ready is not None else None


def _post_events(body: kopf.Body, previous: m.ImagePipelineStatus, outcome: pipeline.Outcome) -> None:
    """Events on transitions only, so a retry or resync that finds the same problem again stays quiet."""
    if outcome.wrote:
        message = f"turned image scanning {_scanning(outcome.status)} in Image Builder"
        kopf.event(body, type="Normal", reason="ScanningUpdated", message=message)
    _warn_on_new_failure(body, previous, outcome.status)
    before = _latest_critical(previous)
    after = _latest_critical(outcome.status)
    if after is not None and after > (before or 0):
        image = outcome.status.findings.latest_image if outcome.status.findings else None
        kopf.warn(body, reason="CriticalFindingsIncreased", message=(
            f"latest image {image.version if image else ''} has {after} critical finding(s), was {before or 0}"
        ))


def _warn_on_new_failure(body: kopf.Body, previous: m.ImagePipelineStatus, status: m.ImagePipelineStatus) -> None:
    """One Warning when Ready turns to a failure reason or to Drifted, named after it. Keyed on the Ready
    condition alone, so drift found while a write keeps failing (InspectorNotEnabled, say) is one Warning
    with the failure's reason, not one per attempt; the next Warning needs a different reason."""
    ready = _ready(status)
    if ready is None or ready.status == "True" or ready.reason == _ready_reason(previous):
        return
    kopf.warn(body, reason=ready.reason, message=ready.message)


def _latest_critical(status: m.ImagePipelineStatus) -> int | None:
    image = status.findings.latest_image if status.findings else None
    return image.severity_counts.critical if image else None
