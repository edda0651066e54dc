"""Judge ImagePipelines against a FindingsPolicy, from what their status already holds.

No AWS call happens here: counts of all six severities and the worst findings are in each pipeline's
status. Exemptions, the fix filter and the score limit apply per finding; where a rule needs findings the
status does not list, the verdict says it is not exact, and the caller can fetch the build's full list
(``reconcile.details``) and pass it in through ``details`` to judge exactly.

Whether a pipeline complies with a policy is decided once, by the policy's handler, and kept in
:class:`Verdicts`; the FindingsPolicy status, the ImagePipeline ``PolicyCompliant`` condition and the
admission webhook all read that one verdict. Nothing else judges: a second judgement from less information
(the status's top-N findings) once refused Pods that the policy itself called compliant.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

from imagescan.models import findingspolicy as fp
from imagescan.models import imagepipeline as ip
from imagescan.reconcile import details as details_
from imagescan.reconcile import findings as findings_

SEVERITY_FIELDS = findings_.SEVERITY_FIELDS
UNFIXED = "NO"


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """What the policy needs to know about one ImagePipeline."""

    name: str
    labels: dict[str, str]
    status: ip.ImagePipelineStatus
    role_arn: str | None = None
    """spec.roleArn: reading its findings goes through the role its namespace grants it, as its reconcile does."""
    uid: str = ""
    """metadata.uid: whose timer to wake when the policies' verdict on it changes."""


Listed = ip.Finding | details_.Detail
Lookup = Callable[["Pipeline", fp.FindingsPolicySpec], Sequence[details_.Detail] | None]


def no_details(pipeline: Pipeline, spec: fp.FindingsPolicySpec) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class Evaluation:
    totals: fp.Totals
    verdicts: list[fp.PipelineVerdict]
    """What the status lists: violating first, at most ``fp.MAX_LISTED_PIPELINES``."""
    top_vulnerabilities: list[fp.TopVulnerability]
    expired_exemptions: list[str]
    judged: dict[str, fp.PipelineVerdict | None] = dataclasses.field(default_factory=dict)
    """Every selected pipeline's verdict, listed in status or not (None: no findings yet), for :class:`Verdicts`."""


def evaluate(spec: fp.FindingsPolicySpec, pipelines: Iterable[Pipeline], today: datetime.date,
             details: Lookup = no_details) -> Evaluation:
    selector = spec.selector or fp.LabelSelector()
    selected = sorted((p for p in pipelines if selector.matches(p.labels)), key=lambda p: p.name)
    judged = [(p, judge(spec, p, today, details(p, spec))) for p in selected]
    verdicts = [v for _, v in judged if v is not None]
    totals = fp.Totals(
        selected=len(selected),
        compliant=sum(v.compliant for v in verdicts),
        violating=sum(not v.compliant for v in verdicts),
        unknown=len(selected) - len(verdicts),
    )
    listed = sorted(verdicts, key=lambda v: (v.compliant, v.name))[: fp.MAX_LISTED_PIPELINES]
    counted = {p.name: counted_findings(spec, p, today) for p, v in judged if v is not None}
    expired = sorted({e.vulnerability_id for e in spec.exemptions if _expired(e, today)})
    every = {p.name: v for p, v in judged}
    return Evaluation(totals, listed, top_vulnerabilities(counted.values()), expired, every)


def judge(spec: fp.FindingsPolicySpec, pipeline: Pipeline, today: datetime.date,
          details: Sequence[details_.Detail] | None = None) -> fp.PipelineVerdict | None:
    """The verdict for one pipeline; None while it has no findings summary to judge. With ``details``
    (every finding of the judged builds) it is exact; without, it works from the listed worst findings."""
    summary = pipeline.status.findings
    counts = _scoped_counts(spec, summary)
    if summary is None or counts is None:
        return None
    listed = summary.top if spec.scope == "LatestImage" or summary.latest_image is None else []
    kept = [f for f in listed if _counts(spec, pipeline, f, today)]
    scored: Sequence[Listed] = kept
    if details is not None:
        scored = [d for d in details if _counts(spec, pipeline, d, today)]
        adjusted = {field: sum(1 for d in scored if d.severity.lower() == field) for field in SEVERITY_FIELDS}
        exact = True
    else:
        adjusted = {field: getattr(counts, field) for field in SEVERITY_FIELDS}
        for finding in listed:
            field = finding.severity.lower()
            if finding not in kept and field in adjusted:
                adjusted[field] = max(0, adjusted[field] - 1)
        exact = _exact(spec, pipeline, counts, listed, today)
    violations = _threshold_violations(spec, adjusted) + _score_violations(spec, scored)
    return fp.PipelineVerdict(
        name=pipeline.name, compliant=not violations, violations=violations, counts=adjusted,
        worst=[f.vulnerability_id for f in kept[:5]], exact=exact,
    )


