"""Images, scan findings (shape, order, filters, pagination at scale) and aggregations."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from imagescan.emulator import generator, server

BIG = {"CRITICAL": 3, "HIGH": 10, "MEDIUM": 20, "LOW": 30, "INFORMATIONAL": 4, "UNTRIAGED": 9933}


def _all_findings(ib: Any, **kwargs: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in ib.get_paginator("list_image_scan_findings").paginate(**kwargs):
        assert len(page["findings"]) <= 25
        found += page["findings"]
    return found


def test_images_and_get_image(emu: server.Emulator, ib: Any) -> None:
    for arn in emu.world.pipeline_arns():
        summaries = ib.list_image_pipeline_images(imagePipelineArn=arn)["imageSummaryList"]
        assert [s["arn"] for s in summaries] == emu.world.image_arns(arn)
        image = ib.get_image(imageBuildVersionArn=summaries[-1]["arn"])["image"]
        outputs = image["outputResources"]
        if image["type"] == "DOCKER":
            uri = outputs["containers"][0]["imageUris"][0]
            assert uri.startswith("123456789012.dkr.ecr.us-east-1.amazonaws.com/") and ":1.0.0-" in uri
        else:
            assert outputs["amis"][0]["image"].startswith("ami-")
            assert outputs["amis"][0]["accountId"] == "123456789012"
        assert image["sourcePipelineArn"] == arn


def test_add_image_updates_last_run(emu: server.Emulator, ib: Any) -> None:
    arn = emu.world.pipeline_arns()[1]
    image_arn = emu.world.add_image(arn, findings={"HIGH": 2})
    pipeline = ib.get_image_pipeline(imagePipelineArn=arn)["imagePipeline"]
    assert pipeline["dateLastRun"] == emu.world.image(image_arn)["dateCreated"]  # type: ignore[index]
    assert pipeline["lastRunStatus"] == "AVAILABLE"
    assert emu.world.image_arns(arn)[-1] == image_arn
    assert emu.world.severity_counts(image_arn=image_arn)["HIGH"] == 2


def test_finding_shape_is_complete_and_consistent(emu: server.Emulator, ib: Any) -> None:
    findings = _all_findings(ib)
    assert len(findings) == sum(emu.world.severity_counts().values())
    assert {f["severity"] for f in findings} == set(generator.SEVERITIES)
    for finding in findings:
        details = finding["packageVulnerabilityDetails"]
        assert details["vulnerabilityId"].startswith("CVE-")
        assert isinstance(finding["firstObservedAt"], dt.datetime)
        assert isinstance(details["vendorCreatedAt"], dt.datetime)
        assert finding["fixAvailable"] in ("YES", "NO", "PARTIAL")
        assert finding["remediation"]["recommendation"]["url"].startswith("https://")
        if finding["severity"] == "UNTRIAGED":
            assert "inspectorScore" not in finding and details["cvss"] == []
            continue
        base = details["cvss"][0]
        assert generator.cvss31_base_score(base["scoringVector"]) == base["baseScore"]
        assert generator.severity_for_score(finding["inspectorScore"]) == finding["severity"]
        assert finding["inspectorScoreDetails"]["adjustedCvss"]["score"] == finding["inspectorScore"]


def test_cvss_formula_known_vectors() -> None:
    assert generator.cvss31_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H") == 9.8
    assert generator.cvss31_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H") == 10.0
    assert generator.cvss31_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N") == 6.1
    assert generator.cvss31_base_score("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N") == 5.5


def test_order_is_fixed_but_not_sorted(emu: server.Emulator, ib: Any) -> None:
    first = [f["packageVulnerabilityDetails"]["vulnerabilityId"] for f in _all_findings(ib)]
    second = [f["packageVulnerabilityDetails"]["vulnerabilityId"] for f in _all_findings(ib)]
    assert first == second
    assert first != sorted(first)
    severities = [f["severity"] for f in _all_findings(ib)]
    rank = {s: i for i, s in enumerate(generator.SEVERITIES)}
    assert severities != sorted(severities, key=rank.__getitem__)


def test_ten_thousand_findings_paginate_with_filters(emu: server.Emulator, ib: Any) -> None:
    started = time.perf_counter()
    arn = emu.world.add_pipeline(name="big-ami", images=2, findings=BIG)
    assert time.perf_counter() - started < 2.0
    latest = emu.world.image_arns(arn)[-1]
    by_image = _all_findings(ib, filters=[{"name": "imageBuildVersionArn", "values": [latest]}])
    assert len(by_image) == sum(BIG.values())
    assert len({f["packageVulnerabilityDetails"]["vulnerabilityId"] for f in by_image}) == len(by_image)
    critical = _all_findings(ib, filters=[{"name": "severity", "values": ["CRITICAL"]}])
    assert len(critical) == emu.world.severity_counts()["CRITICAL"]
    assert all(f["severity"] == "CRITICAL" for f in critical)
    assert sum(f["imageBuildVersionArn"] == latest for f in critical) == 3
    pipeline_total = sum(emu.world.severity_counts(pipeline_arn=arn).values())
    page = ib.list_image_scan_findings(filters=[{"name": "imagePipelineArn", "values": [arn]}], maxResults=25)
    assert len(page["findings"]) == 25 and page["nextToken"]
    assert pipeline_total > sum(BIG.values())  # the older build has similar findings too


def test_vulnerability_filter_spans_images(emu: server.Emulator, ib: Any) -> None:
    finding = _all_findings(ib)[0]
    vuln = finding["packageVulnerabilityDetails"]["vulnerabilityId"]
    matches = _all_findings(ib, filters=[{"name": "vulnerabilityId", "values": [vuln]}])
    assert matches and all(m["packageVulnerabilityDetails"]["vulnerabilityId"] == vuln for m in matches)


def test_token_from_another_query_is_rejected(ib: Any) -> None:
    token = ib.list_image_scan_findings(maxResults=1)["nextToken"]
    with pytest.raises(ClientError) as exc:
        ib.list_image_scan_findings(filters=[{"name": "severity", "values": ["LOW"]}], nextToken=token)
    assert exc.value.response["Error"]["Code"] == "InvalidPaginationTokenException"


def _counts(records: dict[str, int]) -> dict[str, int]:
    return {
        "all": sum(records.values()),
        "critical": records["CRITICAL"],
        "high": records["HIGH"],
        "medium": records["MEDIUM"],
    }


def test_aggregations_match_findings(emu: server.Emulator, ib: Any) -> None:
    world = emu.world
    account = ib.list_image_scan_finding_aggregations()
    assert account["aggregationType"] == "accountId"
    assert account["responses"] == [
        {"accountAggregation": {"accountId": world.account_id, "severityCounts": _counts(world.severity_counts())}}
    ]
    arns = world.pipeline_arns()
    by_pipeline = ib.list_image_scan_finding_aggregations(filter={"name": "imagePipelineArn", "values": arns})
    assert by_pipeline["aggregationType"] == "imagePipelineArn"
    assert [r["imagePipelineAggregation"]["severityCounts"] for r in by_pipeline["responses"]] == [
        _counts(world.severity_counts(pipeline_arn=arn)) for arn in arns
    ]
    image = world.image_arns(arns[0])[-1]
    by_image = ib.list_image_scan_finding_aggregations(filter={"name": "imageBuildVersionArn", "values": [image]})
    assert by_image["aggregationType"] == "imageBuildVersionArn"
    assert by_image["responses"][0]["imageAggregation"]["severityCounts"] == _counts(
        world.severity_counts(image_arn=image)
    )
    vuln = world.findings("imageBuildVersionArn", image)[0].vuln
    by_vuln = ib.list_image_scan_finding_aggregations(
        filter={"name": "vulnerabilityId", "values": [vuln.vulnerability_id]}
    )
    counts = by_vuln["responses"][0]["vulnerabilityIdAggregation"]["severityCounts"]
    assert counts["all"] == len(world.findings("vulnerabilityId", vuln.vulnerability_id))
    by_account = ib.list_image_scan_finding_aggregations(filter={"name": "accountId", "values": [world.account_id]})
    assert by_account["responses"] == account["responses"]


def test_seed_is_deterministic() -> None:
    one = server.Emulator(seed=11, pipelines=3)
    two = server.Emulator(seed=11, pipelines=3)
    assert one.world.pipelines() == two.world.pipelines()
    assert [one.world.expand(r) for r in one.world.findings()] == [two.world.expand(r) for r in two.world.findings()]
