"""The ImagePipeline custom resource: "this Image Builder pipeline must be scanned by Amazon Inspector".

Spec and status are defined here once; ``crdgen`` turns them into the CRD, the handlers parse objects with
them, and the reconciler fills the status models.
"""

from __future__ import annotations

import re
from typing import Literal

import pydantic

from imagescan.models import base, kstatus

PIPELINE_ARN_PATTERN = (
    r"^arn:aws[a-z-]*:imagebuilder:[a-z0-9-]+:[0-9]{12}:image-pipeline/[a-z0-9-_]+$"
)
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_TOP_FINDINGS = 50


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as ``90s``, ``10m`` or ``1h30m``."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration like 30s, 10m or 1h30m")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


class EcrSpec(base.CRDModel):
    """Where Amazon Inspector keeps the scanned copy of a container image."""

    repository_name: str | None = pydantic.Field(default=None, min_length=2, max_length=256)
    """ECR repository that receives the image copy Inspector scans (container pipelines only)."""
    container_tags: list[str] | None = pydantic.Field(default=None, max_length=50)
    """Tags Image Builder puts on the scanned copy in that repository."""


class ScanningSpec(base.CRDModel):
    """The image scanning configuration this pipeline must have."""

    enabled: bool = True
    """Whether Amazon Inspector must scan images this pipeline builds (default true)."""
    ecr: EcrSpec | None = None
    """ECR settings for container pipelines; leave out for AMI pipelines."""


class FindingsSpec(base.CRDModel):
    """How findings are summarised into status."""

    refresh_interval: str = pydantic.Field(default="15m", pattern=DURATION_PATTERN)
    """How often findings counts are refreshed from AWS, e.g. 15m (default 15m)."""
    top: int = pydantic.Field(default=10, ge=0, le=MAX_TOP_FINDINGS)
    """How many of the worst findings of the latest image to list in status (0-50, default 10)."""


class ImagePipelineSpec(base.CRDModel):
    """Which Image Builder pipeline to watch and how its scanning must be set."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [{
                "rule": "has(self.pipelineArn) || has(self.pipelineName)",
                "message": "set spec.pipelineArn, or spec.pipelineName (with spec.region if needed)",
            }],
        },
    )

    pipeline_arn: str | None = pydantic.Field(default=None, pattern=PIPELINE_ARN_PATTERN, max_length=1024)
    """ARN of the Image Builder pipeline; its region wins over spec.region."""
    pipeline_name: str | None = pydantic.Field(default=None, min_length=1, max_length=128)
    """Name of the pipeline, looked up with ListImagePipelines when pipelineArn is not given."""
    region: str | None = pydantic.Field(default=None, pattern=REGION_PATTERN)
    """AWS region of the pipeline when only its name is given; default: the operator's region."""
    scanning: ScanningSpec = ScanningSpec()
    """The scanning configuration the pipeline must have."""
    management_policy: Literal["Manage", "Observe"] = "Manage"
    """Manage (default): put the scanning configuration in place. Observe: never write to AWS, only report."""
    deletion_policy: Literal["Retain", "Disable"] = "Retain"
    """On delete, Retain (default) leaves the pipeline as it is; Disable turns its scanning off."""
    resync_interval: str = pydantic.Field(default="10m", pattern=DURATION_PATTERN)
    """How often AWS is re-read to find and repair drift, e.g. 10m (default 10m)."""
    findings: FindingsSpec = FindingsSpec()
    """How findings are summarised into status."""

    @pydantic.model_validator(mode="after")
    def _needs_a_pipeline(self) -> ImagePipelineSpec:
        if not self.pipeline_arn and not self.pipeline_name:
            raise ValueError("set spec.pipelineArn, or spec.pipelineName (with spec.region if needed)")
        return self

    @property
    def resync_seconds(self) -> float:
        return parse_duration(self.resync_interval)

    @property
    def refresh_seconds(self) -> float:
        return parse_duration(self.findings.refresh_interval)


class EcrStatus(base.CRDModel):
    """ECR settings as AWS has them."""

    repository_name: str | None = None
    """ECR repository of the scanned copy."""
    container_tags: list[str] | None = None
    """Tags on the scanned copy."""


class ScanningStatus(base.CRDModel):
    """The scanning configuration AWS has now."""

    enabled: bool
    """Whether Amazon Inspector scans images from this pipeline."""
    ecr: EcrStatus | None = None
    """ECR settings for container pipelines."""


class PipelineStatus(base.CRDModel):
    """Identity and state of the Image Builder pipeline as last read."""

    arn: str
    """Pipeline ARN."""
    name: str
    """Pipeline name."""
    account_id: str
    """AWS account that owns the pipeline."""
    region: str
    """AWS region of the pipeline."""
    kind: Literal["AMI", "Container"]
    """Whether the pipeline builds AMIs or container images."""
    status: str | None = None
    """ENABLED or DISABLED."""
    platform: str | None = None
    """Linux, Windows or macOS."""
    last_run_status: str | None = None
    """Outcome of the last run, e.g. AVAILABLE or FAILED."""
    date_last_run: str | None = None
    """When the pipeline last ran."""
    date_updated: str | None = None
    """When the pipeline was last changed."""


