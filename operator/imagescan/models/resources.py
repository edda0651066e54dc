"""The custom resources the operator serves, with what the CRD needs beyond the schema."""

from __future__ import annotations

import dataclasses

from imagescan.models import base, findingspolicy, imagepipeline, inspectoractivation


@dataclasses.dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0


@dataclasses.dataclass(frozen=True)
class Resource:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    categories: tuple[str, ...]
    description: str
    spec: type[base.CRDModel]
    status: type[base.CRDModel]
    columns: tuple[PrinterColumn, ...]
    scope: str = "Namespaced"


_LATEST = ".status.findings.latestImage"

IMAGE_PIPELINE = Resource(
    kind="ImagePipeline",
    plural="imagepipelines",
    singular="imagepipeline",
    short_names=("ibp",),
    categories=("imagescan",),
    description=(
        "An EC2 Image Builder pipeline that must be scanned by Amazon Inspector. The operator keeps the "
        "pipeline's image scanning configuration as declared and summarises the findings of its latest "
        "image in status."
    ),
    spec=imagepipeline.ImagePipelineSpec,
    status=imagepipeline.ImagePipelineStatus,
    columns=(
        PrinterColumn("Scanning", "boolean", ".status.scanning.enabled", "Whether Inspector scans the pipeline"),
        PrinterColumn("Critical", "integer", f"{_LATEST}.severityCounts.critical", "Critical findings, latest image"),
        PrinterColumn("High", "integer", f"{_LATEST}.severityCounts.high", "High findings, latest image"),
        PrinterColumn("Total", "integer", f"{_LATEST}.severityCounts.total", "All findings, latest image"),
        PrinterColumn("Ready", "string", '.status.conditions[?(@.type=="Ready")].status', "Ready condition"),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation"),
        PrinterColumn("Medium", "integer", f"{_LATEST}.severityCounts.medium", "Medium findings, latest image", 1),
        PrinterColumn("Low", "integer", f"{_LATEST}.severityCounts.low", "Low findings, latest image", 1),
        PrinterColumn("Latest-Image", "string", f"{_LATEST}.version", "Version of the latest image build", 1),
        PrinterColumn(
            "Reason", "string", '.status.conditions[?(@.type=="Ready")].reason', "Why Ready is as it is", 1,
        ),
    ),
)

FINDINGS_POLICY = Resource(
    kind="FindingsPolicy",
    plural="findingspolicies",
    singular="findingspolicy",
    short_names=("fp",),
    categories=("imagescan",),
    description=(
        "Which findings the images of the selected ImagePipelines may have: per-severity thresholds, an "
        "Inspector score limit and dated exemptions, judged from the pipelines' status, and how strictly "
        "admission enforces it."
    ),
    spec=findingspolicy.FindingsPolicySpec,
    status=findingspolicy.FindingsPolicyStatus,
    columns=(
        PrinterColumn("Enforcement", "string", ".spec.enforcement", "Audit, Warn or Deny"),
        PrinterColumn("Pipelines", "integer", ".status.totals.selected", "ImagePipelines the policy selects"),
        PrinterColumn("Violating", "integer", ".status.totals.violating", "Selected pipelines breaking a rule"),
        PrinterColumn("Ready", "string", '.status.conditions[?(@.type=="Ready")].status', "Ready condition"),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation"),
    ),
)

_STATE = ".status.resourceState"

INSPECTOR_ACTIVATION = Resource(
    kind="InspectorActivation",
    plural="inspectoractivations",
    singular="inspectoractivation",
    short_names=("inspact",),
    categories=("imagescan",),
    description=(
        "Amazon Inspector activated for an account and region, for the resource types Image Builder's image "
        "scanning needs (EC2 for AMIs, ECR for container images). Cluster-scoped: activating a paid service "
        "account-wide is a cluster admin's decision. Status mirrors Inspector's BatchGetAccountStatus."
    ),
    spec=inspectoractivation.InspectorActivationSpec,
    status=inspectoractivation.InspectorActivationStatus,
    scope="Cluster",
    columns=(
        PrinterColumn("Region", "string", ".status.region", "AWS region activated"),
        PrinterColumn("Account", "string", ".status.accountId", "AWS account activated"),
        PrinterColumn("EC2", "string", f"{_STATE}.ec2.status", "Inspector EC2 scanning state"),
        PrinterColumn("ECR", "string", f"{_STATE}.ecr.status", "Inspector ECR scanning state"),
        PrinterColumn("Ready", "string", '.status.conditions[?(@.type=="Ready")].status', "Ready condition"),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation"),
        PrinterColumn(
            "Reason", "string", '.status.conditions[?(@.type=="Ready")].reason', "Why Ready is as it is", 1,
        ),
    ),
)

ALL: tuple[Resource, ...] = (IMAGE_PIPELINE, FINDINGS_POLICY, INSPECTOR_ACTIVATION)
