"""Image Builder pipelines: read, find by name, and the full-replace update done safely.

UpdateImagePipeline "does not support selective updates": any field the request leaves out is reset. So
the request is built from the pipeline as just read, copying every member the request shape can carry —
the list comes from botocore's service model at run time, so a field AWS adds later is carried over as soon
as botocore knows it. Until then botocore's parser silently drops such a field from the response, and an
update would reset it; so the raw response body is checked against the model before parsing, and a read
with fields this botocore does not know (at any depth) refuses to be written back: ``UnsupportedField``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from botocore import model as botocore_model

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


_UNKNOWN_KEY = "ImagescanUnknownFields"


@dataclasses.dataclass(frozen=True)
class Read:
    """A pipeline as read, and the paths of fields in the raw response this botocore cannot parse."""

    pipeline: dict[str, Any]
    unknown_fields: tuple[str, ...] = ()


def get(client: Any, arn: str) -> Read:
    """The pipeline as GetImagePipeline returns it; ``errors.NotFound`` when there is none."""
    _watch_unknown_fields(client)
    try:
        response = client.get_image_pipeline(imagePipelineArn=arn)
    except Exception as exc:
        raise errors.from_exception(exc) from None
    return Read(pipeline=dict(response["imagePipeline"]), unknown_fields=tuple(response.get(_UNKNOWN_KEY, ())))


def _watch_unknown_fields(client: Any) -> None:
    """Look at GetImagePipeline's raw body before botocore's parser drops what it does not know."""
    service_model = client.meta.service_model
    shape = service_model.shape_for("ImagePipeline")

    def capture(response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any) -> None:
        try:
            body = json.loads(response_dict.get("body") or b"{}")
        except ValueError:
            return
        if isinstance(body, dict) and isinstance(body.get("imagePipeline"), dict):
            customized_response_dict[_UNKNOWN_KEY] = unknown_members(body["imagePipeline"], shape, "")

    client.meta.events.register(
        f"before-parse.{service_model.service_id.hyphenize()}.GetImagePipeline", capture,
        unique_id="imagescan-unknown-pipeline-fields",
    )


def unknown_members(value: Any, shape: botocore_model.Shape, path: str) -> list[str]:
    """Paths in ``value`` that ``shape`` has no member for."""
    if isinstance(shape, botocore_model.StructureShape) and isinstance(value, dict):
        found: list[str] = []
        for key, item in value.items():
            member = shape.members.get(key)
            where = f"{path}.{key}" if path else key
            found += [where] if member is None else unknown_members(item, member, where)
        return found
    if isinstance(shape, botocore_model.ListShape) and isinstance(value, list):
        return [p for i, item in enumerate(value) for p in unknown_members(item, shape.member, f"{path}[{i}]")]
    if isinstance(shape, botocore_model.MapShape) and isinstance(value, dict):
        return [p for key, item in value.items() for p in unknown_members(item, shape.value, f"{path}.{key}")]
    return []


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
        read: Read,
        scanning: dict[str, Any],
        client_token: str,
) -> dict[str, Any]:
    """UpdateImagePipeline parameters that change only the scanning configuration."""
    pipeline = read.pipeline
    carried = updatable_fields(client) - {"clientToken", "imagePipelineArn"}
    unknown = sorted(set(read.unknown_fields) | (set(pipeline) - carried - READ_ONLY_FIELDS))
    if unknown:
        raise UnsupportedField(
            f"the pipeline has field(s) {unknown} that this operator's botocore cannot send back; "
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
