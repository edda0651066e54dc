"""ImagePipeline end to end: what a user sees in Kubernetes and in AWS after applying a resource."""

from __future__ import annotations

import json
import time

import kubernetes.client
import pytest

from imagescan.emulator import ecr, server
from tests.integration import harness
from tests.integration.harness import wait_for

SEVERITIES = ("critical", "high", "medium", "low", "informational", "untriaged")
FINDINGS = {"CRITICAL": 3, "HIGH": 7, "MEDIUM": 12, "LOW": 20, "INFORMATIONAL": 4, "UNTRIAGED": 2}


def _without(pipeline: dict[str, object], *keys: str) -> dict[str, object]:
    return {k: v for k, v in pipeline.items() if k not in keys}


def test_create_enables_scanning_and_keeps_every_other_field(
        emulator: server.Emulator, pipelines: harness.Pipelines,
) -> None:
    arn = emulator.world.add_pipeline(name="web-ami", container=False, scanning_enabled=False, images=2,
                                      findings=FINDINGS, rich=True)
    before = emulator.world.pipeline(arn)
    pipelines.create("web", {"pipelineArn": arn})
    obj = pipelines.wait_ready("web")
    after = emulator.world.pipeline(arn)

    assert after["imageScanningConfiguration"]["imageScanningEnabled"] is True
    assert _without(after, "imageScanningConfiguration", "dateUpdated", "dateNextRun") == \
        _without(before, "imageScanningConfiguration", "dateUpdated", "dateNextRun")
    assert emulator.calls["UpdateImagePipeline"] == 1

    status = obj["status"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["pipeline"]["arn"] == arn and status["pipeline"]["accountId"] == emulator.world.account_id
    assert status["pipeline"]["region"] == "us-east-1" and status["pipeline"]["kind"] == "AMI"
    assert status["scanning"] == {"enabled": True}
    # Reconciling/Stalled only while true; PolicyCompliant always says which policies judged the pipeline.
    assert {c["type"] for c in status["conditions"]} == {"Ready", "PolicyCompliant"}
    compliant = next(c for c in status["conditions"] if c["type"] == "PolicyCompliant")
    assert (compliant["status"], compliant["reason"]) == ("True", "NoPolicy")


def test_findings_counts_and_top_match_aws(emulator: server.Emulator, pipelines: harness.Pipelines) -> None:
    arn = emulator.world.add_pipeline(name="api-ctr", container=True, scanning_enabled=True, images=2,
                                      findings=FINDINGS)
    pipelines.create("api", {"pipelineArn": arn, "findings": {"top": 5}})
    obj = wait_for(lambda: (o := pipelines.get("api")) and o.get("status", {}).get("findings") and o, what="findings")
    found = obj["status"]["findings"]
    latest = found["latestImage"]
    counts = latest["severityCounts"]
    assert {s: counts[s] for s in SEVERITIES} == {k.lower(): v for k, v in FINDINGS.items()}
    assert counts["total"] == sum(FINDINGS.values())
    assert found["severityCounts"]["total"] >= counts["total"]  # pipeline: every image it still has
    assert latest["containerImages"] and latest["arn"].startswith(arn.replace("image-pipeline", "image"))
    repository = latest["containerImages"][0].rsplit(":", 1)[0]
    assert latest["containerImageDigests"] == [f"{repository}@{ecr.digest_of(latest['containerImages'][0])}"]

    top = found["top"]
    assert len(top) == 5
    assert [f["severity"] for f in top[:3]] == ["CRITICAL"] * 3
    assert top[3]["severity"] == "HIGH"
    scores = [f["inspectorScore"] for f in top[:3]]
    assert scores == sorted(scores, reverse=True)
    first = top[0]
    assert first["vulnerabilityId"].startswith("CVE-")
    assert first["nvdUrl"].endswith(first["vulnerabilityId"])
    assert first["package"]["name"] and first["cvss"]["baseScore"] is not None
    assert first["fixAvailable"] in {"YES", "NO", "PARTIAL"}


def test_spec_change_turns_scanning_off(emulator: server.Emulator, pipelines: harness.Pipelines) -> None:
    arn = emulator.world.add_pipeline(name="batch", container=False, scanning_enabled=True, findings=5)
    pipelines.create("batch", {"pipelineArn": arn})
    pipelines.wait_ready("batch")
    pipelines.patch("batch", {"spec": {"scanning": {"enabled": False}}})
    wait_for(lambda: not emulator.world.pipeline(arn)["imageScanningConfiguration"]["imageScanningEnabled"],
             what="scanning off in AWS")
    obj = wait_for(lambda: (o := pipelines.get("batch")) and o["status"].get("observedGeneration") == 2 and o,
                   what="generation 2 observed")
    assert obj["status"]["scanning"]["enabled"] is False


def test_observe_mode_never_writes_and_reports_drift(
        emulator: server.Emulator, pipelines: harness.Pipelines,
) -> None:
    arn = emulator.world.add_pipeline(name="legacy", container=False, scanning_enabled=False, findings=3)
    pipelines.create("legacy", {"pipelineArn": arn, "managementPolicy": "Observe"})
    ready = pipelines.wait_condition("legacy", "Ready", "False", "Drifted")
    assert "imageScanningEnabled" in ready["message"] or "enabled" in ready["message"]
    assert emulator.calls["UpdateImagePipeline"] == 0
    assert emulator.world.pipeline(arn)["imageScanningConfiguration"]["imageScanningEnabled"] is False


def test_delete_with_retain_leaves_scanning_on(emulator: server.Emulator, pipelines: harness.Pipelines) -> None:
    arn = emulator.world.add_pipeline(name="keep", container=False, scanning_enabled=False, findings=1)
    pipelines.create("keep", {"pipelineArn": arn})
    pipelines.wait_ready("keep")
    pipelines.delete("keep")
    wait_for(lambda: pipelines.get("keep") is None, what="object gone")
    assert emulator.world.pipeline(arn)["imageScanningConfiguration"]["imageScanningEnabled"] is True


def test_delete_with_disable_turns_scanning_off(emulator: server.Emulator, pipelines: harness.Pipelines) -> None:
    arn = emulator.world.add_pipeline(name="drop", container=False, scanning_enabled=False, findings=1, rich=True)
    pipelines.create("drop", {"pipelineArn": arn, "deletionPolicy": "Disable"})
    pipelines.wait_ready("drop")
    before = emulator.world.pipeline(arn)
    pipelines.delete("drop")
    wait_for(lambda: pipelines.get("drop") is None, what="object gone")
    after = emulator.world.pipeline(arn)
    assert after["imageScanningConfiguration"]["imageScanningEnabled"] is False
    assert _without(after, "imageScanningConfiguration", "dateUpdated", "dateNextRun") == \
        _without(before, "imageScanningConfiguration", "dateUpdated", "dateNextRun")


def test_missing_pipeline_stalls_and_recovers_when_it_appears(
        emulator: server.Emulator, pipelines: harness.Pipelines,
) -> None:
    pipelines.create("ghost", {"pipelineName": "ghost"})
    stalled = pipelines.wait_condition("ghost", "Stalled", "True", "PipelineNotFound")
    assert "ghost" in stalled["message"]
    events = wait_for(lambda: [e for e in pipelines.events("ghost") if e.reason == "PipelineNotFound"], what="event")
    assert events[0].type == "Warning"
    emulator.world.add_pipeline(name="ghost", container=False, scanning_enabled=False, findings=1)
    # Stalled is re-read at the next resync (10 min); the user who just created the pipeline asks now.
    pipelines.reconcile_now("ghost", "pipeline-created")
    pipelines.wait_ready("ghost")
    assert pipelines.condition("ghost", "Stalled") is None
    assert emulator.calls["ListImagePipelines"] == 2  # the first look-up, and the requested one


def test_container_scanning_before_inspector_waits_without_hot_loop(
        emulator: server.Emulator, pipelines: harness.Pipelines,
) -> None:
    emulator.world.set_inspector(emulator.world.account_id, {"ECR": "DISABLED", "EC2": "DISABLED"})
    arn = emulator.world.add_pipeline(name="svc", container=True, scanning_enabled=False, findings=2)
    pipelines.create("svc", {"pipelineArn": arn,
                             "scanning": {"ecr": {"repositoryName": "image-scans", "containerTags": ["scan"]}}})
    ready = pipelines.wait_condition("svc", "Ready", "False", "InspectorNotEnabled")
    assert "Inspector" in ready["message"]
    assert pipelines.condition("svc", "Stalled") is None
    reconciling = pipelines.condition("svc", "Reconciling")
    assert reconciling is not None and reconciling["reason"] == "InspectorNotEnabled"
    emulator.world.set_inspector(emulator.world.account_id, {"ECR": "ENABLED", "EC2": "ENABLED"})
    # The back-off retries on its own (tests/integration/test_backoff.py times it); the user asks now.
    pipelines.reconcile_now("svc", "inspector-enabled")
    obj = pipelines.wait_ready("svc")
    assert obj["status"]["scanning"]["ecr"] == {"repositoryName": "image-scans", "containerTags": ["scan"]}
    assert pipelines.condition("svc", "Reconciling") is None
    assert emulator.calls["UpdateImagePipeline"] <= 6  # backed off between attempts, not hammered
    assert [e.reason for e in pipelines.events("svc") if e.type == "Warning"] == ["InspectorNotEnabled"]


def test_drift_is_put_back(emulator: server.Emulator, pipelines: harness.Pipelines) -> None:
    arn = emulator.world.add_pipeline(name="drifty", container=False, scanning_enabled=False, findings=2)
    pipelines.create("drifty", {"pipelineArn": arn})
    pipelines.wait_ready("drifty")
    emulator.world.set_scanning(arn, enabled=False)  # someone turns it off in the console
    # The next resync (10 min) would find it; tests/unit/test_schedule.py times that.
    pipelines.reconcile_now("drifty", "after-console-change")
    assert emulator.world.pipeline(arn)["imageScanningConfiguration"]["imageScanningEnabled"]
    assert emulator.calls["UpdateImagePipeline"] == 2
    wait_for(lambda: [e for e in pipelines.events("drifty") if e.reason == "ScanningUpdated"], what="event")


def test_paused_reads_but_never_writes(emulator: server.Emulator, pipelines: harness.Pipelines) -> None:
    arn = emulator.world.add_pipeline(name="frozen", container=False, scanning_enabled=False, findings=1)
    pipelines.create("frozen", {"pipelineArn": arn}, annotations={"imagescan.io/paused": "true"})
    paused = pipelines.wait_condition("frozen", "Paused", "True")
    assert "never written" in paused["message"]
    assert emulator.calls["UpdateImagePipeline"] == 0
    pipelines.patch("frozen", {"metadata": {"annotations": {"imagescan.io/paused": None}}})
    pipelines.wait_ready("frozen")
    assert emulator.world.pipeline(arn)["imageScanningConfiguration"]["imageScanningEnabled"] is True


def test_reconcile_request_annotation_is_echoed(emulator: server.Emulator, pipelines: harness.Pipelines) -> None:
    arn = emulator.world.add_pipeline(name="poke", container=False, scanning_enabled=True, findings=1)
    pipelines.create("poke", {"pipelineArn": arn})
    pipelines.wait_ready("poke")
    reads = emulator.calls["GetImagePipeline"]
    pipelines.patch("poke", {"metadata": {"annotations": {"imagescan.io/reconcile-requested-at": "2026-11-23T10:00"}}})
    wait_for(lambda: (pipelines.get("poke") or {}).get("status", {}).get("lastHandledReconcileAt")
             == "2026-11-23T10:00", what="lastHandledReconcileAt")
    assert emulator.calls["GetImagePipeline"] > reads


def test_pipeline_found_by_name(emulator: server.Emulator, pipelines: harness.Pipelines) -> None:
    arn = emulator.world.add_pipeline(name="named-one", container=False, scanning_enabled=False, findings=1)
    pipelines.create("named", {"pipelineName": "named-one", "region": "us-east-1"})
    obj = pipelines.wait_ready("named")
    assert obj["status"]["pipeline"]["arn"] == arn


def test_spec_without_a_pipeline_is_refused_by_the_crd(pipelines: harness.Pipelines) -> None:
    """The CRD's CEL rule refuses it at apply time: the user sees why at once, nothing is stored."""
    with pytest.raises(kubernetes.client.ApiException) as refused:
        pipelines.create("empty", {"scanning": {"enabled": True}})  # neither pipelineArn nor pipelineName
    assert refused.value.status == 422
    assert "set spec.pipelineArn, or spec.pipelineName" in json.loads(refused.value.body)["message"]
    assert pipelines.get("empty") is None


def test_critical_increase_posts_one_warning(emulator: server.Emulator, pipelines: harness.Pipelines) -> None:
    arn = emulator.world.add_pipeline(name="risky", container=False, scanning_enabled=True,
                                      findings={"CRITICAL": 1, "HIGH": 2})
    pipelines.create("risky", {"pipelineArn": arn})
    pipelines.wait_ready("risky")
    emulator.world.add_image(arn, findings={"CRITICAL": 4, "HIGH": 2})
    pipelines.reconcile_now("risky", "new-image")  # the resync (10 min) would see the new build
    obj = pipelines.get("risky") or {}
    assert obj["status"]["findings"]["latestImage"]["severityCounts"]["critical"] == 4

    def increases() -> list[str]:
        return sorted(e.message for e in pipelines.events("risky") if e.reason == "CriticalFindingsIncreased")

    wait_for(lambda: any("4 critical" in m for m in increases()), what="warning event for 4 criticals")
    pipelines.reconcile_now("risky", "again")  # the same counts again: no new warning
    time.sleep(1.0)  # events are posted asynchronously
    assert len(increases()) == 2  # 0 -> 1 on the first refresh, 1 -> 4 on the new image


def test_ten_thousand_findings_keep_status_small(emulator: server.Emulator, pipelines: harness.Pipelines) -> None:
    findings = {"CRITICAL": 150, "HIGH": 1350, "MEDIUM": 3500, "LOW": 4000, "INFORMATIONAL": 700, "UNTRIAGED": 300}
    arn = emulator.world.add_pipeline(name="huge", container=True, scanning_enabled=True, findings=findings)
    pipelines.create("huge", {"pipelineArn": arn, "findings": {"top": 50}})
    obj = wait_for(lambda: (o := pipelines.get("huge")) and o.get("status", {}).get("findings") and o,
                   timeout=60, what="findings")
    status = obj["status"]
    assert len(json.dumps(status)) <= 32 * 1024
    counts = status["findings"]["latestImage"]["severityCounts"]
    assert {s: counts[s] for s in SEVERITIES} == {k.lower(): v for k, v in findings.items()}
    assert counts["total"] == 10_000
    assert status["findings"]["top"] and all(f["severity"] == "CRITICAL" for f in status["findings"]["top"])
    # Top-N needs only the 150 criticals: far fewer pages than the 400 a full listing takes.
    assert emulator.calls["ListImageScanFindings"] < 100


def test_throttling_storm_converges_without_a_hot_loop(
        emulator: server.Emulator, pipelines: harness.Pipelines,
) -> None:
    arns = [emulator.world.add_pipeline(name=f"storm-{i}", container=False, scanning_enabled=False, findings=3)
            for i in range(8)]
    emulator.inject_faults(rate=0.6, codes=("CallRateLimitExceededException", "ServiceUnavailableException"))
    for i, arn in enumerate(arns):
        pipelines.create(f"storm-{i}", {"pipelineArn": arn})
    wait_for(lambda: any((pipelines.condition(f"storm-{i}") or {}).get("reason") in {"Throttled", "AWSUnavailable"}
                         for i in range(8))
             or all((pipelines.condition(f"storm-{i}") or {}).get("status") == "True" for i in range(8)),
             timeout=30, what="throttling seen")
    emulator.clear_faults()
    for i in range(8):
        pipelines.wait_ready(f"storm-{i}", timeout=60)
    assert all(emulator.world.pipeline(arn)["imageScanningConfiguration"]["imageScanningEnabled"] for arn in arns)
    total = sum(emulator.calls.values())
    assert total < 8 * 40, f"{total} AWS calls for 8 pipelines: that is a hot loop"


def test_field_unknown_to_botocore_stops_the_write(emulator: server.Emulator, pipelines: harness.Pipelines) -> None:
    arn = emulator.world.add_pipeline(name="future", container=False, scanning_enabled=False, findings=1, rich=True)
    future = emulator.world.pipeline(arn)
    future["schedule"]["futureStartCondition"] = "ONLY_ON_TUESDAYS"  # a field AWS added after this botocore
    emulator.world.replace_pipeline(arn, future)
    pipelines.create("future", {"pipelineArn": arn})
    stalled = pipelines.wait_condition("future", "Stalled", "True", "UnsupportedPipelineField")
    assert "schedule.futureStartCondition" in stalled["message"]
    assert emulator.calls["UpdateImagePipeline"] == 0
    assert emulator.world.pipeline(arn) == future
