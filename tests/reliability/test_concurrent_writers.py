"""Someone else writes the pipeline between the operator's GetImagePipeline and its UpdateImagePipeline.

UpdateImagePipeline replaces the whole pipeline and has no condition (no ETag, no expected dateUpdated), so a
writer that sends back what it read earlier reverts whatever changed in between. The emulator's
``before_next_update`` hook makes the race deterministic: when the operator's update arrives, another writer
(a real boto3 client, over HTTP) first changes the pipeline's description and schedule; then the operator's
update is handled. The emulator's update audit shows whether the operator's write carried the pipeline's
then-current content.

Scanning must end up as the spec says (it does); the other writer's change must survive (it does not:
see the xfail's reason and docs/reliability.md).
"""

from __future__ import annotations

from typing import Any

import boto3
import botocore.config
import pytest

from imagescan import runner
from imagescan.emulator import server
from tests.integration import harness
from tests.reliability import support

THEIR_DESCRIPTION = "changed by the release team while the operator was writing"
THEIR_SCHEDULE = {"scheduleExpression": "cron(30 2 ? * SUN *)", "timezone": "UTC",
                  "pipelineExecutionStartCondition": "EXPRESSION_MATCH_ONLY"}
_UPDATABLE = ("description", "imageRecipeArn", "containerRecipeArn", "infrastructureConfigurationArn",
              "distributionConfigurationArn", "imageTestsConfiguration", "enhancedImageMetadataEnabled", "schedule",
              "status", "imageScanningConfiguration", "workflows", "loggingConfiguration", "executionRole",
              "imageTags")


def _other_writer(endpoint_url: str, arn: str) -> None:
    """A person (or another tool) editing the pipeline: read it, change description and schedule, write it."""
    factory: Any = boto3.client
    client = factory("imagebuilder", endpoint_url=endpoint_url, region_name="us-east-1",
                     aws_access_key_id="other", aws_secret_access_key="other",
                     config=botocore.config.Config(retries={"mode": "standard"}))
    current = client.get_image_pipeline(imagePipelineArn=arn)["imagePipeline"]
    request = {key: current[key] for key in _UPDATABLE if key in current}
    request.update(description=THEIR_DESCRIPTION, schedule=THEIR_SCHEDULE)
    client.update_image_pipeline(imagePipelineArn=arn, clientToken="other-writer-1", **request)
    client.close()


def _race(emulator: server.Emulator, pipelines: harness.Pipelines, name: str) -> str:
    """A pipeline with scanning off; the other writer lands right before the operator's update turns it on."""
    arn = emulator.world.add_pipeline(name=name, container=True, scanning_enabled=False, findings=2, rich=True)
    assert emulator.endpoint_url
    endpoint = emulator.endpoint_url
    emulator.before_next_update(arn, lambda: _other_writer(endpoint, arn))
    pipelines.create(name, {"pipelineArn": arn, "scanning": {"enabled": True}})
    pipelines.wait_ready(name, timeout=30)
    assert emulator.hooks.pending() == 0, "the operator never wrote"
    return arn


def _operator_writes(emulator: server.Emulator) -> list[Any]:
    return [u for u in emulator.updates.entries() if not u.client_token.startswith("other-writer")]


def test_scanning_ends_as_the_spec_says(
        operator: runner.InThread, emulator: server.Emulator, pipelines: harness.Pipelines,
) -> None:
    arn = _race(emulator, pipelines, "race-scanning")
    after = emulator.world.pipeline(arn)
    assert after["imageScanningConfiguration"]["imageScanningEnabled"] is True
    obj = pipelines.get("race-scanning") or {}
    assert obj["status"]["scanning"]["enabled"] is True
    writes = _operator_writes(emulator)
    support.figures("concurrent-writer-ci", operator_writes=len(writes),
                    other_writer_change_survived=after.get("description") == THEIR_DESCRIPTION,
                    fields_the_operator_write_reverted=[list(u.changed) for u in writes],
                    ready_reason=pipelines.condition("race-scanning")["reason"])  # type: ignore[index]


@pytest.mark.xfail(strict=True, reason=(
    "lost update, inherent to the API: UpdateImagePipeline replaces the whole pipeline and takes no precondition "
    "(no ETag, no expected dateUpdated). The operator reads and writes back to back (reconcile/pipeline.py::_sync "
    "then _apply, one round trip apart, nothing in between), and this writer lands inside that window (the "
    "emulator runs it as the operator's UpdateImagePipeline arrives), so description and schedule are reverted; "
    "after the write nothing in GetImagePipeline shows it. README ('How it is built') says so"))
def test_other_writers_change_survives(
        operator: runner.InThread, emulator: server.Emulator, pipelines: harness.Pipelines,
) -> None:
    arn = _race(emulator, pipelines, "race-fields")
    after = emulator.world.pipeline(arn)
    assert after["imageScanningConfiguration"]["imageScanningEnabled"] is True
    assert [list(u.changed) for u in _operator_writes(emulator)] == [[]], "the operator's write carried stale content"
    assert after["description"] == THEIR_DESCRIPTION
    assert after["schedule"]["scheduleExpression"] == THEIR_SCHEDULE["scheduleExpression"]
