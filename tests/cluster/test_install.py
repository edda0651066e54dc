"""Both ways to install, Helm (deploy/helm/imagescan-operator) and Kustomize (deploy/, deploy/webhook/,
deploy/monitoring/, the deploy/events component), are accepted object by object by a real kube-apiserver
(server-side dry run, after their CRDs are applied for real) and install the same things: every object of one
is in the other, equal but for the differences listed in INTENDED_DIFFERENCES.

helm comes from hack/helm.sh (built from the Go module proxy once, cached); the API server is a control plane of
this module's own, because it also gets stand-ins for the cert-manager and Prometheus Operator CRDs.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from imagescan.models import imagepipeline
from tests.support import controlplane
from tests.support.fixtures import own_control_plane
from tests.unit.test_packaging import BLOCK_SANDBOX

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "imagescan-operator"
NAMESPACE = "imagescan-system"
Obj = dict[str, Any]
Key = tuple[str, str, str]
"""kind, namespace ('' when cluster-scoped), name."""

# Labels only Helm sets (release bookkeeping); Kustomize's labels must all be there too.
HELM_ONLY_LABELS = {"app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by",
                    "helm.sh/chart"}
INTENDED_DIFFERENCES: dict[Key, str] = {
    ("Namespace", "", NAMESPACE): "a chart does not own its namespace: `helm install -n imagescan-system "
                                  "--create-namespace` (Kustomize's also enforces the restricted Pod Security "
                                  "Standard; label the namespace yourself with Helm)",
    ("ServiceAccount", NAMESPACE, "imagescan-operator"): "Kustomize ships a placeholder IRSA role ARN to edit; the "
                                                         "chart writes the annotation only when aws.roleArn is set "
                                                         "(empty: EKS Pod Identity)",
}


# --- Rendering -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm() -> str:
    script = ROOT / "hack" / "helm.sh"
    cached = subprocess.run(["bash", str(script), "--print"], capture_output=True, text=True, check=False)
    if cached.returncode == 0:
        return cached.stdout.strip()
    if shutil.which("go") is None:
        if controlplane.environment_says_required():
            pytest.fail("no Go toolchain to build helm (hack/helm.sh)", pytrace=False)
        pytest.skip("no Go toolchain to build helm (hack/helm.sh)")
    built = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1200, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    return built.stdout.strip().splitlines()[-1]


def _docs(text: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_helm(helm: str, *settings: str) -> list[Obj]:
    args = [helm, "template", "imagescan", str(CHART), "--namespace", NAMESPACE, "--include-crds"]
    for setting in settings:
        args += ["--set", setting]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return _docs(result.stdout)


def render_kustomize(folder: str) -> list[Obj]:
    result = subprocess.run(["kubectl", "kustomize", str(ROOT / folder)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return _docs(result.stdout)


def render_with_events(folder: str, tmp_path: pathlib.Path) -> list[Obj]:
    """``folder`` with the deploy/events component, as a user's overlay adds it (kustomize takes only relative
    paths)."""
    overlay = {"resources": [os.path.relpath(ROOT / folder, tmp_path)],
               "components": [os.path.relpath(ROOT / "deploy" / "events", tmp_path)]}
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    result = subprocess.run(["kubectl", "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    return _docs(result.stdout)


def args_of(docs: list[Obj]) -> list[str]:
    (container,) = by_key(docs)[("Deployment", NAMESPACE, "imagescan-operator")]["spec"]["template"]["spec"][
        "containers"]
    return list(container["args"])


def key(doc: Obj) -> Key:
    return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]


def by_key(docs: list[Obj]) -> dict[Key, Obj]:
    keyed = {key(doc): doc for doc in docs}
    assert len(keyed) == len(docs), "the same object twice"
    return keyed


# --- The real API server ---------------------------------------------------------------------------------------


def _stand_in_crd(group: str, kind: str, plural: str) -> Obj:
    """A CRD that accepts any spec: enough for the server to check apiVersion/kind/metadata of our cert-manager
    and ServiceMonitor objects, not their fields (their real schemas are not available here)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
    }


