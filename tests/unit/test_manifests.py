"""The deploy/ manifests, the IAM policy and the examples are consistent with the CRD and the operator."""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from imagescan.apiserver import schema
from imagescan.models import resources
from imagescan.models.imagepipeline import ImagePipelineSpec

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
BY_KIND = {resource.kind: resource for resource in resources.ALL}
CRD_PATH = ROOT / "crds" / "imagepipelines.imagescan.io.yaml"
GROUP = "imagescan.io"

# Verbs the operator (kopf + our handlers) uses, per resource: watching, finalizers/annotations, status
# writes, and Events.
NEEDED: dict[tuple[str, str], set[str]] = {
    (GROUP, "imagepipelines"): {"get", "list", "watch", "patch", "update"},
    (GROUP, "imagepipelines/status"): {"get", "patch", "update"},
    (GROUP, "findingspolicies"): {"get", "list", "watch", "patch", "update"},
    (GROUP, "findingspolicies/status"): {"get", "patch", "update"},
    (GROUP, "inspectoractivations"): {"get", "list", "watch", "patch", "update"},
    (GROUP, "inspectoractivations/status"): {"get", "patch", "update"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    ("", "namespaces"): {"list", "watch"},
    ("", "events"): {"create"},
    ("events.k8s.io", "events"): {"create"},
}


def _docs(path: pathlib.Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _deploy_docs() -> list[dict[str, Any]]:
    """What `kubectl apply -k deploy/` would apply."""
    rendered = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], check=True, capture_output=True, text=True)
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _crd_schema(kind: str = "ImagePipeline") -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "crds" / f"{BY_KIND[kind].plural}.imagescan.io.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    return dict(version["schema"]["openAPIV3Schema"])


def test_there_are_examples() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"imagepipeline-ami.yaml", "imagepipeline-container.yaml", "imagepipeline-observe.yaml",
            "findingspolicy.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses_with_the_models(path: pathlib.Path) -> None:
    (doc,) = _docs(path)
    assert doc["apiVersion"] == f"{GROUP}/v1alpha1"
    spec = BY_KIND[doc["kind"]].spec.model_validate(doc["spec"])
    assert not isinstance(spec, ImagePipelineSpec) or spec.pipeline_arn or spec.pipeline_name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_the_crd(path: pathlib.Path) -> None:
    (doc,) = _docs(path)
    crd_schema = _crd_schema(doc["kind"])
    assert schema.validate_root(doc, crd_schema) == []
    # Nothing in the example is unknown to the schema (the API server would silently drop it).
    assert schema.prune_root(doc, crd_schema)["spec"] == doc["spec"]


def test_examples_cover_the_documented_cases() -> None:
    specs = {p.name: ImagePipelineSpec.model_validate(_docs(p)[0]["spec"])
             for p in EXAMPLES if p.name.startswith("imagepipeline-")}
    ami = specs["imagepipeline-ami.yaml"]
    assert ami.pipeline_arn and ami.scanning.enabled
    assert (ami.management_policy, ami.deletion_policy) == ("Manage", "Retain")
    container = specs["imagepipeline-container.yaml"]
    assert container.pipeline_name and container.region and not container.pipeline_arn
    assert container.scanning.ecr and container.scanning.ecr.repository_name and container.scanning.ecr.container_tags
    assert container.deletion_policy == "Disable"
    assert container.findings.top == 20
    assert specs["imagepipeline-observe.yaml"].management_policy == "Observe"


def test_kustomizations_list_files_that_exist() -> None:
    for folder in (DEPLOY, DEPLOY / "base", DEPLOY / "webhook"):
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        listed = {(folder / r).resolve() for r in kustomization["resources"]}
        listed |= {(folder / p["path"]).resolve() for p in kustomization.get("patches", [])}
        assert all(path.exists() for path in listed), f"{folder}: {sorted(map(str, listed))}"
        manifests = {p.resolve() for p in folder.glob("*.yaml")} - {(folder / "kustomization.yaml").resolve()}
        assert manifests <= listed, f"not in {folder}/kustomization.yaml: {sorted(p.name for p in manifests - listed)}"
    assert "../../crds" in yaml.safe_load((DEPLOY / "base" / "kustomization.yaml").read_text())["resources"]


