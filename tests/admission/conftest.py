"""The real operator with its admission webhook on a free port (self-signed certificate), gating against
ImagePipelines and FindingsPolicies it has judged on the real control plane (as the shipped ServiceAccount);
requests are real AdmissionReview v1 POSTs over HTTPS.

One operator serves the whole module: the set-up (pipelines Ready, policies evaluated) is the slow part and
the webhook reads only, so the tests cannot disturb one another.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import pathlib
import socket
import ssl
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from imagescan import GROUP, VERSION, runner
from imagescan.admission import server as admission_server
from imagescan.aws import clients as aws_clients
from imagescan.emulator import server
from imagescan.handlers import runtime
from tests.integration.harness import wait_for
from tests.support import controlplane, fixtures
from tests.support.fixtures import Cluster

NAMESPACE = "admission-gate"
# The plural of each kind the webhook reviews; Karpenter's EC2NodeClass is the one a cluster needs a CRD for.
PLURALS = {"Pod": "pods", "Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets",
           "ReplicaSet": "replicasets", "Job": "jobs", "CronJob": "cronjobs", "EC2NodeClass": "ec2nodeclasses"}
KARPENTER = ("karpenter.k8s.aws", "EC2NodeClass", "ec2nodeclasses", "Cluster")
# name -> (labels, emulator pipeline options)
PIPELINES: dict[str, tuple[dict[str, str], dict[str, Any]]] = {
    "denied": ({"gate": "deny"}, {"container": True, "findings": {"CRITICAL": 2, "HIGH": 1}}),
    "clean": ({"gate": "deny"}, {"container": True, "findings": {"LOW": 1}}),
    "warned": ({"gate": "warn"}, {"container": True, "findings": {"HIGH": 3}}),
    "audited": ({"gate": "audit"}, {"container": True, "findings": {"MEDIUM": 4}}),
    "node": ({"gate": "deny"}, {"container": False, "findings": {"CRITICAL": 1}}),
}
POLICIES = {
    "no-criticals": {"selector": {"matchLabels": {"gate": "deny"}}, "thresholds": {"critical": 0},
                     "enforcement": "Deny"},
    "no-highs": {"selector": {"matchLabels": {"gate": "warn"}}, "thresholds": {"high": 0}, "enforcement": "Warn"},
    "no-mediums": {"selector": {"matchLabels": {"gate": "audit"}}, "thresholds": {"medium": 0},
                   "enforcement": "Audit"},
}


@dataclasses.dataclass
class Answer:
    """The webhook's HTTP status and, when it answered an AdmissionReview, its ``response``."""

    http_status: int
    body: Any

    @property
    def response(self) -> dict[str, Any]:
        assert isinstance(self.body, dict) and "response" in self.body, self.body
        return dict(self.body["response"])


@dataclasses.dataclass
class Gate:
    """The running webhook and what it was set up with."""

    api: Cluster
    port: int
    ca: pathlib.Path
    images: dict[str, str]  # pipeline name -> its latest output image URI (or AMI id)

    def post(self, payload: bytes) -> Answer:
        context = ssl.create_default_context(cafile=str(self.ca))  # verifies the chain and the SAN
        connection = http.client.HTTPSConnection("localhost", self.port, context=context, timeout=10)
        try:
            connection.request("POST", "/validate", payload, {"Content-Type": "application/json"})
            reply = connection.getresponse()
            text = reply.read().decode()
        finally:
            connection.close()
        try:
            return Answer(reply.status, json.loads(text))
        except json.JSONDecodeError:
            return Answer(reply.status, text)

    def review(self, obj: dict[str, Any], *, operation: str = "CREATE", old: dict[str, Any] | None = None,
               dry_run: bool = False) -> Answer:
        group, _, version = obj["apiVersion"].rpartition("/")
        plural = PLURALS[obj["kind"]]
        namespace = obj["metadata"].get("namespace", NAMESPACE) if obj["kind"] != "EC2NodeClass" else None
        request = {
            "uid": str(uuid.uuid4()),
            "kind": {"group": group, "version": version, "kind": obj["kind"]},
            "resource": {"group": group, "version": version, "resource": plural},
            "requestKind": {"group": group, "version": version, "kind": obj["kind"]},
            "requestResource": {"group": group, "version": version, "resource": plural},
            "name": obj["metadata"].get("name", ""), "operation": operation,
            "userInfo": {"username": "jane", "groups": ["system:authenticated"]},
            "object": obj, "oldObject": old, "dryRun": dry_run, "options": {},
        }
        if namespace is not None:
            request["namespace"] = namespace
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
        answer = self.post(json.dumps(review).encode())
        assert answer.http_status == 200, answer.body
        assert answer.response["uid"] == request["uid"]
        return answer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _crd(group: str, kind: str, plural: str, scope: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": scope, "names": {"kind": kind, "plural": plural},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
    }


