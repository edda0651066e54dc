"""A status written for a build describes that build: after a new build, all six counts and the top list are
AWS's for it, even though the account-wide lists the operator shares were read before the build existed.

Everything runs at the shipped defaults through the running operator; a test makes the operator look now
with the imagescan.io/reconcile-requested-at annotation, as a user would.
"""

from __future__ import annotations

from typing import Any, cast

import kubernetes.client

from imagescan import GROUP, VERSION
from imagescan.emulator import server
from imagescan.reconcile import findings
from tests.integration import harness
from tests.integration.harness import wait_for

SPEC_FINDINGS = {"refreshInterval": "1h", "top": 50}
NEW_BUILD = {"CRITICAL": 2, "HIGH": 1, "MEDIUM": 2, "LOW": 3, "INFORMATIONAL": 4, "UNTRIAGED": 3}


def _six(counts: dict[str, int]) -> dict[str, int]:
    """AWS's counts in status's spelling."""
    six = {severity.lower(): counts.get(severity, 0) for severity in findings.SEVERITIES}
    return {**six, "total": sum(six.values())}


def _status_counts(found: dict[str, Any]) -> dict[str, int]:
    return {key: int(found.get(key, 0)) for key in (*findings.SEVERITY_FIELDS, "total")}


def _expected_top(emulator: server.Emulator, image_arn: str, n: int) -> list[str]:
    raws = [emulator.world.expand(r) for r in emulator.world.findings("imageBuildVersionArn", image_arn)]
    return [f.vulnerability_id for f in findings.top([findings.summarize(r) for r in raws], n)]


def _assert_exact(emulator: server.Emulator, pipelines: harness.Pipelines, name: str, arn: str) -> None:
    """Status's counts (pipeline and latest build) and top list are AWS's, for the newest build."""
    status = (pipelines.get(name) or {})["status"]["findings"]
    image = emulator.world.image_arns(arn)[-1]
    assert status["latestImage"]["arn"] == image
    assert _status_counts(status["latestImage"]["severityCounts"]) == _six(
        emulator.world.severity_counts(image_arn=image))
    assert _status_counts(status["severityCounts"]) == _six(emulator.world.severity_counts(pipeline_arn=arn))
    assert [f["vulnerabilityId"] for f in status["top"]] == _expected_top(emulator, image, 50)


def test_new_build_with_all_six_levels_is_counted_exactly(
        emulator: server.Emulator, pipelines: harness.Pipelines) -> None:
    arn = emulator.world.add_pipeline(name="web", scanning_enabled=True, findings={
        "CRITICAL": 1, "HIGH": 2, "LOW": 5, "INFORMATIONAL": 2, "UNTRIAGED": 1})
    pipelines.create("web", {"pipelineArn": arn, "findings": SPEC_FINDINGS})
    pipelines.wait_ready("web")
    _assert_exact(emulator, pipelines, "web", arn)

    emulator.world.add_image(arn, findings=NEW_BUILD)
    pipelines.reconcile_now("web", "new-build")

    latest = (pipelines.get("web") or {})["status"]["findings"]["latestImage"]
    assert _status_counts(latest["severityCounts"]) == {
        "critical": 2, "high": 1, "medium": 2, "low": 3, "informational": 4, "untriaged": 3, "total": 15}
    _assert_exact(emulator, pipelines, "web", arn)
    assert len((pipelines.get("web") or {})["status"]["findings"]["top"]) == 15


def test_a_new_build_in_one_pipeline_leaves_the_others_exact(
        emulator: server.Emulator, pipelines: harness.Pipelines) -> None:
    arns = {f"svc-{i}": emulator.world.add_pipeline(name=f"svc-{i}", scanning_enabled=True, findings={
        "HIGH": 1 + i, "MEDIUM": 2, "LOW": 4, "INFORMATIONAL": 1 + i, "UNTRIAGED": 2}) for i in range(3)}
    for name, arn in arns.items():
        pipelines.create(name, {"pipelineArn": arn, "findings": SPEC_FINDINGS})
    for name, arn in arns.items():
        pipelines.wait_ready(name)
        _assert_exact(emulator, pipelines, name, arn)

    emulator.world.add_image(arns["svc-1"], findings=NEW_BUILD)
    for name in arns:
        pipelines.reconcile_now(name, "after-svc-1-built")
    for name, arn in arns.items():
        _assert_exact(emulator, pipelines, name, arn)


def _policy_status(api: kubernetes.client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    obj = cast(dict[str, Any], api.get_namespaced_custom_object(GROUP, VERSION, namespace, "findingspolicies", name))
    return dict(obj.get("status") or {})


def test_a_threshold_on_informational_judges_the_new_build(
        emulator: server.Emulator, pipelines: harness.Pipelines, cluster_client: kubernetes.client.ApiClient,
) -> None:
    ns = pipelines.namespace
    arn = emulator.world.add_pipeline(name="batch", scanning_enabled=True, findings={"HIGH": 1, "INFORMATIONAL": 1})
    pipelines.create("batch", {"pipelineArn": arn, "findings": SPEC_FINDINGS})
    pipelines.wait_ready("batch")
    policies = kubernetes.client.CustomObjectsApi(cluster_client)
    policies.create_namespaced_custom_object(GROUP, VERSION, ns, "findingspolicies", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "FindingsPolicy", "metadata": {"name": "few-informational"},
        "spec": {"thresholds": {"informational": 2}},
    })
    wait_for(lambda: _policy_status(policies, ns, "few-informational").get("totals", {}).get("compliant") == 1,
             what="compliant with 1 informational finding")

    emulator.world.add_image(arn, findings=NEW_BUILD)  # 4 informational findings
    pipelines.reconcile_now("batch", "new-build")
    status = wait_for(lambda: (s := _policy_status(policies, ns, "few-informational"))
                      .get("totals", {}).get("violating") == 1 and s,
                      timeout=30, what="the new build's 4 informational findings judged")
    assert status["pipelines"][0]["violations"][0]["message"] == "4 informational finding(s), at most 2 allowed"