def test_plain_install_has_no_webhook_and_the_overlay_wires_it() -> None:
    assert not [d for d in _deploy_docs() if d["kind"] == "ValidatingWebhookConfiguration"]
    rendered = subprocess.run(["kubectl", "kustomize", str(DEPLOY / "webhook")], check=True, capture_output=True,
                              text=True).stdout
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    assert _one(docs, "ValidatingWebhookConfiguration", "imagescan-findingspolicy")
    container = _one(docs, "Deployment", "imagescan-operator")["spec"]["template"]["spec"]["containers"][0]
    assert "--webhook-port=9443" in container["args"] and "--all-namespaces" in container["args"]
    assert {p["containerPort"] for p in container["ports"]} == {8080, 9443}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def _granted(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def test_operator_cluster_role_grants_what_the_operator_uses() -> None:
    role = _one(_deploy_docs(), "ClusterRole", "imagescan-operator")
    granted = _granted(role)
    for key, verbs in NEEDED.items():
        assert verbs <= granted.get(key, set()), f"{key}: missing {sorted(verbs - granted.get(key, set()))}"
    # Nothing beyond that: no peering resources (standalone), no secrets, no deletes.
    assert set(granted) == set(NEEDED)
    assert all(granted[key] == NEEDED[key] for key in NEEDED)


def test_no_wildcards_in_any_role() -> None:
    for doc in _deploy_docs():
        if doc["kind"] not in ("ClusterRole", "Role"):
            continue
        for rule in doc["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert "*" not in rule.get(field, []), f"{doc['metadata']['name']}: '*' in {field}"


def test_binding_targets_the_operator_service_account() -> None:
    docs = _deploy_docs()
    binding = _one(docs, "ClusterRoleBinding", "imagescan-operator")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "imagescan-operator",
    }
    account = _one(docs, "ServiceAccount", "imagescan-operator")
    assert binding["subjects"] == [{
        "kind": "ServiceAccount", "name": "imagescan-operator", "namespace": account["metadata"]["namespace"],
    }]
    assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]


def test_users_can_read_imagepipelines_through_aggregated_roles() -> None:
    roles = [d for d in _deploy_docs() if d["kind"] == "ClusterRole" and d["metadata"]["name"] != "imagescan-operator"]
    by_aggregate: dict[str, dict[tuple[str, str], set[str]]] = {}
    for role in roles:
        for label, value in role["metadata"].get("labels", {}).items():
            if label.startswith("rbac.authorization.k8s.io/aggregate-to-") and value == "true":
                target = by_aggregate.setdefault(label.rsplit("-", 1)[-1], {})
                for key, verbs in _granted(role).items():
                    target.setdefault(key, set()).update(verbs)
    read = {"get", "list", "watch"}
    for target in ("view", "edit", "admin"):
        assert read <= by_aggregate[target].get((GROUP, "imagepipelines"), set()), target
        assert read <= by_aggregate[target].get((GROUP, "imagepipelines/status"), set()), target
    assert not by_aggregate["view"][(GROUP, "imagepipelines")] - read, "view must stay read-only"
    for target in ("edit", "admin"):
        assert {"create", "update", "patch", "delete"} <= by_aggregate[target][(GROUP, "imagepipelines")]
        assert not by_aggregate[target][(GROUP, "imagepipelines/status")] - read, "status belongs to the operator"


def _statements() -> list[dict[str, Any]]:
    policy = json.loads((DEPLOY / "iam-policy.json").read_text())
    assert policy["Version"] == "2012-10-17"
    statements = policy["Statement"]
    assert isinstance(statements, list) and statements
    return list(statements)


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def test_iam_policy_is_valid_and_has_no_wildcard_actions() -> None:
    actions: set[str] = set()
    for statement in _statements():
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        for action in _as_list(statement["Action"]):
            assert action != "*" and not action.endswith(":*"), action
            actions.add(action)
    assert {
        "imagebuilder:GetImagePipeline", "imagebuilder:UpdateImagePipeline", "imagebuilder:ListImagePipelines",
        "imagebuilder:ListImagePipelineImages", "imagebuilder:GetImage", "imagebuilder:ListImageScanFindings",
        "imagebuilder:ListImageScanFindingAggregations",
    } <= actions


def test_iam_pipeline_writes_are_scoped_to_pipelines() -> None:
    for statement in _statements():
        actions = _as_list(statement["Action"])
        if "imagebuilder:UpdateImagePipeline" in actions or "imagebuilder:GetImagePipeline" in actions:
            assert _as_list(statement["Resource"]) == ["arn:aws:imagebuilder:*:*:image-pipeline/*"]
        if "iam:PassRole" in actions:
            assert statement["Condition"]["StringEquals"]["iam:PassedToService"] == "imagebuilder.amazonaws.com"