def _latest_output(api: Cluster, name: str) -> str | None:
    obj = api.get(GROUP, VERSION, "imagepipelines", api.namespace, name) or {}
    latest = ((obj.get("status") or {}).get("findings") or {}).get("latestImage") or {}
    outputs = latest.get("containerImages") or latest.get("amis") or []
    return str(outputs[0]) if outputs else None


def _violating(api: Cluster, name: str) -> bool:
    obj = api.get(GROUP, VERSION, "findingspolicies", api.namespace, name) or {}
    return bool(((obj.get("status") or {}).get("totals") or {}).get("violating"))


def _judged(api: Cluster, name: str) -> bool:
    obj = api.get(GROUP, VERSION, "imagepipelines", api.namespace, name) or {}
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "PolicyCompliant" and c["status"] in ("True", "False") for c in conditions)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


AWS_TEST_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


def prepare(api: Cluster, emulator: server.Emulator) -> None:
    """Karpenter's CRD, the pipelines and the policies the admission tests judge, in the cluster's namespace."""
    api.apply(_crd(*KARPENTER))
    api.plane.wait_established(f"{KARPENTER[2]}.{KARPENTER[0]}")
    for name, (labels, options) in PIPELINES.items():
        arn = emulator.world.add_pipeline(name=f"{name}-pipeline", scanning_enabled=True, **options)
        api.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "ImagePipeline",
                   "metadata": {"name": name, "labels": labels}, "spec": {"pipelineArn": arn}})
    for name, spec in POLICIES.items():
        api.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "FindingsPolicy",
                   "metadata": {"name": name}, "spec": spec})


@contextlib.contextmanager
def cluster_with_aws(plane: controlplane.ControlPlane, namespace: str, tmp: pathlib.Path,
                     patch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """The namespace on the real control plane, with the AWS test environment (module scope comes before the
    function-scoped one of tests/conftest.py)."""
    for name, value in AWS_TEST_ENVIRONMENT.items():
        patch.setenv(name, value)
    with fixtures.cluster_for(plane, namespace, tmp, patch) as api:
        yield api


def operator_config(emulator: server.Emulator, port: int, tmp: pathlib.Path, namespace: str) -> runtime.Config:
    return runtime.Config(
        aws=aws_clients.Settings(default_region="us-east-1", endpoint_url=emulator.endpoint_url, workers=4),
        namespaces=(namespace,),
        webhook=admission_server.Settings(port=port, addr="127.0.0.1", cert_dir=str(tmp / "certs")),
    )


def wait_until_serving(api: Cluster, port: int) -> dict[str, str]:
    """Every pipeline's latest image known, every policy evaluated, the webhook listening; returns the images."""
    images = {name: wait_for(lambda n=name: _latest_output(api, n), what=f"{name}'s latest image")
              for name in PIPELINES}
    for policy in POLICIES:
        wait_for(lambda p=policy: _violating(api, p), what=f"{policy} evaluated")
    for name in PIPELINES:  # admission reads the same verdicts: every pipeline judged by its policy
        wait_for(lambda n=name: _judged(api, n), timeout=30, what=f"{name} judged (PolicyCompliant known)")
    wait_for(lambda: _listening(port), what="the webhook listening")
    return images


@pytest.fixture(scope="module")
def gate(control_plane: controlplane.ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    tmp = tmp_path_factory.mktemp("admission")
    with pytest.MonkeyPatch.context() as patch, server.Emulator(seed=7, pipelines=0) as emulator, \
            cluster_with_aws(control_plane, NAMESPACE, tmp, patch) as api:
        prepare(api, emulator)
        port = _free_port()
        with runner.InThread(operator_config(emulator, port, tmp, api.namespace)):
            images = wait_until_serving(api, port)
            yield Gate(api=api, port=port, ca=tmp / "certs" / "ca.crt", images=images)
