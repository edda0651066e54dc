"""FindingsPolicy handlers: judge the selected ImagePipelines from an in-memory index of their status.

kopf keeps the index current from the ImagePipeline watch it already has, so evaluating a policy costs no
AWS call and no API read. Policies are re-evaluated on change and on every tick (new findings, exemptions
expiring at midnight UTC); status is written only when the verdict changes.

This is the only place a verdict is computed (``judge``): each evaluation records it in ``runtime.verdicts``,
where the pipelines' PolicyCompliant condition and the admission webhook read it. With ``--leader-election``
the replicas that do not hold the Lease judge too, for their webhook, but write nothing (``register_judging``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import weakref
from collections.abc import Mapping
from typing import Any

import kopf
import pydantic

from imagescan import GROUP, VERSION, logs, metrics
from imagescan.aws import errors
from imagescan.handlers import imagepipeline, namespaces, runtime
from imagescan.handlers import status as status_
from imagescan.models import findingspolicy as fp
from imagescan.models import imagepipeline as ip
from imagescan.models import kstatus
from imagescan.reconcile import pipeline as pipeline_
from imagescan.reconcile import policy

RESOURCE = (GROUP, VERSION, "findingspolicies")
KIND = "FindingsPolicy"
INDEX = "pipelines_by_namespace"
POLICY_INDEX = "policies_by_namespace"


def register(registry: kopf.OperatorRegistry, tick: float) -> None:
    _register_indexes(registry)
    for decorator, handler_id in (
        (kopf.on.create, "create"), (kopf.on.update, "update"), (kopf.on.resume, "resume"),
    ):
        decorator(*RESOURCE, registry=registry, id=handler_id)(evaluate)
    kopf.timer(*RESOURCE, registry=registry, id="reevaluate", interval=tick, initial_delay=tick)(evaluate)
    kopf.on.event(*RESOURCE, registry=registry, id="forget-verdicts")(forget_verdicts)


def register_judging(registry: kopf.OperatorRegistry, tick: float) -> None:
    """Verdicts for the admission webhook of every replica under ``--leader-election``: the same indexes and
    the same judgement as ``evaluate``, triggered by watch events and a tick instead of kopf's persistent
    handlers, and written nowhere. No status, Event, finalizer or kopf annotation: those belong to the Lease
    holder's ``register``, and a second writer of kopf's annotations would make either skip changes."""
    _register_indexes(registry)
    judging = Judging(tick)
    kopf.on.event(*RESOURCE, registry=registry, id="forget-verdicts")(forget_verdicts)
    kopf.on.event(*RESOURCE, registry=registry, id="judge-on-policy-event")(judging.on_event)
    kopf.on.event(*imagepipeline.RESOURCE, registry=registry, id="judge-on-pipeline-event")(judging.on_event)
    kopf.on.startup(registry=registry, id="judge-every-tick")(judging.start)
    kopf.on.cleanup(registry=registry, id="stop-judging")(judging.stop)


def _register_indexes(registry: kopf.OperatorRegistry) -> None:
    kopf.index(*imagepipeline.RESOURCE, registry=registry, id=INDEX)(index_pipeline)
    kopf.index(*RESOURCE, registry=registry, id=POLICY_INDEX)(index_policy)


async def index_pipeline(
        namespace: str | None, name: str, labels: kopf.Labels, spec: kopf.Spec, status: kopf.Status,
        uid: str | None, **_: Any,
) -> dict[str | None, policy.Pipeline]:
    # async though it never awaits: kopf runs a sync index function in its thread pool, a thread hand-off
    # on every watch event of every ImagePipeline for a function that never blocks.
    try:
        parsed = ip.ImagePipelineStatus.model_validate(_judged_parts(dict(status)))
    except pydantic.ValidationError:
        parsed = ip.ImagePipelineStatus()
    role_arn = spec.get("roleArn")
    return {namespace: policy.Pipeline(name=name, labels=dict(labels), status=parsed,
                                       role_arn=str(role_arn) if role_arn else None, uid=uid or "")}


def _judged_parts(status: Mapping[str, Any]) -> dict[str, Any]:
    """Only what policies and admission read: identity, counts, image references and, of each listed
    finding, what a rule or a message uses. The index holds one per pipeline for the operator's lifetime,
    and remediation text, CVSS vectors, links and dates are most of a finding's size. Picked from the
    object before parsing, so the parts nobody reads here are never validated either: parsing a whole
    status on every watch event was most of the index's cost. A plain dict (each lookup in kopf's view
    of the body walks its path again) but for the listed findings, which are parsed and shared
    (``_judged_finding``)."""
    slim: dict[str, Any] = {"pipeline": status.get("pipeline")}
    findings = status.get("findings")
    if isinstance(findings, Mapping):
        top = [_judged_finding(f) if isinstance(f, Mapping) else f for f in findings.get("top") or []]
        slim["findings"] = {**{key: value for key, value in findings.items() if key != "top"}, "top": top}
    return slim


def _judged_finding(finding: Mapping[str, Any]) -> ip.Finding:
    """A listed finding as the index keeps it: the fields rules and messages read, parsed once and shared by
    every pipeline that lists the same one. Pipelines built from one base image list the same CVEs in the same
    packages, and a parsed finding costs ≈ 1.7 KB (a ``__dict__`` of every field and a set of those given), ten
    of them per pipeline for the operator's lifetime. Weakly held: a finding no pipeline lists any more goes."""
    package = finding.get("package")
    judged = {
        "vulnerabilityId": finding.get("vulnerabilityId"), "severity": finding.get("severity"),
        "inspectorScore": finding.get("inspectorScore"), "fixAvailable": finding.get("fixAvailable"),
        "package": {"fixedInVersion": package.get("fixedInVersion")} if isinstance(package, Mapping) else package,
    }
    key = _sharing_key(judged)
    try:
        shared = _SHARED_FINDINGS.get(key)
    except TypeError:  # unhashable (a list where a scalar belongs): validation says what is wrong
        return ip.Finding.model_validate(judged)
    if shared is None:
        shared = _SHARED_FINDINGS[key] = ip.Finding.model_validate(judged)
    return shared


