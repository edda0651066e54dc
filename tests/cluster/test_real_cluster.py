"""What only a real kube-apiserver proves: the shipped manifests are accepted as the README says to install them,
kubectl shows the printer columns and explains every field, the aggregated view/edit roles give users what they
promise, and deletion with finalizers (namespaces, the CRD itself) finishes instead of getting stuck.

The operator runs as the shipped ServiceAccount with the shipped ClusterRole (any 403 fails the test, see
tests/support/fixtures.py).
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest

from imagescan import GROUP, VERSION, runner
from imagescan.aws import clients as aws_clients
from imagescan.emulator import server
from imagescan.handlers import runtime
from tests.admission.conftest import AWS_TEST_ENVIRONMENT
from tests.conftest import ROOT
from tests.integration import harness
from tests.integration.harness import wait_for
from tests.support.fixtures import Cluster, cluster_for, own_control_plane

PLURAL = "imagepipelines"


def kubectl(kubeconfig: pathlib.Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    cache = kubeconfig.parent / "kubectl-cache"
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), *args],
                          input=stdin, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def emulator() -> Iterator[server.Emulator]:
    with server.Emulator(seed=3, pipelines=0) as emu:
        yield emu


def operator_config(emulator: server.Emulator, namespace: str) -> runtime.Config:
    return runtime.Config(
        aws=aws_clients.Settings(default_region="us-east-1", endpoint_url=emulator.endpoint_url, workers=4),
        namespaces=(namespace,),
    )


@pytest.fixture
def operator(cluster: Cluster, emulator: server.Emulator) -> Iterator[runner.InThread]:
    with runner.InThread(operator_config(emulator, cluster.namespace)) as running:
        yield running


@pytest.fixture
def pipelines(operator: runner.InThread, cluster: Cluster,
              cluster_client: kubernetes.client.ApiClient) -> harness.Pipelines:
    return harness.Pipelines(cluster_client, cluster.namespace)


# --- Installing as the README says ---------------------------------------------------------------------------


def test_crds_and_the_whole_base_install_apply_server_side(cluster: Cluster) -> None:
    """README: `kubectl apply -k crds/` and `kubectl apply -k deploy/`; the real server validates every
    structural schema, CEL rule and its cost, and every manifest (Deployment included: stored, never run)."""
    for folder in ("crds", "deploy"):
        result = kubectl(cluster.kubeconfig, "apply", "--server-side", "--force-conflicts", "-k", str(ROOT / folder))
        assert result.returncode == 0, result.stderr
    crds = kubernetes.client.ApiextensionsV1Api(cluster.plane.admin)
    for name in ("imagepipelines.imagescan.io", "findingspolicies.imagescan.io"):
        conditions = {c.type: c.status for c in crds.read_custom_resource_definition(name).status.conditions}
        assert conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True"
        assert conditions.get("NonStructuralSchema") is None
    deployment = cluster.get("apps", "v1", "deployments", "imagescan-system", "imagescan-operator")
    assert deployment is not None


def test_cel_rule_refuses_a_spec_without_a_pipeline_through_kubectl(cluster: Cluster) -> None:
    manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ImagePipeline", "metadata": {"name": "nothing"},
                "spec": {"scanning": {"enabled": True}}}
    result = kubectl(cluster.kubeconfig, "apply", "-f", "-", stdin=json.dumps(manifest))
    assert result.returncode != 0
    assert "set spec.pipelineArn, or spec.pipelineName" in result.stderr
    assert cluster.get(GROUP, VERSION, PLURAL, cluster.namespace, "nothing") is None


def test_printer_columns_and_explain_through_the_real_server(
        cluster: Cluster, emulator: server.Emulator, pipelines: harness.Pipelines) -> None:
    arn = emulator.world.add_pipeline(name="shown", container=False, scanning_enabled=True,
                                      findings={"CRITICAL": 2, "HIGH": 3, "MEDIUM": 1, "LOW": 4})
    pipelines.create("shown", {"pipelineArn": arn})
    wait_for(lambda: ((pipelines.get("shown") or {}).get("status") or {}).get("findings"), what="findings")
    pipelines.wait_ready("shown")

    listed = kubectl(cluster.kubeconfig, "get", "imagepipelines")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "SCANNING", "CRITICAL", "HIGH", "TOTAL", "READY", "AGE"]
    assert row.split()[:6] == ["shown", "true", "2", "3", "10", "True"]
    wide = kubectl(cluster.kubeconfig, "get", "ibp", "-o", "wide").stdout.splitlines()[0].split()
    assert {"MEDIUM", "LOW", "LATEST-IMAGE", "REASON"} <= set(wide)
    short = kubectl(cluster.kubeconfig, "get", "imagescan")  # the category
    assert short.returncode == 0 and "imagepipeline.imagescan.io/shown" in short.stdout

    explained = kubectl(cluster.kubeconfig, "explain", "imagepipeline.spec")
    assert explained.returncode == 0, explained.stderr
    for field in ("pipelineArn", "pipelineName", "region", "scanning", "managementPolicy", "deletionPolicy",
                  "resyncInterval", "findings"):
        assert f"{field}\t" in explained.stdout or f"  {field} " in explained.stdout, field
    top = kubectl(cluster.kubeconfig, "explain", "imagepipeline.status.findings.top")
    assert top.returncode == 0 and "inspectorScore" in top.stdout
    policy = kubectl(cluster.kubeconfig, "explain", "findingspolicy.spec.exemptions")
    assert policy.returncode == 0 and "vulnerabilityId" in policy.stdout


def test_findingspolicy_printer_columns(cluster: Cluster) -> None:
    cluster.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "FindingsPolicy", "metadata": {"name": "strict"},
                   "spec": {"thresholds": {"critical": 0}, "enforcement": "Deny"}})
    listed = kubectl(cluster.kubeconfig, "get", "fp")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:6] == ["NAME", "ENFORCEMENT", "PIPELINES", "VIOLATING", "READY", "AGE"]
    assert listed.stdout.split()[6:8] == ["strict", "Deny"]


def test_inspectoractivation_is_cluster_scoped_with_its_printer_columns(cluster: Cluster,
                                                                        emulator: server.Emulator) -> None:
    name = f"cols-{cluster.namespace}"[:63]
    activation = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InspectorActivation", "metadata": {"name": name},
                  "spec": {"resourceTypes": ["EC2", "ECR"]}}
    created = kubectl(cluster.kubeconfig, "apply", "--server-side", "-f", "-", stdin=json.dumps(activation))
    assert created.returncode == 0, created.stderr
    try:
        with runner.InThread(operator_config(emulator, cluster.namespace)):
            wait_for(lambda: "True" in kubectl(cluster.kubeconfig, "get", "inspectoractivation", name).stdout,
                     timeout=30, what="the activation Ready in kubectl get")
            listed = kubectl(cluster.kubeconfig, "get", "inspact", name)
            assert listed.returncode == 0, listed.stderr
            header, row = listed.stdout.splitlines()
            assert header.split() == ["NAME", "REGION", "ACCOUNT", "EC2", "ECR", "READY", "AGE"]
            assert row.split()[:6] == [name, "us-east-1", "123456789012", "ENABLED", "ENABLED", "True"]
            explained = kubectl(cluster.kubeconfig, "explain", "inspectoractivation.spec.resourceTypes")
            assert explained.returncode == 0 and "LAMBDA_CODE" in explained.stdout
            bad = dict(activation, metadata={"name": f"{name}-bad"}, spec={"resourceTypes": ["S3"]})
            refused = kubectl(cluster.kubeconfig, "apply", "--server-side", "-f", "-", stdin=json.dumps(bad))
            assert refused.returncode != 0 and "supported values" in refused.stderr.lower()
            assert kubectl(cluster.kubeconfig, "delete", "inspectoractivation", name, "--timeout=30s").returncode == 0
    finally:
        kubectl(cluster.kubeconfig, "patch", "inspectoractivation", name, "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}')
        kubectl(cluster.kubeconfig, "delete", "inspectoractivation", name, "--ignore-not-found", "--wait=false")


# --- The aggregated roles -------------------------------------------------------------------------------------


def _bind(cluster: Cluster, role: str) -> None:
    cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": f"jane-{role}"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane"}]})


def _aggregated(cluster: Cluster, role: str) -> bool:
    rules = (cluster.get("rbac.authorization.k8s.io", "v1", "clusterroles", None, role) or {}).get("rules") or []
    return any(GROUP in (rule.get("apiGroups") or []) for rule in rules)


def _as_jane(cluster: Cluster, method: str, path: str, body: Any = None,
             content_type: str = "application/json") -> int:
    status, _ = cluster.plane.http(method, path, body, token=cluster.plane.user_token, content_type=content_type)
    return status


def test_view_and_edit_roles_aggregate_what_they_promise(cluster: Cluster) -> None:
    for role in ("view", "edit"):  # kube-controller-manager's clusterrole-aggregation controller fills them in
        wait_for(lambda r=role: _aggregated(cluster, r), what=f"imagescan rules aggregated into {role}")
    collection = f"/apis/{GROUP}/{VERSION}/namespaces/{cluster.namespace}/{PLURAL}"
    pipeline = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ImagePipeline", "metadata": {"name": "janes"},
                "spec": {"pipelineName": "janes"}}
    assert _as_jane(cluster, "GET", collection) == 403  # nothing bound yet

    _bind(cluster, "view")
    wait_for(lambda: _as_jane(cluster, "GET", collection) == 200, what="view lets jane list")
    assert _as_jane(cluster, "GET", f"/apis/{GROUP}/{VERSION}/namespaces/{cluster.namespace}/findingspolicies") == 200
    assert _as_jane(cluster, "POST", collection, pipeline) == 403
    assert _as_jane(cluster, "GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}") == 403  # other namespaces: no

    _bind(cluster, "edit")
    wait_for(lambda: _as_jane(cluster, "POST", collection, pipeline) == 201, what="edit lets jane create")
    # Activating a paid service account-wide, with a role of one's choosing, stays a cluster admin's call.
    activation = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InspectorActivation",
                  "metadata": {"name": "janes"}, "spec": {}}
    assert _as_jane(cluster, "POST", f"/apis/{GROUP}/{VERSION}/inspectoractivations", activation) == 403
    # So is the grant of roles: a namespace's editors cannot annotate their own Namespace.
    assert _as_jane(cluster, "PATCH", f"/api/v1/namespaces/{cluster.namespace}",
                    {"metadata": {"annotations": {"imagescan.io/allowed-role-arns": "arn:aws:iam::1:role/x"}}},
                    "application/merge-patch+json") == 403
    assert _as_jane(cluster, "PATCH", f"{collection}/janes", {"spec": {"region": "eu-west-1"}},
                    "application/merge-patch+json") == 200
    # Status stays the operator's.
    assert _as_jane(cluster, "PATCH", f"{collection}/janes/status", {"status": {"observedGeneration": 9}},
                    "application/merge-patch+json") == 403
    assert _as_jane(cluster, "DELETE", f"{collection}/janes") == 200


# --- Conflicts, deletion and finalizers -----------------------------------------------------------------------


def test_stale_update_is_a_conflict_and_the_operator_follows_the_fresh_one(
        cluster: Cluster, emulator: server.Emulator, pipelines: harness.Pipelines) -> None:
    arn = emulator.world.add_pipeline(name="raced", container=False, scanning_enabled=False, findings=1)
    pipelines.create("raced", {"pipelineArn": arn})
    ready = pipelines.wait_ready("raced")
    stale = json.loads(json.dumps(ready))
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{cluster.namespace}/{PLURAL}/raced"
    fresh = pipelines.patch("raced", {"spec": {"scanning": {"enabled": False}}})
    stale["spec"]["scanning"] = {"enabled": True}
    code, answer = cluster.plane.http("PUT", path, stale)
    assert code == 409 and answer["reason"] == "Conflict"
    wait_for(lambda: not emulator.world.pipeline(arn)["imageScanningConfiguration"]["imageScanningEnabled"],
             what="the fresh spec applied")
    done = wait_for(lambda: (o := pipelines.get("raced")) and o["status"].get("observedGeneration")
                    == fresh["metadata"]["generation"] and o, what="status of the fresh generation")
    assert done["spec"]["scanning"] == {"enabled": False}


def test_deleting_the_namespace_disables_scanning_and_finishes(
        cluster: Cluster, emulator: server.Emulator, pipelines: harness.Pipelines) -> None:
    kept = emulator.world.add_pipeline(name="ns-keep", container=False, scanning_enabled=False, findings=1)
    dropped = emulator.world.add_pipeline(name="ns-drop", container=False, scanning_enabled=False, findings=1)
    pipelines.create("keep", {"pipelineArn": kept})
    pipelines.create("drop", {"pipelineArn": dropped, "deletionPolicy": "Disable"})
    pipelines.wait_ready("keep")
    pipelines.wait_ready("drop")

    started = time.monotonic()
    kubernetes.client.CoreV1Api(cluster.plane.admin).delete_namespace(cluster.namespace)
    wait_for(lambda: cluster.get("", "v1", "namespaces", None, cluster.namespace) is None, timeout=90,
             what="the namespace gone (namespace controller, then the operator's finalizer)")
    assert time.monotonic() - started < 90
    assert emulator.world.pipeline(dropped)["imageScanningConfiguration"]["imageScanningEnabled"] is False
    assert emulator.world.pipeline(kept)["imageScanningConfiguration"]["imageScanningEnabled"] is True


@pytest.mark.xfail(strict=True, reason=(
    "kopf 1.45.2 never serves a namespace it first sees Terminating (observation.revise_namespaces only logs the "
    "blockers), so with -n a namespace deleted while the operator is down stays Terminating: README says so; "
    "the default -A is not affected (test_restarted_operator_finishes_a_terminating_namespace)"))
def test_with_namespaces_listed_a_restarted_operator_finishes_a_terminating_namespace(
        cluster: Cluster, emulator: server.Emulator, cluster_client: kubernetes.client.ApiClient) -> None:
    arn = emulator.world.add_pipeline(name="late", container=False, scanning_enabled=False, findings=1)
    pipelines = harness.Pipelines(cluster_client, cluster.namespace)
    with runner.InThread(operator_config(emulator, cluster.namespace)):
        pipelines.create("late", {"pipelineArn": arn, "deletionPolicy": "Disable"})
        pipelines.wait_ready("late")
    kubernetes.client.CoreV1Api(cluster.plane.admin).delete_namespace(cluster.namespace)
    wait_for(lambda: (pipelines.get("late") or {}).get("metadata", {}).get("deletionTimestamp"), timeout=60,
             what="the namespace controller deleting the pipeline")
    wait_for(lambda: any(c["type"] == "NamespaceFinalizersRemaining" and c["status"] == "True" for c in (
        cluster.get("", "v1", "namespaces", None, cluster.namespace) or {}).get("status", {}).get("conditions", [])),
        timeout=60, what="the namespace reporting the finalizer that holds it")
    with runner.InThread(operator_config(emulator, cluster.namespace)):
        wait_for(lambda: cluster.get("", "v1", "namespaces", None, cluster.namespace) is None, timeout=20,
                 what="the namespace gone once the operator is back")


# --- Cluster-wide (the default, -A): a control plane of the module's own -------------------------------------


@pytest.fixture(scope="module")
def own_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A control plane of this module's own: a cluster-wide operator would take other tests' objects, and
    deleting a CRD deletes every object of it, cluster-wide."""
    plane = own_control_plane()
    tmp = tmp_path_factory.mktemp("own-plane")
    with pytest.MonkeyPatch.context() as patch, plane, cluster_for(plane, "cluster-wide", tmp, patch) as seen:
        for name, value in AWS_TEST_ENVIRONMENT.items():
            patch.setenv(name, value)
        yield seen