def counted_findings(spec: fp.FindingsPolicySpec, pipeline: Pipeline, today: datetime.date) -> list[ip.Finding]:
    summary = pipeline.status.findings
    return [f for f in (summary.top if summary else []) if _counts(spec, pipeline, f, today)]


def top_vulnerabilities(per_pipeline: Iterable[Sequence[ip.Finding]]) -> list[fp.TopVulnerability]:
    seen: dict[str, tuple[ip.Finding, int, set[str]]] = {}
    for found in per_pipeline:
        for finding in {f.vulnerability_id: f for f in found}.values():
            worst, count, fixed = seen.get(finding.vulnerability_id, (finding, 0, set()))
            if findings_.worst_first(finding) < findings_.worst_first(worst):
                worst = finding
            fixed_in = finding.package.fixed_in_version if finding.package else None
            if fixed_in and fixed_in != "NotAvailable":
                fixed.add(fixed_in)
            seen[finding.vulnerability_id] = (worst, count + 1, fixed)
    ranked = sorted(seen.values(), key=lambda item: (-item[1], findings_.worst_first(item[0])))
    return [
        fp.TopVulnerability(vulnerability_id=f.vulnerability_id, severity=f.severity, pipelines=count,
                            fixed_in=sorted(fixed))
        for f, count, fixed in ranked[: fp.MAX_TOP_VULNERABILITIES]
    ]


def _scoped_counts(spec: fp.FindingsPolicySpec, summary: ip.FindingsStatus | None) -> ip.SeverityCounts | None:
    if summary is None:
        return None
    if spec.scope == "AllImages":
        return summary.severity_counts
    return summary.latest_image.severity_counts if summary.latest_image else None


def details_key(spec: fp.FindingsPolicySpec, pipeline: Pipeline) -> details_.Key | None:
    """Which findings listing would make this pipeline's verdict exact."""
    summary = pipeline.status.findings
    if summary is None:
        return None
    if spec.scope == "AllImages":
        if pipeline.status.pipeline is None:
            return None
        return ("imagePipelineArn", pipeline.status.pipeline.arn, _fingerprint(summary.severity_counts))
    if summary.latest_image is None:
        return None
    return ("imageBuildVersionArn", summary.latest_image.arn, _fingerprint(summary.latest_image.severity_counts))


def _fingerprint(counts: ip.SeverityCounts) -> str:
    return details_.counts_fingerprint([getattr(counts, field) for field in SEVERITY_FIELDS])


def _counts(spec: fp.FindingsPolicySpec, pipeline: Pipeline, finding: Listed, today: datetime.date) -> bool:
    """Whether a listed finding counts against the policy."""
    if spec.fix_available_only and (finding.fix_available or UNFIXED) == UNFIXED:
        return False
    return not any(_exempts(e, pipeline, finding, today) for e in spec.exemptions)


def _exempts(exemption: fp.Exemption, pipeline: Pipeline, finding: Listed, today: datetime.date) -> bool:
    return (
        exemption.vulnerability_id == finding.vulnerability_id
        and not _expired(exemption, today)
        and (exemption.pipelines is None or exemption.pipelines.matches(pipeline.labels))
    )


def _expired(exemption: fp.Exemption, today: datetime.date) -> bool:
    return datetime.date.fromisoformat(exemption.expires) < today


def _exact(spec: fp.FindingsPolicySpec, pipeline: Pipeline, counts: ip.SeverityCounts, listed: list[ip.Finding],
           today: datetime.date) -> bool:
    """Exact unless a per-finding rule applies to a severity whose findings are not all listed."""
    per_finding_rules = spec.fix_available_only or any(
        not _expired(e, today) and (e.pipelines is None or e.pipelines.matches(pipeline.labels))
        for e in spec.exemptions
    )
    if not per_finding_rules:
        return True
    limited = [f for f in SEVERITY_FIELDS if getattr(spec.thresholds, f) is not None]
    if spec.max_inspector_score is not None:
        limited = list(SEVERITY_FIELDS)
    return all(
        sum(1 for f in listed if f.severity.lower() == field) >= getattr(counts, field) for field in limited
    )


def _threshold_violations(spec: fp.FindingsPolicySpec, adjusted: dict[str, int]) -> list[fp.Violation]:
    violations = []
    for field in SEVERITY_FIELDS:
        limit = getattr(spec.thresholds, field)
        if limit is not None and adjusted[field] > limit:
            violations.append(fp.Violation(
                rule=f"thresholds.{field}",
                message=f"{adjusted[field]} {field} finding(s), at most {limit} allowed",
            ))
    return violations


