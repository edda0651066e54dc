"""FindingsPolicy handlers: judge the selected ImagePipelines from an in-memory index of their status.

kopf keeps the index current from the ImagePipeline watch it already has, so evaluating a policy costs no
AWS call and no API read. Policies are re-evaluated on change and on every tick (new findings, exemptions
expiring at midnight UTC); status is written only when the verdict changes.

This is the only place a verdict is computed: each evaluation records it in ``runtime.verdicts``, where the
pipelines' PolicyCompliant condition and the admission webhook read it.
"""

from __future__ import annotations

import datetime
from typing import Any

import kopf
import pydantic

from imagescan import GROUP, VERSION
from imagescan.aws import errors
from imagescan.handlers import imagepipeline, namespaces, runtime
from imagescan.handlers import status as status_
from imagescan.models import findingspolicy as fp
from imagescan.models import imagepipeline as ip
from imagescan.models import kstatus
from imagescan.reconcile import pipeline as pipeline_
from imagescan.reconcile import policy

RESOURCE = (GROUP, VERSION, "findingspolicies")
INDEX = "pipelines_by_namespace"
POLICY_INDEX = "policies_by_namespace"


def register(registry: kopf.OperatorRegistry, tick: float) -> None:
    kopf.index(*imagepipeline.RESOURCE, registry=registry, id=INDEX)(index_pipeline)
    kopf.index(*RESOURCE, registry=registry, id=POLICY_INDEX)(index_policy)
    for decorator, handler_id in (
        (kopf.on.create, "create"), (kopf.on.update, "update"), (kopf.on.resume, "resume"),
    ):
        decorator(*RESOURCE, registry=registry, id=handler_id)(evaluate)
    kopf.timer(*RESOURCE, registry=registry, id="reevaluate", interval=tick, initial_delay=tick)(evaluate)
    kopf.on.event(*RESOURCE, registry=registry, id="forget-verdicts")(forget_verdicts)


def index_pipeline(
        namespace: str | None, name: str, labels: kopf.Labels, spec: kopf.Spec, status: kopf.Status, **_: Any,
) -> dict[str | None, policy.Pipeline]:
    try:
        parsed = ip.ImagePipelineStatus.model_validate(dict(status))
    except pydantic.ValidationError:
        parsed = ip.ImagePipelineStatus()
    role_arn = spec.get("roleArn")
    return {namespace: policy.Pipeline(name=name, labels=dict(labels), status=_judged_parts(parsed),
                                       role_arn=str(role_arn) if role_arn else None)}


def _judged_parts(status: ip.ImagePipelineStatus) -> ip.ImagePipelineStatus:
    """Only what policies and admission read: identity, counts, image references and, of each listed
    finding, what a rule or a message uses. The index holds one per pipeline for the operator's lifetime,
    and remediation text, CVSS vectors, links and dates are most of a finding's size."""
    if status.findings is None:
        return ip.ImagePipelineStatus(pipeline=status.pipeline)
    slim = [
        ip.Finding(
            vulnerability_id=f.vulnerability_id, severity=f.severity, inspector_score=f.inspector_score,
            fix_available=f.fix_available,
            package=ip.PackageRef(fixed_in_version=f.package.fixed_in_version) if f.package else None,
        )
        for f in status.findings.top
    ]
    return ip.ImagePipelineStatus(
        pipeline=status.pipeline, findings=status.findings.model_copy(update={"top": slim}),
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
    pipelines_by_namespace: kopf.Index[str | None, policy.Pipeline] = kwargs[INDEX]  # kopf injects indexes by id
    generation = int(body.meta.get("generation") or 0)
    previous = status_.read(fp.FindingsPolicyStatus, body)
    try:
        spec = fp.FindingsPolicySpec.model_validate(dict(body.spec))
    except pydantic.ValidationError as exc:
        _refuse_spec(body, patch, previous, exc, generation)
        return
    today = datetime.datetime.now(datetime.UTC).date()
    shared: runtime.Runtime = memo.runtime
    pipelines = list(pipelines_by_namespace.get(namespace, []))
    result = policy.evaluate(spec, pipelines, today, shared.cached_details)
    inexact = {name for name, verdict in result.judged.items() if verdict is not None and not verdict.exact}
    if inexact:  # every selected pipeline, not only those the status lists: admission reads them all
        await _fetch_details(shared, spec, pipelines, inexact, logger, namespace or "", kwargs.get(namespaces.INDEX))
        result = policy.evaluate(spec, pipelines, today, shared.cached_details)
    shared.verdicts.record(namespace, body.meta.name or "", policy.Judgement(
        enforcement=spec.enforcement, verdicts=result.judged, seen=frozenset(p.name for p in pipelines),
    ))
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
    if _changed(previous, status):
        _post_events(body, previous, status)
        status_.replace(patch, body, status)
        logger.debug("evaluated: %s", message)


async def forget_verdicts(event: kopf.RawEvent, namespace: str | None, name: str | None, memo: kopf.Memo,
                          **_: Any) -> None:
    """Drop a deleted policy's verdicts. Readers already skip it (they ask only the policies kopf's index
    holds); this keeps them from staying in memory, and a policy re-created under the name from being read
    with the old one's verdicts before it is first evaluated."""
    if event.get("type") == "DELETED" and name:
        shared: runtime.Runtime = memo.runtime
        shared.verdicts.forget(namespace, name)


def _refuse_spec(body: kopf.Body, patch: kopf.Patch, previous: fp.FindingsPolicyStatus,
                 exc: pydantic.ValidationError, generation: int) -> None:
    """Stalled/InvalidSpec naming each bad field, and a Warning Event saying the same. Only on change: the
    timer re-evaluates every tick, and an unchanged bad spec must not write status or post Events each time.
    Nothing else is affected: ``index_policy`` leaves the policy out, so pipelines and admission go on
    judging against the namespace's valid policies."""
    message = spec_problems(exc)
    status = status_.invalid_spec(previous, message, generation)
    if _changed(previous, status):
        kopf.warn(body, reason="InvalidSpec", message=message)
        status_.replace(patch, body, status)


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
