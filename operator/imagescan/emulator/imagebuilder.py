"""Image Builder operations: read paths, UpdateImagePipeline's replace semantics, scan findings.

Input has already been validated against the model when a handler runs, so handlers only enforce the
*semantic* rules the real service applies (resource existence, one recipe kind, Inspector dependency,
idempotency tokens). Behaviour choices are documented against the public API reference where one exists.
Every handler acts for a ``Caller``: an ARN of another account is refused as IAM refuses it, an ARN of
another region than the one the request was signed for is refused too, and List operations see only the
caller's account in the signing region.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from imagescan.emulator import errors, generator, identity, pagination, world

Handler = Callable[[world.World, identity.Caller, dict[str, Any]], dict[str, Any]]

# Filters the API reference lists per operation.
_PIPELINE_FILTERS = (
    "description",
    "distributionConfigurationArn",
    "imageRecipeArn",
    "infrastructureConfigurationArn",
    "name",
    "status",
)
_IMAGE_FILTERS = ("name", "version")
_FINDING_FILTERS = ("imageBuildVersionArn", "imagePipelineArn", "vulnerabilityId", "severity")
_AGGREGATION_FILTERS = ("accountId", "imagePipelineArn", "imageBuildVersionArn", "vulnerabilityId")
# Fields UpdateImagePipeline cannot touch; everything else is replaced by what the request says.
_KEPT_ON_UPDATE = (
    "arn",
    "name",
    "platform",
    "dateCreated",
    "dateLastRun",
    "lastRunStatus",
    "tags",
    "consecutiveFailures",
)
_COPIED_IF_SENT = (
    "description",
    "distributionConfigurationArn",
    "executionRole",
    "workflows",
    "loggingConfiguration",
    "imageTags",
)
# API reference defaults for omitted members.
_DEFAULT_TESTS = {"imageTestsEnabled": True, "timeoutMinutes": 720}
_DEFAULT_START_CONDITION = "EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE"


def _pipeline_not_found(arn: str) -> errors.ApiError:
    return errors.not_found(f"The image pipeline '{arn}' does not exist.")


def _authorize(caller: identity.Caller, operation: str, parameter: str, arn: str) -> None:
    """Refuse an ARN outside the caller's account (IAM's AccessDenied) or outside the signing region."""
    account_id, region = world.scope_of(arn)
    if account_id != caller.account_id:
        action = f"imagebuilder:{operation}"
        raise errors.ApiError(
            "AccessDeniedException",
            f"User: {caller.principal_arn} is not authorized to perform: {action} on resource: {arn} "
            f"because no resource-based policy allows the {action} action",
            status=403,
        )
    if region != caller.region:
        # Not verified against the real service, which may answer differently (a regional endpoint knows
        # nothing of another region's resources); a parameter error naming both regions is the clearest.
        raise errors.invalid_value(
            parameter, f"The ARN '{arn}' is in region '{region}' but the request was made in '{caller.region}'."
        )


def _visible(caller: identity.Caller, arn: str) -> bool:
    return world.scope_of(arn) == (caller.account_id, caller.region)


# --- pipelines -----------------------------------------------------------------------------------------------


def get_image_pipeline(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    """GET /GetImagePipeline?imagePipelineArn=..."""
    arn = params["imagePipelineArn"]
    _authorize(caller, "GetImagePipeline", "imagePipelineArn", arn)
    with w.lock:
        if not w.has_pipeline(arn):
            raise _pipeline_not_found(arn)
        return {"imagePipeline": w.pipeline(arn)}


def list_image_pipelines(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    """POST /ListImagePipelines: AND across filters, OR across a filter's values."""
    filters = _filters(params.get("filters"), _PIPELINE_FILTERS)
    matching = [
        pipeline
        for pipeline in w.pipelines(caller.account_id, caller.region)
        if all(pipeline.get(name) in values for name, values in filters)
    ]
    items, token = pagination.page(matching, params, pagination.fingerprint("pipelines", filters))
    return _with_token({"imagePipelineList": list(items)}, token)