def clusterwide_config(emulator: server.Emulator) -> runtime.Config:
    return runtime.Config(
        aws=aws_clients.Settings(default_region="us-east-1", endpoint_url=emulator.endpoint_url, workers=4),
        clusterwide=True,
    )


def test_restarted_operator_finishes_a_terminating_namespace(own_plane: Cluster, emulator: server.Emulator) -> None:
    """The real server keeps a namespace Terminating while an object has a finalizer; the operator, once back,
    applies the deletion policy and lets it finish."""
    namespace = own_plane.plane.create_namespace("deleted-while-down")
    arn = emulator.world.add_pipeline(name="late", container=False, scanning_enabled=False, findings=1)
    with contextlib.closing(own_plane.client()) as client:
        pipelines = harness.Pipelines(client, namespace)
        with runner.InThread(clusterwide_config(emulator)):
            pipelines.create("late", {"pipelineArn": arn, "deletionPolicy": "Disable"})
            pipelines.wait_ready("late")
        kubernetes.client.CoreV1Api(own_plane.plane.admin).delete_namespace(namespace)
        wait_for(lambda: (pipelines.get("late") or {}).get("metadata", {}).get("deletionTimestamp"), timeout=60,
                 what="the namespace controller deleting the pipeline")
        time.sleep(3)  # however long it waits, the finalizer holds
        assert pipelines.get("late") is not None
        assert (own_plane.get("", "v1", "namespaces", None, namespace) or {})["status"]["phase"] == "Terminating"
        with runner.InThread(clusterwide_config(emulator)):
            wait_for(lambda: own_plane.get("", "v1", "namespaces", None, namespace) is None, timeout=60,
                     what="the namespace gone once the operator is back")
    assert emulator.world.pipeline(arn)["imageScanningConfiguration"]["imageScanningEnabled"] is False


