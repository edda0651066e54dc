"""Several accounts and regions in one emulator: who calls (SigV4 access key, STS) and what they may see."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from imagescan.emulator import identity, server
from tests.support.moto import Moto

from .conftest import ACCOUNT, REGION, client_as

OTHER = "210987654321"
WEST = "us-west-2"


@dataclasses.dataclass(frozen=True)
class Keys:
    access_key_id: str
    secret_access_key: str
    session_token: str


@pytest.fixture
def multi(moto_server: Moto) -> Iterator[server.Emulator]:
    """Default account: 2 pipelines in us-east-1. OTHER: one in us-east-1 and one in us-west-2."""
    with server.Emulator(seed=3, pipelines=2, sts_endpoint_url=moto_server.url) as emu:
        emu.world.add_pipeline("other-east", account_id=OTHER, findings={"CRITICAL": 2, "LOW": 3})
        emu.world.add_pipeline("other-west", account_id=OTHER, region=WEST, container=True, findings=4)
        yield emu


def _assume(moto_server: Moto, account_id: str) -> Keys:
    """Credentials for a role in ``account_id``, from moto's AssumeRole."""
    factory: Any = boto3.client
    sts = factory("sts", endpoint_url=moto_server.url, region_name=REGION,
                  aws_access_key_id="testing", aws_secret_access_key="testing")
    answer = sts.assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/ImageScanOperator",
                             RoleSessionName=f"imagescan-{uuid.uuid4().hex[:8]}")["Credentials"]
    return Keys(answer["AccessKeyId"], answer["SecretAccessKey"], answer["SessionToken"])


def _as(emu: server.Emulator, service: str, keys: Keys, region: str = REGION) -> Any:
    assert emu.endpoint_url
    return client_as(service, emu.endpoint_url, region=region, access_key_id=keys.access_key_id,
                     secret_access_key=keys.secret_access_key, session_token=keys.session_token)


