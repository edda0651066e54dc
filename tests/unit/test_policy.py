"""FindingsPolicy evaluation from ImagePipeline status: thresholds, score limit, exemptions, fix filter."""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Iterator
from typing import Any, cast

import kopf
import pydantic
import pytest

from imagescan.aws import findings as aws_findings
from imagescan.handlers import admission, findingspolicy, runtime
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


def test_expiry_is_a_calendar_date_in_the_crd_schema() -> None:
    """A pattern: not ``format: date`` (CEL sees a timestamp on kube-apiserver, a string on the embedded server;
    Go's date parser takes year 0), nor a CEL timestamp() rule (it errors on an object stored before it, and
    an error is not ratcheted: the object could not even lose its finalizer)."""
    expires = fp.Exemption.model_json_schema()["properties"]["expires"]
    assert expires["type"] == "string" and "format" not in expires and "x-kubernetes-validations" not in expires
    for year in [*range(1, 30), *range(1890, 2110), 400, 800, 2400, 9999]:
        for month in range(0, 14):
            for day in range(0, 33):
                text = f"{year:04d}-{month:02d}-{day:02d}"
                try:
                    real = bool(datetime.date(year, month, day))
                except ValueError:
                    real = False
                assert bool(re.fullmatch(fp.DATE_PATTERN, text)) == real, text
    assert not re.fullmatch(fp.DATE_PATTERN, "0000-01-01") and not re.fullmatch(fp.DATE_PATTERN, "0000-02-29")


@pytest.mark.parametrize("expires", IMPOSSIBLE_DATES)
def test_policy_index_leaves_an_impossible_date_out(expires: str) -> None:
    """Pipelines and admission read the index: an invalid policy must not reach them at all. An empty
    mapping, not None: kopf keeps what an object indexed before when its function returns None, so a
    policy edited from valid to invalid would go on judging with its old spec."""
    obj = _bad_policy(expires)
    assert findingspolicy.index_policy("team", "bad", kopf.Spec(kopf.Body(obj))) == {}


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


# --- One verdict: the policy's status, the PolicyCompliant condition and admission read the same one ---------

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/wide:1.0.0-1"
HIGHS = [_finding(f"CVE-H{i}", "HIGH", 8.0 - i / 10) for i in range(4)]


def _wide() -> policy.Pipeline:
    """30 findings, of which the status lists the 3 worst (highs): the one MEDIUM, CVE-M, is not listed."""
    counts = ip.SeverityCounts(high=4, medium=1, low=25, total=30)
    latest = ip.LatestImage(arn="arn:wide/1.0.0/1", severity_counts=counts, container_images=[IMAGE])
    status = ip.ImagePipelineStatus(findings=ip.FindingsStatus(
        severity_counts=counts, latest_image=latest, top=HIGHS[:3]))
    return policy.Pipeline(name="wide", labels={"gate": "one"}, status=status)


def _listing() -> list[dict[str, Any]]:
    """The build's every finding, as ListImageScanFindings gives them."""
    found = [(f.vulnerability_id, f.severity, f.inspector_score) for f in HIGHS] + [("CVE-M", "MEDIUM", 5.0)]
    found += [(f"CVE-L{i}", "LOW", 2.0) for i in range(25)]
    return [{"severity": severity, "inspectorScore": score, "fixAvailable": "YES",
             "packageVulnerabilityDetails": {"vulnerabilityId": cve}} for cve, severity, score in found]


@pytest.fixture
def shared(monkeypatch: pytest.MonkeyPatch) -> Iterator[runtime.Runtime]:
    """A runtime that has already listed the wide build's findings once (no AWS call in the test); Events
    (PolicyViolated) go nowhere."""
    monkeypatch.setattr(aws_findings, "iter_findings", lambda client, name, value: iter(_listing()))
    monkeypatch.setattr(kopf, "warn", lambda body, *, reason, message: None)
    made = runtime.Runtime(runtime.Config())
    key = policy.details_key(_spec(), _wide())
    assert key is not None
    made.details.fetch(None, key)
    try:
        yield made
    finally:
        made.close()


