"""One verdict, three readers (issue 8.3): the FindingsPolicy status, the ImagePipeline PolicyCompliant
condition and the admission webhook agree, also when a rule needs findings beyond ``findings.top``.

A pipeline's status lists its 3 worst findings of 30; the one MEDIUM is not among them. A Deny policy allows
no medium but exempts that one: the policy reads the build's every finding and calls the pipeline
compliant. Admission used to judge again from the 3 listed findings, ignore the exemption and refuse the Pod
("1 medium"). Real operator on the real kube-apiserver, AdmissionReview v1 POSTs over HTTPS.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from imagescan import GROUP, VERSION, runner
from imagescan.emulator import server
from imagescan.reconcile import policy
from tests.admission.conftest import Gate, _free_port, _listening, cluster_with_aws, operator_config
from tests.integration.harness import wait_for
from tests.support import controlplane

NAMESPACE = "admission-one-verdict"
PIPELINE = "wide"
POLICY = "no-mediums"
FINDINGS = {"HIGH": 4, "MEDIUM": 1, "LOW": 25}  # 30; the 3 listed are highs
SETTLE = 60.0  # the condition follows on the pipeline's next timer tick, whatever tick the tests run at


@pytest.fixture(scope="module")
def wired(control_plane: controlplane.ControlPlane,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gate, str]]:
    """The operator serving the webhook, the wide pipeline's image known; also the MEDIUM's id."""
    tmp = tmp_path_factory.mktemp("one-verdict")
    with pytest.MonkeyPatch.context() as patch, server.Emulator(seed=23, pipelines=0) as emulator, \
            cluster_with_aws(control_plane, NAMESPACE, tmp, patch) as api:
        arn = emulator.world.add_pipeline(name="wide-pipeline", container=True, scanning_enabled=True,
                                          findings=FINDINGS)
        build = emulator.world.image_arns(arn)[-1]
        (medium,) = [r.vuln.vulnerability_id for r in emulator.world.findings("imageBuildVersionArn", build)
                     if r.vuln.severity == "MEDIUM"]
        api.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "ImagePipeline",
                   "metadata": {"name": PIPELINE, "labels": {"gate": "one"}},
                   "spec": {"pipelineArn": arn, "findings": {"top": 3}}})
        port = _free_port()
        gate = Gate(api=api, port=port, ca=tmp / "certs" / "ca.crt", images={})
        with runner.InThread(operator_config(emulator, port, tmp, api.namespace)):
            gate.images[PIPELINE] = wait_for(lambda: _latest_image(_pipeline(gate)), what="the latest image")
            wait_for(lambda: _listening(port), what="the webhook listening")
            yield gate, medium


def _pipeline(gate: Gate) -> dict[str, Any]:
    return gate.api.get(GROUP, VERSION, "imagepipelines", NAMESPACE, PIPELINE) or {}


def _latest_image(obj: dict[str, Any]) -> str | None:
    latest = ((obj.get("status") or {}).get("findings") or {}).get("latestImage") or {}
    return next(iter(latest.get("containerImages") or []), None)


def _apply_policy(gate: Gate, exemptions: list[dict[str, str]]) -> None:
    """Server-side apply: leaving ``exemptions`` empty removes the ones applied before."""
    gate.api.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "FindingsPolicy", "metadata": {"name": POLICY},
                    "spec": {"selector": {"matchLabels": {"gate": "one"}}, "thresholds": {"medium": 0},
                             "exemptions": exemptions, "enforcement": "Deny"}})


def _verdict(gate: Gate, compliant: bool) -> dict[str, Any] | None:
    """The policy's verdict on the pipeline once it says ``compliant`` (for the current generation)."""
    obj = gate.api.get(GROUP, VERSION, "findingspolicies", NAMESPACE, POLICY) or {}
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        return None
    found = [v for v in status.get("pipelines") or [] if v["name"] == PIPELINE and v["compliant"] is compliant]
    return found[0] if found else None


def _condition(gate: Gate, status: str, reason: str) -> dict[str, Any] | None:
    conditions = (_pipeline(gate).get("status") or {}).get("conditions") or []
    found = [c for c in conditions
             if c["type"] == "PolicyCompliant" and (c["status"], c["reason"]) == (status, reason)]
    return found[0] if found else None


def _pod_review(gate: Gate) -> dict[str, Any]:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "namespace": NAMESPACE},
           "spec": {"containers": [{"name": "app", "image": gate.images[PIPELINE]}]}}
    return gate.review(pod).response


def test_the_medium_is_not_among_the_listed_findings(wired: tuple[Gate, str]) -> None:
    gate, medium = wired
    findings = _pipeline(gate)["status"]["findings"]
    assert len(findings["top"]) == 3 and medium not in {f["vulnerabilityId"] for f in findings["top"]}
    assert findings["latestImage"]["severityCounts"]["medium"] == 1


def test_exempted_medium_outside_the_top_is_compliant_everywhere(wired: tuple[Gate, str]) -> None:
    gate, medium = wired
    _apply_policy(gate, [{"vulnerabilityId": medium, "reason": "not reachable", "expires": "2099-01-01"}])
    verdict = wait_for(lambda: _verdict(gate, compliant=True), timeout=SETTLE, what="the policy: compliant")
    assert verdict["exact"] is True and verdict["counts"]["medium"] == 0
    condition = wait_for(lambda: _condition(gate, "True", "Compliant"), timeout=SETTLE, what="PolicyCompliant True")
    assert condition["message"] == f"complies with {POLICY}"
    response = _pod_review(gate)
    assert response["allowed"] is True, response
    assert not response.get("warnings")


def test_without_the_exemption_all_three_say_violating_with_the_same_counts(wired: tuple[Gate, str]) -> None:
    gate, _ = wired
    _apply_policy(gate, [])
    verdict = wait_for(lambda: _verdict(gate, compliant=False), timeout=SETTLE, what="the policy: violating")
    condition = wait_for(lambda: _condition(gate, "False", "PolicyViolated"), timeout=SETTLE,
                         what="PolicyCompliant False")
    rule = verdict["violations"][0]["message"]
    assert rule == "1 medium finding(s), at most 0 allowed" and rule in condition["message"]
    response = _pod_review(gate)
    assert response["allowed"] is False and response["status"]["code"] == 403
    message = response["status"]["message"]
    status_counts = verdict["counts"]  # a JSON object: the API server may reorder it; messages go worst first
    counts = ", ".join(f"{status_counts[s]} {s}" for s in policy.SEVERITY_FIELDS if status_counts.get(s))
    assert f"FindingsPolicy {POLICY} (Deny): {rule}; counts: {counts};" in message
    assert counts == "4 high, 1 medium, 25 low"

