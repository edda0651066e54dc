"""The ImagePipeline custom resource: "this Image Builder pipeline must be scanned by Amazon Inspector".

Spec and status are defined here once; ``crdgen`` turns them into the CRD, the handlers parse objects with
them, and the reconciler fills the status models.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import pydantic
from pydantic.config import JsonDict, JsonValue

from imagescan.models import base, kstatus

# botocore's partitions (data/partitions.json, each partition's regionRegex), copied rather than read at
# generation time so that the CRD does not change with the installed botocore; tests/unit/test_models.py
# checks the copy against it. They say which partition serves a region: an ARN naming another partition
# than its region's can never be found, so it is refused up front.
PARTITION_REGION_REGEX: dict[str, str] = {
    "aws": r"^(us|eu|ap|sa|ca|me|af|il|mx)\-\w+\-\d+$",
    "aws-cn": r"^cn\-\w+\-\d+$",
    "aws-eusc": r"^eusc\-(de)\-\w+\-\d+$",
    "aws-iso": r"^us\-iso\-\w+\-\d+$",
    "aws-iso-b": r"^us\-isob\-\w+\-\d+$",
    "aws-iso-e": r"^eu\-isoe\-\w+\-\d+$",
    "aws-iso-f": r"^us\-isof\-\w+\-\d+$",
    "aws-us-gov": r"^us\-gov\-\w+\-\d+$",
}


def _plain(regex: str) -> str:
    """A botocore region regex without backslashes, so it can sit in a CEL string literal (where ``\\-`` and
    ``\\w`` are invalid escapes) and reads the same in RE2 and Python; regions are lower-case."""
    return regex.removeprefix("^").removesuffix("$").replace(r"\-", "-").replace(r"\w", "[a-z0-9]").replace(
        r"\d", "[0-9]")


_REGION_BODIES = {partition: _plain(regex) for partition, regex in PARTITION_REGION_REGEX.items()}
REGION_PATTERN = "^(" + "|".join(_REGION_BODIES.values()) + ")$"
PIPELINE_ARN_PATTERN = r"^arn:aws[a-z-]*:imagebuilder:[a-z0-9-]+:[0-9]{12}:image-pipeline/[a-z0-9_-]{1,128}$"
# The ARN with a partition that serves its region: one alternative per partition.
PARTITION_MATCHES_REGION = "^arn:(" + "|".join(
    f"{partition}:imagebuilder:{body}" for partition, body in _REGION_BODIES.items()) + "):"
# A Go duration: up to four parts of at most five digits (99999h*4 is 45 years, inside CEL's duration range,
# so duration() never overflows); "[.]" rather than a backslash so the pattern can be quoted in CEL.
DURATION_PATTERN = r"^([0-9]{1,5}([.][0-9]{1,3})?(ms|s|m|h)){1,4}$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MIN_INTERVAL_SECONDS = 60.0
MAX_INTERVAL_SECONDS = 7 * 24 * 3600.0
MAX_TOP_FINDINGS = 50
# Per finding in status: lists are bounded so one finding cannot take the 32 KiB status (Finding.omitted counts
# what was left out).
MAX_PACKAGES = 10
MAX_RELATED = 10
MAX_REFERENCE_URLS = 5
MAX_ADJUSTMENTS = 10
MAX_ECHOED_ANNOTATION = 256  # status.lastHandledReconcileAt; longer values are echoed as their hash
# botocore's imagebuilder EcrConfiguration: repositoryName and each containerTags item are a NonEmptyString
# (1-1024 characters). ECR is stricter: its RepositoryName shape (botocore's ecr model) is 2-256 characters
# with this pattern, and a tag must be an OCI tag (at most 128 characters). The strictest of them is what
# the schema says; tests/unit/test_models.py checks them against the installed botocore.
IMAGEBUILDER_STRING_MIN, IMAGEBUILDER_STRING_MAX = 1, 1024
ECR_REPOSITORY_MIN, ECR_REPOSITORY_MAX = 2, 256
ECR_REPOSITORY_REGEX = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*"
ECR_TAG_MAX = 300
CONTAINER_TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
CONTAINER_TAG_MAX = 128
MAX_CONTAINER_TAGS = 50
# botocore's ResourceName shape (3-128 characters) without its minimum length: a shorter name only fails to
# be found (PipelineNotFound names it), while characters Image Builder never puts in a name are a mistake.
PIPELINE_NAME_PATTERN = r"^[-_A-Za-z0-9]([-_A-Za-z0-9 ]{0,126}[-_A-Za-z0-9])?$"
# An IAM role ARN as STS AssumeRole takes it: optional path, then the role name (IAM's characters).
ROLE_ARN_PATTERN = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/([-+=,.@_A-Za-z0-9]+/)*[-+=,.@_A-Za-z0-9]{1,64}$"
ROLE_ARN_MAX = 512
RoleArn = Annotated[str, pydantic.Field(pattern=ROLE_ARN_PATTERN, max_length=ROLE_ARN_MAX)]


def account_of(arn: str) -> str:
    """The account id in any ARN (the fifth field)."""
    return arn.split(":")[4]


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as ``90s``, ``10m`` or ``1h30m``."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration like 30s, 10m or 1h30m")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def bounded_interval(text: str) -> str:
    seconds = parse_duration(text)
    if not MIN_INTERVAL_SECONDS <= seconds <= MAX_INTERVAL_SECONDS:
        raise ValueError(f"{text} is outside 1m..168h: shorter polls AWS every tick, longer never resyncs")
    return text


_INTERVAL_RULE: JsonDict = {
    "rule": f"!self.matches('{DURATION_PATTERN}') || "
            "(duration(self) >= duration('1m') && duration(self) <= duration('168h'))",
    "message": "must be between 1m and 168h (7 days)",
}
Interval = Annotated[
    str,
    pydantic.Field(pattern=DURATION_PATTERN, max_length=32,
                   json_schema_extra={"x-kubernetes-validations": [_INTERVAL_RULE]}),
    pydantic.AfterValidator(bounded_interval),
]
ContainerTag = Annotated[str, pydantic.Field(min_length=1, max_length=CONTAINER_TAG_MAX,
                                             pattern=CONTAINER_TAG_PATTERN)]


class EcrSpec(base.CRDModel):
    """Where Amazon Inspector keeps the scanned copy of a container image."""

    repository_name: str | None = pydantic.Field(
        default=None, min_length=ECR_REPOSITORY_MIN, max_length=ECR_REPOSITORY_MAX,
        pattern=f"^{ECR_REPOSITORY_REGEX}$")
    """ECR repository that receives the image copy Inspector scans (container pipelines only): 2-256
    characters, lower-case, as ECR names repositories (e.g. team/web)."""
    container_tags: list[ContainerTag] | None = pydantic.Field(default=None, max_length=MAX_CONTAINER_TAGS)
    """Tags Image Builder puts on the scanned copy in that repository: at most 50, each 1-128 characters of
    letters, digits, _ . - (not starting with . or -), as OCI registries accept them."""


class ScanningSpec(base.CRDModel):
    """The image scanning configuration this pipeline must have."""

    enabled: bool = True
    """Whether Amazon Inspector must scan images this pipeline builds (default true)."""
    ecr: EcrSpec | None = None
    """ECR settings for container pipelines; leave out for AMI pipelines."""


class FindingsSpec(base.CRDModel):
    """How findings are summarised into status."""

    refresh_interval: Interval = "15m"
    """How often findings counts are refreshed from AWS, e.g. 15m (default 15m). Between 1m and 168h (7
    days): a shorter one would call AWS on every tick, a longer one would hide new findings for weeks."""
    top: int = pydantic.Field(default=10, ge=0, le=MAX_TOP_FINDINGS)
    """How many of the worst findings of the latest image to list in status (0-50, default 10)."""


_NAME_WITHOUT_SPACES = r"^[-_A-Za-z0-9]+$"


def _arn_rules() -> list[JsonValue]:
    """CEL rules over several spec fields, each reported on the field to change."""
    both = "!has(self.pipelineArn) || !has(self.{0}) || "
    return [
        {
            "rule": "has(self.pipelineArn) || has(self.pipelineName)",
            "message": "set spec.pipelineArn, or spec.pipelineName (with spec.region if needed)",
        },
        {
            # contains() rather than a regex built from the region: the region is user text.
            "rule": both.format("region") + "self.pipelineArn.contains(':imagebuilder:' + self.region + ':')",
            "message": "spec.region must be the region in spec.pipelineArn (or leave spec.region out)",
            "fieldPath": ".region",
        },
        {
            # The ARN holds the name lower-cased, spaces as hyphens. Standard CEL (what the embedded API
            # server evaluates too) cannot lower-case, so (?i) does; names with spaces are checked by the model.
            "rule": both.format("pipelineName") + f"!self.pipelineName.matches('{_NAME_WITHOUT_SPACES}') || "
                    "self.pipelineArn.matches('(?i)/' + self.pipelineName + '$')",
            "message": "spec.pipelineName must be the name in spec.pipelineArn (or leave spec.pipelineName out)",
            "fieldPath": ".pipelineName",
        },
    ]


_PARTITION_RULE: JsonDict = {
    "rule": f"!self.matches('{PIPELINE_ARN_PATTERN}') || self.matches('{PARTITION_MATCHES_REGION}')",
    "message": "the ARN's partition must be its region's: aws-cn for cn-*, aws-us-gov for us-gov-*, "
               "aws-iso* for the ISO regions, aws-eusc for eusc-*, aws for the others",
}


class ImagePipelineSpec(base.CRDModel):
    """Which Image Builder pipeline to watch and how its scanning must be set."""

    model_config = pydantic.ConfigDict(json_schema_extra={"x-kubernetes-validations": _arn_rules()})

    pipeline_arn: str | None = pydantic.Field(
        default=None, pattern=PIPELINE_ARN_PATTERN, max_length=256,
        json_schema_extra={"x-kubernetes-validations": [_PARTITION_RULE]})
    """ARN of the Image Builder pipeline (arn:PARTITION:imagebuilder:REGION:ACCOUNT:image-pipeline/NAME);
    the partition must be the region's (aws-cn for China, aws-us-gov for GovCloud), which also decides the
    endpoint. spec.region and spec.pipelineName, if given too, must agree with it."""
    pipeline_name: str | None = pydantic.Field(default=None, pattern=PIPELINE_NAME_PATTERN, max_length=128)
    """Name of the pipeline, looked up with ListImagePipelines when pipelineArn is not given (up to 128
    characters: letters, digits, - _ and inner spaces, as Image Builder names resources)."""
    region: str | None = pydantic.Field(default=None, pattern=REGION_PATTERN, max_length=32)
    """AWS region of the pipeline when only its name is given, e.g. eu-west-1; default: the operator's
    region."""
    role_arn: RoleArn | None = None
    """IAM role the operator assumes to reach the pipeline, for a pipeline in another account
    (arn:aws:iam::ACCOUNT:role/NAME). A cluster admin must allow it for this namespace (namespace annotation
    imagescan.io/allowed-role-arns), else the object is Stalled and the role is never assumed. Default: the
    namespace's imagescan.io/default-role-arn, else the operator's own credentials."""
    scanning: ScanningSpec = ScanningSpec()
    """The scanning configuration the pipeline must have."""
    management_policy: Literal["Manage", "Observe"] = "Manage"
    """Manage (default): put the scanning configuration in place. Observe: never write to AWS, only report."""
    deletion_policy: Literal["Retain", "Disable"] = "Retain"
    """On delete, Retain (default) leaves the pipeline as it is; Disable turns its scanning off."""
    resync_interval: Interval = "10m"
    """How often AWS is re-read to find and repair drift, e.g. 10m (default 10m). Between 1m and 168h (7
    days): a shorter one would call AWS on every tick, a longer one would leave drift unrepaired for weeks."""
    findings: FindingsSpec = FindingsSpec()
    """How findings are summarised into status."""

    @pydantic.model_validator(mode="after")
    def _needs_a_pipeline(self) -> ImagePipelineSpec:
        if not self.pipeline_arn and not self.pipeline_name:
            raise ValueError("set spec.pipelineArn, or spec.pipelineName (with spec.region if needed)")
        if self.pipeline_arn:
            _check_arn(self.pipeline_arn, self.region, self.pipeline_name)
            if self.role_arn and account_of(self.role_arn) != account_of(self.pipeline_arn):
                raise ValueError(
                    f"spec.roleArn is in account {account_of(self.role_arn)} but spec.pipelineArn in "
                    f"{account_of(self.pipeline_arn)}: Image Builder pipelines are reached from their own account")
        return self

    @property
    def resync_seconds(self) -> float:
        return parse_duration(self.resync_interval)

    @property
    def refresh_seconds(self) -> float:
        return parse_duration(self.findings.refresh_interval)


def _check_arn(arn: str, region: str | None, name: str | None) -> None:
    """What the CRD's CEL rules say, for objects stored before them, and the names with spaces CEL cannot
    compare. The ARN's own pattern has already been checked."""
    partition, _, arn_region = arn.split(":")[1:4]
    expected = PARTITION_REGION_REGEX.get(partition)
    if expected is None or not re.fullmatch(_REGION_BODIES[partition], arn_region):
        raise ValueError(f"spec.pipelineArn: partition {partition} does not serve region {arn_region}")
    if region is not None and region != arn_region:
        raise ValueError(f"spec.region {region} must be the region in spec.pipelineArn ({arn_region}) "
                         "or be left out")
    arn_name = arn.rsplit("/", 1)[-1]
    if name is not None and name.lower().replace(" ", "-") != arn_name:
        raise ValueError(f"spec.pipelineName {name!r} must be the name in spec.pipelineArn ({arn_name}) "
                         "or be left out")


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
    """CVSS vector string (left out if longer than 256 characters)."""


