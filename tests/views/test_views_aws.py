"""`imagescan findings --source aws` against the Image Builder emulator (real boto3 over HTTP)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any

import pytest

from imagescan import cli
from imagescan.emulator import server
from imagescan.reconcile import findings as summary


@pytest.fixture(scope="module")
def emu() -> Iterator[server.Emulator]:
    """Three pipelines with known findings; the latest builds of alpha and beta share CVEs by chance only."""
    with server.Emulator(seed=11, pipelines=0) as emulator:
        world = emulator.world
        world.add_pipeline("alpha", scanning_enabled=True, images=2,
                           findings={"CRITICAL": 2, "HIGH": 3, "MEDIUM": 4, "LOW": 5, "UNTRIAGED": 1})
        world.add_pipeline("beta", container=True, scanning_enabled=True, images=1,
                           findings={"CRITICAL": 1, "HIGH": 1, "INFORMATIONAL": 2})
        world.add_pipeline("gamma", scanning_enabled=False, images=1, findings={"LOW": 3})
        yield emulator


def run(capsys: pytest.CaptureFixture[str], emu: server.Emulator, *args: str) -> str:
    assert emu.endpoint_url
    code = cli.main(["findings", "--source", "aws", "--aws-endpoint-url", emu.endpoint_url, *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def as_json(capsys: pytest.CaptureFixture[str], emu: server.Emulator, *args: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(run(capsys, emu, *args, "-o", "json"))
    return rows


def test_by_pipeline_uses_aggregations(capsys: pytest.CaptureFixture[str], emu: server.Emulator) -> None:
    emu.reset_calls()
    rows = as_json(capsys, emu, "--by", "pipeline")
    assert emu.calls["ListImageScanFindingAggregations"] == 1 and emu.calls["ListImageScanFindings"] == 0
    assert [r["awsPipeline"] for r in rows] == ["alpha", "beta", "gamma"]
    for row in rows:
        counts = emu.world.severity_counts(pipeline_arn=row["pipelineArn"])
        assert (row["critical"], row["high"], row["medium"]) == (counts["CRITICAL"], counts["HIGH"], counts["MEDIUM"])
        assert row["total"] == sum(counts.values())
        assert row["low"] is None and row["informational"] is None and row["untriaged"] is None  # not invented
    assert [r["scanning"] for r in rows] == [True, True, False]
    out = run(capsys, emu, "--by", "pipeline")
    lines = out.splitlines()
    assert lines[0].split() == ["AWS", "PIPELINE", "ACCOUNT", "REGION", "SCANNING", "CRITICAL", "HIGH", "MEDIUM",
                                "LOW", "INFORMATIONAL", "UNTRIAGED", "TOTAL"]
    assert lines[1].split()[1:3] == [emu.world.account_id, emu.world.region]
    assert lines[1].split()[7:10] == ["-", "-", "-"]
    assert "AWS reports only critical, high and medium" in out
    critical = as_json(capsys, emu, "--by", "pipeline", "--severity", "CRITICAL")
    assert [r["awsPipeline"] for r in critical] == ["alpha", "beta"]


def test_by_image(capsys: pytest.CaptureFixture[str], emu: server.Emulator) -> None:
    rows = as_json(capsys, emu, "--by", "image", "--pipeline", "alpha", "--pipeline", "beta")
    assert [r["pipeline"] for r in rows] == ["alpha", "beta"]
    for row in rows:
        latest = emu.world.image_arns(next(a for a in emu.world.pipeline_arns() if a.endswith("/" + row["pipeline"])))
        assert row["imageArn"] == latest[-1]
        counts = emu.world.severity_counts(image_arn=row["imageArn"])
        assert (row["critical"], row["high"], row["total"]) == (counts["CRITICAL"], counts["HIGH"],
                                                                sum(counts.values()))
    assert rows[0]["amis"] and rows[1]["containerImages"]


def test_by_vulnerability_with_severity_filter(capsys: pytest.CaptureFixture[str], emu: server.Emulator) -> None:
    emu.reset_calls()
    rows = as_json(capsys, emu, "--by", "vulnerability", "--severity", "critical")
    assert emu.calls["ListImageScanFindings"] == 1  # one severity-filtered listing, one page
    records = emu.world.findings("severity", "CRITICAL")
    expected: dict[str, set[str]] = {}
    for record in records:
        expected.setdefault(record.vuln.vulnerability_id, set()).add(record.pipeline_arn)
    assert {r["vulnerabilityId"]: r["pipelines"] for r in rows} == {k: len(v) for k, v in expected.items()}
    assert all(r["severity"] == "CRITICAL" for r in rows)
    assert all(r["nvdUrl"] == f"https://nvd.nist.gov/vuln/detail/{r['vulnerabilityId']}" for r in rows)
    assert [r["pipelines"] for r in rows] == sorted((r["pipelines"] for r in rows), reverse=True)

    emu.reset_calls()
    two = as_json(capsys, emu, "--severity", "high", "--severity", "untriaged")
    assert emu.calls["ListImageScanFindings"] == 2  # exactly one filter per call
    assert len(two) == len(emu.world.findings("severity", "HIGH")) + len(emu.world.findings("severity", "UNTRIAGED"))
    assert [r["severity"] for r in two] == sorted((r["severity"] for r in two), key=["HIGH", "UNTRIAGED"].index)


def test_all_findings_table(capsys: pytest.CaptureFixture[str], emu: server.Emulator) -> None:
    out = run(capsys, emu, "--pipeline", "beta")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["PIPELINE", "IMAGE", "VULNERABILITY"]
    assert len(lines) == 1 + 4 + 2  # header, beta's four findings, blank line and footer
    assert [line.split()[3] for line in lines[1:5]] == ["CRITICAL", "HIGH", "INFORMATIONAL", "INFORMATIONAL"]
    assert "ListImageScanFindings" in lines[-1]


def test_unreachable_endpoint_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["findings", "--source", "aws", "--aws-endpoint-url", "http://127.0.0.1:9", "--by", "pipeline"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ") and "Could not connect" in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_access_denied_and_no_credentials(capsys: pytest.CaptureFixture[str], emu: server.Emulator,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert emu.endpoint_url
    emu.inject_faults(codes=("AccessDeniedException",), operations=["ListImageScanFindings"], count=1)
    try:
        assert cli.main(["findings", "--source", "aws", "--aws-endpoint-url", emu.endpoint_url]) == 1
    finally:
        emu.clear_faults()
    err = capsys.readouterr().err
    assert err.startswith("error: ListImageScanFindings: AccessDeniedException") and err.count("\n") == 1

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert cli.main(["findings", "--source", "aws", "--aws-endpoint-url", emu.endpoint_url]) == 1
    assert capsys.readouterr().err.startswith("error: no AWS credentials")

    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert cli.main(["findings", "--source", "aws", "--by", "image"]) == 1
    assert "no AWS region" in capsys.readouterr().err


def _as_boto3_returns(raw: dict[str, Any]) -> dict[str, Any]:
    """An emulator finding with its timestamps parsed, as boto3 hands it over."""
    def moment(value: float) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(value, tz=datetime.UTC)

    details = raw["packageVulnerabilityDetails"]
    return {**raw, "firstObservedAt": moment(raw["firstObservedAt"]), "packageVulnerabilityDetails": {
        **details, **{key: moment(details[key]) for key in ("vendorCreatedAt", "vendorUpdatedAt") if key in details}}}


def test_detail_from_aws(capsys: pytest.CaptureFixture[str], emu: server.Emulator) -> None:
    rows = as_json(capsys, emu, "--detail", "--pipeline", "alpha", "--severity", "critical")
    records = [r for r in emu.world.findings("severity", "CRITICAL") if r.pipeline_arn.endswith("/alpha")]
    expected = [summary.summarize(_as_boto3_returns(emu.world.expand(r))) for r in records]
    assert len(rows) == len(records) == 4  # two builds, two criticals each
    by_key = {(f.vulnerability_id, f.first_observed_at): f.to_k8s() for f in expected}
    for row in rows:
        shown = {k: v for k, v in row.items() if k not in ("namespace", "pipeline", "account", "image")}
        assert shown == by_key[(row["vulnerabilityId"], row["firstObservedAt"])]
        assert row["pipeline"] == "alpha" and row["namespace"] is None
    assert any(r.get("adjustedCvss", {}).get("adjustments") for r in rows) or all(
        r["inspectorScore"] == r["cvss"]["baseScore"] for r in rows)

    out = run(capsys, emu, "--detail", "--pipeline", "alpha", "--severity", "critical")
    for row in rows:
        assert row["title"] in out and row["description"][:60] in out
        for package in row["packages"]:
            assert package["name"] in out
        for adjustment in row.get("adjustedCvss", {}).get("adjustments", []):
            assert f"  - {adjustment['metric']}: {adjustment['reason']}" in out
    assert out.count("\nInspector score:") == 4 and "ListImageScanFindings" in out.splitlines()[-1]
