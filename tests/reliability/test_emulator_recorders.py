"""The emulator's recorders and hooks the reliability suites rely on: if these lie, the suites prove nothing.

Checked with the real boto3 client over HTTP: the call log names the pipeline and the error of every call,
targeted faults hit only their pipelines, a before-update hook lands another writer's change between a read
and a write (so a write that sends back what it read shows up as stale), and the update log tells a write
that changes only scanning from one that reverts someone else's change.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from imagescan.emulator import server


@pytest.fixture
def emu() -> Iterator[server.Emulator]:
    with server.Emulator(seed=3, pipelines=0) as emulator:
        yield emulator


def _client(emu: server.Emulator) -> Any:
    factory: Any = boto3.client
    return factory("imagebuilder", endpoint_url=emu.endpoint_url, region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test",
                   config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 1}))


def _send_back(pipeline: dict[str, Any], token: str, **changes: Any) -> dict[str, Any]:
    """An UpdateImagePipeline request that carries the pipeline as read, with ``changes``."""
    keep = ("description", "imageRecipeArn", "containerRecipeArn", "infrastructureConfigurationArn",
            "distributionConfigurationArn", "imageTestsConfiguration", "enhancedImageMetadataEnabled", "schedule",
            "status", "imageScanningConfiguration", "workflows", "loggingConfiguration", "executionRole", "imageTags")
    request = {key: pipeline[key] for key in keep if key in pipeline}
    request.update(changes, imagePipelineArn=pipeline["arn"], clientToken=token)
    return request


def test_call_log_names_pipeline_and_error(emu: server.Emulator) -> None:
    a = emu.world.add_pipeline(name="a", findings=1)
    b = emu.world.add_pipeline(name="b", findings=1)
    ib = _client(emu)
    emu.fail_pipelines([b], codes=("ResourceInUseException",))
    ib.get_image_pipeline(imagePipelineArn=a)
    with pytest.raises(ClientError, match="ResourceInUseException"):
        ib.get_image_pipeline(imagePipelineArn=b)
    ib.list_image_pipelines()
    emu.heal_pipelines([b])
    ib.get_image_pipeline(imagePipelineArn=b)
    log = [(c.operation, c.arn, c.error) for c in emu.call_log.entries()]
    assert log == [("GetImagePipeline", a, None), ("GetImagePipeline", b, "ResourceInUseException"),
                   ("ListImagePipelines", None, None), ("GetImagePipeline", b, None)]
    times = [c.at for c in emu.call_log.entries()]
    assert times == sorted(times)
    emu.reset_calls()
    assert emu.call_log.entries() == []


def test_targeted_faults_win_over_random_ones_and_clear(emu: server.Emulator) -> None:
    a = emu.world.add_pipeline(name="a", findings=1)
    emu.inject_faults(rate=0.0, codes=("ServiceUnavailableException",))
    emu.fail_pipelines([a], codes=("AccessDeniedException",))
    with pytest.raises(ClientError, match="AccessDeniedException"):
        _client(emu).get_image_pipeline(imagePipelineArn=a)
    emu.clear_faults()
    _client(emu).get_image_pipeline(imagePipelineArn=a)


def test_before_update_hook_makes_a_send_back_write_stale(emu: server.Emulator) -> None:
    arn = emu.world.add_pipeline(name="p", findings=1, rich=True)
    ib = _client(emu)
    read = ib.get_image_pipeline(imagePipelineArn=arn)["imagePipeline"]

    def other_writer() -> None:
        now = ib.get_image_pipeline(imagePipelineArn=arn)["imagePipeline"]
        ib.update_image_pipeline(**_send_back(now, "other-1", description="changed by someone else"))

    emu.before_next_update(arn, other_writer)
    assert emu.hooks.pending() == 1
    ib.update_image_pipeline(**_send_back(read, "ours-1", imageScanningConfiguration={"imageScanningEnabled": True}))
    assert emu.hooks.pending() == 0
    ours, theirs = emu.updates.entries()[1], emu.updates.entries()[0]
    assert (theirs.client_token, theirs.changed) == ("other-1", ("description",))
    assert (ours.client_token, ours.changed) == ("ours-1", ("description",))  # reverted: stale content
    assert ours.scanning_after == {"imageScanningEnabled": True}
    assert [u.client_token for u in emu.updates.stale(lambda token: token.startswith("ours"))] == ["ours-1"]
    # A fresh read-then-write changes only scanning: not stale.
    now = ib.get_image_pipeline(imagePipelineArn=arn)["imagePipeline"]
    ib.update_image_pipeline(**_send_back(now, "ours-2", imageScanningConfiguration={"imageScanningEnabled": False}))
    assert emu.updates.entries()[-1].changed == ()
