"""The shared account-wide lists never describe a build newer than them, with a clock the test controls.

AWS is replaced by canned findings: ``Account`` answers the aggregation and listing calls that
``imagescan.aws.findings`` would send and counts the listing pages.
"""

from __future__ import annotations

import collections
import datetime
import math
from collections.abc import Iterator
from typing import Any

import pytest

from imagescan.aws import findings as aws_findings
from imagescan.models import imagepipeline as m
from imagescan.reconcile import findings, pipeline

REGION = "us-east-1"
PIPELINE = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/web"
OLD = f"{PIPELINE.replace('image-pipeline', 'image')}/1.0.0/1"
NEW = f"{PIPELINE.replace('image-pipeline', 'image')}/1.0.0/2"
PER_PAGE = 10


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Account:
    """Findings by image, served the way the listing and aggregation calls would serve them."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.findings: list[dict[str, Any]] = []
        self.pages: collections.Counter[str] = collections.Counter()  # listing pages by filter name
        self.seconds_per_page = 0.0

    def build(self, image: str, counts: dict[str, int]) -> None:
        for severity, count in counts.items():
            self.findings += [{
                "severity": severity, "imageBuildVersionArn": image, "imagePipelineArn": PIPELINE,
                "inspectorScore": float(index % 10), "title": f"{image[-1]}-{severity}-{index}",
            } for index in range(count)]

    def iter_findings(self, client: Any, name: str, value: str) -> Iterator[dict[str, Any]]:
        found = [f for f in self.findings if f[name] == value]
        for start in range(0, max(1, len(found)), PER_PAGE):
            self.pages[name] += 1
            self.clock.now += self.seconds_per_page
            yield from found[start:start + PER_PAGE]

    def severity_counts(self, client: Any, name: str | None = None, value: str | None = None) -> dict[str, int]:
        found = [f for f in self.findings if name is None or f[name] == value]
        counts = {level: sum(1 for f in found if f["severity"] == level.upper())
                  for level in ("critical", "high", "medium")}
        return {"all": len(found), **counts}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def account(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Account:
    fake = Account(clock)
    monkeypatch.setattr(aws_findings, "iter_findings", fake.iter_findings)
    monkeypatch.setattr(aws_findings, "severity_counts", fake.severity_counts)
    monkeypatch.setattr(aws_findings, "page_size", lambda client: PER_PAGE)
    return fake


def _scope(image: str, settled_at: float, top_n: int = 50, others_settled_at: float | None = None) -> findings.Scope:
    """By default the other builds are as new as the latest (the shared lists may describe none of them)."""
    return findings.Scope(client=None, region=REGION, pipeline_arn=PIPELINE, image_arn=image, top_n=top_n,
                          max_age=3600, settled_at=settled_at,
                          others_settled_at=settled_at if others_settled_at is None else others_settled_at)


def _six(counts: dict[str, int]) -> m.SeverityCounts:
    levels = {severity.lower(): counts.get(severity, 0) for severity in findings.SEVERITIES}
    return m.SeverityCounts(**levels, total=sum(levels.values()))


def test_a_list_serves_builds_that_settled_before_its_listing_started(account: Account, clock: Clock) -> None:
    account.build(OLD, {"UNTRIAGED": 2})
    account.seconds_per_page = 5.0  # the listing takes time; it vouches only for its start
    buckets = findings.AccountBuckets(clock)
    started = clock.now
    bucket = buckets.bucket(None, REGION, "UNTRIAGED", max_age=60)
    assert bucket.fetched_at == started < clock.now
    assert buckets.cached(REGION, "UNTRIAGED", 60, settled_at=started) is bucket
    assert buckets.cached(REGION, "UNTRIAGED", 60, settled_at=started + 1) is None  # a newer build
    assert buckets.current(REGION, "UNTRIAGED", 60) is bucket  # still young: a planner's choice


def test_a_list_newer_than_the_build_is_refetched_only_when_asked_for_a_newer_build(
        account: Account, clock: Clock) -> None:
    account.build(OLD, {"INFORMATIONAL": 1})
    buckets = findings.AccountBuckets(clock)
    buckets.bucket(None, REGION, "INFORMATIONAL", max_age=60)
    clock.now += 10
    account.build(NEW, {"INFORMATIONAL": 4})
    assert buckets.bucket(None, REGION, "INFORMATIONAL", 60, settled_at=clock.now - 20).image_count(NEW) == 0
    assert account.pages["severity"] == 1  # the old build was served from the list it is in
    assert buckets.bucket(None, REGION, "INFORMATIONAL", 60, settled_at=clock.now).image_count(NEW) == 4
    assert account.pages["severity"] == 2


def test_age_still_expires_a_list(account: Account, clock: Clock) -> None:
    buckets = findings.AccountBuckets(clock)
    buckets.bucket(None, REGION, "UNTRIAGED", max_age=60)
    clock.now += 61
    assert buckets.current(REGION, "UNTRIAGED", 60) is None


def test_a_new_build_is_counted_from_the_pipelines_own_listing_when_that_is_cheaper(
        account: Account, clock: Clock) -> None:
    account.build(OLD, {"HIGH": 1, "LOW": 5, "INFORMATIONAL": 2, "UNTRIAGED": 1})
    for other in range(30):  # the rest of the account makes the shared small lists 3 pages each
        account.build(f"other-{other}", {"INFORMATIONAL": 1, "UNTRIAGED": 1})
    for record in account.findings[-60:]:
        record["imagePipelineArn"] = "another"
    buckets = findings.AccountBuckets(clock)
    findings.refresh_counts(_scope(OLD, clock.now), buckets)
    clock.now += 60
    new_build = {"CRITICAL": 2, "HIGH": 1, "MEDIUM": 2, "LOW": 3, "INFORMATIONAL": 4, "UNTRIAGED": 3}
    account.build(NEW, new_build)
    account.pages.clear()

    counts = findings.refresh_counts(_scope(NEW, clock.now), buckets)

    assert counts.image == _six(new_build)
    assert counts.pipeline == _six({"CRITICAL": 2, "HIGH": 2, "MEDIUM": 2, "LOW": 8, "INFORMATIONAL": 6,
                                    "UNTRIAGED": 4})
    assert counts.top is not None and len(counts.top) == 15
    assert account.pages == {"imagePipelineArn": math.ceil(24 / PER_PAGE)}  # 3 pages, not 3 + 3 shared ones


def test_a_big_new_build_refreshes_the_shared_lists_when_they_are_cheaper(account: Account, clock: Clock) -> None:
    account.build(OLD, {"LOW": 1, "INFORMATIONAL": 1})
    buckets = findings.AccountBuckets(clock)
    findings.refresh_counts(_scope(OLD, clock.now), buckets)
    clock.now += 60
    account.build(NEW, {"MEDIUM": 300, "INFORMATIONAL": 4, "UNTRIAGED": 3})
    account.pages.clear()

    counts = findings.refresh_counts(_scope(NEW, clock.now), buckets)

    assert counts.image == _six({"MEDIUM": 300, "INFORMATIONAL": 4, "UNTRIAGED": 3})
    assert counts.top is None  # planned separately, as before
    assert account.pages == {"severity": 2}  # one page per small list instead of 31 of the pipeline


def test_missing_lists_are_fetched_and_shared_as_before(account: Account, clock: Clock) -> None:
    account.build(NEW, {"LOW": 1, "INFORMATIONAL": 1, "UNTRIAGED": 1})
    counts = findings.refresh_counts(_scope(NEW, clock.now), findings.AccountBuckets(clock))
    assert counts.image == _six({"LOW": 1, "INFORMATIONAL": 1, "UNTRIAGED": 1})
    assert account.pages == {"severity": 2}


def test_top_n_zero_still_counts_every_page(account: Account, clock: Clock) -> None:
    account.build(OLD, {"INFORMATIONAL": 1})
    buckets = findings.AccountBuckets(clock)
    findings.refresh_counts(_scope(OLD, clock.now), buckets)
    clock.now += 1
    account.build(NEW, {"LOW": 5, "UNTRIAGED": 1})
    account.pages.clear()
    counts = findings.refresh_counts(_scope(NEW, clock.now, top_n=0), buckets)
    assert counts.image == _six({"LOW": 5, "UNTRIAGED": 1}) and counts.top == []
    assert account.pages == {"imagePipelineArn": 1}


def test_a_new_build_alone_is_listed_when_the_lists_still_describe_the_older_ones(
        account: Account, clock: Clock) -> None:
    account.build(OLD, {"HIGH": 30, "LOW": 5, "INFORMATIONAL": 2, "UNTRIAGED": 1})
    buckets = findings.AccountBuckets(clock)
    described = clock.now
    findings.refresh_counts(_scope(OLD, described), buckets)
    clock.now += 60
    new_build = {"HIGH": 1, "LOW": 3, "INFORMATIONAL": 4, "UNTRIAGED": 3}
    account.build(NEW, new_build)
    account.pages.clear()

    counts = findings.refresh_counts(_scope(NEW, clock.now, others_settled_at=described), buckets)

    assert counts.image == _six(new_build)
    assert counts.pipeline == _six({"HIGH": 31, "LOW": 8, "INFORMATIONAL": 6, "UNTRIAGED": 4})
    assert counts.top is not None and len(counts.top) == 11
    assert account.pages == {"imageBuildVersionArn": 2}  # 11 findings, not the pipeline's 49 (5 pages)


def _latest(arn: str, scan_state: str = "COMPLETED") -> m.LatestImage:
    return m.LatestImage(arn=arn, scan_state=scan_state)


def test_builds_are_settled_as_of_the_status_that_described_them_finished() -> None:
    written = datetime.datetime(2026, 11, 29, 10, tzinfo=datetime.UTC).timestamp()
    previous = m.FindingsStatus(last_refreshed="2026-11-29T10:00:00Z", latest_image=_latest(OLD))
    assert pipeline._settled_by(previous, None) == written + 1  # status keeps whole seconds: round up
    assert pipeline._settled_by(previous, written - 600) == written - 600  # known earlier in this process
    scanning = previous.model_copy(update={"latest_image": _latest(OLD, "SCANNING")})
    assert pipeline._settled_by(scanning, None) is None
    assert pipeline._settled_by(None, None) is None
    assert pipeline._same_settled_build(_latest(OLD), _latest(OLD))
    assert not pipeline._same_settled_build(_latest(OLD), _latest(NEW))  # first seen: only as of now
    assert not pipeline._same_settled_build(_latest(OLD, "SCANNING"), _latest(OLD, "COLLECTING"))
    assert not pipeline._same_settled_build(None, _latest(OLD))


def test_describing_a_build_again_does_not_make_it_newer(clock: Clock) -> None:
    buckets = findings.AccountBuckets(clock)
    buckets.note_settled(PIPELINE, OLD, 100.0)
    buckets.note_settled(PIPELINE, OLD, 200.0)  # a later refresh of the same builds
    assert buckets.settled(PIPELINE, OLD) == 100.0
    assert buckets.settled(PIPELINE, NEW) is None  # a build this process has not seen settle
    buckets.note_settled(PIPELINE, NEW, 300.0)
    assert buckets.settled(PIPELINE, NEW) == 300.0 and buckets.settled(PIPELINE, OLD) is None
