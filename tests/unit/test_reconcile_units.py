"""Pure parts of the reconciler: desired/observed/delta, the update request, tokens, findings planning.

The schedule (when an object is next due) has its own module, tests/unit/test_schedule.py.
"""

from __future__ import annotations

import random

import boto3
import pytest

from imagescan.aws import errors, pipelines, retries
from imagescan.models import imagepipeline as m
from imagescan.reconcile import findings, pipeline

ARN = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/web"


@pytest.fixture(scope="module")
def client():  # type: ignore[no-untyped-def]
    # Only the service model is used; no request is sent.
    return boto3.client("imagebuilder", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def _pipeline(**extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "arn": ARN, "name": "web", "platform": "Linux", "status": "ENABLED",
        "infrastructureConfigurationArn": "arn:aws:imagebuilder:us-east-1:123456789012:infrastructure-configuration/i",
        "imageRecipeArn": "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/r/1.0.0",
        "schedule": {
            "scheduleExpression": "cron(0 0 * * ? *)", "pipelineExecutionStartCondition": "EXPRESSION_MATCH_ONLY",
        },
        "dateCreated": "2024-01-01T00:00:00.000Z", "dateUpdated": "2024-02-01T00:00:00.000Z",
        "tags": {"team": "platform"}, "imageScanningConfiguration": {"imageScanningEnabled": False},
    }
    base.update(extra)
    return base


def test_update_request_sends_back_every_settable_field(client: object) -> None:
    raw = _pipeline(description="keep me", workflows=[{"workflowArn": "arn:x"}])
    request = pipelines.update_request(client, pipelines.Read(raw), {"imageScanningEnabled": True}, "t" * 32)
    assert request["schedule"] == raw["schedule"]
    assert request["description"] == "keep me"
    assert request["workflows"] == raw["workflows"]
    assert request["imageScanningConfiguration"] == {"imageScanningEnabled": True}
    assert "tags" not in request and "dateUpdated" not in request  # read-only, not part of the request
    assert request["imagePipelineArn"] == ARN and request["clientToken"] == "t" * 32


def test_update_request_refuses_a_field_it_cannot_send_back(client: object) -> None:
    with pytest.raises(pipelines.UnsupportedField) as caught:
        pipelines.update_request(client, pipelines.Read(_pipeline(shinyNewField={"a": 1})), {}, "t")
    assert "shinyNewField" in caught.value.message and caught.value.terminal


def test_update_request_refuses_fields_botocore_dropped_while_parsing(client: object) -> None:
    read = pipelines.Read(_pipeline(), unknown_fields=("schedule.newCondition",))
    with pytest.raises(pipelines.UnsupportedField, match=r"schedule\.newCondition"):
        pipelines.update_request(client, read, {"imageScanningEnabled": True}, "t")


def test_unknown_members_finds_new_fields_at_any_depth(client: object) -> None:
    shape = client.meta.service_model.shape_for("ImagePipeline")  # type: ignore[attr-defined]
    raw = {"name": "x", "schedule": {"scheduleExpression": "cron", "newCondition": 1},
           "workflows": [{"workflowArn": "a", "retries": 2}], "tags": {"k": "v"}, "brandNew": True}
    found = pipelines.unknown_members(raw, shape, "")
    assert found == ["schedule.newCondition", "workflows[0].retries", "brandNew"]


def test_parse_arn_rejects_garbage_with_a_clear_message() -> None:
    assert pipelines.parse_arn(ARN).region == "us-east-1"
    with pytest.raises(errors.InvalidRequest, match="not an Image Builder pipeline ARN"):
        pipelines.parse_arn("arn:aws:s3:::bucket")


def test_delta_only_covers_fields_the_spec_sets() -> None:
    have = pipeline.observed(_pipeline(imageScanningConfiguration={
        "imageScanningEnabled": True, "ecrConfiguration": {"repositoryName": "scans", "containerTags": ["a"]},
    }))
    assert pipeline.delta(pipeline.ScanConfig(enabled=True), have) == ()
    assert pipeline.delta(pipeline.ScanConfig(enabled=True, repository_name="other"), have)
    assert pipeline.delta(pipeline.ScanConfig(enabled=False), have)


def test_scanning_payload_keeps_ecr_settings_it_does_not_own() -> None:
    current = {"imageScanningEnabled": False, "ecrConfiguration": {"repositoryName": "scans", "containerTags": ["a"]}}
    payload = pipeline.scanning_payload(pipeline.ScanConfig(enabled=True), current)
    assert payload == {**current, "imageScanningEnabled": True}


def test_client_token_is_stable_for_a_retry_and_changes_with_the_pipeline() -> None:
    want = pipeline.ScanConfig(enabled=True)
    first = pipeline.client_token("uid", 1, want, "2024-02-01T00:00:00.000Z")
    assert first == pipeline.client_token("uid", 1, want, "2024-02-01T00:00:00.000Z")
    assert first != pipeline.client_token("uid", 1, want, "2024-03-01T00:00:00.000Z")
    assert first != pipeline.client_token("uid", 2, want, "2024-02-01T00:00:00.000Z")
    assert len(first) <= 36


def test_six_levels_skips_the_small_buckets_when_nothing_is_below_medium() -> None:
    looked_up: list[str] = []
    counts = findings.six_levels({"all": 6, "critical": 1, "high": 2, "medium": 3}, lambda s: looked_up.append(s) or 0)
    assert counts.total == 6 and counts.low == 0 and looked_up == []


def test_six_levels_derives_low_from_the_rest() -> None:
    small = {"UNTRIAGED": 2, "INFORMATIONAL": 5}
    counts = findings.six_levels({"all": 30, "critical": 1, "high": 2, "medium": 3}, small.__getitem__)
    assert (counts.untriaged, counts.informational, counts.low) == (2, 5, 17)


def test_needed_severities_stops_at_n() -> None:
    counts = m.SeverityCounts(critical=3, high=20, medium=100, total=123)
    assert findings.needed_severities(counts, 2) == ["CRITICAL"]
    assert findings.needed_severities(counts, 10) == ["CRITICAL", "HIGH"]
    assert findings.needed_severities(m.SeverityCounts(medium=4, low=9, total=13), 10) == ["MEDIUM", "LOW"]


def test_top_orders_by_severity_then_score() -> None:
    pool = [
        m.Finding(vulnerability_id="CVE-1", severity="HIGH", inspector_score=8.9),
        m.Finding(vulnerability_id="CVE-2", severity="CRITICAL", inspector_score=9.1),
        m.Finding(vulnerability_id="CVE-3", severity="HIGH", inspector_score=7.5),
        m.Finding(vulnerability_id="CVE-4", severity="CRITICAL", inspector_score=9.8),
    ]
    assert [f.vulnerability_id for f in findings.top(pool, 3)] == ["CVE-4", "CVE-2", "CVE-1"]


def test_throttle_gate_retries_only_throttling_and_stops() -> None:
    gate = retries.ThrottleGate(rng=random.Random(0), max_attempts=3)
    throttled = (None, {"Error": {"Code": "CallRateLimitExceededException"}})
    other = (None, {"Error": {"Code": "InvalidParameterException"}})
    assert gate.needs_retry(throttled, attempts=1) is not None
    assert gate.needs_retry(throttled, attempts=3) is None
    assert gate.needs_retry(other, attempts=1) is None
    assert gate.throttled == 1


def test_fit_keeps_status_under_the_limit() -> None:
    big = [
        m.Finding(vulnerability_id=f"CVE-2024-{i:05d}", severity="CRITICAL", inspector_score=9.0,
                  remediation=m.Remediation(text="x" * 200, url="https://example.com/" + "y" * 200))
        for i in range(50)
    ]
    status = m.ImagePipelineStatus(findings=m.FindingsStatus(top=big))
    # Detail goes first: at 8 KiB every finding stays, the least severe ones shorn of remediation text.
    fitted = pipeline.fit(status, limit=8 * 1024)
    assert fitted.findings is not None and len(fitted.findings.top) == 50 and fitted.findings.top_trimmed
    assert len(fitted.model_dump_json(by_alias=True, exclude_none=True)) <= 8 * 1024
    # Only when even the bare findings do not fit are the least severe dropped, and counted.
    fitted = pipeline.fit(status, limit=3 * 1024)
    assert fitted.findings is not None and 0 < len(fitted.findings.top) < 50
    assert fitted.findings.top_omitted == 50 - len(fitted.findings.top)
    assert len(fitted.model_dump_json(by_alias=True, exclude_none=True)) <= 3 * 1024