def _deny_mediums(exempt: bool) -> dict[str, Any]:
    exemptions = [{"vulnerabilityId": "CVE-M", "reason": "not reachable", "expires": "2099-01-01"}] if exempt else []
    return {"apiVersion": "imagescan.io/v1alpha1", "kind": "FindingsPolicy",
            "metadata": {"name": "no-mediums", "namespace": "team", "uid": "u-2", "generation": 1},
            "spec": {"selector": {"matchLabels": {"gate": "one"}}, "thresholds": {"medium": 0},
                     "exemptions": exemptions, "enforcement": "Deny"}}


async def _judge_policy(obj: dict[str, Any], memo: kopf.Memo) -> dict[str, Any]:
    patch = kopf.Patch()
    await findingspolicy.evaluate(body=kopf.Body(cast(kopf.RawBody, obj)), patch=patch, namespace="team",
                                  memo=memo, logger=logging.getLogger("test"),
                                  **{findingspolicy.INDEX: {"team": [_wide()]}})
    return dict(patch["status"])


async def _admit(memo: kopf.Memo, obj: dict[str, Any]) -> list[str]:
    """The webhook's handler on a Pod running the wide image: its warnings, or AdmissionError if refused."""
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "namespace": "team"},
           "spec": {"containers": [{"name": "app", "image": IMAGE}]}}
    policies = {"team": [(obj["metadata"]["name"], fp.FindingsPolicySpec.model_validate(obj["spec"]))]}
    warnings: list[str] = []
    await admission.Auditor().review(
        body=kopf.Body(cast(kopf.RawBody, pod)), dryrun=False, warnings=warnings, operation="CREATE", memo=memo,
        **{findingspolicy.INDEX: {"team": [_wide()]}, findingspolicy.POLICY_INDEX: policies},
    )
    return warnings


def _condition(shared: runtime.Runtime) -> policy.Compliance:
    return policy.compliance(shared.verdicts.read("team", "wide", ["no-mediums"]))


async def test_exemption_outside_the_listed_findings_is_honoured_by_status_condition_and_admission(
        shared: runtime.Runtime) -> None:
    """Issue 8.3: the policy said compliant (it read the whole build) but admission judged again from the
    top 3 findings alone, so the exemption was ignored and the Pod refused with "1 medium"."""
    memo = kopf.Memo(runtime=shared)
    status = await _judge_policy(_deny_mediums(exempt=True), memo)
    (verdict,) = status["pipelines"]
    assert verdict["compliant"] and verdict["exact"] and verdict["counts"]["medium"] == 0
    assert await _admit(memo, _deny_mediums(exempt=True)) == []
    assert _condition(shared).status == "True"


async def test_without_the_exemption_all_three_say_violating_with_the_same_counts(
        shared: runtime.Runtime) -> None:
    memo = kopf.Memo(runtime=shared)
    status = await _judge_policy(_deny_mediums(exempt=False), memo)
    (verdict,) = status["pipelines"]
    assert not verdict["compliant"]
    with pytest.raises(kopf.AdmissionError) as refused:
        await _admit(memo, _deny_mediums(exempt=False))
    counts = ", ".join(f"{n} {severity}" for severity, n in verdict["counts"].items() if n)
    assert f"counts: {counts};" in str(refused.value) and counts == "4 high, 1 medium, 25 low"
    assert verdict["violations"][0]["message"] in str(refused.value)
    assert _condition(shared).status == "False"


async def test_admission_allows_a_pipeline_no_policy_has_judged_yet(shared: runtime.Runtime) -> None:
    """As documented for pipelines without findings: unknown, admitted; the condition says Unknown."""
    memo = kopf.Memo(runtime=shared)
    assert await _admit(memo, _deny_mediums(exempt=False)) == []
    assert (_condition(shared).status, _condition(shared).reason) == ("Unknown", "NotJudged")


async def test_a_deleted_policy_is_forgotten(shared: runtime.Runtime) -> None:
    memo = kopf.Memo(runtime=shared)
    await _judge_policy(_deny_mediums(exempt=False), memo)
    await findingspolicy.forget_verdicts(event={"type": "DELETED", "object": {}}, namespace="team",
                                         name="no-mediums", memo=memo)
    assert _condition(shared).reason == "NotJudged"


