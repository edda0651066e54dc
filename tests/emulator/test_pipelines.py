"""GetImagePipeline / ListImagePipelines / UpdateImagePipeline against the emulator."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from imagescan.emulator import server

from .conftest import make_client


def _update_args(pipeline: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The minimal full-replace request for ``pipeline``."""
    recipe = "containerRecipeArn" if "containerRecipeArn" in pipeline else "imageRecipeArn"
    args = {
        "imagePipelineArn": pipeline["arn"],
        recipe: pipeline[recipe],
        "infrastructureConfigurationArn": pipeline["infrastructureConfigurationArn"],
    }
    args.update(overrides)
    return args


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_get_matches_world_and_carries_rich_fields(emu: server.Emulator, ib: Any) -> None:
    rich = emu.world.pipeline_arns()[0]
    got = ib.get_image_pipeline(imagePipelineArn=rich)["imagePipeline"]
    assert got == emu.world.pipeline(rich)
    for field in (
        "schedule",
        "workflows",
        "loggingConfiguration",
        "executionRole",
        "description",
        "distributionConfigurationArn",
        "imageTestsConfiguration",
        "tags",
        "dateNextRun",
    ):
        assert field in got, field
    assert got["schedule"]["autoDisablePolicy"] == {"failureCount": 3}
    assert got["workflows"][0]["parameters"][0]["value"] == ["cis-level-2"]
    assert got["dateUpdated"].endswith("Z") and "T" in got["dateUpdated"]


def test_seeded_world_mixes_kinds(emu: server.Emulator) -> None:
    pipelines = emu.world.pipelines()
    assert any("containerRecipeArn" in p for p in pipelines)
    assert any("imageRecipeArn" in p for p in pipelines)
    assert any(p["imageScanningConfiguration"]["imageScanningEnabled"] for p in pipelines)
    assert all(count > 0 for count in emu.world.severity_counts().values())
    assert emu.world.inspector_status(emu.world.account_id)["ECR"] == "ENABLED"


def test_list_paginates_and_filters(emu: server.Emulator, ib: Any) -> None:
    names = []
    for page in ib.get_paginator("list_image_pipelines").paginate(PaginationConfig={"PageSize": 1}):
        names += [p["name"] for p in page["imagePipelineList"]]
    assert names == [p["name"] for p in emu.world.pipelines()]
    only = ib.list_image_pipelines(filters=[{"name": "name", "values": ["web-ami"]}])["imagePipelineList"]
    assert [p["name"] for p in only] == ["web-ami"]


def test_update_round_trip_resets_omitted_fields(emu: server.Emulator, ib: Any) -> None:
    arn = emu.world.pipeline_arns()[0]
    before = ib.get_image_pipeline(imagePipelineArn=arn)["imagePipeline"]
    ib.update_image_pipeline(**_update_args(before, description="only this"))
    after = ib.get_image_pipeline(imagePipelineArn=arn)["imagePipeline"]
    assert after["description"] == "only this"
    for gone in (
        "schedule",
        "workflows",
        "loggingConfiguration",
        "executionRole",
        "distributionConfigurationArn",
        "dateNextRun",
        "imageTags",
    ):
        assert gone not in after, gone
    assert after["status"] == "ENABLED"
    assert after["enhancedImageMetadataEnabled"] is True
    assert after["imageTestsConfiguration"] == {"imageTestsEnabled": True, "timeoutMinutes": 720}
    assert after["imageScanningConfiguration"] == {"imageScanningEnabled": False}
    assert after["dateUpdated"] > before["dateUpdated"]
    assert after["tags"] == before["tags"] and after["dateCreated"] == before["dateCreated"]


def test_update_sets_schedule_with_defaults(emu: server.Emulator, ib: Any) -> None:
    pipeline = emu.world.pipeline(emu.world.pipeline_arns()[1])
    ib.update_image_pipeline(
        **_update_args(pipeline, schedule={"scheduleExpression": "cron(0 0 * * ? *)"}, status="DISABLED")
    )
    got = emu.world.pipeline(pipeline["arn"])
    assert got["schedule"]["pipelineExecutionStartCondition"] == "EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE"
    assert got["status"] == "DISABLED" and "dateNextRun" in got


