"""Seeded, realistic Image Builder and Inspector data.

Everything is drawn from a ``random.Random(seed)`` so a given seed always yields the same world, which keeps test
failures reproducible. Findings are stored compactly (``FindingRecord``) and expanded into the full
``ImageScanFinding`` shape only when a page is served: a 10,000-finding pipeline costs milliseconds to create.
CVSS v3.1 base scores are computed from their vectors with the specification's formula, so score, vector and
severity always agree the way Inspector's do.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
import math
import random
from collections.abc import Mapping
from typing import Any

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNTRIAGED")
# Rough shape of a real Inspector inventory: mostly medium/low, a few criticals.
_SEVERITY_WEIGHTS = (3, 15, 40, 25, 10, 7)
INSPECTOR_RESOURCE_TYPES = ("EC2", "ECR", "LAMBDA", "LAMBDA_CODE", "CODE_REPOSITORY")

# --- CVSS v3.1 ---------------------------------------------------------------------------------------------
_AV = {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2}
_AC = {"L": 0.77, "H": 0.44}
_PR_UNCHANGED = {"N": 0.85, "L": 0.62, "H": 0.27}
_PR_CHANGED = {"N": 0.85, "L": 0.68, "H": 0.5}
_UI = {"N": 0.85, "R": 0.62}
_CIA = {"H": 0.56, "L": 0.22, "N": 0.0}
_METRIC_NAMES = {
    "AV": "Attack Vector",
    "AC": "Attack Complexity",
    "PR": "Privileges Required",
    "UI": "User Interaction",
    "S": "Scope",
    "C": "Confidentiality",
    "I": "Integrity",
    "A": "Availability",
}


def _roundup(value: float) -> float:
    """CVSS v3.1 Roundup: smallest one-decimal number >= value, robust to float noise."""
    scaled = round(value * 100000)
    if scaled % 10000 == 0:
        return scaled / 100000.0
    return (math.floor(scaled / 10000) + 1) / 10.0


def cvss31_base_score(vector: str) -> float:
    """Base score of a ``CVSS:3.1/AV:../AC:../...`` vector per the v3.1 specification."""
    metrics = dict(part.split(":") for part in vector.split("/")[1:])
    changed = metrics["S"] == "C"
    iss = 1 - (1 - _CIA[metrics["C"]]) * (1 - _CIA[metrics["I"]]) * (1 - _CIA[metrics["A"]])
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
    privileges = (_PR_CHANGED if changed else _PR_UNCHANGED)[metrics["PR"]]
    exploitability = 8.22 * _AV[metrics["AV"]] * _AC[metrics["AC"]] * privileges * _UI[metrics["UI"]]
    if impact <= 0:
        return 0.0
    total = 1.08 * (impact + exploitability) if changed else impact + exploitability
    return _roundup(min(total, 10.0))


def severity_for_score(score: float) -> str:
    """Inspector's severity bands over the (adjusted) CVSS score."""
    if score >= 9.0:
        return "CRITICAL"
    if score >= 7.0:
        return "HIGH"
    if score >= 4.0:
        return "MEDIUM"
    if score > 0.0:
        return "LOW"
    return "INFORMATIONAL"


def _all_vectors() -> dict[str, list[tuple[str, float]]]:
    """Every v3.1 base vector (2,592 of them) bucketed by severity; computed once at import."""
    buckets: dict[str, list[tuple[str, float]]] = {severity: [] for severity in SEVERITIES}
    for av, ac, pr, ui, s, c, i, a in itertools.product("NALP", "LH", "NLH", "NR", "UC", "HLN", "HLN", "HLN"):
        vector = f"CVSS:3.1/AV:{av}/AC:{ac}/PR:{pr}/UI:{ui}/S:{s}/C:{c}/I:{i}/A:{a}"
        score = cvss31_base_score(vector)
        buckets[severity_for_score(score)].append((vector, score))
    return buckets


_VECTORS = _all_vectors()

