"""Findings summary for one pipeline: six severity counts and the worst findings, from few AWS calls.

ListImageScanFindingAggregations counts only all / critical / high / medium. The other three levels are
derived: untriaged and informational findings are few, so they are listed account-wide once per refresh
(with the severity filter) in a cache every pipeline of the account shares, and low is what is left.
The top-N list needs only the highest severities; those findings are read either from the image (stopping
as soon as every finding of the needed severities has been seen) or from the shared account-wide severity
lists, whichever costs fewer pages — a shared list's pages counted once for all the pipelines that use it,
which at scale also saves parsing the same findings hundreds of times.

A shared list describes only the builds whose findings were complete when it was fetched: a build newer than
the list (``Scope.settled_at``) is never read from it. Its counts then come from refreshing the stale lists,
from listing that build's own findings (when the lists still describe the pipeline's other builds), or from
listing the whole pipeline's, whichever costs fewer pages; an own listing gives the top list too.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from imagescan.aws import findings as aws_findings
from imagescan.models import imagepipeline as m

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNTRIAGED")  # the console's order
SEVERITY_FIELDS = tuple(severity.lower() for severity in SEVERITIES)  # as SeverityCounts spells them
_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}
_SMALL_BUCKETS = ("UNTRIAGED", "INFORMATIONAL")
_AGGREGATED = ("CRITICAL", "HIGH", "MEDIUM")
_PREFERENCE = ("image", "pipeline", "shared")  # among equal costs: the own listings give the top list too
REMEDIATION_TEXT_LIMIT = 200
NVD_URL = "https://nvd.nist.gov/vuln/detail/{}"


def summarize(raw: dict[str, Any]) -> m.Finding:
    """The compact form of an ImageScanFinding that status keeps."""
    details = raw.get("packageVulnerabilityDetails") or {}
    vulnerability_id = str(details.get("vulnerabilityId") or raw.get("title") or "unknown")
    package = (details.get("vulnerablePackages") or [{}])[0]
    cvss = _pick_cvss(details.get("cvss") or [])
    recommendation = (raw.get("remediation") or {}).get("recommendation") or {}
    text = recommendation.get("text")
    if text and len(text) > REMEDIATION_TEXT_LIMIT:
        text = text[: REMEDIATION_TEXT_LIMIT - 1] + "…"
    return m.Finding(
        vulnerability_id=vulnerability_id,
        severity=str(raw.get("severity") or "UNTRIAGED"),
        inspector_score=raw.get("inspectorScore"),
        cvss=m.CvssScore(
            base_score=cvss.get("baseScore"), source=cvss.get("source"),
            version=cvss.get("version"), vector=cvss.get("scoringVector"),
        ) if cvss else None,
        package=m.PackageRef(
            name=package.get("name"), installed_version=_version(package),
            fixed_in_version=package.get("fixedInVersion"),
        ) if package else None,
        fix_available=raw.get("fixAvailable"),
        remediation=m.Remediation(text=text, url=recommendation.get("url")) if recommendation else None,
        vendor_published_at=_timestamp(details.get("vendorCreatedAt")),
        first_observed_at=_timestamp(raw.get("firstObservedAt")),
        nvd_url=NVD_URL.format(vulnerability_id) if vulnerability_id.startswith("CVE-") else details.get("sourceUrl"),
    )


def _pick_cvss(scores: list[dict[str, Any]]) -> dict[str, Any]:
    """NVD's score if present (what people compare against), else the newest CVSS version given."""
    for score in scores:
        if str(score.get("source", "")).upper() == "NVD":
            return score
    return max(scores, key=lambda s: str(s.get("version", "")), default={})


def _version(package: dict[str, Any]) -> str | None:
    version = package.get("version")
    release = package.get("release")
    if version and release:
        return f"{version}-{release}"
    return version