def _judgement(verdicts: dict[str, fp.PipelineVerdict | None], seen: set[str],
               enforcement: str = "Deny") -> policy.Judgement:
    return policy.Judgement(enforcement=enforcement, verdicts=verdicts, seen=frozenset(seen))


def test_condition_reads_each_policys_standing() -> None:
    verdicts = policy.Verdicts()
    broken = policy.judge(_spec(thresholds={"critical": 0}), WEB, TODAY)
    assert broken is not None
    verdicts.record("team", "strict", _judgement({"web": broken}, {"web", "api"}))
    verdicts.record("team", "other", _judgement({}, {"web", "api"}))
    assert policy.compliance(verdicts.read("team", "api", ["strict", "other"])).reason == "NoPolicy"
    assert policy.compliance(verdicts.read("team", "new", ["strict"])).reason == "NotJudged"
    violated = policy.compliance(verdicts.read("team", "web", ["strict", "unjudged"]))
    assert violated.status == "False", "a recorded violation is a fact whatever the other policies say"
    assert violated.message == "violates strict (Deny): 1 critical finding(s), at most 0 allowed"
    verdicts.record("team", "blank", _judgement({"api": None}, {"api"}))
    assert policy.compliance(verdicts.read("team", "api", ["blank"])).reason == "NoFindings"
    assert verdicts.read("team", "web", []) == [], "only the policies the caller names (kopf's index) are read"


async def _indexed(name: str, top: list[dict[str, Any]]) -> policy.Pipeline:
    obj: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "team"}, "spec": {},
        "status": {"findings": {"top": top, "severityCounts": {"high": len(top), "total": len(top)}}},
    }
    body = kopf.Body(cast(kopf.RawBody, obj))
    indexed = await findingspolicy.index_pipeline(
        namespace="team", name=name, labels=body.metadata.labels, spec=body.spec, status=body.status,
        uid=f"uid-{name}")
    return indexed["team"]


def _listed(cve: str, fixed_in: Any = "1.2.3", score: Any = 7.5) -> dict[str, Any]:
    return {"vulnerabilityId": cve, "severity": "HIGH", "inspectorScore": score, "fixAvailable": "YES",
            "title": f"{cve} in openssl", "description": "long prose the index leaves out",
            "package": {"name": "openssl", "version": "1.2.2", "fixedInVersion": fixed_in}}


async def test_the_index_shares_one_parsed_finding_among_pipelines_that_list_it() -> None:
    """At 1,000 pipelines the index held ten parsed findings per pipeline (≈ 1.7 KB each) for the operator's
    lifetime; pipelines built from one base image list the same CVEs, so each distinct one is kept once."""
    first = await _indexed("a", [_listed("CVE-2024-0001"), _listed("CVE-2024-0002")])
    second = await _indexed("b", [_listed("CVE-2024-0002"), _listed("CVE-2024-0001", fixed_in="1.2.4")])
    assert first.status.findings is not None and second.status.findings is not None
    a1, a2 = first.status.findings.top
    b2, b1 = second.status.findings.top
    assert a2 is b2
    assert a1 is not b1 and a1.package is not None and b1.package is not None
    assert (a1.package.fixed_in_version, b1.package.fixed_in_version) == ("1.2.3", "1.2.4")
    assert a1.title is None and a1.inspector_score == 7.5 and a1.fix_available == "YES"


async def test_a_malformed_listed_finding_leaves_that_pipeline_unjudged_and_shares_nothing() -> None:
    """An unhashable value where a scalar belongs is a validation failure like any other (empty status, as
    before sharing), never a TypeError out of the index."""
    bad = await _indexed("c", [_listed("CVE-2024-0003", fixed_in=["1.2.3"])])
    worse = await _indexed("d", [_listed("CVE-2024-0003", score={"value": 7.5})])
    assert bad.status == ip.ImagePipelineStatus() and worse.status == ip.ImagePipelineStatus()
    good = await _indexed("e", [_listed("CVE-2024-0003", score=7)])
    assert good.status.findings is not None and good.status.findings.top[0].inspector_score == 7.0