# --- packages ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class PackageSpec:
    """A package Inspector can flag, with the versions the generator may call vulnerable."""

    name: str
    manager: str  # Inspector's packageManager value
    versions: tuple[str, ...]
    release: str | None = None  # OS packages carry a distro release
    path: str | None = None  # language packages carry the file that declared them


_OS_PACKAGES = (
    PackageSpec("openssl", "OS", ("3.0.8", "1.1.1k", "3.0.7"), "1.amzn2023.0.4"),
    PackageSpec("openssl-libs", "OS", ("3.0.8", "1.1.1k"), "1.amzn2023.0.4"),
    PackageSpec("glibc", "OS", ("2.34", "2.26", "2.35"), "52.amzn2023.0.3"),
    PackageSpec("curl", "OS", ("8.2.1", "7.88.1", "7.76.1"), "1.amzn2023.0.1"),
    PackageSpec("libcurl", "OS", ("8.2.1", "7.88.1"), "1.amzn2023.0.1"),
    PackageSpec("zlib", "OS", ("1.2.11", "1.2.13"), "33.amzn2023.0.5"),
    PackageSpec("python3", "OS", ("3.9.16", "3.11.4"), "1.amzn2023.0.2"),
    PackageSpec("kernel", "OS", ("6.1.49", "5.10.186", "6.1.61"), "69.116.amzn2023"),
    PackageSpec("systemd", "OS", ("252.16", "249.11"), "1.amzn2023.0.1"),
    PackageSpec("sudo", "OS", ("1.9.13", "1.9.5p2"), "1.p2.amzn2023.0.1"),
    PackageSpec("expat", "OS", ("2.5.0", "2.4.9"), "1.amzn2023.0.2"),
    PackageSpec("libxml2", "OS", ("2.10.4", "2.9.14"), "1.amzn2023.0.3"),
    PackageSpec("krb5-libs", "OS", ("1.21", "1.20.1"), "8.amzn2023.0.2"),
    PackageSpec("ncurses", "OS", ("6.2", "6.4"), "4.20200222.amzn2023.0.4"),
    PackageSpec("vim-minimal", "OS", ("9.0.1592", "9.0.2120"), "1.amzn2023"),
    PackageSpec("git", "OS", ("2.40.1", "2.39.2"), "1.amzn2023.0.1"),
)
_LANGUAGE_PACKAGES = (
    PackageSpec("log4j-core", "JAR", ("2.14.1", "2.16.0"), path="/opt/app/lib/log4j-core-{v}.jar"),
    PackageSpec("jackson-databind", "JAR", ("2.12.3", "2.13.2"), path="/opt/app/lib/jackson-databind-{v}.jar"),
    PackageSpec("spring-web", "JAR", ("5.3.18", "5.3.20"), path="/opt/app/lib/spring-web-{v}.jar"),
    PackageSpec(
        "requests",
        "PYTHONPKG",
        ("2.25.1", "2.28.0"),
        path="/usr/local/lib/python3.11/site-packages/requests-{v}.dist-info/METADATA",
    ),
    PackageSpec(
        "urllib3",
        "PYTHONPKG",
        ("1.26.5", "1.26.15"),
        path="/usr/local/lib/python3.11/site-packages/urllib3-{v}.dist-info/METADATA",
    ),
    PackageSpec(
        "cryptography",
        "PYTHONPKG",
        ("39.0.1", "41.0.1"),
        path="/usr/local/lib/python3.11/site-packages/cryptography-{v}.dist-info/METADATA",
    ),
    PackageSpec("lodash", "NODEPKG", ("4.17.20", "4.17.15"), path="/app/node_modules/lodash/package.json"),
    PackageSpec("semver", "NODEPKG", ("7.3.7", "5.7.1"), path="/app/node_modules/semver/package.json"),
    PackageSpec("golang.org/x/net", "GOBINARY", ("0.7.0", "0.10.0"), path="/usr/local/bin/app"),
    PackageSpec("stdlib", "GOBINARY", ("1.20.4", "1.21.1"), path="/usr/local/bin/app"),
)
_PACKAGES = _OS_PACKAGES + _LANGUAGE_PACKAGES
_VENDOR_SEVERITY = {
    "CRITICAL": "Critical",
    "HIGH": "Important",
    "MEDIUM": "Medium",
    "LOW": "Low",
    "INFORMATIONAL": "Negligible",
    "UNTRIAGED": "Untriaged",
}
_WEAKNESSES = (
    "a heap-based buffer overflow",
    "a use-after-free",
    "an integer overflow",
    "an out-of-bounds read",
    "a NULL pointer dereference",
    "improper certificate validation",
    "a path traversal",
    "uncontrolled recursion",
    "a race condition",
    "improper input validation",
)
_IMPACTS = (
    "execute arbitrary code",
    "cause a denial of service",
    "read sensitive memory",
    "bypass authentication",
    "escalate privileges",
    "spoof server identity",
    "write arbitrary files",
)


