"""FindingsPolicy end to end: the operator judges ImagePipelines from their status and reports it."""

from __future__ import annotations

import math
import subprocess
from typing import Any

import boto3
import kubernetes.client

from imagescan import GROUP, VERSION
from imagescan.aws import findings as aws_findings
from imagescan.emulator import server
from tests.integration import harness
from tests.integration.harness import wait_for
from tests.support.fixtures import Cluster


def _policies(cluster_client: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(cluster_client)


def _policy_status(api: kubernetes.client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "findingspolicies", name)
    return dict(obj.get("status") or {})


def test_policy_judges_pipelines_and_follows_spec_changes(
        emulator: server.Emulator, pipelines: harness.Pipelines, cluster_client: kubernetes.client.ApiClient,
        cluster: Cluster,
) -> None:
    ns = pipelines.namespace
    web = emulator.world.add_pipeline(name="web-ami", scanning_enabled=True, findings={"CRITICAL": 2, "HIGH": 1})
    api = emulator.world.add_pipeline(name="api-ctr", container=True, scanning_enabled=True, findings={"HIGH": 3})
    pipelines.create("web", {"pipelineArn": web})
    pipelines.create("api", {"pipelineArn": api})
    pipelines.wait_ready("web")
    pipelines.wait_ready("api")
    policies = _policies(cluster_client)
    policies.create_namespaced_custom_object(GROUP, VERSION, ns, "findingspolicies", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "FindingsPolicy", "metadata": {"name": "no-criticals"},
        "spec": {"thresholds": {"critical": 0}, "enforcement": "Deny"},
    })

    status = wait_for(lambda: (s := _policy_status(policies, ns, "no-criticals")).get("totals", {}).get("selected") == 2
                      and s, what="policy evaluated")
    assert status["totals"] == {"selected": 2, "compliant": 1, "violating": 1, "unknown": 0}
    verdict = status["pipelines"][0]
    assert verdict["name"] == "web" and not verdict["compliant"]
    assert verdict["violations"][0]["message"] == "2 critical finding(s), at most 0 allowed"
    assert status["conditions"][0]["type"] == "Ready" and status["conditions"][0]["status"] == "True"
    assert status["topVulnerabilities"]
    events = wait_for(lambda: [e for e in pipelines.core.list_namespaced_event(ns).items
                               if e.reason == "PolicyViolated"], what="PolicyViolated event")
    assert "ImagePipeline web" in events[0].message

    listed = subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "get", "findingspolicies"],
                            capture_output=True, text=True, check=True)
    assert listed.stdout.split()[:6] == ["NAME", "ENFORCEMENT", "PIPELINES", "VIOLATING", "READY", "AGE"]
    assert listed.stdout.split()[6:11] == ["no-criticals", "Deny", "2", "1", "True"]

    policies.patch_namespaced_custom_object(GROUP, VERSION, ns, "findingspolicies", "no-criticals",
                                            {"spec": {"thresholds": {"critical": 5}}})
    wait_for(lambda: _policy_status(policies, ns, "no-criticals").get("totals", {}).get("violating") == 0,
             what="re-evaluated after the spec change")


def test_new_findings_are_judged_without_touching_the_policy(
        emulator: server.Emulator, pipelines: harness.Pipelines, cluster_client: kubernetes.client.ApiClient,
) -> None:
    ns = pipelines.namespace
    arn = emulator.world.add_pipeline(name="batch", scanning_enabled=True, findings={"HIGH": 1})
    pipelines.create("batch", {"pipelineArn": arn})  # shipped intervals: a new build is seen on request
    pipelines.wait_ready("batch")
    policies = _policies(cluster_client)
    policies.create_namespaced_custom_object(GROUP, VERSION, ns, "findingspolicies", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "FindingsPolicy", "metadata": {"name": "few-highs"},
        "spec": {"thresholds": {"high": 2}},
    })
    wait_for(lambda: _policy_status(policies, ns, "few-highs").get("totals", {}).get("compliant") == 1,
             what="compliant")
    emulator.world.add_image(arn, findings={"HIGH": 5})  # a new build with more findings
    pipelines.reconcile_now("batch", "new-build")
    wait_for(lambda: _policy_status(policies, ns, "few-highs").get("totals", {}).get("violating") == 1,
             timeout=30, what="violation after new findings")