_SHARED_FINDINGS: weakref.WeakValueDictionary[tuple[Any, ...], ip.Finding] = weakref.WeakValueDictionary()


def _sharing_key(judged: Mapping[str, Any]) -> tuple[Any, ...]:
    # Types too: 1, 1.0 and True are equal keys, and validation may treat them differently.
    return tuple(
        (name, dict, _sharing_key(value)) if isinstance(value, Mapping) else (name, type(value), value)
        for name, value in judged.items()
    )


def index_policy(
        namespace: str | None, name: str, spec: kopf.Spec, **_: Any,
) -> dict[str | None, tuple[str, fp.FindingsPolicySpec]]:
    """Valid policies per namespace, for ImagePipelines to judge themselves (PolicyCompliant)."""
    try:
        return {namespace: (name, fp.FindingsPolicySpec.model_validate(dict(spec)))}
    except pydantic.ValidationError:
        # An invalid policy judges nothing; its own status says why. An empty mapping, not None: kopf keeps
        # an object's previous entries when its index function returns None.
        return {}


async def evaluate(
        body: kopf.Body, patch: kopf.Patch, namespace: str | None, memo: kopf.Memo, logger: kopf.Logger,
        **kwargs: Any,
) -> None:
    generation = int(body.meta.get("generation") or 0)
    previous = status_.read(fp.FindingsPolicyStatus, body)
    try:
        spec = fp.FindingsPolicySpec.model_validate(dict(body.spec))
    except pydantic.ValidationError as exc:
        status = _refuse_spec(body, patch, previous, exc, generation)
        if "runtime" in memo:  # refusing a spec needs nothing of the runtime but the metrics
            memo.runtime.metrics.settled(KIND, body.meta.uid or "", status.conditions)
            # Left out of the index now: the pipelines it judged no longer answer to it.
            wake_changed_pipelines(memo.runtime, namespace, kwargs)
        return
    shared: runtime.Runtime = memo.runtime
    with shared.metrics.reconcile(KIND) as tally:
        await _evaluate(body, patch, namespace, shared, logger, tally, previous, spec, generation, kwargs)