@dataclasses.dataclass(frozen=True, slots=True)
class Vulnerability:
    """One CVE as Inspector knows it, shared by every image whose packages it affects."""

    vulnerability_id: str
    severity: str
    package: PackageSpec
    version: str
    fixed_in: str | None  # None: no fix published (fixAvailable NO)
    partial: bool  # second affected package without a fix (fixAvailable PARTIAL)
    vector: str | None  # None for UNTRIAGED: no CVSS score yet
    base_score: float
    adjusted_vector: str | None
    adjusted_score: float
    source: str
    weakness: str
    impact: str
    vendor_created: float
    vendor_updated: float
    related: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class FindingRecord:
    """What is stored per finding; ``expand_finding`` turns it into the wire shape on demand."""

    vuln: Vulnerability
    image_arn: str
    pipeline_arn: str
    container: bool
    observed: float
    seed: int


class Catalog:
    """Pool of CVEs per severity; images sample from it so the same CVE shows up across builds."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._by_severity: dict[str, list[Vulnerability]] = {severity: [] for severity in SEVERITIES}
        self._used_ids: set[str] = set()

    def sample(self, severity: str, count: int) -> list[Vulnerability]:
        """``count`` distinct vulnerabilities of one severity, growing the pool when needed."""
        pool = self._by_severity[severity]
        wanted = max(count + count // 4, 8)
        while len(pool) < wanted:
            pool.append(self._new(severity))
        return self._rng.sample(pool, count)

    def _new_id(self) -> str:
        while True:
            year = self._rng.randint(2014, 2025)
            number = self._rng.randint(1000, 52999)
            candidate = f"CVE-{year}-{number:04d}" if number < 10000 else f"CVE-{year}-{number}"
            if candidate not in self._used_ids:
                self._used_ids.add(candidate)
                return candidate

    def _new(self, severity: str) -> Vulnerability:
        rng = self._rng
        vuln_id = self._new_id()
        package = rng.choice(_PACKAGES)
        version = rng.choice(package.versions)
        fixable = rng.random() < 0.7
        vector, score = rng.choice(_VECTORS[severity]) if severity != "UNTRIAGED" else (None, 0.0)
        adjusted, adjusted_score = vector, score
        if vector is not None and rng.random() < 0.3:
            adjusted, adjusted_score = rng.choice(_VECTORS[severity])  # Inspector's environmental adjustment
        year = int(vuln_id.split("-")[1])
        created = dt.datetime(
            year, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), tzinfo=dt.UTC
        ).timestamp()
        return Vulnerability(
            vulnerability_id=vuln_id,
            severity=severity,
            package=package,
            version=version,
            fixed_in=_bump(version, rng) if fixable else None,
            partial=fixable and rng.random() < 0.15,
            vector=vector,
            base_score=score,
            adjusted_vector=adjusted,
            adjusted_score=adjusted_score,
            source="NVD" if package.manager != "OS" else rng.choice(("NVD", "AMAZON_CVE", "ALAS_KERNEL")),
            weakness=rng.choice(_WEAKNESSES),
            impact=rng.choice(_IMPACTS),
            vendor_created=created,
            vendor_updated=created + rng.randint(1, 400) * 86400.0,
            related=tuple(self._new_id() for _ in range(rng.choice((0, 0, 0, 1, 2)))),
        )


def _bump(version: str, rng: random.Random) -> str:
    """A plausible fixed-in version: same prefix, higher last component."""
    head, _, tail = version.rpartition(".")
    digits = "".join(itertools.takewhile(str.isdigit, tail)) or "0"
    bumped = str(int(digits) + rng.randint(1, 5))
    return f"{head}.{bumped}" if head else bumped


def draw_severity_counts(rng: random.Random, total: int) -> dict[str, int]:
    """Split ``total`` findings across the six severities the way a real inventory looks."""
    counts = dict.fromkeys(SEVERITIES, 0)
    if total >= len(SEVERITIES):  # small seeded worlds still show every severity
        for severity in SEVERITIES:
            counts[severity] = 1
        total -= len(SEVERITIES)
    for severity in rng.choices(SEVERITIES, weights=_SEVERITY_WEIGHTS, k=total):
        counts[severity] += 1
    return counts


def similar_counts(rng: random.Random, counts: dict[str, int]) -> dict[str, int]:
    """Counts for an older build: the same picture with a little more (or less) of everything."""
    return {severity: max(0, round(count * rng.uniform(0.85, 1.25))) for severity, count in counts.items()}


def make_records(
    rng: random.Random,
    catalog: Catalog,
    counts: dict[str, int],
    *,
    image_arn: str,
    pipeline_arn: str,
    container: bool,
    observed: float,
) -> list[FindingRecord]:
    """Compact findings for one image, in a fixed but deliberately unsorted order."""
    records = [
        FindingRecord(vuln, image_arn, pipeline_arn, container, observed + rng.randint(60, 1800), rng.getrandbits(32))
        for severity, count in counts.items()
        if count > 0
        for vuln in catalog.sample(severity, count)
    ]
    rng.shuffle(records)
    return records


def expand_finding(record: FindingRecord, account_id: str) -> dict[str, Any]:
    """The full ``ImageScanFinding`` for a stored record (deterministic per record)."""
    rng = random.Random(record.seed)
    vuln = record.vuln
    finding: dict[str, Any] = {
        "awsAccountId": account_id,
        "imageBuildVersionArn": record.image_arn,
        "imagePipelineArn": record.pipeline_arn,
        "type": "PACKAGE_VULNERABILITY",
        "title": f"{vuln.vulnerability_id} - {vuln.package.name}",
        "description": _description(vuln),
        "remediation": {"recommendation": _recommendation(vuln)},
        "severity": vuln.severity,
        "firstObservedAt": record.observed,
        "updatedAt": record.observed + rng.randint(0, 5) * 3600.0,
        "packageVulnerabilityDetails": _package_details(vuln, record, rng),
        "fixAvailable": "NO" if vuln.fixed_in is None else ("PARTIAL" if vuln.partial else "YES"),
    }
    if vuln.adjusted_vector is not None:
        finding["inspectorScore"] = vuln.adjusted_score
        finding["inspectorScoreDetails"] = {"adjustedCvss": _adjusted_cvss(vuln)}
    return finding


def _description(vuln: Vulnerability) -> str:
    return (
        f"{vuln.package.name} before {vuln.fixed_in or 'a fixed release'} contains {vuln.weakness} that "
        f"allows a remote attacker to {vuln.impact}."
    )


def _recommendation(vuln: Vulnerability) -> dict[str, str]:
    if vuln.fixed_in is None:
        text = "None Provided"
    else:
        text = f"Upgrade {vuln.package.name} to version {vuln.fixed_in} or later."
    return {"text": text, "url": f"https://nvd.nist.gov/vuln/detail/{vuln.vulnerability_id}"}


def _adjusted_cvss(vuln: Vulnerability) -> dict[str, Any]:
    assert vuln.vector is not None and vuln.adjusted_vector is not None
    base = dict(part.split(":") for part in vuln.vector.split("/")[1:])
    adjusted = dict(part.split(":") for part in vuln.adjusted_vector.split("/")[1:])
    adjustments = [
        {"metric": _METRIC_NAMES[metric], "reason": f"Adjusted from {base[metric]} to {value} for this environment"}
        for metric, value in adjusted.items()
        if base[metric] != value
    ]
    return {
        "scoreSource": vuln.source,
        "cvssSource": vuln.source,
        "version": "3.1",
        "score": vuln.adjusted_score,
        "scoringVector": vuln.adjusted_vector,
        "adjustments": adjustments,
    }


def _package_details(vuln: Vulnerability, record: FindingRecord, rng: random.Random) -> dict[str, Any]:
    packages = [_vulnerable_package(vuln.package, vuln.version, vuln.fixed_in, record.container, rng)]
    if vuln.partial:
        sibling = rng.choice(_OS_PACKAGES if vuln.package.manager == "OS" else _LANGUAGE_PACKAGES)
        packages.append(_vulnerable_package(sibling, sibling.versions[0], None, record.container, rng))
    details: dict[str, Any] = {
        "vulnerabilityId": vuln.vulnerability_id,
        "vulnerablePackages": packages,
        "source": vuln.source,
        "cvss": [],
        "relatedVulnerabilities": list(vuln.related),
        "sourceUrl": f"https://nvd.nist.gov/vuln/detail/{vuln.vulnerability_id}",
        "vendorSeverity": _VENDOR_SEVERITY[vuln.severity],
        "vendorCreatedAt": vuln.vendor_created,
        "vendorUpdatedAt": vuln.vendor_updated,
        "referenceUrls": [
            f"https://www.cve.org/CVERecord?id={vuln.vulnerability_id}",
            f"https://security-tracker.debian.org/tracker/{vuln.vulnerability_id}",
        ],
    }
    if vuln.vector is not None:
        details["cvss"].append(
            {"baseScore": vuln.base_score, "scoringVector": vuln.vector, "version": "3.1", "source": "NVD"}
        )
    return details


def _vulnerable_package(
    spec: PackageSpec, version: str, fixed_in: str | None, container: bool, rng: random.Random
) -> dict[str, Any]:
    package: dict[str, Any] = {
        "name": spec.name,
        "version": version,
        "packageManager": spec.manager,
        "fixedInVersion": fixed_in or "NotAvailable",
    }
    if spec.release is not None:
        package.update(release=spec.release, arch=rng.choice(("x86_64", "x86_64", "aarch64")), epoch=0)
    if spec.path is not None:
        package["filePath"] = spec.path.format(v=version)
    if fixed_in is not None:
        package["remediation"] = f"{'dnf' if spec.manager == 'OS' else 'upgrade'} update {spec.name}"
    if container:
        package["sourceLayerHash"] = f"sha256:{rng.getrandbits(256):064x}"
    return package


# --- pipelines and images ----------------------------------------------------------------------------------

SEED_NAMES = (
    "web-ami",
    "api-container",
    "batch-worker-ami",
    "ml-inference-container",
    "bastion-ami",
    "frontend-container",
    "etl-ami",
    "payments-container",
)


def arn(region: str, account_id: str, resource: str) -> str:
    """An Image Builder ARN for ``resource`` (e.g. ``image-pipeline/web-ami``)."""
    return f"arn:aws:imagebuilder:{region}:{account_id}:{resource}"


def scope_of(arn: str) -> tuple[str, str]:
    """The (account id, region) an ARN (``arn:partition:service:region:account:...``) belongs to."""
    parts = arn.split(":", 5)
    return (parts[4], parts[3]) if len(parts) == 6 else ("", "")


def digest_of(uri: str) -> str:
    """The manifest digest ECR reports for a container image URI: stable across runs, distinct per image."""
    return "sha256:" + hashlib.sha256(uri.encode()).hexdigest()


def container_uri(image: Mapping[str, Any]) -> str | None:
    """The first ECR URI a container build pushed (``registry/repository:tag``); None for an AMI build."""
    containers = image.get("outputResources", {}).get("containers", [])
    uris = [uri for container in containers for uri in container.get("imageUris", [])]
    return str(uris[0]) if uris else None


def slug(name: str) -> str:
    """The lower-case ARN form of a resource name."""
    return name.lower().replace(" ", "-")


def iso(timestamp: float) -> str:
    """Image Builder's ``DateTime`` string format, e.g. ``2024-01-02T03:04:05.000Z``."""
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def make_pipeline(
    rng: random.Random,
    *,
    region: str,
    account_id: str,
    name: str,
    container: bool,
    rich: bool,
    scanning_enabled: bool,
    created: float,
) -> dict[str, Any]:
    """A pipeline exactly as ``GetImagePipeline`` returns it; ``rich`` sets every optional field."""
    key = slug(name)
    pipeline: dict[str, Any] = {
        "arn": arn(region, account_id, f"image-pipeline/{key}"),
        "name": name,
        "platform": "Linux",
        "enhancedImageMetadataEnabled": True,
        "infrastructureConfigurationArn": arn(region, account_id, f"infrastructure-configuration/{key}-infra"),
        "imageTestsConfiguration": {"imageTestsEnabled": True, "timeoutMinutes": 720},
        "status": "ENABLED",
        "dateCreated": iso(created),
        "dateUpdated": iso(created),
        "imageScanningConfiguration": scanning_configuration(scanning_enabled, container, key),
        "tags": {"team": rng.choice(("platform", "payments", "data", "web")), "managed-by": "imagescan"},
    }
    recipe_kind = "container-recipe" if container else "image-recipe"
    recipe_field = "containerRecipeArn" if container else "imageRecipeArn"
    pipeline[recipe_field] = arn(region, account_id, f"{recipe_kind}/{key}-recipe/1.0.0")
    if rich:
        pipeline.update(_rich_fields(rng, region=region, account_id=account_id, key=key, created=created))
    return pipeline


