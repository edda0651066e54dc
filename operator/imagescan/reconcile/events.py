"""What an EventBridge event says changed, in terms the operator can map to its ImagePipelines.

AWS pushes Image Builder and Inspector events through an EventBridge rule into an SQS queue (deploy/aws/); the
intake hands each message body here. Only the envelope and the identifiers matter: which pipeline, image build,
AMI or ECR image the event is about. Counts in an event are never copied into status: the refresh it triggers
reads them from the same APIs as every other refresh, so an event can be late, repeated or out of order and
status still shows AWS's current state (one place computes it).

Shapes (the AWS documentation's samples, tests/data/events/):
- "EC2 Image Builder Image State Change" / "EC2 Image Builder CVE Detected": the image build version ARN in
  ``resources`` (and in the detail);
- "Inspector2 Finding": ``detail.resources[]`` with an ECR image (repository, digest) or an EC2 instance (AMI);
- "Inspector2 Scan": ECR repository and digest in the detail;
- "AWS API Call via CloudTrail" from Image Builder: the pipeline ARN in the request or response (drift).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from typing import Any

IMAGE_STATE_CHANGE = "EC2 Image Builder Image State Change"
CVE_DETECTED = "EC2 Image Builder CVE Detected"
INSPECTOR_FINDING = "Inspector2 Finding"
INSPECTOR_SCAN = "Inspector2 Scan"
CLOUDTRAIL_CALL = "AWS API Call via CloudTrail"
KNOWN = frozenset({IMAGE_STATE_CHANGE, CVE_DETECTED, INSPECTOR_FINDING, INSPECTOR_SCAN, CLOUDTRAIL_CALL})
SOURCES = frozenset({"aws.imagebuilder", "aws.inspector2"})

_PIPELINE_ARN = re.compile(r"^arn:aws[a-z-]*:imagebuilder:[a-z0-9-]+:\d{12}:image-pipeline/[a-z0-9_-]+$")
_IMAGE_ARN = re.compile(r"^arn:aws[a-z-]*:imagebuilder:[a-z0-9-]+:\d{12}:image/[a-z0-9_-]+/[^/]+/\d+$")
_ECR_ARN = re.compile(
    r"^arn:aws[a-z-]*:ecr:[a-z0-9-]+:\d{12}:repository/(?P<repo>[^@]+?)(?:/(?P<digest>sha256:[0-9a-f]{64}))?$",
)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_AMI = re.compile(r"^ami-[0-9a-f]{8,17}$")
_REPOSITORY_KEYS = frozenset({"repository-name", "repositoryName"})
_MAX_DEPTH = 8


class Unusable(ValueError):
    """A message the intake cannot act on: not JSON, not an EventBridge envelope, or an event type it does not
    know. ``kind`` groups them for the log (once per kind) and the metric."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclasses.dataclass(frozen=True)
class Change:
    """One event, reduced to what identifies the objects it concerns."""

    detail_type: str
    account: str
    region: str
    time: str
    pipelines: frozenset[str] = frozenset()
    images: frozenset[str] = frozenset()
    amis: frozenset[str] = frozenset()
    digests: frozenset[str] = frozenset()
    repositories: frozenset[str] = frozenset()
    """ECR repository names (without registry), in the event's account and region."""


def parse(body: str) -> Change:
    """The change an SQS message body (an EventBridge envelope, as a rule's SQS target delivers it) reports."""
    try:
        envelope = json.loads(body)
    except (ValueError, TypeError):
        raise Unusable("not-json", "message body is not JSON") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("detail"), dict):
        raise Unusable("not-an-event", "message is not an EventBridge event (no detail object)")
    detail_type = str(envelope.get("detail-type") or "")
    if detail_type not in KNOWN or envelope.get("source") not in SOURCES:
        source = envelope.get("source")
        raise Unusable("unknown-type", f"event {source!r} / {detail_type!r} is not one the operator uses")
    found = _Found()
    for value in _strings(envelope.get("resources"), 0):
        found.add(value)
    found.walk(envelope["detail"], 0)
    return Change(
        detail_type=detail_type, account=str(envelope.get("account") or ""), region=str(envelope.get("region") or ""),
        time=str(envelope.get("time") or ""), pipelines=frozenset(found.pipelines), images=frozenset(found.images),
        amis=frozenset(found.amis), digests=frozenset(found.digests), repositories=frozenset(found.repositories),
    )


class _Found:
    """Identifiers collected from anywhere in the event: the documented shapes nest them at different depths
    (``detail.resources[].details.awsEcrContainerImage``, ``detail.requestParameters``), and a key AWS adds later
    costs nothing."""

    def __init__(self) -> None:
        self.pipelines: set[str] = set()
        self.images: set[str] = set()
        self.amis: set[str] = set()
        self.digests: set[str] = set()
        self.repositories: set[str] = set()

    def walk(self, value: Any, depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                if key in _REPOSITORY_KEYS and isinstance(item, str):
                    self.add_repository(item)
                else:
                    self.walk(item, depth + 1)
        elif isinstance(value, list):
            for item in value:
                self.walk(item, depth + 1)
        elif isinstance(value, str):
            self.add(value)

    def add(self, value: str) -> None:
        if _PIPELINE_ARN.match(value):
            self.pipelines.add(value)
        elif _IMAGE_ARN.match(value):
            self.images.add(value)
        elif _AMI.match(value):
            self.amis.add(value)
        elif _DIGEST.match(value):
            self.digests.add(value)
        elif (ecr := _ECR_ARN.match(value)) is not None:
            self.repositories.add(ecr["repo"])
            if ecr["digest"]:
                self.digests.add(ecr["digest"])

    def add_repository(self, value: str) -> None:
        """A repository name, or (Inspector2 Scan) the repository's ARN."""
        ecr = _ECR_ARN.match(value)
        self.repositories.add(ecr["repo"] if ecr is not None else value)


def _strings(value: Any, depth: int) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list) and depth < 2:
        for item in value:
            yield from _strings(item, depth + 1)


def image_family(image_arn: str) -> str:
    """The image (recipe) an image build version belongs to: ``…:image/name/1.0.0/3`` -> ``…:image/name``.
    A new build of a pipeline is in the family of its previous builds."""
    return image_arn.rsplit("/", 2)[0]