async def _evaluate(body: kopf.Body, patch: kopf.Patch, namespace: str | None, shared: runtime.Runtime,
                    logger: kopf.Logger, tally: metrics.Tally, previous: fp.FindingsPolicyStatus,
                    spec: fp.FindingsPolicySpec, generation: int, kwargs: dict[str, Any]) -> None:
    pipelines_by_namespace: kopf.Index[str | None, policy.Pipeline] = kwargs[INDEX]  # kopf injects indexes by id
    pipelines = list(pipelines_by_namespace.get(namespace, []))
    result = await judge(shared, namespace, body.meta.name or "", spec, pipelines, logger,
                         kwargs.get(namespaces.INDEX))
    wake_changed_pipelines(shared, namespace, kwargs)
    message = (f"{result.totals.violating} of {result.totals.selected} selected pipeline(s) break the policy"
               + (f", {result.totals.unknown} without findings yet" if result.totals.unknown else ""))
    status = fp.FindingsPolicyStatus(
        observed_generation=generation,
        conditions=kstatus.merge(previous.conditions, [
            kstatus.make(kstatus.Type.READY, "True", "Evaluated", message, generation),
        ]),
        totals=result.totals, pipelines=result.verdicts, top_vulnerabilities=result.top_vulnerabilities,
        expired_exemptions=result.expired_exemptions, last_evaluated=kstatus.now_rfc3339(),
    )
    shared.metrics.settled(KIND, body.meta.uid or "", status.conditions)
    changed = _changed(previous, status)
    if changed:
        _post_events(body, previous, status)
        status_.replace(patch, body, status)
    # Every tick re-evaluates every policy: a line at INFO only when the verdicts changed.
    trigger = imagepipeline.TRIGGERS.get(str(kwargs.get("reason")), "tick")
    line, fields = logs.reconcile_line(trigger, [f"evaluated: {message}"], tally.calls, tally.seconds)
    logger.log(logging.INFO if changed else logging.DEBUG, "%s", line, extra=fields)


async def judge(shared: runtime.Runtime, namespace: str | None, name: str, spec: fp.FindingsPolicySpec,
                pipelines: list[policy.Pipeline], logger: kopf.Logger,
                access_index: namespaces.Access | None) -> policy.Evaluation:
    """Judge the namespace's pipelines and record the verdicts where PolicyCompliant and admission read them."""
    today = datetime.datetime.now(datetime.UTC).date()
    result = policy.evaluate(spec, pipelines, today, shared.cached_details)
    inexact = {name for name, verdict in result.judged.items() if verdict is not None and not verdict.exact}
    if inexact:  # every selected pipeline, not only those the status lists: admission reads them all
        await _fetch_details(shared, spec, pipelines, inexact, logger, namespace or "", access_index)
        result = policy.evaluate(spec, pipelines, today, shared.cached_details)
    shared.verdicts.record(namespace, name, policy.Judgement(
        enforcement=spec.enforcement, verdicts=result.judged, seen=frozenset(p.name for p in pipelines),
    ))
    shared.metrics.verdicts(namespace, name, result.judged)
    return result


async def forget_verdicts(event: kopf.RawEvent, namespace: str | None, name: str | None, memo: kopf.Memo,
                          **kwargs: Any) -> None:
    """Drop a deleted policy's verdicts. Readers already skip it (they ask only the policies kopf's index
    holds); this keeps them from staying in memory, and a policy re-created under the name from being read
    with the old one's verdicts before it is first evaluated."""
    if event.get("type") == "DELETED" and name:
        shared: runtime.Runtime = memo.runtime
        shared.verdicts.forget(namespace, name)
        shared.metrics.forget_policy(namespace, name)
        shared.metrics.forget(str(event.get("object", {}).get("metadata", {}).get("uid", "")))
        wake_changed_pipelines(shared, namespace, kwargs, without=name)


def wake_changed_pipelines(shared: runtime.Runtime, namespace: str | None, indexes: Mapping[str, Any],
                           without: str | None = None) -> int:
    """The ImagePipelines' timers wait until they are due: after the namespace's verdicts changed (a policy
    judged, deleted, or refused as invalid), wake those whose PolicyCompliant condition no longer says what
    the policies recorded, so they write it. ``without``: a policy being deleted (the index may still hold it)."""
    pipelines = list((indexes.get(INDEX) or {}).get(namespace, []))
    names = [name for name, _ in (indexes.get(POLICY_INDEX) or {}).get(namespace, []) if name != without]
    return shared.recheck_compliance(namespace, pipelines, names)


