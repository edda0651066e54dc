"""Validating admission webhooks in the embedded API server (imagescan.apiserver.admission), against a stub
webhook over plain HTTP (the end-to-end tests over HTTPS with the operator are in tests/admission)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from imagescan.apiserver import ApiServer
from imagescan.apiserver.admission import rule_matches, selector_matches, warning_header
from imagescan.apiserver.server import HttpError

Answer = Callable[[dict[str, Any]], dict[str, Any]]


class Stub:
    """A webhook answering with ``answer(request)``; it records the AdmissionReview requests it gets."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answer: Answer = lambda request: {"allowed": True}
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({**review["request"], "path": self.path})
                body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                   "response": {"uid": review["request"]["uid"], **stub.answer(review["request"])}})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/validate"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def stub() -> Iterator[Stub]:
    webhook = Stub()
    yield webhook
    webhook.server.shutdown()
    webhook.server.server_close()


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


def _configure(api: ApiServer, url: str, **webhook: Any) -> None:
    hook = {"name": "pods.test.io", "clientConfig": {"url": url}, "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                       "operations": ["CREATE", "UPDATE", "DELETE"]}], **webhook}
    api.apply({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
               "metadata": {"name": "test"}, "webhooks": [hook]})


def _pod(name: str = "p", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}


PODS = "/api/v1/namespaces/default/pods"


@pytest.mark.parametrize(("resources", "subresource", "matched"), [
    (["pods"], None, True), (["*"], None, True), (["*"], "status", False), (["pods/status"], "status", True),
    (["pods/*"], "ephemeralcontainers", True), (["*/*"], "status", True), (["*/status"], "status", True),
    (["pods", "pods/ephemeralcontainers"], "status", False), (["deployments"], None, False),
])
def test_rule_resources_and_subresources(resources: list[str], subresource: str | None, matched: bool) -> None:
    rule = {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": resources}
    assert rule_matches(rule, "CREATE", "", "v1", "pods", subresource, True) is matched


def test_rule_operations_groups_versions_and_scope() -> None:
    rule = {"apiGroups": ["apps"], "apiVersions": ["*"], "operations": ["UPDATE"], "resources": ["*"],
            "scope": "Namespaced"}
    assert rule_matches(rule, "UPDATE", "apps", "v1", "deployments", None, True)
    assert not rule_matches(rule, "CREATE", "apps", "v1", "deployments", None, True)
    assert not rule_matches(rule, "UPDATE", "", "v1", "pods", None, True)
    assert not rule_matches(rule, "UPDATE", "apps", "v1", "deployments", None, False)
    assert rule_matches({**rule, "scope": "*"}, "UPDATE", "apps", "v1", "things", None, False)


@pytest.mark.parametrize(("selector", "labels", "matched"), [
    (None, {}, True), ({}, {"a": "1"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True), ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
])
def test_label_selectors(selector: Any, labels: dict[str, str], matched: bool) -> None:
    assert selector_matches(selector, labels) is matched


def test_warning_header_escapes_quotes() -> None:
    assert warning_header('say "hi" \\o/') == '299 - "say \\"hi\\" \\\\o/"'


def test_a_review_carries_what_is_stored(api: ApiServer, stub: Stub) -> None:
    _configure(api, stub.url)
    created = api.http("POST", PODS, {**_pod(), "metadata": {"generateName": "gen-"}})
    (request,) = stub.requests
    assert request["path"] == "/validate?timeout=10s"
    assert request["operation"] == "CREATE" and request["namespace"] == "default"
    assert request["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert request["resource"] == request["requestResource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert request["userInfo"]["username"] and request["dryRun"] is False and request["oldObject"] is None
    assert request["options"] == {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
    # The object reviewed is the object stored: same generated name, same uid.
    assert request["name"] == created["metadata"]["name"] == request["object"]["metadata"]["name"]
    assert request["object"]["metadata"]["uid"] == created["metadata"]["uid"]


def test_denial_code_message_and_warnings(api: ApiServer, stub: Stub) -> None:
    _configure(api, stub.url)
    stub.answer = lambda request: {"allowed": False, "warnings": ["careful"],
                                   "status": {"code": 422, "message": "no way"}}
    with pytest.raises(HttpError) as caught:
        api.http("POST", PODS, _pod())
    assert caught.value.code == 422
    assert caught.value.status["message"] == 'admission webhook "pods.test.io" denied the request: no way'
    stub.answer = lambda request: {"allowed": False}
    with pytest.raises(HttpError) as caught:
        api.http("POST", PODS, _pod())
    assert caught.value.code == 403 and not caught.value.status.get("reason")  # as kube-apiserver: none given
    assert caught.value.status["message"].endswith("denied the request without explanation")
    assert api.get("", "v1", "pods", "default", "p") is None


def test_updates_deletes_subresources_and_object_selectors(api: ApiServer, stub: Stub) -> None:
    api.http("POST", PODS, _pod("p", team="a"))
    api.http("POST", PODS, _pod("q", team="a"))
    _configure(api, stub.url, objectSelector={"matchLabels": {"team": "a"}},
               rules=[{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods", "pods/status"],
                       "operations": ["*"]}])
    api.http("POST", PODS, _pod("other", team="b"))  # not selected
    api.http("PATCH", f"{PODS}/p", {"metadata": {"labels": {"team": "b"}}}, "application/merge-patch+json")
    api.http("PATCH", f"{PODS}/p/status", {"status": {"phase": "Running"}}, "application/merge-patch+json")
    api.http("DELETE", f"{PODS}/other")  # not selected
    api.http("DELETE", f"{PODS}/p")  # no longer selected: neither its new labels nor its old ones match
    api.http("DELETE", f"{PODS}/q")
    assert [(r["operation"], r["name"], r.get("subResource")) for r in stub.requests] == [
        ("UPDATE", "p", None), ("DELETE", "q", None)]
    update, delete = stub.requests
    assert update["oldObject"]["metadata"]["labels"] == {"team": "a"}
    assert update["object"]["metadata"]["labels"] == {"team": "b"}
    assert delete["object"] is None and delete["oldObject"]["metadata"]["name"] == "q"
    assert delete["options"]["kind"] == "DeleteOptions"


def test_status_subresource_requests(api: ApiServer, stub: Stub) -> None:
    api.http("POST", PODS, _pod())
    _configure(api, stub.url, rules=[{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/status"],
                                      "operations": ["UPDATE"]}])
    api.http("PATCH", f"{PODS}/p", {"metadata": {"labels": {"x": "y"}}}, "application/merge-patch+json")
    api.http("PATCH", f"{PODS}/p/status", {"status": {"phase": "Running"}}, "application/merge-patch+json")
    (request,) = stub.requests
    assert request["subResource"] == request["requestSubResource"] == "status"


def test_namespace_selector_uses_the_namespace_name_label(api: ApiServer, stub: Stub) -> None:
    _configure(api, stub.url, namespaceSelector={"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]})
    api.http("POST", "/api/v1/namespaces/kube-system/pods", _pod())
    assert not stub.requests
    api.http("POST", PODS, _pod())
    assert len(stub.requests) == 1


def test_dry_runs_and_side_effects(api: ApiServer, stub: Stub) -> None:
    _configure(api, stub.url, sideEffects="NoneOnDryRun")
    created = api.http("POST", f"{PODS}?dryRun=All", _pod())
    assert created["metadata"]["name"] == "p" and api.get("", "v1", "pods", "default", "p") is None
    (request,) = stub.requests
    assert request["dryRun"] is True and request["options"]["dryRun"] == ["All"]
    _configure(api, stub.url, sideEffects="Unknown")
    with pytest.raises(HttpError) as caught:
        api.http("POST", f"{PODS}?dryRun=All", _pod())
    assert caught.value.code == 400
    assert caught.value.status["message"] == 'admission webhook "pods.test.io" does not support dry run'
    assert len(stub.requests) == 1  # not called
    api.http("POST", PODS, _pod())  # a real request is fine with side effects
    with pytest.raises(HttpError) as caught:
        api.http("POST", f"{PODS}?dryRun=Maybe", _pod("q"))
    assert caught.value.code == 400


@pytest.mark.parametrize("policy", ["Ignore", "Fail", None])
def test_failure_policy_when_nothing_listens(api: ApiServer, policy: str | None) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _configure(api, f"https://127.0.0.1:{port}/validate", **({"failurePolicy": policy} if policy else {}))
    if policy == "Ignore":
        assert api.http("POST", PODS, _pod())["metadata"]["name"] == "p"
        return
    with pytest.raises(HttpError) as caught:  # Fail, the default
        api.http("POST", PODS, _pod())
    assert caught.value.code == 500 and caught.value.status["reason"] == "InternalError"
    assert caught.value.status["message"].startswith(
        f'Internal error occurred: failed calling webhook "pods.test.io": failed to call webhook: '
        f'Post "https://127.0.0.1:{port}/validate?timeout=10s": ')


def test_timeout_seconds_is_the_deadline(api: ApiServer) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        _configure(api, f"http://127.0.0.1:{silent.getsockname()[1]}/validate", timeoutSeconds=1)
        started = time.monotonic()
        with pytest.raises(HttpError) as caught:
            api.http("POST", PODS, _pod())
        assert 0.9 < time.monotonic() - started < 5
    assert caught.value.status["message"].endswith("context deadline exceeded")


def test_invalid_answers_are_failed_calls(api: ApiServer, stub: Stub) -> None:
    _configure(api, stub.url)
    stub.answer = lambda request: {"uid": "someone-else", "allowed": True}
    with pytest.raises(HttpError) as caught:
        api.http("POST", PODS, _pod())
    assert "received invalid webhook response: expected response.uid=" in caught.value.status["message"]


def test_service_references(stub: Stub) -> None:
    port = stub.server.server_address[1]
    with ApiServer(service_urls={"hooks/gate:443": f"http://127.0.0.1:{port}"}) as api:
        _configure(api, "", clientConfig={"service": {"namespace": "hooks", "name": "gate", "path": "/check"}})
        api.http("POST", PODS, _pod())
        assert stub.requests[0]["path"] == "/check?timeout=10s"
        _configure(api, "", clientConfig={"service": {"namespace": "hooks", "name": "nowhere", "port": 8443}})
        with pytest.raises(HttpError) as caught:
            api.http("POST", PODS, _pod("q"))
        assert caught.value.status["message"].endswith(
            'Post "https://nowhere.hooks.svc:8443": service "nowhere" not found')


def test_deleting_the_configuration_stops_the_reviews(api: ApiServer, stub: Stub) -> None:
    _configure(api, stub.url)
    stub.answer = lambda request: {"allowed": False}
    with pytest.raises(HttpError):
        api.http("POST", PODS, _pod())
    api.http("DELETE", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/test")
    api.http("POST", PODS, _pod())
    assert api.call(lambda db: db.gate) is None


def test_delete_collection_reviews_each_object(api: ApiServer, stub: Stub) -> None:
    for name in ("a", "b", "c"):
        api.http("POST", PODS, _pod(name))
    _configure(api, stub.url)
    stub.answer = lambda request: {"allowed": request["name"] != "b", "warnings": [f"saw {request['name']}"]}
    with pytest.raises(HttpError) as caught:
        api.http("DELETE", PODS)
    assert caught.value.code == 403
    assert [pod["metadata"]["name"] for pod in api.objects("", "v1", "pods", "default")] == ["b", "c"]