BASE_ARGS = ["--all-namespaces", "--http-port=8080", "--log-format=json", "--leader-election"]
SELECTOR = {"app.kubernetes.io/name": "imagescan-operator"}


def test_deployment_is_highly_available_and_hardened() -> None:
    """Two replicas (the webhook answers while one restarts; the Lease holder alone reconciles), rolled one new
    pod in before an old one goes, spread over nodes; non-root, read-only root filesystem."""
    deployment = _one(_deploy_docs(), "Deployment", "imagescan-operator")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert spec["selector"]["matchLabels"] == SELECTOR
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "imagescan-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert spread["kubernetes.io/hostname"]["labelSelector"]["matchLabels"] == SELECTOR
    assert spread["kubernetes.io/hostname"]["maxSkew"] == 1
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert container["args"] == BASE_ARGS
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_REGION"] == {"name": "AWS_REGION", "value": "us-east-1"}
    # Leader election's holder identity and the Lease's namespace, from the downward API.
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def _mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    return next(float(quantity[:-2]) * factor for unit, factor in units.items() if quantity.endswith(unit))


def test_memory_is_sized_from_the_benchmark() -> None:
    """docs/benchmarks.md measures the peak RSS at the documented scale (1,000 pipelines); the request must cover
    it and the limit leave room above it (an OOM kill loses the Lease and restarts the webhook)."""
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    peak = max(float(m) for m in re.findall(r"peak RSS of the operator process \(MiB\) \| ([\d.]+)", text))
    (container,) = _one(_deploy_docs(), "Deployment", "imagescan-operator")["spec"]["template"]["spec"]["containers"]
    resources = container["resources"]
    assert _mebibytes(resources["requests"]["memory"]) >= peak
    assert _mebibytes(resources["limits"]["memory"]) >= 2 * peak
    assert "cpu" in resources["requests"] and "cpu" not in resources.get("limits", {})


def test_disruption_budget_and_metrics_service_select_the_operator() -> None:
    docs = _deploy_docs()
    budget = _one(docs, "PodDisruptionBudget", "imagescan-operator")
    assert budget["spec"] == {"minAvailable": 1, "selector": {"matchLabels": SELECTOR}}
    service = _one(docs, "Service", "imagescan-operator-metrics")
    assert service["spec"]["selector"] == SELECTOR
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    assert budget["metadata"]["namespace"] == service["metadata"]["namespace"] == "imagescan-system"


