"""FindingsPolicy evaluation from ImagePipeline status: thresholds, score limit, exemptions, fix filter."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import kopf
import pydantic
import pytest

from imagescan.handlers import findingspolicy
from imagescan.models import findingspolicy as fp
from imagescan.models import imagepipeline as ip
from imagescan.reconcile import details as details_
from imagescan.reconcile import policy

TODAY = datetime.date(2026, 11, 23)


def _finding(cve: str, severity: str, score: float, fix: str = "YES", fixed_in: str = "1.2.3") -> ip.Finding:
    return ip.Finding(vulnerability_id=cve, severity=severity, inspector_score=score, fix_available=fix,
                      package=ip.PackageRef(name="openssl", fixed_in_version=fixed_in))


def _pipeline(name: str, top: list[ip.Finding], labels: dict[str, str] | None = None,
              **counts: int) -> policy.Pipeline:
    latest = ip.SeverityCounts(**counts, total=sum(counts.values()))
    status = ip.ImagePipelineStatus(findings=ip.FindingsStatus(
        severity_counts=latest, latest_image=ip.LatestImage(arn=f"arn:{name}", severity_counts=latest), top=top))
    return policy.Pipeline(name=name, labels=labels or {}, status=status)


def _spec(**fields: Any) -> fp.FindingsPolicySpec:
    return fp.FindingsPolicySpec.model_validate(fields)


WEB = _pipeline("web", [_finding("CVE-1", "CRITICAL", 9.8), _finding("CVE-2", "HIGH", 8.1, fix="NO")],
                {"team": "web"}, critical=1, high=1)
API = _pipeline("api", [_finding("CVE-2", "HIGH", 8.1, fix="NO", fixed_in="NotAvailable")], {"team": "api"}, high=1)


def test_thresholds_judge_each_selected_pipeline() -> None:
    result = policy.evaluate(_spec(thresholds={"critical": 0}), [WEB, API], TODAY)
    assert result.totals == fp.Totals(selected=2, compliant=1, violating=1)
    web = result.verdicts[0]
    assert (web.name, web.compliant) == ("web", False)
    assert web.violations[0].rule == "thresholds.critical"
    assert web.violations[0].message == "1 critical finding(s), at most 0 allowed"
    assert web.counts["critical"] == 1 and web.worst == ["CVE-1", "CVE-2"]


def test_selector_limits_the_pipelines() -> None:
    result = policy.evaluate(_spec(selector={"matchLabels": {"team": "api"}}, thresholds={"high": 0}),
                             [WEB, API], TODAY)
    assert result.totals.selected == 1 and result.verdicts[0].name == "api"
    expression = {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["api"]}]}
    assert [v.name for v in policy.evaluate(_spec(selector=expression), [WEB, API], TODAY).verdicts] == ["web"]


def test_active_exemption_does_not_count_and_an_expired_one_does() -> None:
    exemption = {"vulnerabilityId": "CVE-1", "reason": "mitigated by WAF, JIRA-12", "expires": "2026-12-31"}
    result = policy.evaluate(_spec(thresholds={"critical": 0}, exemptions=[exemption]), [WEB], TODAY)
    assert result.verdicts[0].compliant and result.verdicts[0].counts["critical"] == 0
    assert result.verdicts[0].exact  # every critical finding is listed
    later = policy.evaluate(_spec(thresholds={"critical": 0}, exemptions=[exemption]), [WEB],
                            datetime.date(2027, 1, 1))
    assert not later.verdicts[0].compliant and later.expired_exemptions == ["CVE-1"]


def test_exemption_scoped_to_labelled_pipelines() -> None:
    exemption = {"vulnerabilityId": "CVE-2", "reason": "r", "expires": "2027-01-01",
                 "pipelines": {"matchLabels": {"team": "api"}}}
    result = policy.evaluate(_spec(thresholds={"high": 0}, exemptions=[exemption]), [WEB, API], TODAY)
    assert {v.name: v.compliant for v in result.verdicts} == {"api": True, "web": False}


def test_fix_available_only_ignores_unfixable_findings() -> None:
    result = policy.evaluate(_spec(thresholds={"high": 0}, fixAvailableOnly=True), [WEB, API], TODAY)
    assert all(v.compliant for v in result.verdicts)


def test_max_inspector_score() -> None:
    result = policy.evaluate(_spec(maxInspectorScore=9.0), [WEB, API], TODAY)
    web = next(v for v in result.verdicts if v.name == "web")
    assert not web.compliant and "CVE-1 has Inspector score 9.8" in web.violations[0].message
    assert next(v for v in result.verdicts if v.name == "api").compliant


def test_verdict_is_not_exact_when_a_rule_needs_unlisted_findings() -> None:
    many = _pipeline("many", [_finding("CVE-9", "HIGH", 8.0)], high=40)  # only 1 of 40 highs is listed
    exemption = {"vulnerabilityId": "CVE-9", "reason": "r", "expires": "2027-01-01"}
    verdict = policy.evaluate(_spec(thresholds={"high": 10}, exemptions=[exemption]), [many], TODAY).verdicts[0]
    assert not verdict.exact and verdict.counts["high"] == 39 and not verdict.compliant


def test_all_images_scope_uses_pipeline_counts() -> None:
    status = ip.ImagePipelineStatus(findings=ip.FindingsStatus(
        severity_counts=ip.SeverityCounts(critical=3, total=3),
        latest_image=ip.LatestImage(arn="a", severity_counts=ip.SeverityCounts())))
    old_builds = policy.Pipeline(name="old", labels={}, status=status)
    spec = {"thresholds": {"critical": 0}}
    assert policy.evaluate(_spec(**spec), [old_builds], TODAY).verdicts[0].compliant
    assert not policy.evaluate(_spec(**spec, scope="AllImages"), [old_builds], TODAY).verdicts[0].compliant


def test_pipelines_without_findings_are_unknown_not_compliant() -> None:
    blank = policy.Pipeline(name="new", labels={}, status=ip.ImagePipelineStatus())
    result = policy.evaluate(_spec(thresholds={"critical": 0}), [blank, API], TODAY)
    assert result.totals == fp.Totals(selected=2, compliant=1, violating=0, unknown=1)


def test_top_vulnerabilities_across_pipelines() -> None:
    top = policy.evaluate(_spec(), [WEB, API], TODAY).top_vulnerabilities
    assert [(t.vulnerability_id, t.pipelines) for t in top] == [("CVE-2", 2), ("CVE-1", 1)]
    assert top[0].fixed_in == ["1.2.3"]  # "NotAvailable" is not a version


def test_full_listing_makes_a_verdict_exact() -> None:
    many = _pipeline("many", [_finding("CVE-9", "HIGH", 8.0)], high=40)
    listing = [details_.Detail(f"CVE-{i}", "HIGH", 7.5, "NO" if i % 2 else "YES") for i in range(40)]
    spec = _spec(thresholds={"high": 25}, fixAvailableOnly=True)
    approximate = policy.judge(spec, many, TODAY)
    assert approximate is not None and not approximate.exact and not approximate.compliant
    exact = policy.judge(spec, many, TODAY, listing)
    assert exact is not None and exact.exact and exact.counts["high"] == 20 and exact.compliant


def test_score_limit_sees_findings_beyond_the_listed_ones() -> None:
    listing = [details_.Detail("CVE-1", "HIGH", 7.0, "YES"), details_.Detail("CVE-2", "HIGH", 8.9, "YES")]
    pipeline = _pipeline("p", [], high=2)
    verdict = policy.judge(_spec(maxInspectorScore=8.5), pipeline, TODAY, listing)
    assert verdict is not None and not verdict.compliant and "CVE-2" in verdict.violations[0].message


def test_details_key_follows_the_scope() -> None:
    assert policy.details_key(_spec(), WEB) == ("imageBuildVersionArn", "arn:web", "1,1,0,0,0,0")
    assert policy.details_key(_spec(scope="AllImages"), WEB) is None  # no pipeline identity in this status


IMPOSSIBLE_DATES = ["2025-02-30", "2024-13-45", "0000-01-01", "2024-02-30"]


def _bad_policy(expires: str) -> dict[str, Any]:
    exemptions = [{"vulnerabilityId": "CVE-1", "reason": "r", "expires": "2027-01-01"},
                  {"vulnerabilityId": "CVE-2", "reason": "r", "expires": expires}]
    return {"apiVersion": "imagescan.io/v1alpha1", "kind": "FindingsPolicy",
            "metadata": {"name": "bad", "namespace": "team", "uid": "u-1", "generation": 3},
            "spec": {"thresholds": {"critical": 0}, "exemptions": exemptions, "enforcement": "Deny"}}


@pytest.mark.parametrize("expires", IMPOSSIBLE_DATES)
def test_impossible_expiry_dates_fail_validation(expires: str) -> None:
    """They match the YYYY-MM-DD pattern; evaluating them used to raise 'day is out of range for month'."""
    with pytest.raises(pydantic.ValidationError) as caught:
        _spec(**_bad_policy(expires)["spec"])
    (error,) = caught.value.errors()
    assert error["loc"] == ("exemptions", 1, "expires") and expires in error["msg"]
    assert _spec(exemptions=[{"vulnerabilityId": "CVE-1", "reason": "r", "expires": "2024-02-29"}])


def test_expiry_is_a_date_in_the_crd_schema() -> None:
    expires = fp.Exemption.model_json_schema()["properties"]["expires"]
    assert expires["format"] == "date" and expires["type"] == "string"


@pytest.mark.parametrize("expires", IMPOSSIBLE_DATES)
def test_policy_index_leaves_an_impossible_date_out(expires: str) -> None:
    """Pipelines and admission read the index: an invalid policy must not reach them at all."""
    obj = _bad_policy(expires)
    assert findingspolicy.index_policy("team", "bad", kopf.Spec(kopf.Body(obj))) is None


async def test_handler_stalls_the_policy_naming_the_field_and_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """What an old CRD (pattern only) lets in: Stalled/InvalidSpec and one Warning Event, no traceback; an
    unchanged bad spec on the next tick writes and posts nothing."""
    warnings: list[tuple[str, str]] = []
    monkeypatch.setattr(kopf, "warn", lambda body, *, reason, message: warnings.append((reason, message)))
    obj = _bad_policy("2025-02-30")
    patch = await _evaluate(obj)
    (ready, stalled) = patch["status"]["conditions"]
    expected = "spec.exemptions[1].expires: Value error, 2025-02-30 is not a calendar date"
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "InvalidSpec")
    assert (stalled["type"], stalled["status"], stalled["reason"]) == ("Stalled", "True", "InvalidSpec")
    assert stalled["message"].startswith(expected) and stalled["observedGeneration"] == 3
    assert warnings == [("InvalidSpec", stalled["message"])]

    obj["status"] = patch["status"]
    assert not await _evaluate(obj), "the next tick must not rewrite an unchanged verdict"
    assert len(warnings) == 1


async def _evaluate(obj: dict[str, Any]) -> dict[str, Any]:
    patch = kopf.Patch()
    pipelines: dict[str | None, list[policy.Pipeline]] = {"team": [WEB]}
    await findingspolicy.evaluate(body=kopf.Body(obj), patch=patch, namespace="team", memo=kopf.Memo(),
                                  logger=logging.getLogger("test"), **{findingspolicy.INDEX: pipelines})
    return dict(patch)
