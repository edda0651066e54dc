"""Admission gating end to end: AdmissionReview v1 over HTTPS to the operator's webhook."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from imagescan import GROUP, VERSION
from imagescan.emulator import ecr
from tests.admission.conftest import NAMESPACE, Gate
from tests.integration.harness import wait_for


def _pod(*images: str, name: str = "app", init: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]}
    if init:
        spec["initContainers"] = [{"name": "setup", "image": init}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}


def _template(image: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}}


def _workload(kind: str, image: str) -> dict[str, Any]:
    group = "batch" if kind in ("Job", "CronJob") else "apps"
    spec: dict[str, Any] = {"template": _template(image)}
    if kind == "CronJob":
        spec = {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": _template(image)}}}
    return {"apiVersion": f"{group}/v1", "kind": kind, "metadata": {"name": "web", "namespace": NAMESPACE},
            "spec": spec}


def _node_class(*amis: str) -> dict[str, Any]:
    return {"apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass", "metadata": {"name": "default"},
            "spec": {"role": "KarpenterNodeRole", "amiSelectorTerms": [{"id": ami} for ami in amis]}}


def test_compliant_image_is_allowed_without_warnings(gate: Gate) -> None:
    response = gate.review(_pod(gate.images["clean"])).response
    assert response["allowed"] is True
    assert not response.get("warnings")


def test_deny_policy_refuses_naming_policy_pipeline_counts_and_cves(gate: Gate) -> None:
    response = gate.review(_pod(gate.images["denied"])).response
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    message = response["status"]["message"]
    assert "FindingsPolicy no-criticals (Deny)" in message
    assert "ImagePipeline denied" in message
    assert "2 critical finding(s), at most 0 allowed" in message
    assert "counts: 2 critical, 1 high" in message
    assert "worst: CVE-" in message
    assert f"container c0 ({gate.images['denied'].rsplit('/', 1)[-1]})" in message


def test_warn_policy_allows_with_warnings(gate: Gate) -> None:
    response = gate.review(_pod(gate.images["warned"])).response
    assert response["allowed"] is True
    (warning,) = response["warnings"]
    assert "FindingsPolicy no-highs (Warn)" in warning and "ImagePipeline warned" in warning
    assert "3 high finding(s), at most 0 allowed" in warning and "worst: CVE-" in warning
    assert len(warning) <= 256, "the API server may cut longer warnings short"


def _audit_events(gate: Gate, pod: str) -> list[dict[str, Any]]:
    return [e for e in gate.api.objects("", "v1", "events", NAMESPACE)
            if e.get("reason") == "AdmissionAudited" and f"/{pod}: " in e.get("message", "")]


def test_audit_policy_allows_and_leaves_a_warning_event_on_the_policy(gate: Gate) -> None:
    response = gate.review(_pod(gate.images["audited"], name="audited-pod")).response
    assert response["allowed"] is True and not response.get("warnings")

    (event,) = wait_for(lambda: _audit_events(gate, "audited-pod"), what="the AdmissionAudited event")
    policy = gate.api.get(GROUP, VERSION, "findingspolicies", NAMESPACE, "no-mediums")
    assert policy is not None
    assert event["type"] == "Warning" and event["count"] == 1
    assert event["involvedObject"] == {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FindingsPolicy",
                                       "namespace": NAMESPACE, "name": "no-mediums",
                                       "uid": policy["metadata"]["uid"]}  # kubectl describe selects by uid
    short = gate.images["audited"].rsplit("/", 1)[-1]
    assert event["message"].startswith(
        f"admitted create of Pod {NAMESPACE}/audited-pod: container c0 ({short}): ImagePipeline audited breaks "
        "FindingsPolicy no-mediums (Audit): 4 medium finding(s), at most 0 allowed; counts: 4 medium; worst: CVE-")
    assert event["source"]["component"] == event["reportingComponent"] == "imagescan-operator"
    assert event["reportingInstance"]
    time.sleep(1.0)  # and no second one
    assert len(_audit_events(gate, "audited-pod")) == 1


def test_repeated_identical_audit_hits_are_one_event_with_their_count(gate: Gate) -> None:
    """A rollout's Pods carry the ReplicaSet's generateName, not a name: every admission says the same."""
    pod = _pod(gate.images["audited"])
    del pod["metadata"]["name"]
    pod["metadata"]["generateName"] = "rollout-7d9c-"
    for _ in range(3):
        assert gate.review(pod).response["allowed"] is True
    (event,) = wait_for(lambda: _audit_events(gate, "rollout-7d9c-*"), what="the AdmissionAudited event")
    assert event["count"] == 3, event
    assert event["firstTimestamp"] <= event["lastTimestamp"]


def test_dry_run_audit_leaves_no_event(gate: Gate) -> None:
    assert gate.review(_pod(gate.images["audited"], name="dry-pod"), dry_run=True).response["allowed"] is True
    gate.review(_pod(gate.images["audited"], name="wet-pod"))
    wait_for(lambda: [e for e in gate.api.objects("", "v1", "events", NAMESPACE) if "wet-pod" in e.get("message", "")],
             what="the event of the real request")
    assert not [e for e in gate.api.objects("", "v1", "events", NAMESPACE) if "dry-pod" in e.get("message", "")]


@pytest.mark.parametrize("image", [
    "nginx:1.27",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/unknown-repo:1.0.0-1",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/repo@sha256:" + "a" * 64,
])
def test_unknown_images_are_allowed(gate: Gate, image: str) -> None:
    response = gate.review(_pod(image)).response
    assert response["allowed"] is True and not response.get("warnings")


def test_digest_pinned_reference_is_judged_by_its_digest(gate: Gate) -> None:
    """The operator resolves output tags to digests with ECR; a digest names the image that runs, whatever
    the tag next to it says."""
    repository = gate.images["denied"].rsplit(":", 1)[0]
    digest = ecr.digest_of(gate.images["denied"])
    assert gate.review(_pod(f"{repository}@{digest}")).response["allowed"] is False
    assert gate.review(_pod(f"{gate.images['denied']}@{digest}")).response["allowed"] is False
    unknown = gate.images["denied"] + "@sha256:" + "b" * 64  # a violating tag, but another image
    assert gate.review(_pod(unknown)).response["allowed"] is True


def test_reference_is_normalised_before_matching(gate: Gate) -> None:
    registry, _, rest = gate.images["denied"].partition("/")
    assert gate.review(_pod(f"{registry.upper()}/{rest}")).response["allowed"] is False


def test_init_containers_are_judged_and_several_policies_reported_together(gate: Gate) -> None:
    response = gate.review(_pod(gate.images["warned"], init=gate.images["denied"])).response
    assert response["allowed"] is False
    assert "init container setup (" in response["status"]["message"]
    assert any("no-highs" in w for w in response["warnings"])


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"])
def test_pod_templates_of_workloads_are_judged(gate: Gate, kind: str) -> None:
    denied = gate.review(_workload(kind, gate.images["denied"])).response
    assert denied["allowed"] is False and "no-criticals" in denied["status"]["message"]
    assert gate.review(_workload(kind, gate.images["clean"])).response["allowed"] is True


def test_update_is_judged_only_on_the_images_it_introduces(gate: Gate) -> None:
    running = _workload("Deployment", gate.images["denied"])
    scaled = json.loads(json.dumps(running))
    scaled["spec"]["replicas"] = 5
    assert gate.review(scaled, operation="UPDATE", old=running).response["allowed"] is True
    clean = _workload("Deployment", gate.images["clean"])
    assert gate.review(running, operation="UPDATE", old=clean).response["allowed"] is False


def test_ec2nodeclass_with_a_violating_ami_is_denied(gate: Gate) -> None:
    ami = gate.images["node"]
    assert ami.startswith("ami-")
    response = gate.review(_node_class("ami-0123456789abcdef0", ami)).response
    assert response["allowed"] is False and response["status"]["code"] == 403
    assert "amiSelectorTerms[1]" in response["status"]["message"]
    assert "ImagePipeline node" in response["status"]["message"]
    assert gate.review(_node_class("ami-0123456789abcdef0")).response["allowed"] is True


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "Expecting property name"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
                 "request": {"uid": "x"}}).encode(), "apiVersion/kind"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(), "request.uid"),
])
def test_unreadable_request_is_a_400(gate: Gate, payload: bytes, reason: str) -> None:
    answer = gate.post(payload)
    assert answer.http_status == 400
    assert reason in str(answer.body)


def test_malformed_admission_review_is_refused_with_400_and_the_reason(gate: Gate) -> None:
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "abc", "resource": {"group": "", "version": "v1", "resource": "pods"},
                          "operation": "CREATE", "userInfo": {"username": "jane"}}}
    answer = gate.post(json.dumps(review).encode())
    assert answer.http_status == 200
    message = "malformed AdmissionReview: request.object is missing"
    assert answer.response == {"uid": "abc", "allowed": False, "status": {"code": 400, "message": message}}
    # ... and the webhook keeps serving.
    assert gate.review(_pod(gate.images["clean"])).response["allowed"] is True


def test_odd_pod_shapes_do_not_crash_the_webhook(gate: Gate) -> None:
    odd = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "odd", "namespace": NAMESPACE},
           "spec": {"containers": ["not-a-container", {"name": "x"}, {"name": "y", "image": 42}]}}
    assert gate.review(odd).response["allowed"] is True