class CvssAdjustment(base.CRDModel):
    """One change Inspector made to the published CVSS metrics for this environment."""

    metric: str | None = None
    """The CVSS metric changed, e.g. Attack Vector (at most 128 characters)."""
    reason: str | None = None
    """Why Inspector changed it (at most 200 characters)."""


class AdjustedCvss(base.CRDModel):
    """How Inspector arrived at its score: the CVSS score after its adjustments to this environment (AWS's
    inspectorScoreDetails.adjustedCvss)."""

    score: float | None = None
    """The adjusted score, which is the Inspector score."""
    vector: str | None = None
    """The adjusted CVSS vector string (left out if longer than 256 characters)."""
    version: str | None = None
    """CVSS version of the adjusted vector, e.g. 3.1."""
    score_source: str | None = None
    """Where the score Inspector started from was published, e.g. NVD."""
    cvss_source: str | None = None
    """Who published the CVSS data, e.g. NVD."""
    adjustments: list[CvssAdjustment] | None = pydantic.Field(default=None, max_length=MAX_ADJUSTMENTS)
    """What Inspector changed and why (at most 10); none when the score is the published one."""


class PackageRef(base.CRDModel):
    """A vulnerable package in the image; each text at most 128 characters (ending in an ellipsis when cut)."""

    name: str | None = None
    """Package name."""
    installed_version: str | None = None
    """Version in the image (version-release for OS packages)."""
    fixed_in_version: str | None = None
    """First version with the fix, if any (NotAvailable when there is none yet)."""
    package_manager: str | None = None
    """How the package was installed, e.g. OS, PIP, NPM, JAR."""
    file_path: str | None = None
    """Where the package is in the image, for language packages (the end of it, at most 256 characters)."""