def _error(call: Any, **kwargs: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def _arn(emu: server.Emulator, name: str) -> str:
    return str(next(p["arn"] for p in emu.world.pipelines() if p["name"] == name))


def test_arns_carry_the_account_and_region(multi: server.Emulator) -> None:
    assert _arn(multi, "other-east") == f"arn:aws:imagebuilder:{REGION}:{OTHER}:image-pipeline/other-east"
    west = _arn(multi, "other-west")
    assert west == f"arn:aws:imagebuilder:{WEST}:{OTHER}:image-pipeline/other-west"
    image = multi.world.image(multi.world.image_arns(west)[-1])
    assert image is not None and image["arn"].startswith(f"arn:aws:imagebuilder:{WEST}:{OTHER}:image/")
    assert image["outputResources"]["containers"][0]["imageUris"][0].startswith(f"{OTHER}.dkr.ecr.{WEST}.")


def test_assumed_role_sees_only_its_account_in_the_signing_region(
    multi: server.Emulator, moto_server: Moto
) -> None:
    keys = _assume(moto_server, OTHER)
    east = _as(multi, "imagebuilder", keys)
    assert [p["name"] for p in east.list_image_pipelines()["imagePipelineList"]] == ["other-east"]
    west = _as(multi, "imagebuilder", keys, region=WEST)
    assert [p["name"] for p in west.list_image_pipelines()["imagePipelineList"]] == ["other-west"]
    assert any(role["access_key_id"] == keys.access_key_id for role in moto_server.assumed_roles())
    default = _as(multi, "imagebuilder", Keys("test", "test", ""))
    names = [p["name"] for p in default.list_image_pipelines()["imagePipelineList"]]
    assert len(names) == 2 and "other-east" not in names


def test_another_accounts_arn_is_access_denied(multi: server.Emulator, moto_server: Moto) -> None:
    ib = _as(multi, "imagebuilder", _assume(moto_server, OTHER))
    mine = multi.world.pipeline_arns(ACCOUNT)[0]
    code, status, message = _error(ib.get_image_pipeline, imagePipelineArn=mine)
    assert (code, status) == ("AccessDeniedException", 403)
    assert message.startswith(f"User: arn:aws:sts::{OTHER}:assumed-role/ImageScanOperator/")
    assert f"is not authorized to perform: imagebuilder:GetImagePipeline on resource: {mine}" in message
    pipeline = multi.world.pipeline(mine)
    update = {"imagePipelineArn": mine, "infrastructureConfigurationArn": pipeline["infrastructureConfigurationArn"],
              "imageRecipeArn": pipeline.get("imageRecipeArn") or "x", "clientToken": "t-1"}
    assert _error(ib.update_image_pipeline, **update)[0] == "AccessDeniedException"
    assert _error(ib.list_image_pipeline_images, imagePipelineArn=mine)[0] == "AccessDeniedException"
    image = multi.world.image_arns(mine)[-1]
    assert _error(ib.get_image, imageBuildVersionArn=image)[0] == "AccessDeniedException"
    assert multi.world.pipeline(mine) == pipeline  # nothing was written


def test_region_mismatch_is_refused(multi: server.Emulator, moto_server: Moto) -> None:
    keys = _assume(moto_server, OTHER)
    west = _as(multi, "imagebuilder", keys, region=WEST)
    east_arn = _arn(multi, "other-east")
    code, status, message = _error(west.get_image_pipeline, imagePipelineArn=east_arn)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert f"in region '{REGION}'" in message and f"made in '{WEST}'" in message
    east = _as(multi, "imagebuilder", keys)
    assert east.get_image_pipeline(imagePipelineArn=east_arn)["imagePipeline"]["name"] == "other-east"


def test_findings_and_aggregations_are_per_account(multi: server.Emulator, moto_server: Moto) -> None:
    ib = _as(multi, "imagebuilder", _assume(moto_server, OTHER))
    findings = ib.list_image_scan_findings(maxResults=25)["findings"]
    assert len(findings) == sum(multi.world.severity_counts(account_id=OTHER).values()) == 5
    assert {finding["awsAccountId"] for finding in findings} == {OTHER}
    assert {finding["imagePipelineArn"] for finding in findings} == {_arn(multi, "other-east")}
    mine = multi.world.pipeline_arns(ACCOUNT)[0]
    assert ib.list_image_scan_findings(filters=[{"name": "imagePipelineArn", "values": [mine]}])["findings"] == []
    aggregation = ib.list_image_scan_finding_aggregations()["responses"][0]["accountAggregation"]
    assert aggregation["accountId"] == OTHER and aggregation["severityCounts"]["all"] == len(findings)
    by_pipeline = ib.list_image_scan_finding_aggregations(
        filter={"name": "imagePipelineArn", "values": [mine, _arn(multi, "other-east")]}
    )["responses"]
    assert [r["imagePipelineAggregation"]["imagePipelineArn"] for r in by_pipeline] == [_arn(multi, "other-east")]


def test_explicit_identity_map_needs_no_sts(emu: server.Emulator) -> None:
    emu.world.add_pipeline("mapped", account_id=OTHER)
    emu.identities["AKIAOTHERACCOUNT"] = OTHER
    ib = _as(emu, "imagebuilder", Keys("AKIAOTHERACCOUNT", "x", ""))
    assert [p["name"] for p in ib.list_image_pipelines()["imagePipelineList"]] == ["mapped"]
    del emu.identities["AKIAOTHERACCOUNT"]
    assert "mapped" not in [p["name"] for p in ib.list_image_pipelines()["imagePipelineList"]]


def test_unreachable_sts_is_an_unrecognized_client() -> None:
    with server.Emulator(pipelines=1, sts_endpoint_url="http://127.0.0.1:9") as emu:
        ib = _as(emu, "imagebuilder", Keys("AKIANOBODY", "x", ""))
        code, status, _ = _error(ib.list_image_pipelines)
        assert (code, status) == ("UnrecognizedClientException", 403)


def test_ecr_reads_the_callers_registry_in_the_signing_region(
    multi: server.Emulator, moto_server: Moto
) -> None:
    ecr = _as(multi, "ecr", _assume(moto_server, OTHER), region=WEST)
    uri = next(uri for uri in multi.world.container_uris() if uri.startswith(f"{OTHER}.dkr.ecr.{WEST}."))
    repository, tag = uri.split("/", 1)[1].rsplit(":", 1)
    details = ecr.describe_images(repositoryName=repository)["imageDetails"]
    assert {detail["registryId"] for detail in details} == {OTHER}
    assert tag in {t for detail in details for t in detail["imageTags"]}


def test_sts_is_asked_once_per_access_key(
    multi: server.Emulator, moto_server: Moto, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    real = identity._ask_sts

    def counting(endpoint_url: str, access_key_id: str, region: str) -> Any:
        asked.append(access_key_id)
        return real(endpoint_url, access_key_id, region)

    monkeypatch.setattr(identity, "_ask_sts", counting)
    keys = _assume(moto_server, OTHER)
    for region in (REGION, WEST, REGION):
        _as(multi, "imagebuilder", keys, region=region).list_image_pipelines()
    assert asked == [keys.access_key_id]
