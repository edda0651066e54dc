"""The models refuse what the CRDs refuse (for objects stored before a rule existed), their limits are
botocore's, and a bad value never reaches AWS as a retried failure."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pydantic
import pytest
from botocore import exceptions as botocore_exceptions

from imagescan.aws import errors
from imagescan.handlers import imagepipeline as ip_handler
from imagescan.handlers import status as status_
from imagescan.models import findingspolicy as fp
from imagescan.models import imagepipeline as m
from imagescan.models import resources
from tests.cluster.test_bad_input import CORPUS, Case

ARN = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/web-ami"
# Wrong JSON types that pydantic's lax mode converts ("10" -> 10, "yes" -> True): only the schema refuses
# them, and the API server never stores them.
COERCED = {"ip-top-string", "ip-scanning-enabled-string", "fp-fix-available-only-string"}
# No spec at all: the API server refuses it; the handlers never see such an object.
NOT_A_SPEC = {"ip-no-spec"}


# --- Copies of botocore's service model ------------------------------------------------------------------------


def test_partitions_are_botocores() -> None:
    partitions = botocore.loaders.create_loader().load_data("partitions")["partitions"]
    assert {p["id"]: p["regionRegex"] for p in partitions} == m.PARTITION_REGION_REGEX


@pytest.mark.parametrize("region", [
    region for partition in botocore.loaders.create_loader().load_data("partitions")["partitions"]
    for region in partition["regions"] if not region.endswith("-global")
])
def test_every_botocore_region_is_a_region_and_in_its_partition(region: str) -> None:
    assert re.fullmatch(m.REGION_PATTERN, region)
    partition = boto3.session.Session().get_partition_for_region(region)
    assert re.match(m.PARTITION_MATCHES_REGION, f"arn:{partition}:imagebuilder:{region}:123456789012:x")
    m.ImagePipelineSpec(pipeline_arn=f"arn:{partition}:imagebuilder:{region}:123456789012:image-pipeline/p")


def _shape(service: str, name: str) -> Any:
    return botocore.session.get_session().get_service_model(service).shape_for(name)


def test_ecr_limits_are_within_botocores() -> None:
    ecr = _shape("imagebuilder", "EcrConfiguration").members
    for member in (ecr["repositoryName"], ecr["containerTags"].member):
        assert member.metadata == {"min": m.IMAGEBUILDER_STRING_MIN, "max": m.IMAGEBUILDER_STRING_MAX}
    repository = _shape("ecr", "RepositoryName").metadata
    assert (repository["min"], repository["max"], repository["pattern"]) == (
        m.ECR_REPOSITORY_MIN, m.ECR_REPOSITORY_MAX, m.ECR_REPOSITORY_REGEX)
    assert _shape("ecr", "ImageTag").metadata["max"] == m.ECR_TAG_MAX
    assert m.IMAGEBUILDER_STRING_MIN <= 1
    assert min(m.ECR_TAG_MAX, m.IMAGEBUILDER_STRING_MAX) >= m.CONTAINER_TAG_MAX
    assert m.ECR_REPOSITORY_MAX <= m.IMAGEBUILDER_STRING_MAX


def test_pipeline_name_and_arn_are_botocores_or_stricter() -> None:
    # botocore's class [-_A-Za-z-0-9] repeats "-"; the copy drops the repeat and the 3-character minimum.
    botocore_name = _shape("imagebuilder", "ResourceName").metadata["pattern"].replace("z-0", "z0")
    assert botocore_name == m.PIPELINE_NAME_PATTERN.replace("([-_A-Za-z0-9 ]{0,126}[-_A-Za-z0-9])?",
                                                            "[-_A-Za-z0-9 ]{1,126}[-_A-Za-z0-9]")
    botocore_arn = _shape("imagebuilder", "ImagePipelineArn").metadata["pattern"]
    for arn in (ARN, "arn:aws-cn:imagebuilder:cn-north-1:123456789012:image-pipeline/a_b-1"):
        assert re.fullmatch(m.PIPELINE_ARN_PATTERN, arn) and re.fullmatch(botocore_arn, arn)


# --- The models refuse what the schema refuses ------------------------------------------------------------------


def _parse(case: Case) -> None:
    model = {r.kind: r.spec for r in resources.ALL}[case.manifest["kind"]]
    model.model_validate(case.manifest.get("spec"))


@pytest.mark.parametrize("case", [c for c in CORPUS if c.name not in COERCED | NOT_A_SPEC], ids=lambda c: c.name)
def test_model_refuses_the_corpus(case: Case) -> None:
    with pytest.raises(pydantic.ValidationError) as refused:
        _parse(case)
    if case.expected["refusedBy"] == "operator":
        assert case.expected["messageContains"] in status_.problems(refused.value)


@pytest.mark.parametrize("interval,ok", [
    ("1m", True), ("60s", True), ("168h", True), ("1h30m", True), ("0.5h", True),
    ("59s", False), ("0s", False), ("1ms", False), ("168h1ms", False), ("99999h", False),
])
def test_intervals_are_bounded(interval: str, ok: bool) -> None:
    spec = {"pipelineArn": ARN, "resyncInterval": interval, "findings": {"refreshInterval": interval}}
    if ok:
        parsed = m.ImagePipelineSpec.model_validate(spec)
        assert parsed.resync_seconds == parsed.refresh_seconds == m.parse_duration(interval)
    else:
        with pytest.raises(pydantic.ValidationError, match=r"outside 1m\.\.168h") as refused:
            m.ImagePipelineSpec.model_validate(spec)
        problems = status_.problems(refused.value)
        assert "spec.resyncInterval" in problems and "spec.findings.refreshInterval" in problems


def test_arn_agrees_with_region_and_name() -> None:
    m.ImagePipelineSpec(pipeline_arn=ARN, region="us-east-1", pipeline_name="Web AMI")
    for extra in ({"region": "eu-west-1"}, {"pipeline_name": "Web API"}):
        with pytest.raises(pydantic.ValidationError, match="must be the"):
            m.ImagePipelineSpec(pipeline_arn=ARN, **extra)
    with pytest.raises(pydantic.ValidationError, match="partition aws-cn does not serve region us-east-1"):
        m.ImagePipelineSpec(pipeline_arn=ARN.replace("arn:aws:", "arn:aws-cn:"))


def test_selector_requirements() -> None:
    ok = fp.LabelSelectorRequirement(key="example.com/team", operator="In", values=["web"])
    assert ok.values == ["web"]
    assert fp.LabelSelectorRequirement(key="team", operator="Exists").values == []
    assert fp.LabelSelector().matches({}) and fp.LabelSelector(match_labels={"a": "b"}).matches({"a": "b"})


def test_problems_name_fields_as_the_yaml_has_them() -> None:
    with pytest.raises(pydantic.ValidationError) as refused:
        fp.FindingsPolicySpec.model_validate({"exemptions": [
            {"vulnerabilityId": "CVE-2024-1", "reason": "r", "expires": "2030-01-01"},
            {"vulnerabilityId": "CVE-2024-2", "reason": "r", "expires": "2030-02-30"},
        ]})
    assert status_.problems(refused.value).startswith("spec.exemptions[1].expires: ")


# --- Never a retried failure, never an oversized status ----------------------------------------------------------


def test_client_side_validation_is_invalid_spec_naming_the_field() -> None:
    client = boto3.client("imagebuilder", region_name="us-east-1")
    with pytest.raises(botocore_exceptions.ParamValidationError) as raised:
        client.update_image_pipeline(
            imagePipelineArn=ARN, clientToken="t",
            infrastructureConfigurationArn=ARN.replace("image-pipeline", "infrastructure-configuration"),
            imageScanningConfiguration={"ecrConfiguration": {"containerTags": [""]}})
    error = errors.from_exception(raised.value)
    assert isinstance(error, errors.InvalidSpec) and error.terminal and error.reason == "InvalidSpec"
    assert "spec.scanning.ecr.containerTags[0]" in error.message


def test_client_side_validation_of_other_fields_is_invalid_request() -> None:
    exc = botocore_exceptions.ParamValidationError(
        report="Invalid length for parameter description, value: 0, valid min length: 1")
    error = errors.from_exception(exc)
    assert type(error) is errors.InvalidRequest and error.terminal
    assert "parameter description" in error.message


@pytest.mark.parametrize("value", [None, "", "2026-01-01T00:00:00Z", "x" * m.MAX_ECHOED_ANNOTATION])
def test_short_annotations_are_echoed_as_written(value: str | None) -> None:
    assert ip_handler._echoed(value) == value


def test_long_annotations_are_echoed_as_their_hash() -> None:
    value = "x" * (100 * 1024)
    assert ip_handler._echoed(value) == "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    assert ip_handler._echoed(value + "y") != ip_handler._echoed(value)