STAND_INS = [_stand_in_crd("cert-manager.io", "Issuer", "issuers"),
             _stand_in_crd("cert-manager.io", "Certificate", "certificates"),
             _stand_in_crd("monitoring.coreos.com", "ServiceMonitor", "servicemonitors")]


class Server:
    def __init__(self, plane: controlplane.ControlPlane, folder: pathlib.Path) -> None:
        self.plane = plane
        self.folder = folder
        self.kubeconfig = plane.write_kubeconfig(folder / "kubeconfig")

    def kubectl(self, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), "--cache-dir",
                               str(self.folder / "kubectl-cache"), *args],
                              input=stdin, capture_output=True, text=True, timeout=120, check=False)

    def dry_run(self, docs: list[Obj]) -> None:
        """CRDs and the Namespace for real (a dry-run CR needs its CRD, a namespaced object its namespace), then
        every object with a server-side dry run: admission, defaulting and validation as a real install."""
        for doc in docs:
            if doc["kind"] in ("CustomResourceDefinition", "Namespace"):
                self.plane.apply_yaml(yaml.safe_dump(doc))
        rest = [doc for doc in docs if doc["kind"] not in ("CustomResourceDefinition", "Namespace")]
        result = self.kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=imagescan-install",
                              "-f", "-", stdin=yaml.safe_dump_all(rest))
        assert result.returncode == 0, result.stderr
        accepted = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
        assert len(accepted) == len(rest), result.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    plane = own_control_plane()
    with plane:
        for crd in STAND_INS:
            plane.apply(crd)
            plane.wait_established(crd["metadata"]["name"])
        plane.create_namespace(NAMESPACE)
        yield Server(plane, tmp_path_factory.mktemp("install"))


def _ca_bundle(server: Server) -> str:
    assert server.plane.pki is not None
    return base64.b64encode(server.plane.pki.ca.read_bytes()).decode()


# --- Every install is accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["deploy", "deploy/webhook", "deploy/monitoring"])
def test_kustomize_install_is_accepted(server: Server, folder: str) -> None:
    server.dry_run(render_kustomize(folder))


# deploy/events' placeholder, so that the two installs compare equal.
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/imagescan-events"
HELM_VARIANTS: dict[str, list[str]] = {
    "defaults": [],
    "webhook with cert-manager": ["webhook.enabled=true"],
    "webhook with your ClusterIssuer": ["webhook.enabled=true", "webhook.certManager.issuerRef.kind=ClusterIssuer",
                                        "webhook.certManager.issuerRef.name=my-ca"],
    "servicemonitor": ["metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prometheus"],
    "namespaces, role, Fail, three replicas": [
        "watchNamespaces={team-a,team-b}", "aws.roleArn=arn:aws:iam::111122223333:role/imagescan", "tick=5",
        "workers=20", "logFormat=text", "replicaCount=3", "webhook.enabled=true", "webhook.failurePolicy=Fail"],
    "one replica, no leader election": ["replicaCount=1", "leaderElection.enabled=false",
                                        "metrics.service.enabled=false", "aws.region="],
    "push intake": [f"events.queueUrl={QUEUE_URL}", "events.safetyNet=1h30m",
                    "events.sqsEndpointUrl=https://sqs.us-east-1.amazonaws.com"],
}


@pytest.mark.parametrize("variant", list(HELM_VARIANTS))
def test_helm_install_is_accepted(server: Server, helm: str, variant: str) -> None:
    server.dry_run(render_helm(helm, *HELM_VARIANTS[variant]))


def test_helm_webhook_with_a_secret_of_yours_is_accepted(server: Server, helm: str) -> None:
    docs = render_helm(helm, "webhook.enabled=true", "webhook.certManager.enabled=false",
                       "webhook.existingSecret=my-webhook-tls", f"webhook.caBundle={_ca_bundle(server)}")
    server.dry_run(docs)
    assert not [d for d in docs if d["kind"] in ("Issuer", "Certificate")]
    webhooks = by_key(docs)[("ValidatingWebhookConfiguration", "", "imagescan-findingspolicy")]
    assert "annotations" not in webhooks["metadata"]
    assert all(w["clientConfig"]["caBundle"] == _ca_bundle(server) for w in webhooks["webhooks"])
    pod = by_key(docs)[("Deployment", NAMESPACE, "imagescan-operator")]["spec"]["template"]["spec"]
    assert {"name": "webhook-tls", "secret": {"secretName": "my-webhook-tls"}} in pod["volumes"]