def test_every_update_changes_date_updated(emu: server.Emulator, ib: Any) -> None:
    pipeline = emu.world.pipeline(emu.world.pipeline_arns()[0])
    stamps = set()
    for _ in range(3):
        ib.update_image_pipeline(**_update_args(pipeline))
        stamps.add(emu.world.pipeline(pipeline["arn"])["dateUpdated"])
    assert len(stamps) == 3


def test_client_token_replay_and_mismatch(emu: server.Emulator, ib: Any) -> None:
    pipeline = emu.world.pipeline(emu.world.pipeline_arns()[0])
    token = str(uuid.uuid4())
    first = ib.update_image_pipeline(**_update_args(pipeline, description="v1"), clientToken=token)
    stamp = emu.world.pipeline(pipeline["arn"])["dateUpdated"]
    replay = ib.update_image_pipeline(**_update_args(pipeline, description="v1"), clientToken=token)
    assert replay["clientToken"] == first["clientToken"] == token
    assert emu.world.pipeline(pipeline["arn"])["dateUpdated"] == stamp  # not re-applied
    with pytest.raises(ClientError) as exc:
        ib.update_image_pipeline(**_update_args(pipeline, description="v2"), clientToken=token)
    assert _code(exc) == "IdempotentParameterMismatchException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_update_rejects_recipe_kind_change(emu: server.Emulator, ib: Any) -> None:
    ami = emu.world.pipeline(emu.world.pipeline_arns()[0])
    container_recipe = "arn:aws:imagebuilder:us-east-1:123456789012:container-recipe/x/1.0.0"
    args = _update_args(ami)
    del args["imageRecipeArn"]
    with pytest.raises(ClientError) as exc:
        ib.update_image_pipeline(**args, containerRecipeArn=container_recipe)
    assert _code(exc) == "InvalidRequestException"


def test_not_found(emu: server.Emulator, ib: Any) -> None:
    missing = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/nope"
    with pytest.raises(ClientError) as exc:
        ib.get_image_pipeline(imagePipelineArn=missing)
    assert _code(exc) == "ResourceNotFoundException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as exc:
        ib.list_image_pipeline_images(imagePipelineArn=missing)
    assert _code(exc) == "ResourceNotFoundException"


def test_deleted_pipeline_is_gone(emu: server.Emulator, ib: Any) -> None:
    arn = emu.world.pipeline_arns()[0]
    emu.world.delete_pipeline(arn)
    with pytest.raises(ClientError) as exc:
        ib.get_image_pipeline(imagePipelineArn=arn)
    assert _code(exc) == "ResourceNotFoundException"


def test_scanning_needs_inspector_then_works(emu_no_inspector: server.Emulator) -> None:
    emu = emu_no_inspector
    assert emu.endpoint_url
    ib = make_client("imagebuilder", emu.endpoint_url)
    inspector = make_client("inspector2", emu.endpoint_url)
    container = next(p for p in emu.world.pipelines() if "containerRecipeArn" in p)
    scan = {"imageScanningConfiguration": {"imageScanningEnabled": True}}
    with pytest.raises(ClientError) as exc:
        ib.update_image_pipeline(**_update_args(container, **scan))
    assert _code(exc) == "ResourceDependencyException"
    assert "not enabled for 'ecr' resources" in exc.value.response["Error"]["Message"]

    status = inspector.batch_get_account_status()["accounts"][0]
    assert status["resourceState"]["ecr"]["status"] == "DISABLED"
    inspector.enable(resourceTypes=["EC2"])  # the wrong resource type does not help a container pipeline
    with pytest.raises(ClientError):
        ib.update_image_pipeline(**_update_args(container, **scan))
    enabled = inspector.enable(resourceTypes=["ECR"])["accounts"][0]
    assert enabled["resourceStatus"]["ecr"] == "ENABLED"
    ib.update_image_pipeline(**_update_args(container, **scan))
    assert emu.world.pipeline(container["arn"])["imageScanningConfiguration"]["imageScanningEnabled"] is True

    inspector.disable()
    assert emu.world.inspector_status(emu.world.account_id)["ECR"] == "DISABLED"


def test_set_scanning_bumps_date_updated(emu: server.Emulator) -> None:
    arn = emu.world.pipeline_arns()[0]
    before = emu.world.pipeline(arn)
    emu.world.set_scanning(arn, enabled=not before["imageScanningConfiguration"]["imageScanningEnabled"])
    after = emu.world.pipeline(arn)
    assert after["dateUpdated"] > before["dateUpdated"]
    assert after["imageScanningConfiguration"] != before["imageScanningConfiguration"]