def update_image_pipeline(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    """PUT /UpdateImagePipeline: a full replace, made idempotent by ``clientToken`` (per account)."""
    _authorize(caller, "UpdateImagePipeline", "imagePipelineArn", params["imagePipelineArn"])
    token = params["clientToken"]
    request = json.dumps(params, sort_keys=True)
    key = ("UpdateImagePipeline", f"{caller.account_id}/{token}")
    with w.lock:
        seen = w.idempotency.get(key)
        if seen is not None:
            if seen[0] != request:
                raise errors.ApiError(
                    "IdempotentParameterMismatchException",
                    f"The client token '{token}' was already used with different request parameters.",
                )
            return copy.deepcopy(seen[1])
        arn = params["imagePipelineArn"]
        if not w.has_pipeline(arn):
            raise _pipeline_not_found(arn)
        current = w.pipeline(arn)
        updated = _replaced(w, current, params)
        _require_inspector(w, updated)
        w.replace_pipeline(arn, updated)
        w.update_log.record(arn, token, before=current, after=updated)
        response = {"clientToken": token, "imagePipelineArn": arn}
        w.idempotency[key] = (request, copy.deepcopy(response))
        return response


def _replaced(w: world.World, current: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The pipeline after the update: omitted optional members fall back to defaults or disappear."""
    updated = {key: current[key] for key in _KEPT_ON_UPDATE if key in current}
    updated.update(_recipe(current, params))
    updated["infrastructureConfigurationArn"] = params["infrastructureConfigurationArn"]
    updated.update({key: copy.deepcopy(params[key]) for key in _COPIED_IF_SENT if key in params})
    updated["enhancedImageMetadataEnabled"] = params.get("enhancedImageMetadataEnabled", True)
    updated["imageTestsConfiguration"] = {**_DEFAULT_TESTS, **params.get("imageTestsConfiguration", {})}
    updated["status"] = params.get("status", "ENABLED")
    updated["imageScanningConfiguration"] = {
        "imageScanningEnabled": False,
        **copy.deepcopy(params.get("imageScanningConfiguration", {})),
    }
    now = w.now()
    if "schedule" in params:
        updated["schedule"] = _schedule(params["schedule"])
        updated["dateNextRun"] = generator.iso(now + 86400.0)  # cron evaluation is out of scope
    updated["dateUpdated"] = generator.iso(now)
    return updated


def _recipe(current: dict[str, Any], params: dict[str, Any]) -> dict[str, str]:
    sent = [key for key in ("imageRecipeArn", "containerRecipeArn") if key in params]
    if len(sent) != 1:
        raise errors.invalid_request(
            "You must specify exactly one recipe for your image, using either a containerRecipeArn or an "
            "imageRecipeArn."
        )
    if sent[0] not in current:
        raise errors.invalid_request(
            f"The image pipeline '{current['arn']}' cannot change its recipe type; it requires a "
            f"{'containerRecipeArn' if 'containerRecipeArn' in current else 'imageRecipeArn'}."
        )
    return {sent[0]: params[sent[0]]}


def _schedule(schedule: dict[str, Any]) -> dict[str, Any]:
    expression = schedule.get("scheduleExpression")
    if expression is not None and not (expression.startswith("cron(") and expression.endswith(")")):
        raise errors.invalid_value("schedule.scheduleExpression", "Image Builder supports cron expressions only.")
    return {"pipelineExecutionStartCondition": _DEFAULT_START_CONDITION, **copy.deepcopy(schedule)}


def _require_inspector(w: world.World, pipeline: dict[str, Any]) -> None:
    """Scanning needs Inspector active for the resources the scan uses (ECR for containers, EC2 for AMIs) in
    the pipeline's own account and region; ENABLING is not active yet."""
    if not pipeline["imageScanningConfiguration"].get("imageScanningEnabled"):
        return
    resource = "ECR" if "containerRecipeArn" in pipeline else "EC2"
    account_id, region = world.scope_of(pipeline["arn"])
    status = w.inspector_status(account_id, region)[resource]
    if status != "ENABLED":
        raise errors.ApiError(
            "ResourceDependencyException",
            f"Resource dependency error: Amazon Inspector is not enabled for '{resource.lower()}' resources in "
            f"account '{account_id}' in region '{region}' (status {status}).",
        )


# --- images --------------------------------------------------------------------------------------------------


def list_image_pipeline_images(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    """POST /ListImagePipelineImages: the pipeline's builds, oldest first."""
    arn = params["imagePipelineArn"]
    _authorize(caller, "ListImagePipelineImages", "imagePipelineArn", arn)
    filters = _filters(params.get("filters"), _IMAGE_FILTERS)
    with w.lock:
        if not w.has_pipeline(arn):
            raise _pipeline_not_found(arn)
        images = [w.image(image_arn) for image_arn in w.image_arns(arn)]
    summaries = [
        generator.image_summary(image)
        for image in images
        if image is not None and all(_image_field(image, name) in values for name, values in filters)
    ]
    items, token = pagination.page(summaries, params, pagination.fingerprint("images", arn, filters))
    return _with_token({"imageSummaryList": list(items)}, token)


def _image_field(image: dict[str, Any], name: str) -> str:
    return str(image["version"]).split("/")[0] if name == "version" else str(image.get(name))


def get_image(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    """GET /GetImage?imageBuildVersionArn=...; a version ARN resolves to its newest build."""
    wanted = params["imageBuildVersionArn"]
    _authorize(caller, "GetImage", "imageBuildVersionArn", wanted)
    with w.lock:
        image = w.image(wanted) or _newest_build(w, wanted)
    if image is None:
        raise errors.not_found(f"The image '{wanted}' does not exist.")
    version_arn = image["arn"].rsplit("/", 1)[0]
    references = dict.fromkeys(
        ("latestVersionArn", "latestMajorVersionArn", "latestMinorVersionArn", "latestPatchVersionArn"), version_arn
    )
    return {"image": image, "latestVersionReferences": references}


def _newest_build(w: world.World, version_arn: str) -> dict[str, Any] | None:
    for pipeline_arn in w.pipeline_arns():
        for image_arn in reversed(w.image_arns(pipeline_arn)):
            if image_arn.startswith(version_arn + "/"):
                return w.image(image_arn)
    return None


# --- findings ------------------------------------------------------------------------------------------------


def list_image_scan_findings(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    """POST /ListImageScanFindings: at most one filter with one value, pages of up to 25; only the findings of
    the caller's account in the signing region (a filter naming another account's image finds nothing)."""
    filters = _filters(params.get("filters"), _FINDING_FILTERS)
    name, value = (filters[0][0], filters[0][1][0]) if filters else (None, None)
    if name == "severity" and value not in generator.SEVERITIES:
        raise errors.invalid_value("filters", f"Severity must be one of {', '.join(generator.SEVERITIES)}.")
    records = w.findings(name, value, account_id=caller.account_id, region=caller.region)
    items, token = pagination.page(records, params, pagination.fingerprint("findings", filters))
    return _with_token({"findings": [w.expand(record) for record in items]}, token)


def list_image_scan_finding_aggregations(
    w: world.World, caller: identity.Caller, params: dict[str, Any]
) -> dict[str, Any]:
    """POST /ListImageScanFindingAggregations: one aggregation per filter value, keyed by the filter name."""
    raw = params.get("filter")
    filters = _filters([raw], _AGGREGATION_FILTERS) if raw is not None else [("accountId", [caller.account_id])]
    name, values = filters[0]
    responses = [
        aggregation
        for value in dict.fromkeys(values)
        if (aggregation := _aggregate(w, caller, name, value)) is not None
    ]
    items, token = pagination.page(responses, params, pagination.fingerprint("aggregations", filters))
    return _with_token({"aggregationType": name, "responses": list(items)}, token)


def _aggregate(w: world.World, caller: identity.Caller, name: str, value: str) -> dict[str, Any] | None:
    """Counts for one key; keys that name nothing of the caller's account in this region are left out."""
    if name == "accountId":
        if value != caller.account_id:
            return None
        records = w.findings(account_id=caller.account_id, region=caller.region)
        return {"accountAggregation": {"accountId": value, "severityCounts": _severity_counts(records)}}
    if name == "imagePipelineArn":
        if not _visible(caller, value):
            return None
        records = w.findings("imagePipelineArn", value)
        if not records and not w.has_pipeline(value):
            return None
        return {"imagePipelineAggregation": {"imagePipelineArn": value, "severityCounts": _severity_counts(records)}}
    if name == "imageBuildVersionArn":
        if not _visible(caller, value) or w.image(value) is None:
            return None
        records = w.findings("imageBuildVersionArn", value)
        return {"imageAggregation": {"imageBuildVersionArn": value, "severityCounts": _severity_counts(records)}}
    records = w.findings("vulnerabilityId", value, account_id=caller.account_id, region=caller.region)
    if not records:
        return None
    return {"vulnerabilityIdAggregation": {"vulnerabilityId": value, "severityCounts": _severity_counts(records)}}


def _severity_counts(records: list[generator.FindingRecord]) -> dict[str, int]:
    """``all`` counts every severity; only medium and above are broken out (per the model)."""
    counts = {"all": len(records), "critical": 0, "high": 0, "medium": 0}
    for record in records:
        key = record.vuln.severity.lower()
        if key in counts:
            counts[key] += 1
    return counts


# --- shared --------------------------------------------------------------------------------------------------


def _filters(raw: list[dict[str, Any]] | None, allowed: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """Validated ``(name, values)`` pairs; the shape check already enforced list sizes and patterns."""
    parsed: list[tuple[str, list[str]]] = []
    for item in raw or []:
        name, values = item.get("name"), item.get("values")
        if name not in allowed:
            raise errors.invalid_value(
                "filters", f"Filter name '{name}' is not supported; use one of {', '.join(allowed)}."
            )
        if not values:
            raise errors.invalid_value("filters", f"Filter '{name}' needs at least one value.")
        parsed.append((name, list(values)))
    return parsed


def _with_token(response: dict[str, Any], token: str | None) -> dict[str, Any]:
    if token is not None:
        response["nextToken"] = token
    return response


OPERATIONS: dict[str, Handler] = {
    "GetImagePipeline": get_image_pipeline,
    "ListImagePipelines": list_image_pipelines,
    "UpdateImagePipeline": update_image_pipeline,
    "ListImagePipelineImages": list_image_pipeline_images,
    "GetImage": get_image,
    "ListImageScanFindings": list_image_scan_findings,
    "ListImageScanFindingAggregations": list_image_scan_finding_aggregations,
}