def _timestamp(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return str(value.isoformat()).replace("+00:00", "Z")
    return str(value)


def severity_rank(severity: str | None) -> int:
    """0 for CRITICAL up to 5 for UNTRIAGED; anything else after them."""
    return _RANK.get((severity or "").upper(), len(SEVERITIES))


def worst_first(finding: m.Finding) -> tuple[int, float, str]:
    return (severity_rank(finding.severity), -(finding.inspector_score or 0.0), finding.vulnerability_id)


def top(findings: Iterable[m.Finding], n: int) -> list[m.Finding]:
    return heapq.nsmallest(n, findings, key=worst_first)


def six_levels(aggregated: dict[str, int], small_bucket_count: Callable[[str], int]) -> m.SeverityCounts:
    """All six levels from the aggregation counts; the small buckets are looked up only when some
    findings are below medium."""
    rest = _rest(aggregated)
    untriaged = informational = 0
    if rest > 0:
        untriaged = small_bucket_count("UNTRIAGED")
        informational = small_bucket_count("INFORMATIONAL")
    return m.SeverityCounts(
        critical=aggregated["critical"], high=aggregated["high"], medium=aggregated["medium"],
        low=max(0, rest - untriaged - informational), informational=informational, untriaged=untriaged,
        total=aggregated["all"],
    )


def count_of(counts: m.SeverityCounts, severity: str) -> int:
    return int(getattr(counts, severity.lower()))


@dataclasses.dataclass(frozen=True)
class Bucket:
    """The findings of one severity in one account and region, as of ``fetched_at`` (when the listing started,
    on the cache's wall clock, so a build that settled later is known not to be in it): counts per image and
    per pipeline and, for the severities a top list reads from shared lists, each image's ``kept`` worst
    findings (as many as the longest top list asked for, as compact JSON with their sort key), so memory
    stays bounded however many findings the account has. The small buckets only serve counts."""

    fetched_at: float
    per_image: dict[str, int]
    per_pipeline: dict[str, int]
    worst: dict[str, list[tuple[tuple[int, float, str], bytes]]] | None
    kept: int = 0

    def serves(self, settled_at: float) -> bool:
        """Whether this list can describe a build whose findings were complete only at ``settled_at``."""
        return self.fetched_at >= settled_at

    def pages(self, per_page: int) -> int:
        """What fetching this list again would cost (an empty listing still costs one call)."""
        return max(1, math.ceil(sum(self.per_image.values()) / per_page))

    def image_count(self, image_arn: str) -> int:
        return self.per_image.get(image_arn, 0)

    def worst_of(self, image_arn: str) -> list[tuple[tuple[int, float, str], bytes]]:
        return (self.worst or {}).get(image_arn, [])


class AccountBuckets:
    """Account-wide severity lists and counts shared by every pipeline of an account and region.

    Thread-safe and single-flight: when many pipelines refresh at once, one thread fetches a bucket and
    the others wait for it instead of repeating the same pages.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        # Wall-clock seconds: a list's age and a build's settled time (from status timestamps) share it.
        self._clock = clock
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self._account_counts: dict[str, tuple[float, dict[str, int]]] = {}
        self._pipelines: dict[str, set[str]] = {}
        self._settled: dict[str, tuple[str, float]] = {}  # pipeline ARN -> (latest build, all settled by)

    def note_pipeline(self, region: str, pipeline_arn: str) -> int:
        """Remember a pipeline that reads from this region's lists; returns how many do."""
        with self._lock:
            sharing = self._pipelines.setdefault(region, set())
            sharing.add(pipeline_arn)
            return len(sharing)

    def now(self) -> float:
        return self._clock()

    def settled(self, pipeline_arn: str, image_arn: str) -> float | None:
        """When every build of the pipeline up to ``image_arn`` had all its findings, if this process knows."""
        with self._lock:
            known = self._settled.get(pipeline_arn)
        return known[1] if known is not None and known[0] == image_arn else None

    def note_settled(self, pipeline_arn: str, image_arn: str, at: float) -> None:
        """Remember how early the builds up to ``image_arn`` were known complete, so that describing them
        again (which only a status timestamp would record) does not make them look newer than the lists."""
        with self._lock:
            known = self._settled.get(pipeline_arn)
            if known is None or known[0] != image_arn or at < known[1]:
                self._settled[pipeline_arn] = (image_arn, at)

    def current(self, region: str, severity: str, max_age: float) -> Bucket | None:
        """The bucket if it is young enough, whichever builds it describes."""
        bucket = self._buckets.get((region, severity))
        if bucket is not None and self._clock() - bucket.fetched_at <= max_age:
            return bucket
        return None

    def cached(self, region: str, severity: str, max_age: float, keep: int = 0,
               settled_at: float = -math.inf) -> Bucket | None:
        """The bucket if it is young enough, kept at least ``keep`` findings per image, and was fetched after
        ``settled_at`` (so it describes the build asked about)."""
        bucket = self.current(region, severity, max_age)
        if bucket is not None and bucket.kept >= keep and bucket.serves(settled_at):
            return bucket
        return None

    def bucket(self, client: Any, region: str, severity: str, max_age: float, keep: int = 0,
               settled_at: float = -math.inf) -> Bucket:
        with self._key_lock((region, severity)):
            bucket = self.cached(region, severity, max_age, keep, settled_at)
            if bucket is None:
                bucket = self._fetch(client, severity, keep)
                self._buckets[(region, severity)] = bucket
            return bucket

    def account_counts(self, client: Any, region: str, max_age: float) -> dict[str, int]:
        with self._key_lock((region, "*")):
            cached = self._account_counts.get(region)
            if cached is None or self._clock() - cached[0] > max_age:
                cached = (self._clock(), aws_findings.severity_counts(client))
                self._account_counts[region] = cached
            return cached[1]

    def _key_lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _fetch(self, client: Any, severity: str, keep: int) -> Bucket:
        started = self._clock()  # findings that arrive mid-listing may be missed: vouch only for the start
        per_image: dict[str, int] = {}
        per_pipeline: dict[str, int] = {}
        if severity in _SMALL_BUCKETS:
            keep = 0
        worst: dict[str, list[tuple[tuple[int, float, str], bytes]]] = {}
        for raw in aws_findings.iter_findings(client, "severity", severity):
            image = str(raw.get("imageBuildVersionArn"))
            pipeline = str(raw.get("imagePipelineArn"))
            per_image[image] = per_image.get(image, 0) + 1
            per_pipeline[pipeline] = per_pipeline.get(pipeline, 0) + 1
            if keep:
                finding = summarize(raw)
                kept = worst.setdefault(image, [])
                kept.append((worst_first(finding), finding.model_dump_json(by_alias=True).encode()))
                if len(kept) >= 2 * keep:
                    worst[image] = heapq.nsmallest(keep, kept)
        return Bucket(
            fetched_at=started, per_image=per_image, per_pipeline=per_pipeline,
            worst={image: heapq.nsmallest(keep, kept) for image, kept in worst.items()} if keep else None,
            kept=keep,
        )


@dataclasses.dataclass(frozen=True)
class Scope:
    """What a refresh works on. ``settled_at`` (the cache's clock): by when the latest build's findings are
    known to have been complete; ``others_settled_at`` the same for every other build of the pipeline. A
    shared list fetched before then may lack some of them."""

    client: Any
    region: str
    pipeline_arn: str
    image_arn: str | None
    top_n: int
    max_age: float
    settled_at: float
    others_settled_at: float

    @property
    def all_settled_at(self) -> float:
        """By when every build of the pipeline had all its findings."""
        return max(self.settled_at, self.others_settled_at)


@dataclasses.dataclass(frozen=True)
class Counts:
    """Six-level counts for the pipeline and its latest image; ``top`` is the image's top list when its
    findings were all read anyway (None: plan it separately)."""

    pipeline: m.SeverityCounts
    image: m.SeverityCounts | None
    top: list[m.Finding] | None = None


def refresh_counts(scope: Scope, buckets: AccountBuckets) -> Counts:
    """Six-level counts for the pipeline and for its latest image, each from data newer than its builds.

    The small lists are read for a build only if they were fetched after it settled. When they are young but
    older than the latest build, the cheapest of: refresh them; list the latest build's own findings (if the
    lists still describe every other build of the pipeline); list the pipeline's own findings.
    """
    aggregated = _Aggregated(
        aws_findings.severity_counts(scope.client, "imagePipelineArn", scope.pipeline_arn),
        aws_findings.severity_counts(scope.client, "imageBuildVersionArn", scope.image_arn)
        if scope.image_arn is not None else None,
    )
    source = _cheapest_source(scope, buckets, aggregated)
    if source == "pipeline":
        listing = _list_own(scope, "imagePipelineArn", scope.pipeline_arn)
        return Counts(_counts(listing.pipeline), listing.image_counts(scope), listing.image_top(scope))
    if source == "image" and scope.image_arn is not None:
        return _count_latest_own(scope, buckets, aggregated.pipeline, scope.image_arn)
    return _count_shared(scope, buckets, aggregated)


@dataclasses.dataclass(frozen=True)
class _Aggregated:
    pipeline: dict[str, int]
    image: dict[str, int] | None


def _cheapest_source(scope: Scope, buckets: AccountBuckets, aggregated: _Aggregated) -> str:
    """"shared", "image" or "pipeline", by pages. Only a young list that predates the latest build is a
    choice: a missing or expired one is fetched anyway (then it is newer than every build) and shared with
    every pipeline, as before. The refreshed lists are not amortised over the sharing pipelines: the refresh
    happens for this build, the others' builds are already in the old lists."""
    if _rest(aggregated.pipeline) == 0:
        return "shared"  # nothing below medium: the small lists are not read at all
    current = [bucket for severity in _SMALL_BUCKETS
               if (bucket := buckets.current(scope.region, severity, scope.max_age)) is not None]
    stale = [bucket for bucket in current if not bucket.serves(scope.all_settled_at)]
    if not stale:
        return "shared"
    per_page = aws_findings.page_size(scope.client)
    costs = {
        "shared": sum(bucket.pages(per_page) for bucket in stale),
        "pipeline": max(1, math.ceil(aggregated.pipeline["all"] / per_page)),
    }
    if aggregated.image is not None and all(bucket.serves(scope.others_settled_at) for bucket in current):
        costs["image"] = max(1, math.ceil(aggregated.image["all"] / per_page))
    return min((source for source in _PREFERENCE if source in costs), key=costs.__getitem__)


def _rest(aggregated: dict[str, int]) -> int:
    """Findings below medium, which the aggregation does not split."""
    return aggregated["all"] - aggregated["critical"] - aggregated["high"] - aggregated["medium"]


def _count_shared(scope: Scope, buckets: AccountBuckets, aggregated: _Aggregated) -> Counts:
    """Counts from the aggregations and the small lists, refreshed if they predate any build."""
    def small(severity: str) -> Bucket:
        return buckets.bucket(scope.client, scope.region, severity, scope.max_age, settled_at=scope.all_settled_at)

    pipeline = six_levels(aggregated.pipeline, lambda s: small(s).per_pipeline.get(scope.pipeline_arn, 0))
    if scope.image_arn is None or aggregated.image is None:
        return Counts(pipeline, None)
    image_arn = scope.image_arn
    return Counts(pipeline, six_levels(aggregated.image, lambda s: small(s).image_count(image_arn)))


def _count_latest_own(scope: Scope, buckets: AccountBuckets, aggregated: dict[str, int], image_arn: str) -> Counts:
    """The latest build from its own listing; the pipeline from the small lists, which describe every other
    build, with whatever they hold of the latest build replaced by its own listing."""
    listing = _list_own(scope, "imageBuildVersionArn", image_arn)

    def pipeline_small(severity: str) -> int:
        bucket = buckets.bucket(scope.client, scope.region, severity, scope.max_age,
                                settled_at=scope.others_settled_at)
        others = bucket.per_pipeline.get(scope.pipeline_arn, 0) - bucket.image_count(image_arn)
        return max(0, others) + listing.image[severity]

    return Counts(six_levels(aggregated, pipeline_small), _counts(listing.image), listing.top)


@dataclasses.dataclass(frozen=True)
class _Listing:
    """Counts by severity of everything listed and of the latest image within it, and that image's top."""

    pipeline: dict[str, int]
    image: dict[str, int]
    top: list[m.Finding]

    def image_counts(self, scope: Scope) -> m.SeverityCounts | None:
        return _counts(self.image) if scope.image_arn is not None else None

    def image_top(self, scope: Scope) -> list[m.Finding] | None:
        return self.top if scope.image_arn is not None else None


def _list_own(scope: Scope, filter_name: str, value: str) -> _Listing:
    """One listing, drained: every count and the top list come from the same pages."""
    listed = dict.fromkeys(SEVERITIES, 0)
    image = dict.fromkeys(SEVERITIES, 0)

    def image_findings() -> Iterable[m.Finding]:
        for raw in aws_findings.iter_findings(scope.client, filter_name, value):
            severity = _known(raw.get("severity"))
            listed[severity] += 1
            if scope.image_arn is not None and raw.get("imageBuildVersionArn") == scope.image_arn:
                image[severity] += 1
                yield summarize(raw)

    found = image_findings()
    worst = top(found, scope.top_n)
    collections.deque(found, maxlen=0)  # the counts need every page, whatever ``top`` left unread (n = 0)
    return _Listing(listed, image, worst)


def _known(severity: Any) -> str:
    """A severity this operator counts; anything else is untriaged, as ``summarize`` reads it."""
    return str(severity) if str(severity) in _RANK else "UNTRIAGED"


def _counts(by_severity: dict[str, int]) -> m.SeverityCounts:
    return m.SeverityCounts(
        **{field: by_severity[severity] for field, severity in zip(SEVERITY_FIELDS, SEVERITIES, strict=True)},
        total=sum(by_severity.values()),
    )


def needed_severities(counts: m.SeverityCounts, n: int) -> list[str]:
    """The severities the n worst findings come from (all of each but maybe the last)."""
    needed: list[str] = []
    collected = 0
    for severity in SEVERITIES:
        if collected >= n:
            break
        count = count_of(counts, severity)
        if count:
            needed.append(severity)
            collected += count
    return needed


def refresh_top(scope: Scope, counts: m.SeverityCounts, buckets: AccountBuckets) -> list[m.Finding]:
    """The ``top_n`` worst findings of the latest image, reading the fewest pages."""
    if scope.image_arn is None or scope.top_n == 0 or counts.total == 0:
        return []
    needed = needed_severities(counts, scope.top_n)
    per_page = aws_findings.page_size(scope.client)
    sharing = buckets.note_pipeline(scope.region, scope.pipeline_arn)
    if _bucket_pages(scope, needed, buckets, per_page) / sharing < math.ceil(counts.total / per_page):
        image_arn = scope.image_arn
        pool = [
            entry
            for severity in needed
            for entry in buckets.bucket(
                scope.client, scope.region, severity, scope.max_age, scope.top_n, scope.settled_at,
            ).worst_of(image_arn)
        ]
        return [m.Finding.model_validate_json(data) for _, data in heapq.nsmallest(scope.top_n, pool)]
    return top(_image_findings(scope, counts, needed), scope.top_n)


def _bucket_pages(scope: Scope, needed: list[str], buckets: AccountBuckets, per_page: int) -> float:
    """Pages the shared account-wide lists still need (the image's own listing: up to every page, since
    the API does not promise an order)."""
    pages = 0.0
    account: dict[str, int] | None = None
    for severity in needed:
        if severity not in _AGGREGATED:
            return math.inf  # small buckets keep no findings; LOW's account-wide size is unknown
        if buckets.cached(scope.region, severity, scope.max_age, scope.top_n, scope.settled_at) is not None:
            continue
        if account is None:
            account = buckets.account_counts(scope.client, scope.region, scope.max_age)
        pages += math.ceil(account[severity.lower()] / per_page)
    return pages


def _image_findings(scope: Scope, counts: m.SeverityCounts, needed: list[str]) -> Iterable[m.Finding]:
    """The image's findings of the needed severities; stops once all of them have been seen."""
    assert scope.image_arn is not None
    remaining = {severity: count_of(counts, severity) for severity in needed}
    left = sum(remaining.values())
    for raw in aws_findings.iter_findings(scope.client, "imageBuildVersionArn", scope.image_arn):
        severity = str(raw.get("severity"))
        if severity in remaining:
            yield summarize(raw)
            left -= 1
            if left <= 0:
                return
