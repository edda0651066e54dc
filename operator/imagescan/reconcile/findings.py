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
import json
import math
import threading
import time
import zlib
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
# What one finding may take in status (the CRD's descriptions say the same): enough for the console's panel,
# bounded so that status stays within 32 KiB at top 10 without trimming (``pipeline.fit`` trims the rest).
DESCRIPTION_LIMIT = 400
TITLE_LIMIT = 200
REASON_LIMIT = 200
TEXT_LIMIT = 128  # package names and versions, sources, metric names: real ones are far shorter
FILE_PATH_LIMIT = 256
URL_LIMIT = 256  # a longer URL or CVSS vector is left out rather than cut: a cut one leads nowhere
NVD_URL = "https://nvd.nist.gov/vuln/detail/{}"


def summarize(raw: dict[str, Any]) -> m.Finding:
    """What status keeps of an ImageScanFinding: what the console's finding panel shows, each text and list
    bounded (``Finding.omitted`` counts what a list leaves out)."""
    details = raw.get("packageVulnerabilityDetails") or {}
    vulnerability_id = _vulnerability_id(raw)
    packages = [_package(p) for p in details.get("vulnerablePackages") or [] if p]
    related = [str(r) for r in details.get("relatedVulnerabilities") or [] if r is not None]
    links = [str(u) for u in details.get("referenceUrls") or [] if u is not None]
    kept_links = [u for u in links if len(u) <= URL_LIMIT][: m.MAX_REFERENCE_URLS]
    cvss = _pick_cvss(details.get("cvss") or [])
    recommendation = (raw.get("remediation") or {}).get("recommendation") or {}
    return m.Finding(
        vulnerability_id=vulnerability_id,
        severity=_severity(raw),
        title=cut(raw.get("title"), TITLE_LIMIT),
        description=cut(raw.get("description"), DESCRIPTION_LIMIT),
        inspector_score=raw.get("inspectorScore"),
        cvss=m.CvssScore(
            base_score=cvss.get("baseScore"), source=cut(cvss.get("source"), TEXT_LIMIT),
            version=cut(cvss.get("version"), TEXT_LIMIT), vector=whole(cvss.get("scoringVector"), URL_LIMIT),
        ) if cvss else None,
        adjusted_cvss=_adjusted((raw.get("inspectorScoreDetails") or {}).get("adjustedCvss")),
        package=packages[0].model_copy(update={"package_manager": None, "file_path": None}) if packages else None,
        packages=packages[: m.MAX_PACKAGES] or None,
        fix_available=raw.get("fixAvailable"),
        remediation=m.Remediation(
            text=cut(recommendation.get("text"), REMEDIATION_TEXT_LIMIT),
            url=whole(recommendation.get("url"), URL_LIMIT),
        ) if recommendation else None,
        related_vulnerabilities=related[: m.MAX_RELATED] or None,
        source=cut(details.get("source"), TEXT_LIMIT),
        vendor_severity=cut(details.get("vendorSeverity"), TEXT_LIMIT),
        vendor_published_at=_timestamp(details.get("vendorCreatedAt")),
        vendor_updated_at=_timestamp(details.get("vendorUpdatedAt")),
        first_observed_at=_timestamp(raw.get("firstObservedAt")),
        nvd_url=NVD_URL.format(vulnerability_id) if vulnerability_id.startswith("CVE-")
        else whole(details.get("sourceUrl"), URL_LIMIT),
        reference_urls=kept_links or None,
        omitted=_omitted(packages=len(packages) - m.MAX_PACKAGES, related_vulnerabilities=len(related) - m.MAX_RELATED,
                         reference_urls=len(links) - len(kept_links)),
    )


def cut(text: Any, limit: int) -> str | None:
    """``text`` in at most ``limit`` characters, ending in an ellipsis when it was cut."""
    if text is None:
        return None
    whole = str(text)
    return whole if len(whole) <= limit else whole[: limit - 1] + "…"