class Remediation(base.CRDModel):
    """What Inspector recommends."""

    text: str | None = None
    """Recommendation, shortened to 200 characters."""
    url: str | None = None
    """Where the recommendation is explained (left out if longer than 256 characters)."""


class Omitted(base.CRDModel):
    """How much of a finding's lists status leaves out, so that it stays within 32 KiB."""

    packages: int | None = pydantic.Field(default=None, ge=0)
    """Vulnerable packages not in packages (it lists at most 10)."""
    related_vulnerabilities: int | None = pydantic.Field(default=None, ge=0)
    """Related vulnerability ids not in relatedVulnerabilities (it lists at most 10)."""
    reference_urls: int | None = pydantic.Field(default=None, ge=0)
    """Reference URLs not in referenceUrls (it lists at most 5, each at most 256 characters)."""


class Finding(base.CRDModel):
    """One of the worst findings of the latest image, with what the Image Builder console's finding panel shows."""

    vulnerability_id: str
    """CVE or other vulnerability id."""
    severity: str
    """UNTRIAGED, INFORMATIONAL, LOW, MEDIUM, HIGH or CRITICAL."""
    title: str | None = None
    """The finding's title, e.g. CVE-2024-1234 - openssl (at most 200 characters)."""
    description: str | None = None
    """What the vulnerability is, cut to 400 characters (ending in an ellipsis when cut)."""
    inspector_score: float | None = None
    """Inspector's score, adjusted to the environment."""
    cvss: CvssScore | None = None
    """The published CVSS score, to compare with the Inspector score."""
    adjusted_cvss: AdjustedCvss | None = None
    """How the Inspector score was derived from the published CVSS: adjusted vector and what changed why."""
    package: PackageRef | None = None
    """The first vulnerable package (name, installedVersion, fixedInVersion); all of them are in packages."""
    packages: list[PackageRef] | None = pydantic.Field(default=None, max_length=MAX_PACKAGES)
    """Every vulnerable package, at most 10 (omitted.packages counts the rest)."""
    fix_available: str | None = None
    """YES, NO or PARTIAL."""
    remediation: Remediation | None = None
    """What to do about it."""
    related_vulnerabilities: list[str] | None = pydantic.Field(default=None, max_length=MAX_RELATED)
    """Ids of related vulnerabilities, e.g. a distribution's advisory for the same CVE (at most 10)."""
    source: str | None = None
    """Where the vulnerability was published, e.g. NVD or a distribution's security tracker."""
    vendor_severity: str | None = None
    """The severity its publisher gave it, before Inspector's scoring."""
    vendor_published_at: str | None = None
    """When the vendor published the vulnerability."""
    vendor_updated_at: str | None = None
    """When the vendor last changed the vulnerability."""
    first_observed_at: str | None = None
    """When Inspector first saw it in this image."""
    nvd_url: str | None = None
    """Link to the vulnerability's NVD page (for ids other than CVEs: where its publisher describes it)."""
    reference_urls: list[str] | None = pydantic.Field(default=None, max_length=MAX_REFERENCE_URLS)
    """Further reading about the vulnerability (at most 5 links; longer than 256 characters are left out)."""
    omitted: Omitted | None = None
    """How many packages, related ids and links the lists above leave out."""
    trimmed: bool | None = None
    """True when detail was left out of this finding to keep status within 32 KiB, the least severe findings
    first and in steps: title, description and links; then all but the fields before packages were listed;
    then all but vulnerabilityId, severity, scores, package, fixAvailable and vendorPublishedAt. imagescan
    findings --source aws --detail shows all of it."""


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
    top_trimmed: int | None = pydantic.Field(default=None, ge=0)
    """How many entries of top had detail left out to keep status within 32 KiB (see top[].trimmed)."""
    top_omitted: int | None = pydantic.Field(default=None, ge=0)
    """How many of the spec.findings.top worst findings were left out of top entirely to keep status within
    32 KiB: the least severe, and only once every listed one is down to its essentials."""


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
    """The last value of the imagescan.io/reconcile-requested-at annotation that was acted on: as written
    up to 256 characters, a longer one as sha256:<hex digest of it> (status must stay under 32 KiB)."""
