"""Keep one Image Builder pipeline's scanning configuration as declared, and describe it in status.

The flow follows ACK's resource manager: resolve the pipeline, read it (ReadOne), compare the scanning
configuration we own with what AWS has (delta), write only if they differ (Update), read back to verify,
then refresh findings when they are due. Nothing here knows about kopf: the AWS clients come in, a
complete new status and the error (if any) go out.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any, Literal

from imagescan.aws import clients as aws_clients
from imagescan.aws import errors, pipelines
from imagescan.aws import findings as aws_findings
from imagescan.aws import registry as aws_registry
from imagescan.models import imagepipeline as m
from imagescan.models import kstatus
from imagescan.reconcile import access, activation, findings

logger = logging.getLogger(__name__)
TRANSIENT_SCAN_STATES = frozenset({"PENDING", "SCANNING", "COLLECTING"})
# What an update may change besides the scanning configuration: AWS stamps the time and recomputes the next
# scheduled run.
_CHANGED_BY_UPDATE = frozenset({pipelines.SCANNING_FIELD, "dateUpdated", "dateNextRun"})


class InvalidSpec(errors.AwsError):
    terminal = True
    reason = "InvalidSpec"


class UpdateNotApplied(errors.AwsError):
    reason = "UpdateNotApplied"


class UnexpectedChange(errors.AwsError):
    terminal = True
    reason = "UnexpectedPipelineChange"


@dataclasses.dataclass(frozen=True)
class Request:
    """Everything one sync needs to know about the object."""

    spec: m.ImagePipelineSpec
    uid: str
    generation: int
    previous: m.ImagePipelineStatus
    paused: bool = False
    refresh_findings: bool = False
    notified: bool = False
    """AWS reported a change (an event): list the builds again and read counts fresher than this attempt."""
    namespace: str = ""
    access: access.Rules | None = None
    """What the namespace's annotations grant: which role the object may use (access.for_namespace)."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: m.ImagePipelineStatus
    error: errors.AwsError | None = None
    wrote: bool = False
    drift: tuple[str, ...] = ()
    findings_refreshed: bool = False
    waiting_for: tuple[str, str, str] | None = None
    """(account, region, Inspector resource type) when Image Builder refused for want of Inspector."""


Explain = Callable[[str, str, str], str]
"""What to tell a pipeline waiting for Inspector in (account, region, type): activation.explain over the
activations the operator knows."""


def role(request: Request) -> aws_clients.Role | None:
    """The role to reach the pipeline with, as its namespace allows; RoleNotAllowed before any AWS call."""
    return role_for(request.namespace, request.access, request.spec.role_arn)


def role_for(namespace: str, rules: access.Rules | None, requested: str | None) -> aws_clients.Role | None:
    """The role an ImagePipeline's AWS calls go through, whoever makes them (its reconcile, a policy reading
    its findings): what access.for_namespace grants, with a session name that says which namespace asked."""
    grant = access.for_namespace(namespace, rules, requested)
    if grant.role_arn is None:
        return None
    return aws_clients.Role(arn=grant.role_arn, session_name=aws_clients.session_name_for(namespace),
                            external_id=grant.external_id)


@dataclasses.dataclass(frozen=True)
class ScanConfig:
    """The part of ``imageScanningConfiguration`` the spec owns; None means "not ours, keep AWS's"."""

    enabled: bool
    repository_name: str | None = None
    container_tags: tuple[str, ...] | None = None


def desired(spec: m.ImagePipelineSpec) -> ScanConfig:
    ecr = spec.scanning.ecr
    return ScanConfig(
        enabled=spec.scanning.enabled,
        repository_name=ecr.repository_name if ecr else None,
        container_tags=tuple(ecr.container_tags) if ecr and ecr.container_tags is not None else None,
    )


def observed(pipeline: dict[str, Any]) -> ScanConfig:
    config = pipeline.get(pipelines.SCANNING_FIELD) or {}
    ecr = config.get("ecrConfiguration") or {}
    tags = ecr.get("containerTags")
    return ScanConfig(
        enabled=bool(config.get("imageScanningEnabled")),
        repository_name=ecr.get("repositoryName"),
        container_tags=tuple(tags) if tags is not None else None,
    )


def delta(want: ScanConfig, have: ScanConfig) -> tuple[str, ...]:
    """Human-readable differences in the fields the spec sets."""
    differences = []
    for field in dataclasses.fields(ScanConfig):
        wanted = getattr(want, field.name)
        if wanted is not None and wanted != getattr(have, field.name):
            differences.append(f"{field.name}: AWS has {getattr(have, field.name)!r}, spec wants {wanted!r}")
    return tuple(differences)