def test_webhook_overlay_keeps_the_base_args_and_replicas() -> None:
    rendered = subprocess.run(["kubectl", "kustomize", str(DEPLOY / "webhook")], check=True, capture_output=True,
                              text=True).stdout
    deployment = _one([d for d in yaml.safe_load_all(rendered) if d], "Deployment", "imagescan-operator")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][:len(BASE_ARGS)] == BASE_ARGS
    assert deployment["spec"]["replicas"] == 2
    assert {e["name"] for e in container["env"]} >= {"POD_NAME", "POD_NAMESPACE"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_renders_everything() -> None:
    # The CRD lives outside deploy/, which kustomize's default load restrictor refuses.
    result = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("CustomResourceDefinition", "imagepipelines.imagescan.io") in kinds
    assert ("CustomResourceDefinition", "findingspolicies.imagescan.io") in kinds
    assert ("Deployment", "imagescan-operator") in kinds
    assert ("ClusterRole", "imagescan-operator") in kinds
    assert ("ClusterRoleBinding", "imagescan-operator") in kinds
    assert ("Namespace", "imagescan-system") in kinds
    rendered_crd = _one(docs, "CustomResourceDefinition", "imagepipelines.imagescan.io")
    assert rendered_crd == yaml.safe_load(CRD_PATH.read_text())


def test_iam_inspector_activation_and_assumed_roles_are_scoped() -> None:
    """InspectorActivation needs inspector2's three account calls (no resource-level permissions, so "*")
    and Inspector's service-linked role; cross-account access needs sts:AssumeRole, never on every role."""
    by_action = {action: statement for statement in _statements() for action in _as_list(statement["Action"])}
    for action in ("inspector2:BatchGetAccountStatus", "inspector2:Enable", "inspector2:Disable"):
        assert action in by_action, action
    linked = by_action["iam:CreateServiceLinkedRole"]
    assert linked["Condition"]["StringEquals"]["iam:AWSServiceName"] == "inspector2.amazonaws.com"
    assume = by_action["sts:AssumeRole"]
    assert all(":role/" in arn and not arn.endswith(":role/*") for arn in _as_list(assume["Resource"]))


def test_the_cross_account_example_is_consistent() -> None:
    """The grant (Namespace annotations), a pipeline using it and an activation through the same role."""
    from imagescan.reconcile import access
    from imagescan.reconcile import pipeline as pipeline_

    docs = _docs(ROOT / "examples" / "cross-account" / "team-payments.yaml")
    namespace, = [d for d in docs if d["kind"] == "Namespace"]
    for doc in docs:
        if doc["kind"] in BY_KIND:
            assert schema.validate_root(doc, _crd_schema(doc["kind"])) == []
    spec = ImagePipelineSpec.model_validate(next(d for d in docs if d["kind"] == "ImagePipeline")["spec"])
    rules = access.rules_from_annotations(namespace["metadata"]["annotations"])
    role = pipeline_.role_for(namespace["metadata"]["name"], rules, spec.role_arn)
    assert role is not None and role.arn == spec.role_arn and role.external_id == rules.external_id
    activation = BY_KIND["InspectorActivation"].spec.model_validate(
        next(d for d in docs if d["kind"] == "InspectorActivation")["spec"])
    assert activation.role_arn == spec.role_arn


# --- Helm chart, monitoring ------------------------------------------------------------------------------------

CHART = DEPLOY / "helm" / "imagescan-operator"


def test_chart_crds_are_the_repositorys() -> None:
    """Helm installs CRDs from the chart's crds/ folder: a copy of crds/ (`imagescan crds` writes those), which
    must not drift. `imagescan crds` writes (and `--check` checks) both."""
    ours = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.imagescan.io.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert set(chart) == set(ours)
    assert all(chart[name] == ours[name] for name in ours), "deploy/helm/imagescan-operator/crds/ is stale"


def _leaf_values(values: dict[str, Any], prefix: str = "") -> set[str]:
    leaves: set[str] = set()
    for name, value in values.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict) and value and name not in ("resources", "requests", "limits"):
            leaves |= _leaf_values(value, f"{path}.")
        else:
            leaves.add(path)
    return leaves


def test_every_helm_value_is_documented() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (DEPLOY / "README.md").read_text()
    table = readme[readme.index("## Helm values"):].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\| ([^|]+) \|", table, re.MULTILINE)
    documented = {name for cell in first_cells for name in re.findall(r"`([A-Za-z0-9_.]+)`", cell)}
    assert _leaf_values(values) - documented == set(), "add these to deploy/README.md's Helm values table"
    assert documented - _leaf_values(values) == set(), "deploy/README.md documents values the chart lacks"


def test_chart_version_is_the_operators() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{chart["appVersion"]}"' in project


def test_dashboard_queries_metrics_the_operator_exports() -> None:
    """Every metric the Grafana dashboard reads is registered by imagescan.metrics (a renamed metric must not
    leave an empty panel)."""
    dashboard = json.loads((DEPLOY / "monitoring" / "dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    used = {re.sub(r"_(total|bucket|sum|count)$", "", name) for expr in exprs
            for name in re.findall(r"\b(imagescan_[a-z_]+)\b", expr)}
    source = (ROOT / "operator" / "imagescan" / "metrics.py").read_text()
    exported = set(re.findall(r'"(imagescan_[a-z_]+)"', source))
    assert used and used <= exported, f"not exported by imagescan.metrics: {sorted(used - exported)}"
    for wanted in ("imagescan_findings", "imagescan_policy_pipelines", "imagescan_admission_decisions",
                   "imagescan_aws_calls", "imagescan_reconcile_duration_seconds", "imagescan_objects"):
        assert wanted in used, wanted
    assert any("histogram_quantile" in expr and "webhook" in expr for expr in exprs)


def test_monitoring_scrapes_the_metrics_service() -> None:
    rendered = subprocess.run(["kubectl", "kustomize", str(DEPLOY / "monitoring")], check=True, capture_output=True,
                              text=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    monitor = _one(docs, "ServiceMonitor", "imagescan-operator")
    service = _one(_deploy_docs(), "Service", "imagescan-operator-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
    dashboard = _one(docs, "ConfigMap", "imagescan-operator-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["dashboard.json"])["uid"] == "imagescan-operator"