def scanning_configuration(enabled: bool, container: bool, key: str) -> dict[str, Any]:
    """The scanning block AWS stores; container pipelines also carry their ECR scan repository."""
    config: dict[str, Any] = {"imageScanningEnabled": enabled}
    if container and enabled:
        config["ecrConfiguration"] = {"repositoryName": f"image-builder-scans/{key}", "containerTags": ["scan"]}
    return config


def _rich_fields(rng: random.Random, *, region: str, account_id: str, key: str, created: float) -> dict[str, Any]:
    workflow = arn(region, account_id, "workflow/build/hardened-build/1.0.0/1")
    return {
        "description": f"Nightly hardened build for {key}, owned by the platform team.",
        "distributionConfigurationArn": arn(region, account_id, f"distribution-configuration/{key}-dist"),
        "imageTestsConfiguration": {"imageTestsEnabled": True, "timeoutMinutes": 90},
        "schedule": {
            "scheduleExpression": "cron(0 4 ? * MON-FRI *)",
            "timezone": "Europe/Berlin",
            "pipelineExecutionStartCondition": "EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE",
            "autoDisablePolicy": {"failureCount": 3},
        },
        "dateNextRun": iso(created + 86400 * 30),
        "executionRole": f"arn:aws:iam::{account_id}:role/ImageBuilderExecutionRole",
        "workflows": [
            {
                "workflowArn": workflow,
                "parameters": [{"name": "hardeningLevel", "value": ["cis-level-2"]}],
                "parallelGroup": "build-a",
                "onFailure": "ABORT",
            },
            {"workflowArn": arn(region, account_id, "workflow/test/smoke-test/1.0.0/1"), "onFailure": "CONTINUE"},
        ],
        "loggingConfiguration": {
            "imageLogGroupName": f"/aws/imagebuilder/{key}",
            "pipelineLogGroupName": f"/aws/imagebuilder/pipeline/{key}",
        },
        "imageTags": {"os": "al2023", "hardened": "true"},
        "consecutiveFailures": rng.choice((0, 1)),
    }