def test_uninstall_in_the_documented_order_finishes(own_plane: Cluster, emulator: server.Emulator) -> None:
    """README: delete the ImagePipelines first (deletion policies applied), then the CRD.

    Deleting the CRD first leaves it Terminating: while it terminates, kube-apiserver's discovery drops the
    "patch" verb of its resource, and kopf stops serving a resource it cannot patch, so the finalizers stay.
    """
    arn = emulator.world.add_pipeline(name="uninstalled", container=False, scanning_enabled=False, findings=1)
    with contextlib.closing(own_plane.client()) as client:
        pipelines = harness.Pipelines(client, own_plane.namespace)
        with runner.InThread(clusterwide_config(emulator)):
            pipelines.create("gone", {"pipelineArn": arn, "deletionPolicy": "Disable"})
            pipelines.wait_ready("gone")
            uninstall = kubectl(own_plane.kubeconfig, "delete", "imagepipelines", "--all", "-A", "--wait=true",
                                "--timeout=60s")
            assert uninstall.returncode == 0, uninstall.stderr
            crd = kubectl(own_plane.kubeconfig, "delete", "-k", str(ROOT / "crds"), "--wait=true", "--timeout=60s")
            assert crd.returncode == 0, crd.stderr
    assert own_plane.get("apiextensions.k8s.io", "v1", "customresourcedefinitions", None,
                         f"{PLURAL}.{GROUP}") is None
    assert emulator.world.pipeline(arn)["imageScanningConfiguration"]["imageScanningEnabled"] is False