def test_pipelines_carry_a_policy_compliant_condition_naming_the_policies(
        emulator: server.Emulator, pipelines: harness.Pipelines, cluster_client: kubernetes.client.ApiClient,
) -> None:
    ns = pipelines.namespace
    arn = emulator.world.add_pipeline(name="svc", scanning_enabled=True, findings={"CRITICAL": 1, "HIGH": 2})
    pipelines.create("svc", {"pipelineArn": arn})
    pipelines.wait_condition("svc", "PolicyCompliant", "True", "NoPolicy")
    policies = _policies(cluster_client)
    for name, critical in (("strict", 0), ("lenient", 5)):
        policies.create_namespaced_custom_object(GROUP, VERSION, ns, "findingspolicies", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "FindingsPolicy", "metadata": {"name": name},
            "spec": {"thresholds": {"critical": critical}, "enforcement": "Deny" if critical == 0 else "Audit"},
        })
    violated = pipelines.wait_condition("svc", "PolicyCompliant", "False", "PolicyViolated")
    assert violated["message"] == "violates strict (Deny): 1 critical finding(s), at most 0 allowed"
    assert pipelines.condition("svc", "Ready")["status"] == "True"  # type: ignore[index]  # compliance is separate

    top = (pipelines.get("svc") or {})["status"]["findings"]["top"]
    critical = next(f["vulnerabilityId"] for f in top if f["severity"] == "CRITICAL")
    policies.patch_namespaced_custom_object(GROUP, VERSION, ns, "findingspolicies", "strict", {
        "spec": {"exemptions": [{"vulnerabilityId": critical, "reason": "fix ships Friday", "expires": "2099-01-01"}]},
    })
    compliant = pipelines.wait_condition("svc", "PolicyCompliant", "True", "Compliant")
    assert compliant["message"] == "complies with lenient, strict"


def test_rules_beyond_the_listed_findings_are_judged_exactly_with_one_listing(
        emulator: server.Emulator, pipelines: harness.Pipelines, cluster_client: kubernetes.client.ApiClient,
) -> None:
    ns = pipelines.namespace
    arn = emulator.world.add_pipeline(name="wide", scanning_enabled=True, findings={"HIGH": 60, "MEDIUM": 40})
    pipelines.create("wide", {"pipelineArn": arn, "findings": {"top": 5}})  # status lists 5 of 100 findings
    pipelines.wait_ready("wide")
    image = emulator.world.image_arns(arn)[-1]
    raws = [emulator.world.expand(r) for r in emulator.world.findings("imageBuildVersionArn", image)]
    fixable_highs = sum(1 for r in raws if r["severity"] == "HIGH" and r.get("fixAvailable") != "NO")
    emulator.reset_calls()
    policies = _policies(cluster_client)
    policies.create_namespaced_custom_object(GROUP, VERSION, ns, "findingspolicies", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "FindingsPolicy", "metadata": {"name": "fixable-highs"},
        "spec": {"thresholds": {"high": fixable_highs}, "fixAvailableOnly": True},
    })
    status = wait_for(lambda: (s := _policy_status(policies, ns, "fixable-highs")).get("pipelines") and s,
                      what="policy evaluated")
    verdict = status["pipelines"][0]
    assert verdict["exact"] is True and verdict["compliant"] is True
    assert verdict["counts"]["high"] == fixable_highs < 60
    listing_calls = emulator.calls["ListImageScanFindings"]
    per_page = aws_findings.page_size(boto3.client("imagebuilder", region_name="us-east-1"))
    assert listing_calls == math.ceil(100 / per_page)  # one listing of the one image build, largest pages
    pipelines.patch("wide", {"metadata": {"labels": {"touched": "yes"}}})  # re-evaluated, not re-read
    wait_for(lambda: pipelines.condition("wide", "PolicyCompliant") is not None
             and pipelines.condition("wide", "PolicyCompliant")["reason"] == "Compliant",  # type: ignore[index]
             what="pipeline compliant from the cached listing")
    assert emulator.calls["ListImageScanFindings"] == listing_calls