def scanning_payload(want: ScanConfig, current: dict[str, Any]) -> dict[str, Any]:
    """The new ``imageScanningConfiguration``: AWS's, with only the owned fields changed."""
    payload = copy.deepcopy(dict(current or {}))
    payload["imageScanningEnabled"] = want.enabled
    if want.repository_name is not None or want.container_tags is not None:
        ecr = payload.setdefault("ecrConfiguration", {})
        if want.repository_name is not None:
            ecr["repositoryName"] = want.repository_name
        if want.container_tags is not None:
            ecr["containerTags"] = list(want.container_tags)
    return payload


def client_token(uid: str, generation: int, want: ScanConfig, date_updated: str | None) -> str:
    """Same write after a crash → same token (AWS replays it); pipeline changed since → new token."""
    material = json.dumps([uid, generation, dataclasses.asdict(want), date_updated], sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:32]


@dataclasses.dataclass(frozen=True)
class Target:
    arn: str
    region: str
    account_id: str


def resolve(clients: aws_clients.Clients, spec: m.ImagePipelineSpec, previous: m.ImagePipelineStatus,
            via: aws_clients.Role | None = None) -> Target:
    """The pipeline the spec names. A name is looked up once (in the role's account) and remembered through
    status."""
    if spec.pipeline_arn:
        arn = pipelines.parse_arn(spec.pipeline_arn)
        if spec.region and spec.region != arn.region:
            logger.info("spec.region %s differs from the ARN's region %s; the ARN wins", spec.region, arn.region)
        return Target(arn=arn.text, region=arn.region, account_id=arn.account_id)
    assert spec.pipeline_name is not None
    region = spec.region or clients.default_region
    known = previous.pipeline
    same_account = via is None or known is None or m.account_of(via.arn) == known.account_id
    if known and known.name == spec.pipeline_name and known.region == region and same_account:
        return Target(arn=known.arn, region=region, account_id=known.account_id)
    arn = pipelines.parse_arn(pipelines.find_arn(clients.imagebuilder(region, via), spec.pipeline_name))
    return Target(arn=arn.text, region=arn.region, account_id=arn.account_id)


def pipeline_status(target: Target, raw: dict[str, Any]) -> m.PipelineStatus:
    return m.PipelineStatus(
        arn=target.arn, name=str(raw.get("name") or target.arn.rsplit("/", 1)[-1]),
        account_id=target.account_id, region=target.region,
        kind="Container" if raw.get("containerRecipeArn") else "AMI",
        status=raw.get("status"), platform=raw.get("platform"), last_run_status=raw.get("lastRunStatus"),
        date_last_run=raw.get("dateLastRun"), date_updated=raw.get("dateUpdated"),
    )


def scanning_status(raw: dict[str, Any]) -> m.ScanningStatus:
    have = observed(raw)
    ecr = None
    if have.repository_name is not None or have.container_tags is not None:
        tags = list(have.container_tags) if have.container_tags is not None else None
        ecr = m.EcrStatus(repository_name=have.repository_name, container_tags=tags)
    return m.ScanningStatus(enabled=have.enabled, ecr=ecr)


class _Progress:
    """What a sync has learned so far, so a failure half-way still reports it."""

    def __init__(self, previous: m.ImagePipelineStatus) -> None:
        self.pipeline = previous.pipeline
        self.scanning = previous.scanning
        self.findings = previous.findings
        self.wrote = False
        self.drift: tuple[str, ...] = ()
        self.findings_refreshed = False


def sync(
        clients: aws_clients.Clients,
        buckets: findings.AccountBuckets,
        request: Request,
        now: Callable[[], str] = kstatus.now_rfc3339,
        explain: Explain | None = None,
) -> Outcome:
    progress = _Progress(request.previous)
    error: errors.AwsError | None = None
    waiting_for = None
    try:
        _sync(clients, buckets, request, progress, now)
    except errors.DependencyMissing as exc:
        waiting_for = _needs(progress)
        error = _explained(exc, waiting_for, explain)
    except errors.AwsError as exc:
        error = exc
    mode = _mode(request)
    status = m.ImagePipelineStatus(
        observed_generation=request.generation,
        conditions=kstatus.merge(request.previous.conditions, _conditions(request, progress, error, mode)),
        pipeline=progress.pipeline, scanning=progress.scanning, findings=progress.findings,
        last_synced=now(),
        last_handled_reconcile_at=request.previous.last_handled_reconcile_at,
    )
    return Outcome(
        status=status, error=error, wrote=progress.wrote, drift=progress.drift,
        findings_refreshed=progress.findings_refreshed, waiting_for=waiting_for,
    )


