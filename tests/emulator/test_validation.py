"""Server-side validation: every modeled constraint answers with AWS's error code and status."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from imagescan.emulator import protocol, server

from .conftest import make_client

# The page-size limit comes from the installed botocore's model (25 in older releases, 100 since 1.44).
MAX_FINDINGS_PAGE = int(
    protocol.service("imagebuilder").model.operation_model("ListImageScanFindings")
    .input_shape.members["maxResults"].metadata["max"]
)
PIPELINE = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/web-ami"
INFRA = "arn:aws:imagebuilder:us-east-1:123456789012:infrastructure-configuration/i"


def _error(call: Any, **kwargs: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


@pytest.mark.parametrize(
    ("operation", "kwargs", "code"),
    [
        ("list_image_scan_findings", {"maxResults": MAX_FINDINGS_PAGE + 1}, "InvalidRequestException"),
        ("list_image_scan_findings", {"maxResults": 0}, "InvalidRequestException"),
        (
            "list_image_scan_findings",
            {"filters": [{"name": "severity", "values": ["HIGH"]}, {"name": "severity", "values": ["LOW"]}]},
            "InvalidRequestException",
        ),
        (
            "list_image_scan_findings",
            {"filters": [{"name": "severity", "values": ["HIGH", "LOW"]}]},
            "InvalidRequestException",
        ),
        (
            "list_image_scan_findings",
            {"filters": [{"name": "color", "values": ["red"]}]},
            "InvalidParameterValueException",
        ),
        (
            "list_image_scan_findings",
            {"filters": [{"name": "severity", "values": ["SEVERE"]}]},
            "InvalidParameterValueException",
        ),
        ("list_image_scan_findings", {"nextToken": "garbage"}, "InvalidPaginationTokenException"),
        ("list_image_pipelines", {"maxResults": "ten"}, "InvalidRequestException"),
        ("get_image_pipeline", {}, "InvalidRequestException"),
        ("get_image_pipeline", {"imagePipelineArn": "not-an-arn"}, "InvalidRequestException"),
        (
            "update_image_pipeline",
            {
                "imagePipelineArn": PIPELINE,
                "clientToken": "t",
                "infrastructureConfigurationArn": INFRA,
                "imageRecipeArn": "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/r/1.0.0",
                "status": "PAUSED",
            },
            "InvalidRequestException",
        ),
        ("update_image_pipeline", {"imagePipelineArn": PIPELINE, "clientToken": "t"}, "InvalidRequestException"),
    ],
)
def test_bad_requests(ib_raw: Any, operation: str, kwargs: dict[str, Any], code: str) -> None:
    got_code, status, message = _error(getattr(ib_raw, operation), **kwargs)
    assert got_code == code, message
    assert status == protocol.service("imagebuilder").status_for(code) == 400
    assert message


def test_messages_follow_aws_style(ib_raw: Any) -> None:
    _, _, message = _error(ib_raw.list_image_scan_findings, maxResults=MAX_FINDINGS_PAGE + 1)
    assert message == (
        f"1 validation error detected: Value '{MAX_FINDINGS_PAGE + 1}' at 'maxResults' failed to satisfy "
        f"constraint: Member must have value less than or equal to {MAX_FINDINGS_PAGE}"
    )
    _, _, message = _error(ib_raw.get_image_pipeline)
    assert "imagePipelineArn" in message and "must not be null" in message


def test_inspector_validation(emu: server.Emulator) -> None:
    assert emu.endpoint_url
    inspector = make_client("inspector2", emu.endpoint_url, parameter_validation=False)
    code, status, _ = _error(inspector.enable, resourceTypes=["S3"])
    assert (code, status) == ("ValidationException", 400)
    code, _, _ = _error(inspector.enable)
    assert code == "ValidationException"


def test_error_statuses_come_from_the_model() -> None:
    svc = protocol.service("imagebuilder")
    expected = {
        "InvalidParameterException": 400,
        "InvalidRequestException": 400,
        "ResourceNotFoundException": 404,
        "CallRateLimitExceededException": 429,
        "ServiceException": 500,
        "ServiceUnavailableException": 503,
        "IdempotentParameterMismatchException": 400,
        "ResourceDependencyException": 400,
        "ResourceInUseException": 400,
        "ClientException": 400,
        "ForbiddenException": 403,
    }
    assert {code: svc.status_for(code) for code in expected} == expected


@pytest.mark.parametrize(
    "code",
    [
        "InvalidParameterException",
        "ResourceInUseException",
        "ClientException",
        "ForbiddenException",
        "ServiceException",
        "ResourceDependencyException",
    ],
)
def test_each_code_surfaces_through_botocore(emu: server.Emulator, code: str) -> None:
    assert emu.endpoint_url
    once = make_client("imagebuilder", emu.endpoint_url, retries={"mode": "standard", "total_max_attempts": 1})
    emu.inject_faults(codes=(code,), count=1)
    got, status, _ = _error(once.list_image_pipelines)
    assert (got, status) == (code, protocol.service("imagebuilder").status_for(code))


def test_unimplemented_operation(ib: Any) -> None:
    code, status, message = _error(ib.list_components)
    assert (code, status) == ("ServiceException", 501)
    assert "not implemented" in message


def test_unknown_route_is_not_counted(emu: server.Emulator) -> None:
    status, headers, _ = emu.handle("POST", "/NoSuchThing", {}, b"{}")
    assert status == 404 and headers["x-amzn-ErrorType"] == "UnknownOperationException"
    assert sum(emu.calls.values()) == 0
