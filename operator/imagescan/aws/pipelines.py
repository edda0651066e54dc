"""Image Builder pipelines: read, find by name, and the full-replace update done safely.

UpdateImagePipeline "does not support selective updates": any field the request leaves out is reset. So
the request is built from the pipeline as just read, copying every member the request shape can carry —
the list comes from botocore's service model at run time, so a field AWS adds later is carried over as soon
as botocore knows it. If the read returns a field the request cannot carry and that is not known to be
read-only, writing would silently drop it: ``UnsupportedField`` refuses instead.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from imagescan.aws import errors

# Fields GetImagePipeline returns that are not settable through UpdateImagePipeline. ``tags`` are managed
# by TagResource and survive an update; the rest is state that AWS computes.
READ_ONLY_FIELDS = frozenset({
    "arn", "name", "platform", "dateCreated", "dateUpdated", "dateLastRun", "lastRunStatus",
    "dateNextRun", "tags", "consecutiveFailures",
})
SCANNING_FIELD = "imageScanningConfiguration"
_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):imagebuilder:(?P<region>[a-z0-9-]+):(?P<account_id>[0-9]{12}):"
    r"image-pipeline/(?P<name>[a-z0-9-_]+)$"
)


class UnsupportedField(errors.AwsError):
    """The pipeline has fields this botocore cannot send back; an update would reset them."""

    terminal = True
    reason = "UnsupportedPipelineField"


@dataclasses.dataclass(frozen=True)
class Arn:
    partition: str
    region: str
    account_id: str
    name: str
    text: str


def parse_arn(text: str) -> Arn:
    match = _ARN.match(text)
    if not match:
        raise errors.InvalidRequest(
            f"{text!r} is not an Image Builder pipeline ARN "
            "(arn:aws:imagebuilder:REGION:ACCOUNT:image-pipeline/NAME)", code="InvalidPipelineArn",
        )
    return Arn(text=text, **match.groupdict())


def get(client: Any, arn: str) -> dict[str, Any]:
    """The pipeline as GetImagePipeline returns it; ``errors.NotFound`` when there is none."""
    try:
        return dict(client.get_image_pipeline(imagePipelineArn=arn)["imagePipeline"])
    except Exception as exc:
        raise errors.from_exception(exc) from None


def find_arn(client: Any, name: str) -> str:
    """The ARN of the pipeline with this name in the client's region."""
    try:
        paginator = client.get_paginator("list_image_pipelines")
        for page in paginator.paginate(filters=[{"name": "name", "values": [name]}]):
            for pipeline in page.get("imagePipelineList", []):
                if pipeline.get("name") == name:
                    return str(pipeline["arn"])
    except Exception as exc:
        raise errors.from_exception(exc) from None
    raise errors.NotFound(f"no Image Builder pipeline named {name!r}", code="ResourceNotFoundException")


def updatable_fields(client: Any) -> frozenset[str]:
    shape = client.meta.service_model.operation_model("UpdateImagePipeline").input_shape
    return frozenset(shape.members)


def update_request(
        client: Any,
        pipeline: dict[str, Any],
        scanning: dict[str, Any],
        client_token: str,
) -> dict[str, Any]:
    """UpdateImagePipeline parameters that change only the scanning configuration."""
    carried = updatable_fields(client) - {"clientToken", "imagePipelineArn"}
    unknown = set(pipeline) - carried - READ_ONLY_FIELDS
    if unknown:
        raise UnsupportedField(
            f"the pipeline has field(s) {sorted(unknown)} that this operator's botocore cannot send back; "
            "updating would reset them, so nothing was written. Upgrade the operator.",
            code="UnsupportedPipelineField",
        )
    request = {key: value for key, value in pipeline.items() if key in carried}
    request[SCANNING_FIELD] = scanning
    request["imagePipelineArn"] = pipeline["arn"]
    request["clientToken"] = client_token
    return request


def update(client: Any, request: dict[str, Any]) -> None:
    try:
        client.update_image_pipeline(**request)
    except Exception as exc:
        raise errors.from_exception(exc) from None