def test_helm_values_reach_the_deployment(helm: str) -> None:
    docs = by_key(render_helm(helm, *HELM_VARIANTS["namespaces, role, Fail, three replicas"]))
    deployment = docs[("Deployment", NAMESPACE, "imagescan-operator")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["--namespace=team-a", "--namespace=team-b", "--http-port=8080", "--log-format=text",
                                 "--leader-election", "--tick=5", "--workers=20", "--webhook-port=9443",
                                 "--webhook-cert=/certs/tls.crt", "--webhook-key=/certs/tls.key"]
    assert deployment["spec"]["replicas"] == 3
    account = docs[("ServiceAccount", NAMESPACE, "imagescan-operator")]
    role = "arn:aws:iam::111122223333:role/imagescan"
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": role}
    webhooks = docs[("ValidatingWebhookConfiguration", "", "imagescan-findingspolicy")]["webhooks"]
    assert {w["failurePolicy"] for w in webhooks} == {"Fail"}


def test_helm_passes_the_events_flags_only_when_a_queue_is_set(helm: str) -> None:
    assert not [arg for arg in args_of(render_helm(helm)) if arg.startswith(("--events", "--sqs"))]
    # Without a queue the operator has no use for the other two.
    assert args_of(render_helm(helm, "events.safetyNet=1h", "events.sqsEndpointUrl=http://localhost:4566")) == (
        args_of(render_helm(helm)))
    assert args_of(render_helm(helm, f"events.queueUrl={QUEUE_URL}"))[-2:] == [
        f"--events-queue-url={QUEUE_URL}", "--events-safety-net=6h"]
    assert args_of(render_helm(helm, *HELM_VARIANTS["push intake"]))[-3:] == [
        f"--events-queue-url={QUEUE_URL}", "--events-safety-net=1h30m",
        "--sqs-endpoint-url=https://sqs.us-east-1.amazonaws.com"]


@pytest.mark.parametrize("safety_net", ["1m", "60s", "0.5m", "59.999s", "1h30m", "168h", "167h60m", "168h1ms"])
def test_helm_bounds_the_safety_net_as_the_operator_does(helm: str, safety_net: str) -> None:
    """The chart refuses what `imagescan run --events-safety-net` would exit on at start-up, and only that."""
    try:
        imagepipeline.bounded_interval(safety_net)
    except ValueError:
        operator_takes_it = False
    else:
        operator_takes_it = True
    result = subprocess.run([helm, "template", "imagescan", str(CHART), "--set", f"events.safetyNet={safety_net}"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert (result.returncode == 0) == operator_takes_it, result.stderr


def test_helm_safety_net_pattern_is_the_operators() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["events"]["properties"]["safetyNet"]["pattern"] == imagepipeline.DURATION_PATTERN


def test_helm_one_replica_without_leader_election(helm: str) -> None:
    docs = by_key(render_helm(helm, *HELM_VARIANTS["one replica, no leader election"]))
    (container,) = docs[("Deployment", NAMESPACE, "imagescan-operator")]["spec"]["template"]["spec"]["containers"]
    assert "--leader-election" not in container["args"]
    assert not any(name == "AWS_REGION" for name in (e["name"] for e in container["env"]))
    # Nothing that only makes sense with more replicas or a Lease.
    kinds = {k[0] for k in docs}
    assert not kinds & {"PodDisruptionBudget", "Role", "RoleBinding", "Service"}


def test_helm_refuses_replicas_that_would_all_reconcile(helm: str) -> None:
    result = subprocess.run([helm, "template", "imagescan", str(CHART), "--set", "replicaCount=2",
                             "--set", "leaderElection.enabled=false"], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode != 0
    assert "leaderElection.enabled" in result.stderr


@pytest.mark.parametrize(("setting", "complaint"), [
    ("replicas=3", "additional properties 'replicas' not allowed"),
    ("webhook.failurePolicy=fail", "must be one of 'Ignore', 'Fail'"),
    ("aws.roleArn=imagescan-operator", "/aws/roleArn"),
    # The stack's QueueArn output instead of its QueueUrl.
    ("events.queueUrl=arn:aws:sqs:us-east-1:123456789012:imagescan-events", "/events/queueUrl"),
    ("events.safetyNet=1d", "/events/safetyNet"),
    # The form is right, the bound (imagescan.checks, as the operator's) is not.
    ("events.safetyNet=59s", "events.safetyNet 59s is outside 1m..168h"),
])
def test_helm_refuses_values_it_does_not_know(helm: str, setting: str, complaint: str) -> None:
    """values.schema.json (and imagescan.checks): a misspelt or wrong value fails the install instead of being
    silently ignored, or making every new pod exit at start-up."""
    result = subprocess.run([helm, "template", "imagescan", str(CHART), "--set", setting], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert complaint in result.stderr


@pytest.mark.parametrize("settings", [[], ["webhook.enabled=true"], ["metrics.serviceMonitor.enabled=true"]],
                         ids=["defaults", "webhook", "servicemonitor"])
def test_helm_lint(helm: str, settings: list[str]) -> None:
    args = [helm, "lint", "--strict", str(CHART)]
    for setting in settings:
        args += ["--set", setting]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Helm and Kustomize install the same things ----------------------------------------------------------------


def _comparable(doc: Obj) -> tuple[Obj, dict[str, str]]:
    """The object without its metadata labels (compared apart: Kustomize's must all be in Helm's), and those."""
    doc = copy.deepcopy(doc)
    labels = doc["metadata"].pop("labels", {}) or {}
    template = (doc.get("spec") or {}).get("template", {}).get("metadata")
    if template is not None:
        template_labels = template.pop("labels", {})
        labels = {**labels, **{f"template:{k}": v for k, v in template_labels.items()}}
        # Kustomize's strategic merge puts an overlay's ports, mounts and volumes first, Helm's template after;
        # their order means nothing (env's does: $(VAR) references, so env stays as it is).
        pod = doc["spec"]["template"]["spec"]
        pod["volumes"] = sorted(pod.get("volumes", []), key=lambda v: v["name"])
        for container in pod["containers"]:
            for field in ("ports", "volumeMounts"):
                container[field] = sorted(container.get(field, []), key=lambda item: item["name"])
    return doc, labels


def _differences(helm_docs: list[Obj], kustomize_docs: list[Obj]) -> list[str]:
    helm_objects, kustomize_objects = by_key(helm_docs), by_key(kustomize_docs)
    found: list[str] = []
    for missing in sorted(set(kustomize_objects) - set(helm_objects) - set(INTENDED_DIFFERENCES)):
        found.append(f"only in Kustomize: {missing}")
    for extra in sorted(set(helm_objects) - set(kustomize_objects)):
        found.append(f"only in Helm: {extra}")
    for common in sorted(set(helm_objects) & set(kustomize_objects) - set(INTENDED_DIFFERENCES)):
        (helm_doc, helm_labels), (kustomize_doc, kustomize_labels) = (
            _comparable(helm_objects[common]), _comparable(kustomize_objects[common]))
        if helm_doc != kustomize_doc:
            found.append(f"{common} differs:\n  helm:      {helm_doc}\n  kustomize: {kustomize_doc}")
        lost = {k: v for k, v in kustomize_labels.items() if helm_labels.get(k) != v}
        if lost:
            found.append(f"{common}: Helm lacks Kustomize's labels {lost}")
        unexplained = {k.removeprefix("template:") for k in set(helm_labels) - set(kustomize_labels)}
        if unexplained - HELM_ONLY_LABELS - {"app.kubernetes.io/name"}:
            found.append(f"{common}: labels only Helm sets: {sorted(unexplained)}")
    return found


def test_helm_defaults_install_what_kustomize_does(helm: str) -> None:
    assert _differences(render_helm(helm), render_kustomize("deploy")) == []


def test_helm_webhook_installs_what_the_kustomize_overlay_does(helm: str) -> None:
    assert _differences(render_helm(helm, "webhook.enabled=true"), render_kustomize("deploy/webhook")) == []


@pytest.mark.parametrize(("folder", "settings"), [("deploy", []), ("deploy/webhook", ["webhook.enabled=true"])])
def test_helm_events_install_what_the_kustomize_component_does(server: Server, helm: str, tmp_path: pathlib.Path,
                                                              folder: str, settings: list[str]) -> None:
    helm_docs = render_helm(helm, *settings, f"events.queueUrl={QUEUE_URL}")
    kustomize_docs = render_with_events(folder, tmp_path)
    server.dry_run(kustomize_docs)
    assert _differences(helm_docs, kustomize_docs) == []
    assert f"--events-queue-url={QUEUE_URL}" in args_of(kustomize_docs)


def test_helm_servicemonitor_is_deploy_monitorings(helm: str) -> None:
    helm_monitor = by_key(render_helm(helm, "metrics.serviceMonitor.enabled=true"))[
        ("ServiceMonitor", NAMESPACE, "imagescan-operator")]
    kustomize_monitor = by_key(render_kustomize("deploy/monitoring"))[("ServiceMonitor", NAMESPACE,
                                                                       "imagescan-operator")]
    assert helm_monitor["spec"] == kustomize_monitor["spec"]


def test_the_intended_differences_are_still_differences(helm: str) -> None:
    """A listed difference that went away should leave the list."""
    helm_objects, kustomize_objects = by_key(render_helm(helm)), by_key(render_kustomize("deploy"))
    assert ("Namespace", "", NAMESPACE) in kustomize_objects and ("Namespace", "", NAMESPACE) not in helm_objects
    account = ("ServiceAccount", NAMESPACE, "imagescan-operator")
    assert "eks.amazonaws.com/role-arn" in kustomize_objects[account]["metadata"]["annotations"]
    assert "annotations" not in helm_objects[account]["metadata"]
    # Otherwise the same object.
    kustomize_account = copy.deepcopy(kustomize_objects[account])
    del kustomize_account["metadata"]["annotations"]
    assert _comparable(helm_objects[account])[0] == _comparable(kustomize_account)[0]


# --- The image's command, without the sandbox extra -------------------------------------------------------------


def test_the_images_command_runs_without_the_sandbox_extra(server: Server) -> None:
    """`imagescan run` with the Deployment's args, in an interpreter where kmock and celpy cannot be imported (as
    in the image), as the shipped ServiceAccount: it becomes ready, serves metrics, holds the Lease, and stops
    cleanly. Catches a sandbox dependency imported lazily at run time, which import checks cannot."""
    plane = server.plane
    for crd in sorted((ROOT / "crds").glob("*.imagescan.io.yaml")):
        plane.apply_yaml(crd)
    plane.apply_yaml(ROOT / "deploy" / "base" / "leader-election-rbac.yaml")
    deployment = yaml.safe_load((ROOT / "deploy" / "base" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    port = controlplane.free_port()
    args = [arg.replace("--http-port=8080", f"--http-port={port}") for arg in container["args"]]
    with controlplane.operator_identity(plane, server.folder) as kubeconfig:
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "POD_NAME": "imagescan-operator-0",
               "POD_NAMESPACE": NAMESPACE, "AWS_REGION": "us-east-1"}
        log = server.folder / "operator.log"
        code = BLOCK_SANDBOX + f"from imagescan import cli; sys.exit(cli.main({['run', *args]!r}))"
        with log.open("w") as out:
            process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=out, stderr=subprocess.STDOUT,
                                       cwd=ROOT)
        try:
            deadline, ready = time.monotonic() + 60, None
            while time.monotonic() < deadline and ready != 200 and process.poll() is None:
                time.sleep(0.5)
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                        ready = answer.status
                except OSError:
                    continue
            assert ready == 200, log.read_text()[-3000:]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                assert b"imagescan_" in answer.read()
            lease = plane.get("coordination.k8s.io", "v1", "leases", NAMESPACE, "imagescan-operator")
            assert lease is not None and lease["spec"]["holderIdentity"] == "imagescan-operator-0"
        finally:
            process.terminate()
            process.wait(30)
        text = log.read_text()
        assert process.returncode == 0, text[-3000:]
        assert "kmock" not in text and "celpy" not in text
        # --log-format=json: every line is a JSON object.
        assert all(json.loads(line) for line in text.splitlines() if line.strip())
