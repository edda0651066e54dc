"""The FindingsPolicy custom resource: which findings a team tolerates in the images its pipelines build.

Evaluated from what ImagePipeline status already holds (counts of all six severities and the worst
findings), so judging a policy costs no AWS call.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import pydantic
from pydantic.config import JsonDict

from imagescan.models import base, kstatus

VULNERABILITY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{2,127}$"
# A calendar date, years 0001-9999, leap days included: what datetime.date.fromisoformat takes (checked
# against it for every day of 250 years in tests/unit/test_policy.py).
_YEAR = "(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP_YEAR = "([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = ("((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
              "|02-(0[1-9]|1[0-9]|2[0-8]))")
DATE_PATTERN = f"^({_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)$"
MAX_LISTED_PIPELINES = 100
MAX_TOP_VULNERABILITIES = 20


def _real_date(value: str) -> str:
    """A policy with 2025-02-30 or 0000-01-01 (stored before the CRD refused them) must fail validation, not
    every evaluation (and every pipeline judging itself against it) with a traceback later. The CRD's pattern
    says the same; here it gets a message a person can read."""
    if not re.fullmatch(DATE_PATTERN, value):
        raise ValueError(f"{value} is not a calendar date (YYYY-MM-DD)")
    return value


# Kept a string (YYYY-MM-DD) rather than a date so the wire format and what policy evaluation reads stay as
# they are. Checked by a pattern, not ``format: date`` (kube-apiserver's CEL would see a timestamp, the embedded
# server's a string; Go's parser takes year 0) nor a CEL timestamp() rule: on an impossible date stored before
# the rule, timestamp() fails with an error, which validation ratcheting does not forgive, so every patch of
# that object (its finalizer's removal included) would be refused. A pattern ratchets: such an object can
# still be patched and deleted, and the validator below stalls it.
CalendarDate = Annotated[
    str,
    pydantic.Field(max_length=10, json_schema_extra={"pattern": DATE_PATTERN}),
    pydantic.AfterValidator(_real_date),
]


# Kubernetes label syntax (apimachinery's IsQualifiedName / IsValidLabelValue): an optional DNS-subdomain
# prefix and a name of at most 63 characters; a value of at most 63 characters, possibly empty.
_LABEL_NAME = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_DNS_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
LABEL_KEY_PATTERN = f"^({_DNS_LABEL}([.]{_DNS_LABEL})*/)?{_LABEL_NAME}$"
LABEL_VALUE_PATTERN = f"^({_LABEL_NAME})?$"
MAX_LABEL_KEY = 317  # 253 (prefix) + 1 + 63
MAX_SELECTOR_LABELS = 32
MAX_SELECTOR_EXPRESSIONS = 16
MAX_SELECTOR_VALUES = 64


def _label_key(key: str) -> str:
    """What the pattern cannot count: the prefix is a DNS subdomain (at most 253 characters, labels of at
    most 63). kube-apiserver refuses such a key in a real label, so a selector naming it matches nothing."""
    prefix, _, name = key.rpartition("/")
    too_long = len(prefix) > 253 or any(len(label) > 63 for label in prefix.split("."))
    if not re.fullmatch(LABEL_KEY_PATTERN, key) or too_long or len(name) > 63:
        raise ValueError(f"{key!r} is not a label key: [prefix/]name, a DNS subdomain prefix of at most 253 "
                         "characters and a name of at most 63 (letters, digits, - _ .)")
    return key


LabelKey = Annotated[
    str, pydantic.Field(min_length=1, max_length=MAX_LABEL_KEY, pattern=LABEL_KEY_PATTERN),
    pydantic.AfterValidator(_label_key),
]
LabelValue = Annotated[str, pydantic.Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]
# A map's keys have no schema of their own in a CRD: a CEL rule checks them.
_KEYS_RULE: JsonDict = {
    "rule": f"self.all(k, k.matches('{LABEL_KEY_PATTERN}'))",
    "message": "keys must be label keys: [prefix/]name, name at most 63 characters (letters, digits, - _ .)",
}
LabelMap = Annotated[dict[LabelKey, LabelValue], pydantic.Field(
    max_length=MAX_SELECTOR_LABELS, json_schema_extra={"x-kubernetes-validations": [_KEYS_RULE]})]

_VALUES_RULE: JsonDict = {
    "rule": "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 "
            ": !has(self.values) || size(self.values) == 0",
    "message": "values must be given for In and NotIn, and left out for Exists and DoesNotExist",
    "fieldPath": ".values",
}


class LabelSelectorRequirement(base.CRDModel):
    """One label requirement, as in Kubernetes label selectors."""

    model_config = pydantic.ConfigDict(json_schema_extra={"x-kubernetes-validations": [_VALUES_RULE]})

    key: LabelKey
    """The label key, e.g. team or example.com/tier."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the key relates to the values: In, NotIn, Exists or DoesNotExist."""
    values: list[LabelValue] = pydantic.Field(default_factory=list, max_length=MAX_SELECTOR_VALUES)
    """Values for In and NotIn (at least one); none for Exists and DoesNotExist."""

    @pydantic.model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"values must be given for {self.operator}")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"values must be left out for {self.operator}")
        return self


class LabelSelector(base.CRDModel):
    """A Kubernetes label selector; empty selects everything."""

    match_labels: LabelMap = pydantic.Field(default_factory=dict)
    """Labels that must all be present with these values."""
    match_expressions: list[LabelSelectorRequirement] = pydantic.Field(
        default_factory=list, max_length=MAX_SELECTOR_EXPRESSIONS)
    """Requirements that must all hold (at most 16)."""

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(key) != value for key, value in self.match_labels.items()):
            return False
        return all(_requirement_holds(r, labels) for r in self.match_expressions)


