"""The emulated AWS accounts: pipelines, image builds, scan findings and Inspector's activation state.

Handlers and tests share one ``World``; every public method takes the lock, and everything handed out is a
deep copy, so concurrent requests (and a test poking the world mid-run) never see half-applied changes.
Seeded contents come from ``generator`` so a seed always reproduces the same account. One world holds
several accounts and regions: every resource lives where its ARN says, and the world's own ``account_id``
and ``region`` are only the defaults (for new pipelines, unsigned requests and callers nobody identified).
"""

from __future__ import annotations

import copy
import dataclasses
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from imagescan.emulator import activation, audit, events, generator, sqs

FindingsSpec = int | dict[str, int] | None
_SEED_EPOCH = 1735689600.0  # 2025-01-01T00:00:00Z: seeded history is fixed, live edits use the real clock
_DAY = 86400.0


@dataclasses.dataclass
class _Image:
    image: dict[str, Any]
    findings: list[generator.FindingRecord]


scope_of = generator.scope_of  # handlers read it from here


class World:
    """All state behind the emulator's endpoint: any number of accounts and regions."""

    def __init__(
        self,
        *,
        seed: int = 7,
        account_id: str = "123456789012",
        region: str = "us-east-1",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.account_id = account_id
        self.region = region
        self.lock = threading.RLock()
        self._rng = random.Random(seed)
        self._catalog = generator.Catalog(self._rng)
        self._pipelines: dict[str, dict[str, Any]] = {}
        self._images: dict[str, _Image] = {}  # image build version ARN -> build, in creation order
        self._pipeline_images: dict[str, list[str]] = {}
        self._built_by: dict[str, list[str]] = {}  # survives pipeline deletion, like the images themselves
        self.inspector = activation.Activations(clock)  # per (account, region); ``clock`` times its transitions
        self._last_stamp = 0.0
        self.idempotency: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self.update_log = audit.UpdateLog()  # every applied UpdateImagePipeline and what it changed
        self.on_event: Callable[[events.Envelope], None] | None = None
        """Called with every EventBridge event the emulated services send (outside the lock; must not block).
        None (the default): no event is even built."""
        self.sqs = sqs.Queues()
        """The emulated SQS queues (their own lock: a long poll waiting on them holds none of the world's)."""

    # --- clock ---------------------------------------------------------------------------------------------

    def now(self) -> float:
        """Wall-clock seconds, strictly increasing by at least 1 ms so every update changes ``dateUpdated``."""
        with self.lock:
            self._last_stamp = max(time.time(), self._last_stamp + 0.001)
            return self._last_stamp

    # --- seeding -------------------------------------------------------------------------------------------

    def populate(self, pipelines: int) -> list[str]:
        """The default demo account: alternating AMI/container pipelines, the first one with every option."""
        arns = []
        for index in range(pipelines):
            base = generator.SEED_NAMES[index % len(generator.SEED_NAMES)]
            name = base if index < len(generator.SEED_NAMES) else f"{base}-{index // len(generator.SEED_NAMES)}"
            total = self._rng.randint(20, 120)
            arns.append(
                self.add_pipeline(
                    name=name,
                    container=index % 2 == 1,
                    scanning_enabled=index % 3 != 2,
                    images=self._rng.randint(1, 3),
                    findings=total,
                    rich=index == 0,
                )
            )
        return arns

    def add_pipeline(
        self,
        name: str | None = None,
        *,
        container: bool = False,
        scanning_enabled: bool = False,
        images: int = 1,
        findings: FindingsSpec = None,
        rich: bool = False,
        account_id: str | None = None,
        region: str | None = None,
    ) -> str:
        """Create a pipeline with ``images`` builds; the latest gets ``findings`` (older builds similar ones).
        It lives in ``account_id`` / ``region`` (default: the world's), and so do its images and findings."""
        with self.lock:
            name = name or f"pipeline-{len(self._pipelines) + 1}"
            created = _SEED_EPOCH - (len(self._pipelines) + 30) * _DAY
            pipeline = generator.make_pipeline(
                self._rng,
                region=region or self.region,
                account_id=account_id or self.account_id,
                name=name,
                container=container,
                rich=rich,
                scanning_enabled=scanning_enabled,
                created=created,
            )
            if pipeline["arn"] in self._pipelines:
                raise ValueError(f"pipeline {pipeline['arn']} already exists")
            self._pipelines[pipeline["arn"]] = pipeline
            self._pipeline_images[pipeline["arn"]] = []
            latest = self._counts(findings)
            for build in range(1, images + 1):
                counts = latest if build == images else generator.similar_counts(self._rng, latest)
                self._build(pipeline, counts, created + build * _DAY, touch=False)
            return str(pipeline["arn"])

    def add_image(self, pipeline_arn: str, findings: FindingsSpec = None) -> str:
        """A new latest build (created now) with ``findings``; updates the pipeline's last-run fields. Sends
        what AWS sends for a finished build (``events.build_completed``) to ``on_event``."""
        with self.lock:
            pipeline = self._pipeline(pipeline_arn)
            image_arn = self._build(pipeline, self._counts(findings), self.now(), touch=True)
            sent = self._build_events(image_arn) if self.on_event is not None else []
        self._announce(sent)
        return image_arn

    def _build_events(self, image_arn: str) -> list[events.Envelope]:
        image = self._images[image_arn].image
        ecr = self.inspector.states(scope_of(image_arn)).get("ECR")
        scanning = ecr is not None and ecr.status == "ENABLED"
        return events.build_completed(image, self._image_counts(image_arn), ecr_scanning=scanning)

    def _counts(self, findings: FindingsSpec) -> dict[str, int]:
        if findings is None:
            return generator.draw_severity_counts(self._rng, self._rng.randint(10, 60))
        if isinstance(findings, int):
            return generator.draw_severity_counts(self._rng, findings)
        unknown = set(findings) - set(generator.SEVERITIES)
        if unknown:
            raise ValueError(f"unknown severities {sorted(unknown)}; use {generator.SEVERITIES}")
        return {severity: int(findings.get(severity, 0)) for severity in generator.SEVERITIES}

    def _build(self, pipeline: dict[str, Any], counts: dict[str, int], created: float, *, touch: bool) -> str:
        builds = self._pipeline_images[pipeline["arn"]]
        build = len(self._built_by.get(pipeline["arn"], [])) + 1  # a re-created pipeline continues numbering
        account_id, region = scope_of(pipeline["arn"])
        image = generator.make_image(
            self._rng, pipeline, region=region, account_id=account_id, build=build, created=created
        )
        records = generator.make_records(
            self._rng,
            self._catalog,
            counts,
            image_arn=image["arn"],
            pipeline_arn=pipeline["arn"],
            container="containerRecipeArn" in pipeline,
            observed=created,
        )
        self._images[image["arn"]] = _Image(image, records)
        builds.append(image["arn"])
        self._built_by.setdefault(pipeline["arn"], []).append(image["arn"])
        pipeline["dateLastRun"] = image["dateCreated"]
        pipeline["lastRunStatus"] = "AVAILABLE"
        if touch:
            pipeline["consecutiveFailures"] = 0
        return str(image["arn"])

    # --- pipelines -----------------------------------------------------------------------------------------

    def _pipeline(self, arn: str) -> dict[str, Any]:
        try:
            return self._pipelines[arn]
        except KeyError:
            raise KeyError(f"no pipeline {arn}") from None

    def has_pipeline(self, arn: str) -> bool:
        """Whether the pipeline exists (deleted pipelines do not)."""
        with self.lock:
            return arn in self._pipelines

    def pipeline(self, arn: str) -> dict[str, Any]:
        """A deep copy of exactly what ``GetImagePipeline`` returns as ``imagePipeline``."""
        with self.lock:
            return copy.deepcopy(self._pipeline(arn))

    def pipelines(self, account_id: str | None = None, region: str | None = None) -> list[dict[str, Any]]:
        """Deep copies of the pipelines in creation order: all, or those of one account and/or region."""
        with self.lock:
            return copy.deepcopy([self._pipelines[arn] for arn in self.pipeline_arns(account_id, region)])

    def pipeline_arns(self, account_id: str | None = None, region: str | None = None) -> list[str]:
        """Pipeline ARNs in creation order: all, or those of one account and/or region."""
        with self.lock:
            return [arn for arn in self._pipelines if _within(arn, account_id, region)]

    def replace_pipeline(self, arn: str, pipeline: dict[str, Any]) -> None:
        """Store a fully-formed pipeline (used by UpdateImagePipeline's replace semantics)."""
        with self.lock:
            self._pipeline(arn)
            self._pipelines[arn] = copy.deepcopy(pipeline)

    def set_scanning(self, arn: str, enabled: bool = False) -> None:
        """Simulate someone flipping scanning in the console: bumps ``dateUpdated``."""
        with self.lock:
            pipeline = self._pipeline(arn)
            key = generator.slug(pipeline["name"])
            pipeline["imageScanningConfiguration"] = generator.scanning_configuration(
                enabled, "containerRecipeArn" in pipeline, key
            )
            pipeline["dateUpdated"] = generator.iso(self.now())

    def delete_pipeline(self, arn: str) -> None:
        """Remove the pipeline; like AWS, its images and their findings stay behind."""
        with self.lock:
            self._pipeline(arn)
            del self._pipelines[arn]
            del self._pipeline_images[arn]

    # --- images and findings -------------------------------------------------------------------------------

    def image_arns(self, pipeline_arn: str) -> list[str]:
        """Image build ARNs of a pipeline, oldest first."""
        with self.lock:
            return list(self._pipeline_images[pipeline_arn])

    def container_uris(self) -> list[str]:
        """Every container image URI any build produced (what ECR would hold)."""
        with self.lock:
            return [
                uri
                for build in self._images.values()
                for container in build.image.get("outputResources", {}).get("containers", [])
                for uri in container.get("imageUris", [])
            ]

    def image(self, image_arn: str) -> dict[str, Any] | None:
        """``GetImage``'s ``image`` member, or None."""
        with self.lock:
            found = self._images.get(image_arn)
            return copy.deepcopy(found.image) if found else None

    def findings(
        self, name: str | None = None, value: str | None = None, *, account_id: str | None = None,
        region: str | None = None,
    ) -> list[generator.FindingRecord]:
        """Compact findings matching one ListImageScanFindings filter (or all), in the fixed serving order;
        only those of images in ``account_id`` / ``region`` when given."""
        with self.lock:
            return [
                record for record in self._findings(name, value) if _within(record.image_arn, account_id, region)
            ]

    def _findings(self, name: str | None, value: str | None) -> list[generator.FindingRecord]:
        with self.lock:
            if name == "imageBuildVersionArn":
                found = self._images.get(value or "")
                return list(found.findings) if found else []
            if name == "imagePipelineArn":
                return [
                    record
                    for image_arn in self._built_by.get(value or "", [])
                    for record in self._images[image_arn].findings
                ]
            everything: Iterable[generator.FindingRecord] = (
                record for image in self._images.values() for record in image.findings
            )
            if name == "severity":
                return [record for record in everything if record.vuln.severity == value]
            if name == "vulnerabilityId":
                return [record for record in everything if record.vuln.vulnerability_id == value]
            return list(everything)

    def expand(self, record: generator.FindingRecord) -> dict[str, Any]:
        """The wire form of a stored finding (in the account its image belongs to)."""
        return generator.expand_finding(record, scope_of(record.image_arn)[0])

    def severity_counts(
        self, image_arn: str | None = None, pipeline_arn: str | None = None, *, account_id: str | None = None,
        region: str | None = None,
    ) -> dict[str, int]:
        """Findings per severity for one image, one pipeline, or a whole account in a region (default: the
        world's own) (test helper)."""
        if image_arn is not None:
            records = self.findings("imageBuildVersionArn", image_arn)
        elif pipeline_arn is not None:
            records = self.findings("imagePipelineArn", pipeline_arn)
        else:
            records = self.findings(account_id=account_id or self.account_id, region=region or self.region)
        counts = dict.fromkeys(generator.SEVERITIES, 0)
        for record in records:
            counts[record.vuln.severity] += 1
        return counts

    # --- events (EventBridge) ------------------------------------------------------------------------------

    def set_findings(self, image_arn: str, findings: FindingsSpec) -> dict[str, int]:
        """Replace an image's findings with newly drawn ones of these counts (a re-scan found something else);
        sends CVE Detected with the new counts to ``on_event``. Returns the counts per severity."""
        with self.lock:
            stored = self._image(image_arn)
            counts = self._counts(findings)
            stored.findings = generator.make_records(
                self._rng, self._catalog, counts, image_arn=image_arn,
                pipeline_arn=str(stored.image["sourcePipelineArn"]),
                container="containerRecipe" in stored.image, observed=self.now(),
            )
            sent = [events.cve_detected(stored.image, counts)] if self.on_event is not None else []
        self._announce(sent)
        return counts

    def emit_burst(self, image_arns: Iterable[str], count: int) -> int:
        """``count`` CVE Detected events spread round-robin over these images (so repeats), each with the
        image's current counts, as fast as ``on_event`` takes them; returns how many were sent (0 without
        ``on_event``)."""
        with self.lock:
            sources = [(copy.deepcopy(self._image(arn).image), self._image_counts(arn)) for arn in image_arns]
        if not sources:
            raise ValueError("a burst needs at least one image")
        hook = self.on_event
        if hook is None:
            return 0
        for index in range(count):
            hook(events.cve_detected(*sources[index % len(sources)]))
        return count

    def _announce(self, sent: list[events.Envelope]) -> None:
        hook = self.on_event
        if hook is not None:
            for envelope in sent:
                hook(envelope)

    def _image(self, image_arn: str) -> _Image:
        try:
            return self._images[image_arn]
        except KeyError:
            raise KeyError(f"no image {image_arn}") from None

    def _image_counts(self, image_arn: str) -> dict[str, int]:
        counts = dict.fromkeys(generator.SEVERITIES, 0)
        for record in self._image(image_arn).findings:
            counts[record.vuln.severity] += 1
        return counts

    # --- Inspector -----------------------------------------------------------------------------------------

    def set_inspector(self, account_id: str, states: dict[str, str], region: str | None = None) -> None:
        """Put Inspector resource types (EC2, ECR, LAMBDA, LAMBDA_CODE, CODE_REPOSITORY) of an account, in
        ``region`` (default: the world's), into any status now, SUSPENDED included; a transitional status set
        this way (ENABLING, ...) stays until something changes it."""
        self.inspector.set((account_id, region or self.region), states)

    def inspector_status(self, account_id: str, region: str | None = None) -> dict[str, str]:
        """Resource type -> status (``ENABLED``/``ENABLING``/``DISABLED``/...) for an account in ``region``
        (default: the world's); all DISABLED until enabled."""
        states = self.inspector.states((account_id, region or self.region))
        return {resource: state.status for resource, state in states.items()}


def _within(arn: str, account_id: str | None, region: str | None) -> bool:
    """Whether an ARN is in this account and region (None: any)."""
    arn_account, arn_region = scope_of(arn)
    return (account_id is None or arn_account == account_id) and (region is None or arn_region == region)