class SeverityCounts(base.CRDModel):
    """Number of findings at each of Inspector's six severity levels."""

    critical: int = pydantic.Field(default=0, ge=0)
    """Critical findings."""
    high: int = pydantic.Field(default=0, ge=0)
    """High findings."""
    medium: int = pydantic.Field(default=0, ge=0)
    """Medium findings."""
    low: int = pydantic.Field(default=0, ge=0)
    """Low findings."""
    informational: int = pydantic.Field(default=0, ge=0)
    """Informational findings."""
    untriaged: int = pydantic.Field(default=0, ge=0)
    """Findings Inspector has not given a severity yet."""
    total: int = pydantic.Field(default=0, ge=0)
    """All findings."""


class LatestImage(base.CRDModel):
    """The newest image build of the pipeline."""

    arn: str
    """Image build version ARN."""
    version: str | None = None
    """Semantic version with build number, e.g. 1.0.0/3."""
    date_created: str | None = None
    """When the build was created."""
    state: str | None = None
    """Build state, e.g. AVAILABLE."""
    scan_state: str | None = None
    """Inspector scan state of the build, e.g. COMPLETED."""
    amis: list[str] | None = None
    """Output AMI ids (AMI pipelines)."""
    container_images: list[str] | None = None
    """Output container image URIs (container pipelines)."""
    container_image_digests: list[str] | None = None
    """The same images by digest (registry/repository@sha256:...), resolved with ECR."""
    severity_counts: SeverityCounts = SeverityCounts()
    """Findings of this build by severity."""


class CvssScore(base.CRDModel):
    """The CVSS base score as published, before Inspector's adjustments."""

    base_score: float | None = None
    """CVSS base score."""
    source: str | None = None
    """Who published the score, e.g. NVD."""
    version: str | None = None
    """CVSS version, e.g. 3.1."""
    vector: str | None = None
    """CVSS vector string."""


class PackageRef(base.CRDModel):
    """The vulnerable package."""

    name: str | None = None
    """Package name."""
    installed_version: str | None = None
    """Version in the image."""
    fixed_in_version: str | None = None
    """First version with the fix, if any."""


class Remediation(base.CRDModel):
    """What Inspector recommends."""

    text: str | None = None
    """Recommendation, shortened to 200 characters."""
    url: str | None = None
    """Where the recommendation is explained."""


class Finding(base.CRDModel):
    """One of the worst findings of the latest image."""

    vulnerability_id: str
    """CVE or other vulnerability id."""
    severity: str
    """UNTRIAGED, INFORMATIONAL, LOW, MEDIUM, HIGH or CRITICAL."""
    inspector_score: float | None = None
    """Inspector's score, adjusted to the environment."""
    cvss: CvssScore | None = None
    """The published CVSS score, to compare with the Inspector score."""
    package: PackageRef | None = None
    """The vulnerable package."""
    fix_available: str | None = None
    """YES, NO or PARTIAL."""
    remediation: Remediation | None = None
    """What to do about it."""
    vendor_published_at: str | None = None
    """When the vendor published the vulnerability."""
    first_observed_at: str | None = None
    """When Inspector first saw it in this image."""
    nvd_url: str | None = None
    """Link to the vulnerability's NVD page."""


class FindingsStatus(base.CRDModel):
    """Findings summary: counts for the pipeline and its latest build, and the worst findings."""

    last_refreshed: str | None = None
    """When findings were last read from AWS."""
    severity_counts: SeverityCounts = SeverityCounts()
    """Findings of all the pipeline's builds by severity."""
    latest_image: LatestImage | None = None
    """The newest build and its findings counts."""
    top: list[Finding] = pydantic.Field(default_factory=list, max_length=MAX_TOP_FINDINGS)
    """Worst findings of the latest build: highest severity, then highest Inspector score."""


class ImagePipelineStatus(base.CRDModel):
    """What the operator last saw and did."""

    observed_generation: int | None = None
    """The metadata.generation the status describes."""
    conditions: list[kstatus.Condition] = pydantic.Field(default_factory=list)
    """Ready, and Reconciling / Stalled / Paused while true."""
    pipeline: PipelineStatus | None = None
    """The Image Builder pipeline as last read."""
    scanning: ScanningStatus | None = None
    """The scanning configuration AWS has now."""
    findings: FindingsStatus | None = None
    """Findings summary."""
    last_synced: str | None = None
    """When AWS was last read."""
    last_handled_reconcile_at: str | None = None
    """The last value of the imagescan.io/reconcile-requested-at annotation that was acted on."""