def make_image(
    rng: random.Random,
    pipeline: dict[str, Any],
    *,
    region: str,
    account_id: str,
    build: int,
    created: float,
) -> dict[str, Any]:
    """An image build as ``GetImage`` returns it (``image`` member)."""
    container = "containerRecipeArn" in pipeline
    recipe_arn = pipeline.get("containerRecipeArn") or pipeline["imageRecipeArn"]
    recipe_name = recipe_arn.split("/")[1]
    version = "1.0.0"
    image: dict[str, Any] = {
        "arn": arn(region, account_id, f"image/{recipe_name}/{version}/{build}"),
        "type": "DOCKER" if container else "AMI",
        "name": recipe_name,
        "version": f"{version}/{build}",
        "platform": pipeline["platform"],
        "enhancedImageMetadataEnabled": pipeline.get("enhancedImageMetadataEnabled", True),
        "osVersion": "Amazon Linux 2023",
        "state": {"status": "AVAILABLE"},
        "sourcePipelineName": pipeline["name"],
        "sourcePipelineArn": pipeline["arn"],
        "imageTestsConfiguration": dict(pipeline.get("imageTestsConfiguration", {})),
        "dateCreated": iso(created),
        "outputResources": _outputs(rng, region, account_id, recipe_name, version, build, container),
        "tags": dict(pipeline.get("imageTags", {})) or {"built-by": "imagebuilder"},
        "buildType": "SCHEDULED" if "schedule" in pipeline else "USER_INITIATED",
        "imageSource": "CUSTOM",
        "scanState": {"status": "COMPLETED" if _scanning(pipeline) else "ABANDONED"},
        "imageScanningConfiguration": dict(pipeline.get("imageScanningConfiguration", {})),
    }
    image["infrastructureConfiguration"] = {
        "arn": pipeline["infrastructureConfigurationArn"],
        "name": f"{slug(pipeline['name'])}-infra",
        "instanceTypes": ["m6i.large"],
        "instanceProfileName": "ImageBuilderRole",
    }
    recipe = {
        "arn": recipe_arn,
        "name": recipe_name,
        "version": version,
        "platform": pipeline["platform"],
        "owner": account_id,
        "parentImage": "public.ecr.aws/amazonlinux/amazonlinux:2023"
        if container
        else "arn:aws:imagebuilder:us-east-1:aws:image/amazon-linux-2023-x86/x.x.x",
    }
    image["containerRecipe" if container else "imageRecipe"] = recipe
    for key in ("executionRole", "workflows"):
        if key in pipeline:
            image[key] = pipeline[key]
    return image