def _needs(progress: _Progress) -> tuple[str, str, str] | None:
    known = progress.pipeline
    if known is None:
        return None
    return known.account_id, known.region, activation.needed_type(known.kind)


def _explained(exc: errors.DependencyMissing, needs: tuple[str, str, str] | None,
               explain: Explain | None) -> errors.AwsError:
    """Image Builder's refusal, with which InspectorActivation would fix it (or that none exists)."""
    if needs is None or explain is None:
        return exc
    return errors.DependencyMissing(f"{exc.message} {explain(*needs)}", code=exc.code, operation=exc.operation)


def _mode(request: Request) -> Literal["Manage", "Observe"]:
    return "Observe" if request.paused else request.spec.management_policy


def _sync(
        clients: aws_clients.Clients,
        buckets: findings.AccountBuckets,
        request: Request,
        progress: _Progress,
        now: Callable[[], str],
) -> None:
    via = role(request)
    target = resolve(clients, request.spec, request.previous, via)
    client = clients.imagebuilder(target.region, via)
    read = pipelines.get(client, target.arn)
    raw = read.pipeline
    _check_spec_fits(request.spec, raw)
    previous_date_last_run = request.previous.pipeline.date_last_run if request.previous.pipeline else None
    was_enabled = observed(raw).enabled
    progress.pipeline = pipeline_status(target, raw)
    progress.scanning = scanning_status(raw)
    want = desired(request.spec)
    progress.drift = delta(want, observed(raw))
    if progress.drift and _mode(request) == "Manage":
        raw = _apply(client, request, want, read)
        progress.wrote = True
        progress.drift = ()
        progress.pipeline = pipeline_status(target, raw)
        progress.scanning = scanning_status(raw)
    if not progress.scanning.enabled:
        return
    new_run = raw.get("dateLastRun") != previous_date_last_run
    just_enabled = not was_enabled  # we only get here with scanning on, so we just turned it on
    if request.refresh_findings or request.notified or new_run or just_enabled or request.previous.findings is None:
        registry = clients.ecr(target.region, via) if raw.get("containerRecipeArn") else None
        progress.findings = _refresh_findings(client, registry, buckets, request, target, raw, new_run, now)
        progress.findings_refreshed = True


def _check_spec_fits(spec: m.ImagePipelineSpec, raw: dict[str, Any]) -> None:
    if spec.scanning.ecr and not raw.get("containerRecipeArn"):
        raise InvalidSpec(
            "spec.scanning.ecr applies to container pipelines only; this pipeline builds AMIs: remove it",
            code="InvalidSpec",
        )


def _apply(client: Any, request: Request, want: ScanConfig, read: pipelines.Read) -> dict[str, Any]:
    """UpdateImagePipeline with everything else sent back as read, then verify by reading again."""
    raw = read.pipeline
    token = client_token(request.uid, request.generation, want, raw.get("dateUpdated"))
    payload = scanning_payload(want, raw.get(pipelines.SCANNING_FIELD) or {})
    pipelines.update(client, pipelines.update_request(client, read, payload, token))
    after = pipelines.get(client, raw["arn"]).pipeline
    if delta(want, observed(after)):
        raise UpdateNotApplied(
            "UpdateImagePipeline succeeded but the scanning configuration read back differs; will retry",
            code="UpdateNotApplied",
        )
    changed = sorted(
        key for key in set(raw) | set(after)
        if key not in _CHANGED_BY_UPDATE and raw.get(key) != after.get(key)
    )
    if changed:
        raise UnexpectedChange(
            f"after updating scanning, pipeline field(s) {changed} changed too; stopped writing. "
            "Check the pipeline and report this.", code="UnexpectedPipelineChange",
        )
    return after