def whole(text: Any, limit: int) -> str | None:
    """``text`` if it has at most ``limit`` characters, else None (for what a cut would break)."""
    return str(text) if text is not None and len(str(text)) <= limit else None


def _cut_start(text: Any, limit: int) -> str | None:
    """The end of ``text`` (where a path names the package) in at most ``limit`` characters."""
    if text is None:
        return None
    whole = str(text)
    return whole if len(whole) <= limit else "…" + whole[len(whole) - limit + 1:]


def _vulnerability_id(raw: dict[str, Any]) -> str:
    details = raw.get("packageVulnerabilityDetails") or {}
    return str(details.get("vulnerabilityId") or raw.get("title") or "unknown")


def _severity(raw: dict[str, Any]) -> str:
    return str(raw.get("severity") or "UNTRIAGED")


def sort_key(raw: dict[str, Any]) -> tuple[int, float, str]:
    """``worst_first`` of ``summarize(raw)``, without building it: most findings listed are never kept."""
    return severity_rank(_severity(raw)), -(raw.get("inspectorScore") or 0.0), _vulnerability_id(raw)


def _package(raw: dict[str, Any]) -> m.PackageRef:
    return m.PackageRef(
        name=cut(raw.get("name"), TEXT_LIMIT), installed_version=cut(_version(raw), TEXT_LIMIT),
        fixed_in_version=cut(raw.get("fixedInVersion"), TEXT_LIMIT),
        package_manager=cut(raw.get("packageManager"), TEXT_LIMIT),
        file_path=_cut_start(raw.get("filePath"), FILE_PATH_LIMIT),
    )


def _adjusted(raw: dict[str, Any] | None) -> m.AdjustedCvss | None:
    if not raw:
        return None
    adjustments = [
        m.CvssAdjustment(metric=cut(a.get("metric"), TEXT_LIMIT), reason=cut(a.get("reason"), REASON_LIMIT))
        for a in raw.get("adjustments") or [] if a
    ]
    return m.AdjustedCvss(
        score=raw.get("score"), vector=whole(raw.get("scoringVector"), URL_LIMIT),
        version=cut(raw.get("version"), TEXT_LIMIT),
        score_source=cut(raw.get("scoreSource"), TEXT_LIMIT), cvss_source=cut(raw.get("cvssSource"), TEXT_LIMIT),
        adjustments=adjustments[: m.MAX_ADJUSTMENTS] or None,
    )


def _omitted(**left_out: int) -> m.Omitted | None:
    counts = {name: count for name, count in left_out.items() if count > 0}
    return m.Omitted(**counts) if counts else None


def _pick_cvss(scores: list[dict[str, Any]]) -> dict[str, Any]:
    """NVD's score if present (what people compare against), else the newest CVSS version given."""
    scores = [score for score in scores if score]
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


def top_of_raw(raws: Iterable[dict[str, Any]], n: int) -> list[m.Finding]:
    """``top`` of ImageScanFindings as AWS returns them: only the ``n`` kept are summarized."""
    return [summarize(raw) for raw in heapq.nsmallest(n, raws, key=sort_key)]


# What a finding keeps as status runs out of room, most first. Prose and links go first (the NVD page has
# them); then everything but what status held before the console's detail was added; then all but what a
# FindingsPolicy and the findings table read (the NVD link of a CVE is known from its id).
_WITHOUT_PROSE = frozenset(m.Finding.model_fields) - {"title", "description", "reference_urls"}
_SUMMARY = frozenset({
    "vulnerability_id", "severity", "inspector_score", "cvss", "package", "fix_available", "remediation",
    "vendor_published_at", "first_observed_at", "nvd_url", "trimmed",
})
_ESSENTIALS = frozenset({
    "vulnerability_id", "severity", "inspector_score", "cvss", "package", "fix_available", "vendor_published_at",
    "trimmed",
})