def _score_violations(spec: fp.FindingsPolicySpec, kept: Sequence[Listed]) -> list[fp.Violation]:
    """Listed findings are worst first, so the highest counted score is among them whenever any counts."""
    limit = spec.max_inspector_score
    if limit is None:
        return []
    over = [f for f in kept if (f.inspector_score or 0.0) > limit]
    if not over:
        return []
    worst = max(over, key=lambda f: f.inspector_score or 0.0)
    return [fp.Violation(
        rule="maxInspectorScore",
        message=f"{worst.vulnerability_id} has Inspector score {worst.inspector_score}, at most {limit} allowed",
    )]


class Unjudged(enum.Enum):
    """Why a policy has no verdict on a pipeline to read."""

    NOT_YET = "not judged yet"  # the policy has not been evaluated since the pipeline appeared
    NOT_SELECTED = "not selected"
    NO_FINDINGS = "no findings yet"


Standing = fp.PipelineVerdict | Unjudged


@dataclasses.dataclass(frozen=True)
class Judgement:
    """One policy's verdicts on the pipelines of its namespace, as its handler last computed them."""

    enforcement: str
    verdicts: Mapping[str, fp.PipelineVerdict | None]
    """The selected pipelines, by name; None: no findings to judge yet."""
    seen: frozenset[str]
    """Every pipeline of the namespace when it judged: one seen but not in ``verdicts`` is not selected."""

    def standing(self, pipeline: str) -> Standing:
        if pipeline in self.verdicts:
            verdict = self.verdicts[pipeline]
            return Unjudged.NO_FINDINGS if verdict is None else verdict
        return Unjudged.NOT_SELECTED if pipeline in self.seen else Unjudged.NOT_YET


@dataclasses.dataclass(frozen=True)
class Reading:
    """What one policy last judged of one pipeline; ``enforcement`` is empty while it has not judged it."""

    policy: str
    enforcement: str
    standing: Standing


class Verdicts:
    """The one place verdicts live, keyed by namespace, policy and pipeline.

    The FindingsPolicy handler records a policy's whole judgement each time it evaluates the policy (exact
    when the build's full listing could be read); its status, every pipeline's PolicyCompliant condition and
    the admission webhook read it here. Memory only, all on the operator's event loop: after a restart the
    handlers' resume evaluates each policy again, and until then a pipeline is not judged yet.
    """

    def __init__(self) -> None:
        self._judgements: dict[tuple[str | None, str], Judgement] = {}

    def record(self, namespace: str | None, policy: str, judgement: Judgement) -> None:
        self._judgements[(namespace, policy)] = judgement

    def forget(self, namespace: str | None, policy: str) -> None:
        self._judgements.pop((namespace, policy), None)

    def read(self, namespace: str | None, pipeline: str, policies: Iterable[str]) -> list[Reading]:
        """What each named policy (the namespace's valid ones, from kopf's index, so a deleted or invalid
        policy is never read) last judged of ``pipeline``, by policy name."""
        readings = []
        for name in sorted(set(policies)):
            judgement = self._judgements.get((namespace, name))
            if judgement is None:
                readings.append(Reading(name, "", Unjudged.NOT_YET))
            else:
                readings.append(Reading(name, judgement.enforcement, judgement.standing(pipeline)))
        return readings


@dataclasses.dataclass(frozen=True)
class Compliance:
    """The PolicyCompliant condition of one ImagePipeline."""

    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str


def compliance(readings: Iterable[Reading]) -> Compliance:
    """The condition from what each policy of the namespace last judged (:meth:`Verdicts.read`), never
    judged again here. A violation is a fact even while another policy has not judged yet, so it comes first."""
    judging = [r for r in readings if r.standing is not Unjudged.NOT_SELECTED]
    if not judging:
        return Compliance("True", "NoPolicy", "no FindingsPolicy in this namespace selects this pipeline")
    broken = [
        f"{r.policy} ({r.enforcement}): " + "; ".join(v.message for v in r.standing.violations)
        for r in judging if isinstance(r.standing, fp.PipelineVerdict) and not r.standing.compliant
    ]
    if broken:
        return Compliance("False", "PolicyViolated", "violates " + " | ".join(broken))
    pending = [r.policy for r in judging if r.standing is Unjudged.NOT_YET]
    if pending:
        return Compliance("Unknown", "NotJudged", f"not judged yet by {', '.join(pending)}")
    names = ", ".join(r.policy for r in judging)
    if any(r.standing is Unjudged.NO_FINDINGS for r in judging):
        return Compliance("Unknown", "NoFindings", f"no findings to judge yet (policies: {names})")
    return Compliance("True", "Compliant", "complies with " + names)
