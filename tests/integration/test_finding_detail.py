"""The console's finding detail end to end: what ``status.findings.top[]`` shows of each finding is what AWS
(the emulator) holds for the latest image: every package, the score breakdown with Inspector's adjustments
and their reasons, related ids, the description, dates and links. The operator runs at the shipped defaults;
only spec.findings.top is raised so that the list reaches findings with several packages."""

from __future__ import annotations

import datetime
from typing import Any

from imagescan.emulator import server
from imagescan.reconcile import findings
from tests.integration import harness
from tests.integration.harness import wait_for

FINDINGS = {"CRITICAL": 8, "HIGH": 30, "MEDIUM": 20, "LOW": 5}
TOP = 20


def _iso(timestamp: float) -> str:
    """A time as the operator writes it (botocore parses AWS's timestamps into UTC datetimes)."""
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC).isoformat().replace("+00:00", "Z")


def _version(package: dict[str, Any]) -> str:
    return f"{package['version']}-{package['release']}" if package.get("release") else str(package["version"])


def _assert_detail(shown: dict[str, Any], raw: dict[str, Any]) -> None:
    """One status entry against the ImageScanFinding AWS returns for it."""
    details = raw["packageVulnerabilityDetails"]
    assert shown["title"] == raw["title"]
    assert raw["description"].startswith(shown["description"].removesuffix("…"))
    assert [
        (p["name"], p["installedVersion"], p["fixedInVersion"], p["packageManager"], p.get("filePath"))
        for p in shown["packages"]
    ] == [
        (p["name"], _version(p), p["fixedInVersion"], p["packageManager"], p.get("filePath"))
        for p in details["vulnerablePackages"]
    ]
    assert shown["package"] == {k: v for k, v in shown["packages"][0].items()
                                if k in ("name", "installedVersion", "fixedInVersion")}
    cvss = details["cvss"][0]
    assert shown["cvss"] == {"baseScore": cvss["baseScore"], "source": cvss["source"], "version": cvss["version"],
                             "vector": cvss["scoringVector"]}
    adjusted = (raw.get("inspectorScoreDetails") or {}).get("adjustedCvss")
    if adjusted is None:
        assert "adjustedCvss" not in shown and "inspectorScore" not in shown
    else:
        assert shown["inspectorScore"] == adjusted["score"]
        assert shown["adjustedCvss"] == {
            "score": adjusted["score"], "vector": adjusted["scoringVector"], "version": adjusted["version"],
            "scoreSource": adjusted["scoreSource"], "cvssSource": adjusted["cvssSource"],
            **({"adjustments": adjusted["adjustments"]} if adjusted["adjustments"] else {}),
        }
    assert shown.get("relatedVulnerabilities", []) == details["relatedVulnerabilities"]
    assert shown["referenceUrls"] == details["referenceUrls"]
    assert shown["remediation"] == raw["remediation"]["recommendation"]
    assert (shown["vendorPublishedAt"], shown["vendorUpdatedAt"], shown["firstObservedAt"]) == (
        _iso(details["vendorCreatedAt"]), _iso(details["vendorUpdatedAt"]), _iso(raw["firstObservedAt"]))
    assert (shown["source"], shown["vendorSeverity"], shown["fixAvailable"]) == (
        details["source"], details["vendorSeverity"], raw["fixAvailable"])
    assert shown["nvdUrl"] == f"https://nvd.nist.gov/vuln/detail/{shown['vulnerabilityId']}"
    assert "trimmed" not in shown and "omitted" not in shown


def test_status_shows_every_finding_in_the_consoles_detail(
        emulator: server.Emulator, pipelines: harness.Pipelines) -> None:
    arn = emulator.world.add_pipeline(name="detail", scanning_enabled=True, images=2, findings=FINDINGS)
    pipelines.create("detail", {"pipelineArn": arn, "findings": {"top": TOP}})
    pipelines.wait_ready("detail")
    obj = wait_for(lambda: (o := pipelines.get("detail")) and len(o["status"].get("findings", {}).get("top", [])) == TOP
                   and o, what="the top list")
    status = obj["status"]["findings"]
    image = emulator.world.image_arns(arn)[-1]
    assert status["latestImage"]["arn"] == image
    raws = {}
    for record in emulator.world.findings("imageBuildVersionArn", image):
        raw = emulator.world.expand(record)
        raws[raw["packageVulnerabilityDetails"]["vulnerabilityId"]] = raw

    top = status["top"]
    expected = findings.top_of_raw(raws.values(), TOP)
    assert [f["vulnerabilityId"] for f in top] == [f.vulnerability_id for f in expected]
    for shown in top:
        _assert_detail(shown, raws[shown["vulnerabilityId"]])
    # the seed gives the list what the panel is for: several packages, adjustments with reasons, related ids
    assert any(len(f["packages"]) > 1 for f in top)
    assert any(f.get("adjustedCvss", {}).get("adjustments") for f in top)
    assert any(f.get("relatedVulnerabilities") for f in top)
    assert "topTrimmed" not in status and "topOmitted" not in status  # twenty of these fit whole
