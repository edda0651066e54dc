"""The console's finding detail in status: what ``summarize`` keeps of an ImageScanFinding, and how ``fit``
keeps the worst findings' detail within the 32 KiB status when there is too much of it."""

from __future__ import annotations

import datetime
import json
import random
from typing import Any

import pytest

from imagescan import views
from imagescan.emulator import world as emulator_world
from imagescan.models import imagepipeline as m
from imagescan.models import kstatus
from imagescan.reconcile import findings, pipeline

AWS_MAX = 1024  # botocore's NonEmptyString: the longest text an ImageScanFinding field may hold
WHEN = datetime.datetime(2024, 3, 1, 10, 0, tzinfo=datetime.UTC)
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNTRIAGED")


def raw_finding(index: int, *, severity: str = "CRITICAL", score: float = 9.8, text: int = 40,
                packages: int = 14, related: int = 13, links: int = 8) -> dict[str, Any]:
    """An ImageScanFinding as boto3 returns it (datetimes parsed), every field set, every list longer than
    status keeps; prose at AWS's maximum, identifiers ``text`` characters long."""
    cve = f"CVE-2024-{index:05d}"

    def name(prefix: str, n: int) -> str:
        return (prefix + "-" + "x" * text)[:text]

    return {
        "awsAccountId": "123456789012",
        "imageBuildVersionArn": "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/1",
        "imagePipelineArn": "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/web",
        "type": "PACKAGE_VULNERABILITY",
        "title": f"{cve} - " + "t" * AWS_MAX,
        "description": "d" * AWS_MAX,
        "remediation": {"recommendation": {"text": "r" * AWS_MAX, "url": f"https://example.com/{cve}/{'u' * 200}"}},
        "severity": severity,
        "firstObservedAt": WHEN,
        "updatedAt": WHEN,
        "inspectorScore": score,
        "inspectorScoreDetails": {"adjustedCvss": {
            "scoreSource": "NVD", "cvssSource": "NVD", "version": "3.1", "score": score,
            "scoringVector": "CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H",
            "adjustments": [{"metric": f"Metric {n}", "reason": "why " * 300} for n in range(12)],
        }},
        "packageVulnerabilityDetails": {
            "vulnerabilityId": cve,
            "vulnerablePackages": [
                {"name": name(f"pkg{n}", n), "version": name("1.2.3", n), "release": "4.amzn2023",
                 "packageManager": "OS" if n % 2 else "PIP", "fixedInVersion": name("1.2.4", n),
                 "filePath": "/usr/lib/" + "p" * 500 + f"/pkg{n}/METADATA", "arch": "x86_64", "epoch": 0,
                 "remediation": "dnf update", "sourceLayerHash": "sha256:" + "0" * 64}
                for n in range(packages)
            ],
            "source": "NVD",
            "cvss": [{"baseScore": 9.8, "scoringVector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                      "version": "3.1", "source": "NVD"},
                     {"baseScore": 9.0, "scoringVector": "CVSS:2.0/AV:N", "version": "2.0", "source": "VENDOR"}],
            "relatedVulnerabilities": [f"ALAS-2024-{n:04d}" for n in range(related)],
            "sourceUrl": f"https://nvd.nist.gov/vuln/detail/{cve}",
            "vendorSeverity": "Critical",
            "vendorCreatedAt": WHEN,
            "vendorUpdatedAt": WHEN + datetime.timedelta(days=2),
            "referenceUrls": [*(f"https://example.com/advisory/{n}" for n in range(links)),
                              "https://long/" + "l" * 300],
        },
        "fixAvailable": "PARTIAL",
    }


# --- summarize ----------------------------------------------------------------------------------------------


def test_summarize_keeps_the_console_panel_bounded() -> None:
    finding = findings.summarize(raw_finding(1, packages=14, related=13, links=8))
    assert finding.title is not None and len(finding.title) == findings.TITLE_LIMIT and finding.title.endswith("…")
    assert finding.description == "d" * (findings.DESCRIPTION_LIMIT - 1) + "…"
    assert finding.remediation is not None and finding.remediation.text is not None
    assert len(finding.remediation.text) == findings.REMEDIATION_TEXT_LIMIT
    # every package up to ten, in AWS's order, with manager and path; the rest counted
    assert finding.packages is not None and len(finding.packages) == m.MAX_PACKAGES
    first = finding.packages[0]
    assert (first.name, first.installed_version, first.fixed_in_version, first.package_manager) == (
        "pkg0-" + "x" * 35, "1.2.3-" + "x" * 34 + "-4.amzn2023", "1.2.4-" + "x" * 34, "PIP")
    assert first.file_path is not None and first.file_path.endswith("/pkg0/METADATA")
    assert len(first.file_path) == findings.FILE_PATH_LIMIT and first.file_path.startswith("…")
    # ``package`` stays what it was (the first package, without the new fields) for the FindingsPolicy
    assert finding.package == m.PackageRef(name=first.name, installed_version=first.installed_version,
                                           fixed_in_version=first.fixed_in_version)
    assert finding.related_vulnerabilities == [f"ALAS-2024-{n:04d}" for n in range(10)]
    assert finding.reference_urls == [f"https://example.com/advisory/{n}" for n in range(5)]
    assert finding.omitted == m.Omitted(packages=4, related_vulnerabilities=3, reference_urls=4)


def test_summarize_keeps_the_score_breakdown() -> None:
    finding = findings.summarize(raw_finding(1, score=7.1))
    assert finding.inspector_score == 7.1
    assert finding.cvss == m.CvssScore(base_score=9.8, source="NVD", version="3.1",
                                       vector="CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")
    adjusted = finding.adjusted_cvss
    assert adjusted is not None
    assert (adjusted.score, adjusted.vector, adjusted.version, adjusted.score_source, adjusted.cvss_source) == (
        7.1, "CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", "3.1", "NVD", "NVD")
    assert adjusted.adjustments is not None and len(adjusted.adjustments) == m.MAX_ADJUSTMENTS
    assert adjusted.adjustments[0].metric == "Metric 0"
    assert adjusted.adjustments[0].reason is not None and len(adjusted.adjustments[0].reason) == findings.REASON_LIMIT
    assert (finding.vendor_published_at, finding.vendor_updated_at, finding.first_observed_at) == (
        "2024-03-01T10:00:00Z", "2024-03-03T10:00:00Z", "2024-03-01T10:00:00Z")
    assert (finding.source, finding.vendor_severity, finding.fix_available) == ("NVD", "Critical", "PARTIAL")
    assert finding.nvd_url == "https://nvd.nist.gov/vuln/detail/CVE-2024-00001"


def test_summarize_leaves_out_what_a_cut_would_break() -> None:
    raw = raw_finding(1)
    raw["remediation"]["recommendation"]["url"] = "https://example.com/" + "u" * 300
    raw["packageVulnerabilityDetails"]["cvss"][0]["scoringVector"] = "CVSS:3.1/" + "X:Y/" * 100
    finding = findings.summarize(raw)
    assert finding.remediation is not None and finding.remediation.url is None
    assert finding.cvss is not None and finding.cvss.vector is None and finding.cvss.base_score == 9.8


def test_summarize_of_a_sparse_finding_adds_nothing() -> None:
    finding = findings.summarize({"severity": "LOW", "packageVulnerabilityDetails": {"vulnerabilityId": "GHSA-1"}})
    assert finding.to_k8s() == {"vulnerabilityId": "GHSA-1", "severity": "LOW"}


def test_sort_key_orders_as_the_summaries_do() -> None:
    world = emulator_world.World(seed=5)
    arn = world.add_pipeline(name="keys", scanning_enabled=True, findings={s: 15 for s in SEVERITIES})
    raws = [world.expand(r) for r in world.findings("imagePipelineArn", arn)]
    assert [findings.sort_key(r) for r in raws] == [findings.worst_first(findings.summarize(r)) for r in raws]
    assert findings.top_of_raw(raws, 12) == findings.top([findings.summarize(r) for r in raws], 12)


def test_bucket_entries_survive_compression() -> None:
    entries = [(findings.sort_key(raw), findings.summarize(raw).model_dump_json(by_alias=True).encode())
               for raw in (raw_finding(i) for i in range(3))]
    kept = findings.Kept.of(entries)
    assert kept.entries() == entries
    assert len(kept.packed) < sum(len(data) for _, data in entries) / 5


# --- fit: the worst case ------------------------------------------------------------------------------------


def _worst_case_status(top: list[m.Finding]) -> m.ImagePipelineStatus:
    """Status with everything else at its largest too: long condition messages, many outputs."""
    arn = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/" + "n" * 128
    conditions = [kstatus.make(kind, "True", "Reason", "m" * 1024, 1)
                  for kind in (kstatus.Type.READY, kstatus.Type.STALLED, kstatus.Type.PAUSED)]
    image = m.LatestImage(
        arn=arn.replace("image-pipeline", "image") + "/1.0.0/1", version="1.0.0/1", state="AVAILABLE",
        scan_state="COMPLETED", container_images=[f"123456789012.dkr.ecr.us-east-1.amazonaws.com/r:{n}"
                                                  for n in range(10)],
        severity_counts=m.SeverityCounts(critical=500, total=500),
    )
    return m.ImagePipelineStatus(
        observed_generation=1, conditions=conditions,
        pipeline=m.PipelineStatus(arn=arn, name="n" * 128, account_id="123456789012", region="us-east-1",
                                  kind="Container"),
        findings=m.FindingsStatus(last_refreshed="2024-05-01T00:00:00Z", latest_image=image, top=top),
        last_handled_reconcile_at="a" * m.MAX_ECHOED_ANNOTATION,
    )


def _ranked(count: int, **sizes: int) -> list[m.Finding]:
    """``count`` maximal findings, worst first, of every severity."""
    raws = [raw_finding(i, severity=SEVERITIES[i * len(SEVERITIES) // count], score=round(9.9 - i * 0.1, 1), **sizes)
            for i in range(count)]
    random.Random(0).shuffle(raws)
    return findings.top_of_raw(raws, count)


def _size(status: m.ImagePipelineStatus) -> int:
    return len(json.dumps(status.to_k8s()))


def test_fifty_maximal_findings_fit_and_all_stay_listed() -> None:
    top = _ranked(m.MAX_TOP_FINDINGS)
    status = _worst_case_status(top)
    assert _size(status) > 10 * pipeline.STATUS_LIMIT_BYTES  # far too big as summarized
    fitted = pipeline.fit(status)
    assert pipeline.STATUS_LIMIT_BYTES - 1024 < _size(fitted) <= pipeline.STATUS_LIMIT_BYTES  # little room unused
    kept = fitted.findings
    assert kept is not None
    # nothing dropped: every one of the 50 is listed, in the same order
    assert [f.vulnerability_id for f in kept.top] == [f.vulnerability_id for f in top]
    assert kept.top_omitted is None and kept.top_trimmed == sum(1 for f in kept.top if f.trimmed)
    # detail goes from the end first: a less severe finding never keeps more than a worse one
    shown = [len(f.to_k8s()) for f in kept.top]
    assert shown == sorted(shown, reverse=True) and shown[0] > shown[-1]
    first, last = kept.top[0], kept.top[-1]
    assert first.remediation == top[0].remediation and first.nvd_url == top[0].nvd_url
    # what the FindingsPolicy and the findings table read is kept for every finding
    assert last.trimmed and last.package == top[-1].package and last.fix_available == top[-1].fix_available
    assert last.inspector_score == top[-1].inspector_score and last.cvss is not None
    assert last.cvss.base_score == 9.8 and last.vendor_published_at == top[-1].vendor_published_at


def test_fifty_emulator_findings_keep_the_worst_in_full() -> None:
    world = emulator_world.World(seed=9)
    arn = world.add_pipeline(name="full", scanning_enabled=True, findings={"CRITICAL": 20, "HIGH": 40})
    raws = [world.expand(r) for r in world.findings("imagePipelineArn", arn)]
    top = findings.top_of_raw(raws, m.MAX_TOP_FINDINGS)
    fitted = pipeline.fit(_worst_case_status(top))
    assert _size(fitted) <= pipeline.STATUS_LIMIT_BYTES
    kept = fitted.findings
    assert kept is not None and len(kept.top) == m.MAX_TOP_FINDINGS and kept.top_omitted is None
    full = [f for f in kept.top if not f.trimmed]
    assert len(full) >= 10 and kept.top[: len(full)] == top[: len(full)]  # the ten worst whole, at least
    assert kept.top_trimmed == m.MAX_TOP_FINDINGS - len(full)


def test_detail_is_shed_in_steps_prose_first() -> None:
    top = _ranked(10)
    full = _size(_worst_case_status(top))
    fitted = pipeline.fit(_worst_case_status(top), limit=full - 500)  # a little too big: one's prose goes
    assert fitted.findings is not None and fitted.findings.top[:-1] == top[:-1]
    last = fitted.findings.top[-1]
    assert last.trimmed and last.description is None and last.title is None and last.reference_urls is None
    assert last.packages == top[-1].packages and last.adjusted_cvss == top[-1].adjusted_cvss  # the rest stays
    assert last.omitted == m.Omitted(packages=4, related_vulnerabilities=3)
    assert fitted.findings.top_trimmed == 1
    fitted = pipeline.fit(_worst_case_status(top), limit=full - 20000)  # more: the last ones keep their summary
    assert fitted.findings is not None
    shed = [f for f in fitted.findings.top if f.trimmed]
    assert len(shed) > 1 and shed == fitted.findings.top[-len(shed):]
    assert shed[-1].packages is None and shed[-1].package == top[-1].package


def test_pathological_findings_drop_the_least_severe_and_say_so() -> None:
    top = _ranked(m.MAX_TOP_FINDINGS, text=AWS_MAX)  # every name and version at AWS's longest
    fitted = pipeline.fit(_worst_case_status(top))
    assert _size(fitted) <= pipeline.STATUS_LIMIT_BYTES
    kept = fitted.findings
    assert kept is not None and kept.top_omitted is not None
    assert len(kept.top) + kept.top_omitted == m.MAX_TOP_FINDINGS
    assert [f.vulnerability_id for f in kept.top] == [f.vulnerability_id for f in top[: len(kept.top)]]
    assert all(f.package == g.package and f.severity == g.severity for f, g in zip(kept.top, top, strict=False))


def test_fit_leaves_a_small_status_alone() -> None:
    status = _worst_case_status(_ranked(2, packages=3))
    assert pipeline.fit(status) is status


@pytest.mark.parametrize("limit", [6144, 8192, 16384, 24576])
def test_fit_is_exact_under_any_limit(limit: int) -> None:
    assert _size(_worst_case_status([])) < limit
    fitted = pipeline.fit(_worst_case_status(_ranked(20)), limit=limit)
    assert _size(fitted) <= limit
    assert fitted.findings is not None
    counted = fitted.findings.top_trimmed or 0
    assert counted == sum(1 for f in fitted.findings.top if f.trimmed)


def test_panel_of_a_trimmed_finding_says_so() -> None:
    top = _ranked(10)
    fitted = pipeline.fit(_worst_case_status(top), limit=_size(_worst_case_status(top)) - 20000)
    assert fitted.findings is not None
    refs = [views.FindingRef("default", "web", "1.0.0/1", f) for f in fitted.findings.top]
    rows = views.detail_rows(refs)
    last, first = views.panel(rows[-1]), views.panel(rows[0])
    assert "detail left out to keep status within 32 KiB" in last and "Packages:" in last  # ``package`` still
    assert "Description:" not in last and "Adjustments:" not in last
    assert "detail left out" not in first and "Adjustments:" in first and "(+4 more not kept)" in first