def fit_top(summary: m.FindingsStatus, budget: int) -> m.FindingsStatus:
    """``summary`` with its top list in at most ``budget`` bytes of JSON (between the brackets), losing the
    least. From the least severe finding (the end of the list) up, each sheds its detail in steps (prose and
    links, then all but the summary, then all but the essentials) before a worse one loses anything; what
    room that leaves goes back to the worst findings, as much detail as fits. Only when every finding is down
    to its essentials are findings dropped, from the end. ``topTrimmed`` and ``topOmitted`` say how many."""
    levels = [_levels(finding) for finding in summary.top]
    chosen = [0] * len(levels)  # each finding's level: 0 is all of it

    def total() -> int:
        return _list_size([levels[i][level][1] for i, level in enumerate(chosen)])

    for index in reversed(range(len(levels))):
        while total() > budget and chosen[index] < len(levels[index]) - 1:
            chosen[index] += 1
    while levels and total() > budget:
        levels.pop()
        chosen.pop()
    for index, level in enumerate(chosen):
        room = budget - total() + levels[index][level][1]
        chosen[index] = next(fuller for fuller in range(level + 1) if levels[index][fuller][1] <= room)
    listed = [levels[i][level][0] for i, level in enumerate(chosen)]
    trimmed = sum(1 for finding in listed if finding.trimmed)
    dropped = len(summary.top) - len(listed)
    return summary.model_copy(update={
        "top": listed, "top_trimmed": trimmed or None, "top_omitted": (summary.top_omitted or 0) + dropped or None,
    })


def _levels(finding: m.Finding) -> list[tuple[m.Finding, int]]:
    """The finding as each shedding step leaves it (the first: all of it), with its size."""
    levels = [finding]
    for shed in _SHEDDING:
        levels.append(shed(levels[-1]))
    return [(level, _json_size(level)) for level in levels]


def _without_prose(finding: m.Finding) -> m.Finding:
    return _keep_only(finding, _WITHOUT_PROSE)


def _summary(finding: m.Finding) -> m.Finding:
    return _keep_only(finding, _SUMMARY)


def _essentials(finding: m.Finding) -> m.Finding:
    kept = _keep_only(finding, _ESSENTIALS)
    if kept.cvss is None or kept.cvss.vector is None:
        return kept
    return kept.model_copy(update={"cvss": kept.cvss.model_copy(update={"vector": None}), "trimmed": True})


def _keep_only(finding: m.Finding, fields: frozenset[str]) -> m.Finding:
    """The finding without the fields not in ``fields``, marked trimmed if that left anything out."""
    left_out = [name for name in m.Finding.model_fields if name not in fields and getattr(finding, name) is not None]
    if not left_out:
        return finding
    update: dict[str, Any] = {**dict.fromkeys(left_out), "trimmed": True}
    if finding.omitted is not None and "omitted" in fields and "reference_urls" in left_out:
        update["omitted"] = _omitted(packages=finding.omitted.packages or 0,
                                     related_vulnerabilities=finding.omitted.related_vulnerabilities or 0)
    return finding.model_copy(update=update)


_SHEDDING = (_without_prose, _summary, _essentials)


def _json_size(finding: m.Finding) -> int:
    # json.dumps as pipeline.fit measures status: its separators' spaces overstate what the API server stores.
    return len(json.dumps(finding.to_k8s()))


def _list_size(sizes: list[int]) -> int:
    return sum(sizes) + 2 * max(0, len(sizes) - 1)


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


SortKey = tuple[int, float, str]
Entry = tuple[SortKey, bytes]


@dataclasses.dataclass(frozen=True)
class Kept:
    """One image's worst findings in a bucket: their sort keys, and their JSON (one line each) compressed
    together. A finding with the console's detail is about 1.5 KB of JSON, and one image's findings share
    most of their text (package names, links, vectors), so zlib keeps about a sixth of it."""

    keys: tuple[SortKey, ...]
    packed: bytes

    @classmethod
    def of(cls, entries: list[Entry]) -> Kept:
        return cls(tuple(key for key, _ in entries), zlib.compress(b"\n".join(data for _, data in entries)))

    def entries(self) -> list[Entry]:
        # JSON escapes newlines inside strings, so a newline only ever separates two findings.
        return list(zip(self.keys, zlib.decompress(self.packed).split(b"\n"), strict=True))