class Judging:
    """Re-judges a namespace's valid policies soon after any of its pipelines or policies changes (one pass
    for a burst of events), and every policy each tick, as ``evaluate``'s timer does for the Lease holder
    (new findings, exemptions expiring at midnight UTC)."""

    def __init__(self, tick: float) -> None:
        self._tick = tick
        self._dirty: set[str | None] = set()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def on_event(self, namespace: str | None, **_: Any) -> None:
        self._dirty.add(namespace)
        if self._wake is not None:
            self._wake.set()

    async def start(self, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> None:
        # kopf hands start-up handlers its indexes, live: the loop reads them as the watches fill them.
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._loop(memo.runtime, kwargs, logger), name="judge policies")

    async def stop(self, **_: Any) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self, shared: runtime.Runtime, indexes: dict[str, Any], logger: kopf.Logger) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        next_round = loop.time() + self._tick
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, next_round - loop.time()))
            self._wake.clear()
            due, self._dirty = self._dirty, set()
            if loop.time() >= next_round:
                due |= set(indexes[POLICY_INDEX].keys())
                next_round = loop.time() + self._tick
            for namespace in due:
                try:
                    await self._judge_namespace(shared, indexes, namespace, logger)
                except Exception:  # one namespace's failure must not stop judging the others
                    logger.exception("could not judge the policies of namespace %s", namespace)

    @staticmethod
    async def _judge_namespace(shared: runtime.Runtime, indexes: dict[str, Any], namespace: str | None,
                               logger: kopf.Logger) -> None:
        pipelines = list(indexes[INDEX].get(namespace, []))
        for name, spec in list(indexes[POLICY_INDEX].get(namespace, [])):
            await judge(shared, namespace, name, spec, pipelines, logger, indexes.get(namespaces.INDEX))


def _refuse_spec(body: kopf.Body, patch: kopf.Patch, previous: fp.FindingsPolicyStatus,
                 exc: pydantic.ValidationError, generation: int) -> fp.FindingsPolicyStatus:
    """Stalled/InvalidSpec naming each bad field, and a Warning Event saying the same. Only on change: the
    timer re-evaluates every tick, and an unchanged bad spec must not write status or post Events each time.
    Nothing else is affected: ``index_policy`` leaves the policy out, so pipelines and admission go on
    judging against the namespace's valid policies."""
    message = spec_problems(exc)
    status = status_.invalid_spec(previous, message, generation)
    if _changed(previous, status):
        kopf.warn(body, reason="InvalidSpec", message=message)
        status_.replace(patch, body, status)
    return status


def spec_problems(exc: pydantic.ValidationError) -> str:
    """Each problem with the field as a path a user can find in the YAML: ``spec.exemptions[2].expires``."""
    return "; ".join(f"{_field_path(error['loc'])}: {error['msg']}" for error in exc.errors())


def _field_path(loc: tuple[int | str, ...]) -> str:
    return "spec" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


async def _fetch_details(shared: runtime.Runtime, spec: fp.FindingsPolicySpec, pipelines: list[policy.Pipeline],
                         names: set[str], logger: kopf.Logger, namespace: str,
                         access_index: namespaces.Access | None) -> None:
    """Read every finding of the builds whose verdicts the listed top-N could not settle (cached per build)."""
    for pipeline in pipelines:
        key = policy.details_key(spec, pipeline)
        where = pipeline.status.pipeline
        if pipeline.name not in names or key is None or where is None:
            continue
        try:
            via = pipeline_.role_for(namespace, namespaces.rules(access_index, namespace), pipeline.role_arn)
            client = shared.clients.imagebuilder(where.region, via)
            await shared.run_blocking(shared.details.fetch, client, key)
        except errors.AwsError as exc:
            logger.warning("could not read every finding of %s to judge it exactly: %s", pipeline.name, exc.message)


def _changed(previous: fp.FindingsPolicyStatus, new: fp.FindingsPolicyStatus) -> bool:
    """Anything but the evaluation time: a tick that finds nothing new writes nothing."""
    ignore = {"last_evaluated"}
    return bool(previous.model_dump(exclude=ignore) != new.model_dump(exclude=ignore))


def _post_events(body: kopf.Body, previous: fp.FindingsPolicyStatus, status: fp.FindingsPolicyStatus) -> None:
    """On transitions only: a pipeline that starts violating, an exemption that has just expired."""
    was_violating = {v.name for v in previous.pipelines if not v.compliant}
    for verdict in status.pipelines:
        if not verdict.compliant and verdict.name not in was_violating:
            rules = "; ".join(v.message for v in verdict.violations)
            kopf.warn(body, reason="PolicyViolated", message=f"ImagePipeline {verdict.name}: {rules}")
    for vulnerability_id in sorted(set(status.expired_exemptions) - set(previous.expired_exemptions)):
        kopf.warn(body, reason="ExemptionExpired",
                  message=f"the exemption for {vulnerability_id} has expired: its findings count again")
