"""Property: turning scanning on, off and on again never changes anything else of the pipeline.

UpdateImagePipeline replaces the whole pipeline, so a member the operator fails to send back is reset. Here
hypothesis builds pipelines with every optional member of the UpdateImagePipeline request shape (read from
botocore's service model at run time) either set to a random model-valid value or left unset — created through
a real UpdateImagePipeline, so what GetImagePipeline returns is what AWS stores for that request — and the
operator's reconcile functions (``pipeline.sync``, ``pipeline.disable``) run enable → disable → enable against
the emulator with a real boto3 client. After each step every member we do not own is what it was, and the
emulator's update audit saw no write that changed anything but scanning. No Kubernetes is needed here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
import botocore.session
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagescan.aws import clients as aws_clients
from imagescan.aws import pipelines as aws_pipelines
from imagescan.emulator import audit, server
from imagescan.models import imagepipeline as m
from imagescan.reconcile import findings, pipeline
from tests.reliability import shapes

MODEL = botocore.session.get_session().get_service_model("imagebuilder")
REQUEST = MODEL.operation_model("UpdateImagePipeline").input_shape
# The request members we fill in ourselves, and the one the operator owns.
OURS = {"imagePipelineArn", "clientToken", "infrastructureConfigurationArn", "imageRecipeArn", "containerRecipeArn",
        aws_pipelines.SCANNING_FIELD}
OPTIONAL = sorted(set(REQUEST.members) - OURS)
_names = itertools.count(1)


@pytest.fixture(scope="module")
def emu() -> Iterator[server.Emulator]:
    with server.Emulator(seed=11, pipelines=0) as emulator:
        yield emulator


def _client(endpoint_url: str) -> Any:
    factory: Any = boto3.client
    return factory("imagebuilder", endpoint_url=endpoint_url, region_name="us-east-1", aws_access_key_id="test",
                   aws_secret_access_key="test", config=botocore.config.Config(retries={"mode": "standard"}))


def _optional_members() -> st.SearchStrategy[dict[str, Any]]:
    """Each optional member either absent or a model-valid value (schedule expressions are cron)."""
    overrides = {"schedule.scheduleExpression": shapes.cron()}
    return st.fixed_dictionaries({}, optional={
        name: shapes.for_shape(REQUEST.members[name], overrides, name) for name in OPTIONAL
    })


_ECR = st.none() | st.builds(
    m.EcrSpec, repository_name=st.none() | st.from_regex(r"[a-z0-9]{2,12}(/[a-z0-9]{2,8})?", fullmatch=True),
    container_tags=st.none() | st.lists(st.from_regex(r"[a-z0-9][a-z0-9.-]{0,10}", fullmatch=True), max_size=3),
)


def _create(emu: server.Emulator, container: bool, scanning: bool, members: dict[str, Any]) -> str:
    """A pipeline exactly as AWS stores it after an UpdateImagePipeline with ``members``."""
    arn = emu.world.add_pipeline(name=f"prop-{next(_names)}", container=container, scanning_enabled=scanning,
                                 images=1, findings={"HIGH": 1, "LOW": 1})
    current = emu.world.pipeline(arn)
    recipe = "containerRecipeArn" if container else "imageRecipeArn"
    assert emu.endpoint_url
    _client(emu.endpoint_url).update_image_pipeline(
        imagePipelineArn=arn, clientToken=f"create-{arn.rsplit('/', 1)[-1]}", **{recipe: current[recipe]},
        infrastructureConfigurationArn=current["infrastructureConfigurationArn"],
        imageScanningConfiguration=current[aws_pipelines.SCANNING_FIELD], **members,
    )
    return arn


def _not_ours(raw: dict[str, Any]) -> dict[str, Any]:
    """Everything of a pipeline the operator must leave alone (AWS's own stamps aside)."""
    return {key: value for key, value in raw.items() if key not in audit.NOT_CONTENT}


def _step(clients: aws_clients.Clients, spec: m.ImagePipelineSpec, generation: int,
          previous: m.ImagePipelineStatus) -> m.ImagePipelineStatus:
    request = pipeline.Request(spec=spec, uid="prop-uid", generation=generation, previous=previous)
    outcome = pipeline.sync(clients, findings.AccountBuckets(), request)
    assert outcome.error is None, outcome.error.message
    return outcome.status


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(members=_optional_members(), container=st.booleans(), scanning=st.booleans(), ecr=_ECR,
       disable_by_delete=st.booleans())
def test_enable_disable_enable_keeps_every_other_member(
        emu: server.Emulator, members: dict[str, Any], container: bool, scanning: bool, ecr: m.EcrSpec | None,
        disable_by_delete: bool,
) -> None:
    arn = _create(emu, container, scanning, members)
    original = emu.world.pipeline(arn)
    assert original.get("description") == members.get("description")  # the create took (defaults fill the rest)
    clients = aws_clients.Clients(aws_clients.Settings(default_region="us-east-1", endpoint_url=emu.endpoint_url))
    emu.updates.clear()
    try:
        ecr = ecr if container else None
        on = m.ImagePipelineSpec(pipeline_arn=arn, scanning=m.ScanningSpec(enabled=True, ecr=ecr))
        off = m.ImagePipelineSpec(pipeline_arn=arn, deletion_policy="Disable",
                                  scanning=m.ScanningSpec(enabled=disable_by_delete, ecr=ecr))
        status = _step(clients, on, 1, m.ImagePipelineStatus())
        assert _not_ours(emu.world.pipeline(arn)) == _not_ours(original)
        if disable_by_delete:  # deletionPolicy Disable: the delete handler's path
            pipeline.disable(clients, pipeline.Request(spec=off, uid="prop-uid", generation=2, previous=status))
        else:
            status = _step(clients, off, 2, status)
        after_off = emu.world.pipeline(arn)
        assert after_off[aws_pipelines.SCANNING_FIELD]["imageScanningEnabled"] is False
        assert _not_ours(after_off) == _not_ours(original)
        _step(clients, on, 3, status)
        final = emu.world.pipeline(arn)
        assert final[aws_pipelines.SCANNING_FIELD]["imageScanningEnabled"] is True
        assert _not_ours(final) == _not_ours(original)
        if ecr is not None and ecr.repository_name is not None:
            assert final[aws_pipelines.SCANNING_FIELD]["ecrConfiguration"]["repositoryName"] == ecr.repository_name
        assert emu.updates.stale() == [], [(u.client_token, u.changed) for u in emu.updates.stale()]
    finally:
        clients.close()


def test_every_optional_request_member_is_exercised() -> None:
    """The property covers the request shape as the installed botocore has it, not a hand-made list."""
    assert {"description", "schedule", "workflows", "loggingConfiguration", "executionRole", "imageTags",
            "distributionConfigurationArn", "imageTestsConfiguration", "enhancedImageMetadataEnabled",
            "status"} <= set(OPTIONAL)