def _requirement_holds(requirement: LabelSelectorRequirement, labels: dict[str, str]) -> bool:
    present = requirement.key in labels
    values = requirement.values
    if requirement.operator == "In":
        return present and labels[requirement.key] in values
    if requirement.operator == "NotIn":
        return not present or labels[requirement.key] not in values
    if requirement.operator == "Exists":
        return present
    return not present


class Thresholds(base.CRDModel):
    """The most findings allowed at each severity; a severity left out has no limit."""

    critical: int | None = pydantic.Field(default=None, ge=0)
    """Most Critical findings allowed."""
    high: int | None = pydantic.Field(default=None, ge=0)
    """Most High findings allowed."""
    medium: int | None = pydantic.Field(default=None, ge=0)
    """Most Medium findings allowed."""
    low: int | None = pydantic.Field(default=None, ge=0)
    """Most Low findings allowed."""
    informational: int | None = pydantic.Field(default=None, ge=0)
    """Most Informational findings allowed."""
    untriaged: int | None = pydantic.Field(default=None, ge=0)
    """Most Untriaged findings allowed."""


class Exemption(base.CRDModel):
    """A vulnerability that does not count until a date, with the reason why."""

    vulnerability_id: str = pydantic.Field(pattern=VULNERABILITY_PATTERN, max_length=128)
    """The CVE or other vulnerability id, e.g. CVE-2024-3094."""
    reason: str = pydantic.Field(min_length=1, max_length=1024, pattern=r"\S")
    """Why it is accepted (required, not blank): the ticket, the mitigation, who decided."""
    expires: CalendarDate
    """Last day the exemption applies (YYYY-MM-DD, UTC); from the next day the finding counts again."""
    pipelines: LabelSelector | None = None
    """Only for ImagePipelines with these labels; left out: every pipeline the policy selects."""


class FindingsPolicySpec(base.CRDModel):
    """What findings the selected ImagePipelines' images may have, and how strictly that is enforced."""

    selector: LabelSelector | None = None
    """ImagePipelines in this namespace the policy judges, by label; left out: all of them."""
    thresholds: Thresholds = Thresholds()
    """The most findings allowed per severity."""
    max_inspector_score: float | None = pydantic.Field(default=None, ge=0, le=10)
    """Any counted finding with a higher Inspector score breaks the policy."""
    fix_available_only: bool = False
    """Count only findings that have a fix (fixAvailable YES or PARTIAL)."""
    scope: Literal["LatestImage", "AllImages"] = "LatestImage"
    """LatestImage (default): judge the newest build; AllImages: every build the pipeline still has."""
    exemptions: list[Exemption] = pydantic.Field(default_factory=list, max_length=500)
    """Vulnerabilities that do not count until their expiry date."""
    enforcement: Literal["Audit", "Warn", "Deny"] = "Audit"
    """Audit: report only. Warn: admission allows with warnings. Deny: admission refuses."""


class Violation(base.CRDModel):
    """One rule a pipeline breaks."""

    rule: str
    """Which rule: thresholds.<severity>, maxInspectorScore."""
    message: str
    """What was found against what is allowed."""


class PipelineVerdict(base.CRDModel):
    """How one selected ImagePipeline fares against the policy."""

    name: str
    """The ImagePipeline's name."""
    compliant: bool
    """Whether it meets every rule."""
    violations: list[Violation] = pydantic.Field(default_factory=list)
    """The rules it breaks."""
    counts: dict[str, int] = pydantic.Field(default_factory=dict)
    """The counts that were compared, per severity, after exemptions and the fix filter."""
    worst: list[str] = pydantic.Field(default_factory=list, max_length=5)
    """The worst counted findings' vulnerability ids."""
    exact: bool = True
    """False when a rule needed findings beyond the ones the pipeline's status lists."""


class Totals(base.CRDModel):
    """How many pipelines the policy judged."""

    selected: int = 0
    """Pipelines the selector matched."""
    compliant: int = 0
    """Pipelines meeting every rule."""
    violating: int = 0
    """Pipelines breaking a rule."""
    unknown: int = 0
    """Pipelines without findings yet (scanning off or never refreshed)."""


class TopVulnerability(base.CRDModel):
    """A vulnerability across the selected pipelines."""

    vulnerability_id: str
    """CVE or other id."""
    severity: str
    """Its severity."""
    pipelines: int
    """In how many selected pipelines' worst findings it appears."""
    fixed_in: list[str] = pydantic.Field(default_factory=list)
    """Versions that fix it."""


class FindingsPolicyStatus(base.CRDModel):
    """The policy's verdicts."""

    observed_generation: int | None = None
    """The metadata.generation the status describes."""
    conditions: list[kstatus.Condition] = pydantic.Field(default_factory=list)
    """Ready, and Reconciling / Stalled while true."""
    totals: Totals = Totals()
    """Pipelines selected, compliant, violating."""
    pipelines: list[PipelineVerdict] = pydantic.Field(default_factory=list, max_length=MAX_LISTED_PIPELINES)
    """Per selected pipeline, violating ones first; at most 100 are listed, totals count all."""
    top_vulnerabilities: list[TopVulnerability] = pydantic.Field(default_factory=list,
                                                                  max_length=MAX_TOP_VULNERABILITIES)
    """The vulnerabilities in most selected pipelines, worst first."""
    expired_exemptions: list[str] = pydantic.Field(default_factory=list)
    """Exemptions past their expiry date (they count again): vulnerability ids."""
    last_evaluated: str | None = None
    """When the policy was last evaluated."""