def _refresh_findings(
        client: Any,
        registry: Any | None,
        buckets: findings.AccountBuckets,
        request: Request,
        target: Target,
        raw: dict[str, Any],
        new_run: bool,
        now: Callable[[], str],
) -> m.FindingsStatus:
    started = buckets.now()
    previous = request.previous.findings
    described = previous.latest_image if previous else None
    latest, unseen, builds = described, 0, None
    if latest is None or new_run or request.notified:
        latest, unseen, builds = _latest_image(client, registry, target.arn, described)
    elif latest.scan_state in TRANSIENT_SCAN_STATES:
        latest = _image_details(client, registry, latest.arn)
    scope = _scope(client, buckets, request, target, latest, unseen, started, sole_build=builds == 1)
    counts = findings.refresh_counts(scope, buckets)
    if latest is not None and not scanning(latest):
        buckets.note_settled(target.arn, latest.arn, scope.all_settled_at)
    if latest is not None and counts.image is not None:
        latest = latest.model_copy(update={"severity_counts": counts.image})
    top = counts.top if counts.top is not None else _reuse_top(previous, latest, request.spec.findings.top)
    if top is None:
        top = findings.refresh_top(scope, counts.image or m.SeverityCounts(), buckets)
    return m.FindingsStatus(last_refreshed=now(), severity_counts=counts.pipeline, latest_image=latest, top=top)


def _scope(client: Any, buckets: findings.AccountBuckets, request: Request, target: Target,
           latest: m.LatestImage | None, unseen: int, started: float, *, sole_build: bool) -> findings.Scope:
    """What the refresh reads, with when its builds had settled: the latest build as known before if it is the
    one described and its scan had finished, else only as of now; the others as known before unless builds
    other than the latest appeared since."""
    previous = request.previous.findings
    described = previous.latest_image if previous else None
    settled = _settled_by(previous, buckets.settled(target.arn, described.arn) if described else None)
    same = _same_settled_build(described, latest) and not request.notified
    unseen_others = unseen - (0 if same else 1)
    return findings.Scope(
        # The shared lists' key: they are one account's, in one region.
        client=client, region=f"{target.account_id}/{target.region}", pipeline_arn=target.arn,
        image_arn=latest.arn if latest else None, top_n=request.spec.findings.top,
        max_age=request.spec.refresh_seconds,
        settled_at=settled if settled is not None and same else started,
        others_settled_at=settled if settled is not None and unseen_others <= 0 and not request.notified else started,
        sole_build=sole_build,
    )


def _settled_by(previous: m.FindingsStatus | None, remembered: float | None) -> float | None:
    """When every build the previous status described had all its findings, on the shared lists' clock: as
    this process remembers it, else when the status was written (rounded up: status keeps whole seconds),
    if its latest build's scan had finished; None if unknown. A build first seen now, or still being
    scanned, settled at best when this refresh started: AWS's dateCreated is when the build started, long
    before its scan ends."""
    if previous is None or previous.last_refreshed is None or scanning(previous.latest_image):
        return None
    if remembered is not None:
        return remembered
    written = datetime.datetime.fromisoformat(previous.last_refreshed.replace("Z", "+00:00"))
    return written.timestamp() + 1.0


def _same_settled_build(described: m.LatestImage | None, latest: m.LatestImage | None) -> bool:
    return described is not None and latest is not None and described.arn == latest.arn and not scanning(latest)


def scanning(image: m.LatestImage | None) -> bool:
    """Whether the build's scan is still running (its findings are not complete yet)."""
    return image is not None and image.scan_state in TRANSIENT_SCAN_STATES


def _reuse_top(previous: m.FindingsStatus | None, latest: m.LatestImage | None, n: int) -> list[m.Finding] | None:
    """The previous top list when nothing it depends on changed (same image, same counts, same n)."""
    if previous is None or latest is None or previous.latest_image is None:
        return None
    same = (
        previous.latest_image.arn == latest.arn
        and previous.latest_image.severity_counts == latest.severity_counts
        and len(previous.top) == min(n, latest.severity_counts.total)
    )
    return list(previous.top) if same else None


def _latest_image(client: Any, registry: Any | None, pipeline_arn: str,
                  described: m.LatestImage | None) -> tuple[m.LatestImage | None, int, int]:
    """The newest available build (or newest of any state if none is available yet), how many builds are
    newer than the one ``described`` (all of them if none was), and how many builds the pipeline has."""
    images = aws_findings.pipeline_images(client, pipeline_arn)
    if not images:
        return None, 0, 0
    available = [i for i in images if (i.get("state") or {}).get("status") == "AVAILABLE"]
    newest = max(available or images, key=_created)
    since = (described.date_created or "") if described else None
    unseen = len(images) if since is None else sum(1 for i in images if _created(i) > since)
    return _image_details(client, registry, str(newest["arn"])), unseen, len(images)


