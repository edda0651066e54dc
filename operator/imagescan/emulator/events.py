"""The EventBridge events Image Builder and Inspector send, built from the emulator's own images and findings.

On AWS a finished build, a finished Image Builder scan and Inspector's first scan of an ECR image are each
announced on EventBridge; a rule forwards them to an SQS queue, where every message body is the event exactly
as EventBridge delivers it (the "envelope": version, id, detail-type, source, account, time, region,
resources, detail). The operator's push intake reads those messages. So that its end-to-end tests and the
push benchmark need no hand-written events, the emulator builds the same envelopes here, shaped after the
services' documented samples (Image Builder's "Amazon EventBridge integration" page, Inspector's "EventBridge
event schema" page), and ``sink`` delivers them.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Mapping
from typing import Any

from imagescan.emulator import generator

IMAGE_STATE_CHANGE = "EC2 Image Builder Image State Change"
CVE_DETECTED = "EC2 Image Builder CVE Detected"
INSPECTOR_SCAN = "Inspector2 Scan"
DETAIL_TYPES = (IMAGE_STATE_CHANGE, CVE_DETECTED, INSPECTOR_SCAN)
IMAGEBUILDER_SOURCE = "aws.imagebuilder"
INSPECTOR_SOURCE = "aws.inspector2"

Envelope = dict[str, Any]


def stamp(at: float) -> str:
    """EventBridge's ``time``: ISO-8601 in UTC to the second, e.g. ``2024-01-18T17:50:56Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def envelope(
    detail_type: str, source: str, *, account: str, region: str, resources: list[str], detail: dict[str, Any],
    at: float | None = None,
) -> Envelope:
    """A complete EventBridge event (``at``: epoch seconds, default now)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": stamp(time.time() if at is None else at),
        "region": region,
        "resources": resources,
        "detail": detail,
    }


def image_state_change(
    image: Mapping[str, Any], *, previous: str = "TESTING", at: float | None = None
) -> Envelope:
    """"EC2 Image Builder Image State Change" of a build, from ``previous`` to the image's current status."""
    account, region = generator.scope_of(image["arn"])
    detail = {"previous-state": {"status": previous}, "state": {"status": image["state"]["status"]}}
    return envelope(IMAGE_STATE_CHANGE, IMAGEBUILDER_SOURCE, account=account, region=region,
                    resources=[image["arn"]], detail=detail, at=at)


def cve_detected(image: Mapping[str, Any], counts: Mapping[str, int], at: float | None = None) -> Envelope:
    """"EC2 Image Builder CVE Detected": an Image Builder scan of the build finished with these findings
    (``counts``: severity -> number, as ``generator.SEVERITIES``). Its resources name the image and the
    pipeline that built it; ``all`` counts every severity, as in ListImageScanFindingAggregations."""
    account, region = generator.scope_of(image["arn"])
    detail = {"resource-id": scanned_instance(image["arn"]), "finding-severity-counts": _lower_counts(counts)}
    resources = [image["arn"], *([image["sourcePipelineArn"]] if image.get("sourcePipelineArn") else [])]
    return envelope(CVE_DETECTED, IMAGEBUILDER_SOURCE, account=account, region=region,
                    resources=resources, detail=detail, at=at)


def inspector_scan(image: Mapping[str, Any], counts: Mapping[str, int], at: float | None = None) -> Envelope | None:
    """"Inspector2 Scan" (initial scan complete) of the ECR image a container build pushed; None for an AMI
    build. Inspector names the repository by its ARN, also in ``repository-name``."""
    uri = generator.container_uri(image)
    if uri is None:
        return None
    host, _, reference = uri.partition("/")
    repository, _, tag = reference.rpartition(":")
    account, region = host.split(".")[0], host.split(".")[3]
    repository_arn = f"arn:aws:ecr:{region}:{account}:repository/{repository}"
    detail = {
        "scan-status": "INITIAL_SCAN_COMPLETE",
        "repository-name": repository_arn,
        "finding-severity-counts": _upper_counts(counts),
        "image-digest": generator.digest_of(uri),
        "image-tags": [tag],
        "version": "1.0",
    }
    return envelope(INSPECTOR_SCAN, INSPECTOR_SOURCE, account=account, region=region,
                    resources=[repository_arn], detail=detail, at=at)


def build_completed(
    image: Mapping[str, Any], counts: Mapping[str, int], *, ecr_scanning: bool, at: float | None = None
) -> list[Envelope]:
    """What AWS sends when a build becomes AVAILABLE: the state change; CVE Detected when the build was
    scanned (its pipeline had scanning on); Inspector2 Scan for a container image when Inspector scans ECR
    in that account and region (``ecr_scanning``)."""
    sent = [image_state_change(image, at=at)]
    if image.get("scanState", {}).get("status") == "COMPLETED":
        sent.append(cve_detected(image, counts, at=at))
    scan = inspector_scan(image, counts, at=at) if ecr_scanning else None
    return [*sent, scan] if scan is not None else sent


def scanned_instance(image_arn: str) -> str:
    """The instance id CVE Detected names as ``resource-id`` (AWS's sample names the scanned instance); stable
    per image so tests can predict it."""
    return "i-" + hashlib.sha256(image_arn.encode()).hexdigest()[:17]


def _lower_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """Image Builder's SeverityCounts: every finding in ``all``, medium and above broken out."""
    return {"all": sum(counts.values()), "critical": counts.get("CRITICAL", 0), "high": counts.get("HIGH", 0),
            "medium": counts.get("MEDIUM", 0)}


def _upper_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """Inspector's finding-severity-counts: medium and above, and the ``TOTAL``."""
    return {"CRITICAL": counts.get("CRITICAL", 0), "HIGH": counts.get("HIGH", 0),
            "MEDIUM": counts.get("MEDIUM", 0), "TOTAL": sum(counts.values())}