@dataclasses.dataclass(frozen=True)
class Bucket:
    """The findings of one severity in one account and region, as of ``fetched_at`` (when the listing started,
    on the cache's wall clock, so a build that settled later is known not to be in it): counts per image and
    per pipeline and, for the severities a top list reads from shared lists, each image's ``kept`` worst
    findings (as many as the longest top list asked for, as compressed JSON with their sort keys), so memory
    stays bounded however many findings the account has. The small buckets only serve counts."""

    fetched_at: float
    per_image: dict[str, int]
    per_pipeline: dict[str, int]
    worst: dict[str, Kept] | None
    kept: int = 0

    def serves(self, settled_at: float) -> bool:
        """Whether this list can describe a build whose findings were complete only at ``settled_at``."""
        return self.fetched_at >= settled_at

    def pages(self, per_page: int) -> int:
        """What fetching this list again would cost (an empty listing still costs one call)."""
        return max(1, math.ceil(sum(self.per_image.values()) / per_page))

    def image_count(self, image_arn: str) -> int:
        return self.per_image.get(image_arn, 0)

    def worst_of(self, image_arn: str) -> list[Entry]:
        kept = (self.worst or {}).get(image_arn)
        return kept.entries() if kept is not None else []


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
        worst: dict[str, list[Entry]] = {}
        bounds: dict[str, SortKey] = {}  # an image's keep-th worst so far: nothing after it can be kept
        for raw in aws_findings.iter_findings(client, "severity", severity):
            image = str(raw.get("imageBuildVersionArn"))
            pipeline = str(raw.get("imagePipelineArn"))
            per_image[image] = per_image.get(image, 0) + 1
            per_pipeline[pipeline] = per_pipeline.get(pipeline, 0) + 1
            key = sort_key(raw)
            if not keep or (image in bounds and key >= bounds[image]):
                continue
            kept = worst.setdefault(image, [])
            kept.append((key, summarize(raw).model_dump_json(by_alias=True, exclude_none=True).encode()))
            if len(kept) >= 2 * keep:
                kept = worst[image] = heapq.nsmallest(keep, kept)
                bounds[image] = kept[-1][0]
        return Bucket(
            fetched_at=started, per_image=per_image, per_pipeline=per_pipeline,
            worst={image: Kept.of(heapq.nsmallest(keep, kept)) for image, kept in worst.items()} if keep else None,
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
    sole_build: bool = False
    """The latest build is the pipeline's only one (as just listed): its counts are the pipeline's, so one
    aggregation serves both."""

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
    pipeline = aws_findings.severity_counts(scope.client, "imagePipelineArn", scope.pipeline_arn)
    if scope.image_arn is None:
        image = None
    elif scope.sole_build:
        image = pipeline
    else:
        image = aws_findings.severity_counts(scope.client, "imageBuildVersionArn", scope.image_arn)
    aggregated = _Aggregated(pipeline, image)
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

    def image_findings() -> Iterable[dict[str, Any]]:
        for raw in aws_findings.iter_findings(scope.client, filter_name, value):
            severity = _known(raw.get("severity"))
            listed[severity] += 1
            if scope.image_arn is not None and raw.get("imageBuildVersionArn") == scope.image_arn:
                image[severity] += 1
                yield raw

    found = image_findings()
    worst = top_of_raw(found, scope.top_n)
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
    return top_of_raw(_image_findings(scope, counts, needed), scope.top_n)


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


def _image_findings(scope: Scope, counts: m.SeverityCounts, needed: list[str]) -> Iterable[dict[str, Any]]:
    """The image's findings of the needed severities; stops once all of them have been seen."""
    assert scope.image_arn is not None
    remaining = {severity: count_of(counts, severity) for severity in needed}
    left = sum(remaining.values())
    for raw in aws_findings.iter_findings(scope.client, "imageBuildVersionArn", scope.image_arn):
        severity = str(raw.get("severity"))
        if severity in remaining:
            yield raw
            left -= 1
            if left <= 0:
                return