def _scanning(pipeline: dict[str, Any]) -> bool:
    return bool(pipeline.get("imageScanningConfiguration", {}).get("imageScanningEnabled"))


def _outputs(
    rng: random.Random, region: str, account_id: str, name: str, version: str, build: int, container: bool
) -> dict[str, Any]:
    if container:
        uri = f"{account_id}.dkr.ecr.{region}.amazonaws.com/{name}:{version}-{build}"
        return {"containers": [{"region": region, "imageUris": [uri]}]}
    ami = {
        "region": region,
        "image": f"ami-{rng.getrandbits(68):017x}",
        "name": f"{name} {version}/{build}",
        "description": f"{name} built by EC2 Image Builder",
        "state": {"status": "AVAILABLE"},
        "accountId": account_id,
    }
    return {"amis": [ami]}


def image_summary(image: dict[str, Any]) -> dict[str, Any]:
    """The ``ImageSummary`` view ``ListImagePipelineImages`` returns for an image."""
    keys = (
        "arn",
        "name",
        "type",
        "version",
        "platform",
        "osVersion",
        "state",
        "dateCreated",
        "outputResources",
        "tags",
        "buildType",
        "imageSource",
    )
    summary = {key: image[key] for key in keys if key in image}
    summary["owner"] = image["arn"].split(":")[4]
    return summary
