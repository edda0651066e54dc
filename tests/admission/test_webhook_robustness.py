"""Whatever reaches the webhook gets a well-formed answer: malformed, oddly typed, deeply nested, non-UTF-8
and oversized reviews, DELETE and CONNECT; and a FindingsPolicy with an impossible date breaks nothing else.

Every request is a real AdmissionReview POST over HTTPS to the running operator (the module's ``gate``). A
well-formed answer is an HTTP 200 AdmissionReview with the request's uid, or, when the body does not even
name a uid, an HTTP 400 with a short reason; never an HTTP 500, a 413 or a traceback in the log.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from imagescan import GROUP, VERSION
from imagescan.admission import intake
from tests.admission.conftest import NAMESPACE, Answer, Gate
from tests.conftest import ROOT
from tests.integration.harness import wait_for

CRD = ROOT / "crds" / f"findingspolicies.{GROUP}.yaml"
WEBHOOK = ROOT / "deploy" / "webhook" / "webhook.yaml"
POLICIES = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/findingspolicies"
MIB = 1024 * 1024


# --- Building reviews -------------------------------------------------------------------------------------

def _pod(image: str, name: str = "app") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"containers": [{"name": "app", "image": image}]}}


def _deployment(image: str, padding: int = 0) -> dict[str, Any]:
    """A Deployment padded with ``padding`` bytes of annotations (as large objects carry them: in a few
    values of up to 256 KiB, like kubectl's last-applied-configuration)."""
    chunk = 256 * 1024
    annotations = {f"example.com/pad-{i}": "x" * min(chunk, padding - i * chunk)
                   for i in range((padding + chunk - 1) // chunk)}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NAMESPACE, "annotations": annotations},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}}}


def _review(obj: Any, *, operation: str = "CREATE", old: Any = None, plural: str = "pods", group: str = "",
            **request: Any) -> dict[str, Any]:
    """An AdmissionReview with the API server's field order: the request's uid comes first."""
    version = "v1"
    body: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": group, "version": version, "kind": "Pod"},
        "resource": {"group": group, "version": version, "resource": plural},
        "namespace": NAMESPACE, "operation": operation,
        "userInfo": {"username": "jane", "groups": ["system:authenticated"]},
        "object": obj, "oldObject": old, "dryRun": False,
    }
    body.update(request)
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": body}


def _bytes(review: dict[str, Any]) -> bytes:
    return json.dumps(review, separators=(",", ":")).encode()


def _with(review: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy with the field at ``path`` (dotted, from the review) replaced."""
    changed = copy.deepcopy(review)
    *parents, last = path.split(".")
    target = changed
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[int(last) if isinstance(target, list) else last] = value
    return changed


def _well_formed(answer: Answer, uid: str | None) -> dict[str, Any]:
    """The response of an HTTP 200 AdmissionReview for ``uid``; with no uid, the HTTP 400's reason."""
    if uid is None:
        assert answer.http_status == 400, answer.body
        assert isinstance(answer.body, str) and 0 < len(answer.body) <= 300, answer.body
        return {}
    assert answer.http_status == 200, answer.body
    assert answer.body["apiVersion"] == "admission.k8s.io/v1" and answer.body["kind"] == "AdmissionReview"
    response = answer.response
    assert response["uid"] == uid and isinstance(response["allowed"], bool)
    if not response["allowed"]:
        assert isinstance(response["status"]["code"], int) and response["status"]["message"]
    return response


def _refused(answer: Answer, uid: str, code: int = 400) -> str:
    response = _well_formed(answer, uid)
    assert response["allowed"] is False and response["status"]["code"] == code, response
    return str(response["status"]["message"])


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The operator runs in this process: anything it logged with a traceback during the test is a crash."""
    caplog.set_level(logging.WARNING)
    yield
    crashes = [r.getMessage() for r in caplog.records if r.exc_info]
    assert not crashes, crashes


# --- Bodies that are not (readable) JSON ------------------------------------------------------------------

UNREADABLE = {
    "empty": b"",
    "truncated, no uid": b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","req',
    "not UTF-8, no uid": b"\xff\xfe{}",
    "null": b"null",
    "a string": b'"AdmissionReview"',
    "a number": b"42",
    "request is a string": _bytes({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                   "request": "please"}),
    "uid is a number": _bytes(_with(_review({}), "request.uid", 42)),
    "uid is empty": _bytes(_with(_review({}), "request.uid", "")),
    "kind is a list": _bytes(_with(_review({}), "kind", ["AdmissionReview"])),
}


@pytest.mark.parametrize("payload", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_body_without_a_readable_uid_is_a_short_400(gate: Gate, payload: bytes) -> None:
    _well_formed(gate.post(payload), None)


def _head_and(tail: bytes) -> tuple[str, bytes]:
    """A body that starts as the API server writes it (so the uid can be read) and then goes wrong."""
    uid = str(uuid.uuid4())
    return uid, b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"' + \
        uid.encode() + b'","operation":"CREATE",' + tail


@pytest.mark.parametrize(("tail", "reason"), [
    (b'"object":{"kind":"Pod"', "not JSON"),
    (b'"object":{"kind":"Pod","metadata":{"annotations":{"a":"\xff\xfe\x80"}}}}}', "not UTF-8"),
    (b'"object":' + b"[" * 100_000 + b"]" * 100_000 + b"}}", "nested too deeply"),
    (b'"object":{"spec":{"replicas":' + b"9" * 5000 + b"}}}}", "not JSON"),
    (b'"object":{"kind":"Pod"}}}trailing', "not JSON"),
], ids=["truncated", "invalid UTF-8", "100000 levels", "5000-digit number", "trailing garbage"])
def test_unparseable_body_with_a_uid_is_refused_with_400(gate: Gate, tail: bytes, reason: str) -> None:
    uid, payload = _head_and(tail)
    assert reason in _refused(gate.post(payload), uid)


def test_200_levels_of_nesting_are_refused(gate: Gate) -> None:
    """Parseable, but deeper than kopf's recursive diff can follow: refused, not a RecursionError."""
    deep: Any = "bottom"
    for _ in range(200):
        deep = {"down": deep}
    pod = _pod(gate.images["clean"])
    pod["spec"]["extra"] = deep
    review = _review(pod, operation="UPDATE", old=pod)
    message = _refused(gate.post(_bytes(review)), review["request"]["uid"])
    assert f"nested deeper than {intake.MAX_DEPTH} levels" in message


# --- Wrong types at every level ---------------------------------------------------------------------------

ENVELOPE_AND_METADATA = {
    "request.resource": "pods",
    "request.resource.group": 7,
    "request.operation": 1,
    "request.userInfo": "jane",
    "request.object": "a pod",
    "request.object.kind": 12,
    "request.object.apiVersion": ["v1"],
    "request.object.metadata": "app",
    "request.object.metadata.name": 5,
    "request.object.metadata.namespace": {"name": NAMESPACE},
    "request.object.metadata.labels": ["app=web"],
    "request.object.metadata.annotations": "a=b",
}


@pytest.mark.parametrize(("path", "value"), ENVELOPE_AND_METADATA.items(), ids=ENVELOPE_AND_METADATA.keys())
def test_wrong_types_in_the_envelope_and_metadata_are_refused_with_400(gate: Gate, path: str, value: Any) -> None:
    review = _with(_review(_pod(gate.images["denied"])), path, value)
    message = _refused(gate.post(_bytes(review)), review["request"]["uid"])
    assert message.startswith("malformed AdmissionReview: ") and path.split(".")[-1] in message


def test_wrong_types_in_the_old_object_are_refused_with_400(gate: Gate) -> None:
    pod = _pod(gate.images["clean"])
    for old in ("a pod", [pod], {**pod, "metadata": "app"}, {**pod, "metadata": {"labels": {"app": 1}}}):
        review = _review(pod, operation="UPDATE", old=old)
        assert "request.oldObject" in _refused(gate.post(_bytes(review)), review["request"]["uid"])


SPEC = {
    "spec is a string": ("request.object.spec", "containers"),
    "containers is an object": ("request.object.spec.containers", {"name": "app", "image": "nginx"}),
    "containers is a string": ("request.object.spec.containers", "nginx"),
    "a container is a list": ("request.object.spec.containers.0", ["app", "nginx"]),
    "image is a number": ("request.object.spec.containers.0.image", 42),
    "image is an object": ("request.object.spec.containers.0.image", {"repository": "nginx"}),
    "image is null": ("request.object.spec.containers.0.image", None),
    "initContainers is a number": ("request.object.spec.initContainers", 3),
    "namespace is a number": ("request.namespace", 3),
    "dryRun is a string": ("request.dryRun", "yes"),
    "subResource is a list": ("request.subResource", ["status"]),
}


@pytest.mark.parametrize(("path", "value"), SPEC.values(), ids=SPEC.keys())
def test_wrong_types_in_the_spec_get_a_well_formed_answer(gate: Gate, path: str, value: Any) -> None:
    """The spec is the reviewed object's own business (the API server validated it): what is not an image
    reference names no image, so nothing is judged."""
    review = _with(_review(_pod(gate.images["clean"])), path, value)
    assert _well_formed(gate.post(_bytes(review)), review["request"]["uid"])["allowed"] is True


def test_an_odd_container_does_not_hide_a_denied_image_next_to_it(gate: Gate) -> None:
    pod = _pod(gate.images["denied"])
    pod["spec"]["containers"][:0] = ["odd", {"name": "no-image"}, {"name": "n", "image": 42}]
    review = _review(pod)
    assert "no-criticals" in _refused(gate.post(_bytes(review)), review["request"]["uid"], 403)


def test_workload_and_node_class_shapes(gate: Gate) -> None:
    deployment = _deployment(gate.images["clean"])
    for path, value in (("spec.template", []), ("spec.template.spec", "x"), ("spec", None)):
        obj = _with(deployment, path, value)
        review = _review(obj, plural="deployments", group="apps")
        assert _well_formed(gate.post(_bytes(review)), review["request"]["uid"])["allowed"] is True
    node_class = {"apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass", "metadata": {"name": "default"},
                  "spec": {"amiSelectorTerms": {"id": "ami-1"}}}
    review = _review(node_class, plural="ec2nodeclasses", group="karpenter.k8s.aws")
    del review["request"]["namespace"]
    assert _well_formed(gate.post(_bytes(review)), review["request"]["uid"])["allowed"] is True


# --- Operations -------------------------------------------------------------------------------------------

def test_delete_is_allowed_without_judging(gate: Gate) -> None:
    """The object of a DELETE is the one going away: refusing it would keep a violating pod running."""
    review = _review(None, operation="DELETE", old=_pod(gate.images["denied"]))
    response = _well_formed(gate.post(_bytes(review)), review["request"]["uid"])
    assert response == {"uid": review["request"]["uid"], "allowed": True}


def test_connect_is_allowed_without_judging(gate: Gate) -> None:
    options = {"kind": "PodExecOptions", "apiVersion": "v1", "command": ["sh"], "container": "app"}
    review = _review(options, operation="CONNECT", subResource="exec", name="app")
    response = _well_formed(gate.post(_bytes(review)), review["request"]["uid"])
    assert response == {"uid": review["request"]["uid"], "allowed": True}


def test_unknown_operation_is_refused_with_400(gate: Gate) -> None:
    review = _review(_pod(gate.images["clean"]), operation="PATCH")
    assert "request.operation is 'PATCH'" in _refused(gate.post(_bytes(review)), review["request"]["uid"])


def test_resource_the_webhook_does_not_review_is_allowed(gate: Gate) -> None:
    review = _review({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}, plural="services")
    assert _well_formed(gate.post(_bytes(review)), review["request"]["uid"])["allowed"] is True


def test_shipped_configuration_sends_only_create_and_update() -> None:
    docs = [d for d in yaml.safe_load_all(WEBHOOK.read_text()) if d]
    (configuration,) = [d for d in docs if d["kind"] == "ValidatingWebhookConfiguration"]
    operations = {op for webhook in configuration["webhooks"] for rule in webhook["rules"]
                  for op in rule["operations"]}
    assert operations == {"CREATE", "UPDATE"}


# --- Size -------------------------------------------------------------------------------------------------

def _padded_update(gate: Gate, total: int, before: str = "clean", after: str = "denied") -> dict[str, Any]:
    """An UPDATE of a Deployment to the ``after`` image, object and old object padded to ``total`` bytes."""
    per_object = total // 2 - 4096
    review = _review(_deployment(gate.images[after], per_object), operation="UPDATE",
                     old=_deployment(gate.images[before], per_object), plural="deployments", group="apps")
    assert total - 16 * 1024 < len(_bytes(review)) <= total
    return review


@pytest.mark.parametrize("size", [int(2.5 * MIB), 6 * MIB + 64 * 1024], ids=["2.5 MiB", "6 MiB"])
def test_large_update_to_a_denied_image_is_denied(gate: Gate, size: int) -> None:
    """6 MiB: two objects at the API server's 3 MiB request limit and the envelope. Before, aiohttp's 1 MiB
    limit answered 413, and failurePolicy Ignore admitted the Deployment."""
    review = _padded_update(gate, size)
    message = _refused(gate.post(_bytes(review)), review["request"]["uid"], 403)
    assert "FindingsPolicy no-criticals (Deny)" in message


def test_large_update_to_a_clean_image_is_allowed(gate: Gate) -> None:
    review = _padded_update(gate, 6 * MIB, after="clean")
    assert _well_formed(gate.post(_bytes(review)), review["request"]["uid"])["allowed"] is True


def test_review_over_the_limit_is_refused_with_413(gate: Gate) -> None:
    """Larger than any review the API server sends: refused (not an error Ignore would admit)."""
    review = _padded_update(gate, intake.MAX_BODY + MIB, after="clean")
    message = _refused(gate.post(_bytes(review)), review["request"]["uid"], 413)
    assert f"larger than {intake.MAX_BODY // MIB} MiB" in message


def test_webhook_still_judges_after_the_corpus(gate: Gate) -> None:
    assert gate.review(_pod(gate.images["clean"])).response["allowed"] is True
    assert gate.review(_pod(gate.images["denied"])).response["allowed"] is False


# --- A FindingsPolicy with an impossible date -------------------------------------------------------------

def _policy(name: str, expires: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FindingsPolicy", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"gate": "deny"}}, "thresholds": {"high": 0},
                     "enforcement": "Deny",
                     "exemptions": [{"vulnerabilityId": "CVE-2024-3094", "reason": "JIRA-1", "expires": expires}]}}


@pytest.mark.parametrize("expires", ["2025-02-30", "2024-13-45", "2025-04-31", "0000-01-01"])
def test_api_server_refuses_an_impossible_expiry_date(gate: Gate, expires: str) -> None:
    status, body = gate.api.plane.http("POST", POLICIES, _policy("impossible", expires))
    assert status == 422, body
    assert f'spec.exemptions[0].expires: Invalid value: "{expires}": ' in body["message"], body["message"]


@contextlib.contextmanager
def _pattern_only_crd(gate: Gate) -> Iterator[None]:
    """The CRD as shipped before its calendar-date pattern (YYYY-MM-DD only): it lets an impossible date in, as an
    upgraded cluster may still hold one. The current CRD is put back afterwards; the object stays deletable
    (a pattern is ratcheted on unchanged fields, so the operator can still remove its finalizer)."""
    crd = yaml.safe_load(CRD.read_text())
    exemption = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "exemptions"]["items"]["properties"]
    exemption["expires"]["pattern"] = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
    try:
        gate.api.plane.apply(crd)
        gate.api.plane.wait_established(crd["metadata"]["name"])
        yield
    finally:
        gate.api.plane.apply_yaml(CRD)


def _condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), {})


