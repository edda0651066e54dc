"""The findings summary reads the fewest pages: shared account-wide lists when they are cheaper, the image's
own pages (stopping early) when they are not — and gets the same answer either way."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import boto3
import pytest
from botocore import config as botocore_config

from imagescan.aws import findings as aws_findings
from imagescan.emulator import server
from imagescan.models import imagepipeline as m
from imagescan.reconcile import findings


@pytest.fixture
def emu() -> Iterator[server.Emulator]:
    with server.Emulator(seed=5, pipelines=0) as emulator:
        yield emulator


def _client(emu: server.Emulator):  # type: ignore[no-untyped-def]
    return boto3.client("imagebuilder", region_name="us-east-1", endpoint_url=emu.endpoint_url,
                        config=botocore_config.Config(retries={"mode": "standard"}))


def _scope(emu: server.Emulator, pipeline_arn: str, top_n: int) -> findings.Scope:
    image = emu.world.image_arns(pipeline_arn)[-1]
    return findings.Scope(client=_client(emu), region="us-east-1", pipeline_arn=pipeline_arn, image_arn=image,
                          top_n=top_n, max_age=600, settled_at=-math.inf, others_settled_at=-math.inf)


def _expected(emu: server.Emulator, image_arn: str, n: int) -> list[str]:
    raws = [emu.world.expand(r) for r in emu.world.findings("imageBuildVersionArn", image_arn)]
    return [f.vulnerability_id for f in findings.top([findings.summarize(r) for r in raws], n)]


def test_small_image_in_a_big_account_reads_its_own_pages(emu: server.Emulator) -> None:
    emu.world.add_pipeline(name="big", findings={"CRITICAL": 900, "HIGH": 900})
    small = emu.world.add_pipeline(name="small", findings={"CRITICAL": 2, "HIGH": 3, "LOW": 40})
    scope = _scope(emu, small, top_n=4)
    buckets = findings.AccountBuckets()
    counts = findings.refresh_counts(scope, buckets).image
    assert counts is not None
    emu.reset_calls()
    top = findings.refresh_top(scope, counts, buckets)
    assert [f.vulnerability_id for f in top] == _expected(emu, scope.image_arn or "", 4)
    assert emu.calls["ListImageScanFindings"] == 1  # one page of the image, not 18 pages of the account


def test_many_pipelines_share_the_account_lists(emu: server.Emulator) -> None:
    arns = [emu.world.add_pipeline(name=f"p{i}", findings={"CRITICAL": 3, "HIGH": 10, "MEDIUM": 60})
            for i in range(30)]
    buckets = findings.AccountBuckets()
    for arn in arns:  # every pipeline has been seen once, as after the first refresh
        buckets.note_pipeline("us-east-1", arn)
    emu.reset_calls()
    for arn in arns:
        scope = _scope(emu, arn, top_n=5)
        counts = m.SeverityCounts(critical=3, high=10, medium=60, total=73)
        top = findings.refresh_top(scope, counts, buckets)
        assert [f.vulnerability_id for f in top] == _expected(emu, scope.image_arn or "", 5)
    # 30 pipelines read the shared CRITICAL and HIGH lists (90 + 300 findings) once, instead of 30 pages each
    # (pages of 25 or 100 findings, as the installed botocore's model says).
    per_page = aws_findings.page_size(_client(emu))
    assert emu.calls["ListImageScanFindings"] <= math.ceil(90 / per_page) + math.ceil(300 / per_page) < 30


@pytest.mark.parametrize(("others_described", "listed"), [(True, 15), (False, 39)])
def test_a_build_newer_than_the_shared_lists_is_counted_from_the_fewest_pages(
        emu: server.Emulator, others_described: bool, listed: int) -> None:
    for i in range(40):  # the account's small lists: 400 findings each, several pages
        emu.world.add_pipeline(name=f"noisy{i}", findings={"INFORMATIONAL": 10, "UNTRIAGED": 10})
    arn = emu.world.add_pipeline(name="web", findings={"HIGH": 2, "LOW": 17, "INFORMATIONAL": 4, "UNTRIAGED": 1})
    buckets = findings.AccountBuckets()
    findings.refresh_counts(_scope(emu, arn, top_n=50), buckets)  # reads the shared lists
    image = emu.world.add_image(arn, findings={"CRITICAL": 2, "HIGH": 1, "MEDIUM": 2, "LOW": 3,
                                               "INFORMATIONAL": 4, "UNTRIAGED": 3})
    emu.reset_calls()
    now = buckets.now()
    scope = dataclasses.replace(_scope(emu, arn, top_n=50), settled_at=now,
                                others_settled_at=-math.inf if others_described else now)
    counts = findings.refresh_counts(scope, buckets)
    assert counts.image == _six(emu.world.severity_counts(image_arn=image))
    assert counts.pipeline == _six(emu.world.severity_counts(pipeline_arn=arn))
    assert [f.vulnerability_id for f in counts.top or []] == _expected(emu, image, 50)
    # The new build's 15 findings when the shared lists still describe the older build, else the pipeline's 39:
    # not the 400 + 400 of the shared lists.
    assert emu.calls["ListImageScanFindings"] == math.ceil(listed / aws_findings.page_size(_client(emu)))


def _six(aws: dict[str, int]) -> m.SeverityCounts:
    return m.SeverityCounts(**{severity.lower(): n for severity, n in aws.items()}, total=sum(aws.values()))