def _created(image: dict[str, Any]) -> str:
    return str(image.get("dateCreated") or "")


def _image_details(client: Any, registry: Any | None, image_arn: str) -> m.LatestImage:
    image = aws_findings.get_image(client, image_arn)
    outputs = image.get("outputResources") or {}
    amis = [str(a["image"]) for a in outputs.get("amis") or [] if a.get("image")]
    uris = [uri for c in outputs.get("containers") or [] for uri in c.get("imageUris") or []]
    return m.LatestImage(
        arn=image_arn, version=image.get("version"), date_created=image.get("dateCreated"),
        state=(image.get("state") or {}).get("status"), scan_state=(image.get("scanState") or {}).get("status"),
        amis=amis or None, container_images=uris or None,
        container_image_digests=_digests(registry, uris) or None,
    )


def _digests(registry: Any | None, uris: list[str]) -> list[str]:
    """Digests let admission recognise digest-pinned workloads; without them tags still work, so an ECR
    failure (say, no ecr:DescribeImages permission) is logged, not a reconcile failure."""
    if registry is None or not uris:
        return []
    try:
        return aws_registry.digest_references(registry, uris)
    except errors.AwsError as exc:
        logger.warning("could not resolve image digests with ECR (%s); digest-pinned images won't be matched",
                       exc.message)
        return []


def _conditions(
        request: Request,
        progress: _Progress,
        error: errors.AwsError | None,
        mode: Literal["Manage", "Observe"],
) -> list[kstatus.Condition]:
    generation = request.generation
    result: list[kstatus.Condition] = []
    if error is not None:
        result.append(kstatus.make(kstatus.Type.READY, "False", error.reason, error.message, generation))
        kind = kstatus.Type.STALLED if error.terminal else kstatus.Type.RECONCILING
        result.append(kstatus.make(kind, "True", error.reason, error.message, generation))
    elif progress.drift:
        message = "Observe mode: nothing written. " + "; ".join(progress.drift)
        result.append(kstatus.make(kstatus.Type.READY, "False", "Drifted", message, generation))
    else:
        state = "enabled" if progress.scanning and progress.scanning.enabled else "disabled"
        reason = "Reconciled" if mode == "Manage" else "Observed"
        message = f"scanning is {state} on {progress.pipeline.arn if progress.pipeline else 'the pipeline'}"
        if progress.wrote:
            message += " (updated by the operator)"
        result.append(kstatus.make(kstatus.Type.READY, "True", reason, message, generation))
    if request.paused:
        result.append(kstatus.make(
            kstatus.Type.PAUSED, "True", "Paused",
            "annotation imagescan.io/paused=true: AWS is read but never written", generation,
        ))
    return result


STATUS_LIMIT_BYTES = 32 * 1024


def fit(status: m.ImagePipelineStatus, limit: int = STATUS_LIMIT_BYTES) -> m.ImagePipelineStatus:
    """The status in at most ``limit`` bytes of JSON. When the top findings do not fit, the least severe shed
    their detail first and are dropped only after that (``findings.fit_top``)."""
    summary = status.findings
    if summary is None or not summary.top or _json_size(status) <= limit:
        return status
    # Room for the list: what the rest takes, with both counters at their widest.
    widest = m.MAX_TOP_FINDINGS
    rest = status.model_copy(update={"findings": summary.model_copy(
        update={"top": [], "top_trimmed": widest, "top_omitted": widest})})
    budget = limit - _json_size(rest)
    while True:
        fitted = status.model_copy(update={"findings": findings.fit_top(summary, budget)})
        over = _json_size(fitted) - limit
        if over <= 0 or fitted.findings is None or not fitted.findings.top:
            return fitted
        budget -= over  # not expected: the room was measured with the counters at their widest


def _json_size(status: m.ImagePipelineStatus) -> int:
    return len(json.dumps(status.to_k8s()))


def disable(clients: aws_clients.Clients, request: Request) -> bool:
    """Turn scanning off (deletionPolicy Disable); returns whether anything was written."""
    via = role(request)
    target = resolve(clients, request.spec, request.previous, via)
    client = clients.imagebuilder(target.region, via)
    read = pipelines.get(client, target.arn)
    if not observed(read.pipeline).enabled:
        return False
    _apply(client, request, dataclasses.replace(desired(request.spec), enabled=False), read)
    return True