@pytest.mark.parametrize("expires", ["2025-02-30", "0000-01-01"])
def test_policy_with_an_impossible_date_stalls_alone(gate: Gate, expires: str) -> None:
    """Stalled/InvalidSpec naming the field, a Warning Event; the namespace's pipelines stay Ready and the
    valid Deny policy still denies. Before, every evaluation raised and admission stopped denying here."""
    name = f"impossible-{expires}"
    with _pattern_only_crd(gate):  # today's CRD refuses both (test_api_server_refuses_an_impossible_expiry_date)
        wait_for(lambda: gate.api.plane.http("POST", POLICIES, _policy(name, expires))[0] == 201,
                 what=f"the API server storing {expires}")
    try:
        _assert_stalled_alone(gate, name, expires)
    finally:
        gate.api.plane.http("DELETE", f"{POLICIES}/{name}")
        # The operator removes its finalizer after stopping the policy's daemon: slow on a busy machine.
        wait_for(lambda: gate.api.get(GROUP, VERSION, "findingspolicies", NAMESPACE, name) is None,
                 timeout=60, what="the policy deleted")


def _assert_stalled_alone(gate: Gate, name: str, expires: str) -> None:
    def policy() -> dict[str, Any] | None:
        return gate.api.get(GROUP, VERSION, "findingspolicies", NAMESPACE, name)

    stalled = wait_for(lambda: _condition(policy(), "Stalled"), what="the policy Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "InvalidSpec"
    assert stalled["message"].startswith("spec.exemptions[0].expires: ") and expires in stalled["message"]
    assert _condition(policy(), "Ready")["status"] == "False"
    (event,) = wait_for(lambda: [e for e in gate.api.objects("", "v1", "events", NAMESPACE)
                                 if e["involvedObject"]["name"] == name and e["reason"] == "InvalidSpec"],
                        what="the InvalidSpec event")
    assert event["type"] == "Warning" and "spec.exemptions[0].expires" in event["message"]
    for _ in range(4):  # over several ticks (0.2 s) of every timer in the namespace
        time.sleep(0.3)
        response = gate.review(_pod(gate.images["denied"])).response
        assert response["allowed"] is False and "no-criticals" in response["status"]["message"]
        assert name not in response["status"]["message"] and not response.get("warnings")
        pipelines = gate.api.objects(GROUP, VERSION, "imagepipelines", NAMESPACE)
        assert all(_condition(p, "Ready").get("status") == "True" for p in pipelines), pipelines
    assert len([e for e in gate.api.objects("", "v1", "events", NAMESPACE)
                if e["involvedObject"]["name"] == name and e["reason"] == "InvalidSpec"]) == 1
