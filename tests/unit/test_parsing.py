"""The lighter response parse (aws/parsing.py) answers exactly what botocore's own parser answers.

Differential: responses generated from botocore's service model of ListImageScanFindings (every member
optional, timestamps as epoch seconds as Image Builder sends them) are parsed by botocore's RestJSONParser and
by ours; the results must be equal. A response with keys the model does not know or ``null`` values is the one
documented difference, checked separately."""

from __future__ import annotations

import base64
import json
from typing import Any

import botocore.session
import hypothesis
import pytest
from botocore import model as botocore_model
from botocore import parsers as botocore_parsers
from hypothesis import strategies as st

from imagescan.aws import parsing
from imagescan.reconcile import findings

SERVICE = botocore.session.get_session().get_service_model("imagebuilder")
LISTING = SERVICE.operation_model("ListImageScanFindings").output_shape


def _values(shape: botocore_model.Shape, depth: int = 0) -> st.SearchStrategy[Any]:
    """JSON as the service would send it for ``shape`` (by botocore's model)."""
    if isinstance(shape, botocore_model.StructureShape):
        members = {} if depth > 6 else {
            member.serialization.get("name", name): _values(member, depth + 1) for name, member in shape.members.items()
        }
        return st.fixed_dictionaries({}, optional=members)
    if isinstance(shape, botocore_model.ListShape):
        return st.lists(_values(shape.member, depth + 1), max_size=3)
    if isinstance(shape, botocore_model.MapShape):
        return st.dictionaries(st.text(max_size=5), _values(shape.value, depth + 1), max_size=2)
    scalars: dict[str, st.SearchStrategy[Any]] = {
        "string": st.sampled_from(shape.enum) if getattr(shape, "enum", None) else st.text(max_size=12),
        "integer": st.integers(-(2**31), 2**31 - 1),
        "long": st.integers(-(2**63), 2**63 - 1),
        "float": st.floats(allow_nan=False, allow_infinity=False),
        "double": st.floats(allow_nan=False, allow_infinity=False),
        "boolean": st.booleans(),
        "timestamp": st.floats(min_value=0, max_value=4e9, allow_nan=False),
        "blob": st.binary(max_size=8).map(lambda raw: base64.b64encode(raw).decode()),
    }
    return scalars[shape.type_name]


def _response(document: dict[str, Any]) -> dict[str, Any]:
    return {"status_code": 200, "headers": {"x-amzn-requestid": "r-1"}, "body": json.dumps(document).encode()}


def _both(document: dict[str, Any], shape: botocore_model.Shape = LISTING) -> tuple[Any, Any]:
    botocores = botocore_parsers.RestJSONParser(timestamp_parser=parsing.timestamp).parse(_response(document), shape)
    ours = parsing._Factory().create_parser("rest-json").parse(_response(document), shape)
    return botocores, ours


@hypothesis.settings(max_examples=150, deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow])
@hypothesis.given(_values(LISTING))
def test_a_listing_parses_as_botocore_parses_it(document: dict[str, Any]) -> None:
    botocores, ours = _both(document)
    assert ours == botocores


def test_timestamps_inside_findings_are_still_converted() -> None:
    finding = {"severity": "HIGH", "firstObservedAt": 1.7e9, "packageVulnerabilityDetails": {
        "vulnerabilityId": "CVE-1", "vendorCreatedAt": 1.6e9, "cvss": [{"baseScore": 7.5}]}}
    botocores, ours = _both({"findings": [finding]})
    assert ours == botocores
    assert ours["findings"][0]["firstObservedAt"].isoformat() == "2023-11-14T22:13:20+00:00"


def test_what_the_model_has_nothing_to_convert_in_is_kept_as_decoded() -> None:
    finding_shape = LISTING.members["findings"].member
    assert not parsing.plain(finding_shape)  # timestamps
    assert parsing.plain(finding_shape.members["remediation"])
    assert parsing.plain(finding_shape.members["inspectorScoreDetails"])
    details = finding_shape.members["packageVulnerabilityDetails"]
    assert not parsing.plain(details)
    assert parsing.plain(details.members["vulnerablePackages"])


def test_the_one_difference_unknown_keys_and_nulls_stay_in_plain_parts() -> None:
    finding = {"severity": "LOW", "remediation": {"recommendation": {"text": "update", "url": None}, "new": 1}}
    botocores, ours = _both({"findings": [finding]})
    assert botocores["findings"][0]["remediation"] == {"recommendation": {"text": "update"}}
    assert ours["findings"][0]["remediation"] == finding["remediation"]


@pytest.mark.parametrize("operation", ["GetImagePipeline", "ListImagePipelineImages", "GetImage"])
def test_other_operations_are_walked_by_botocore(operation: str) -> None:
    shape = SERVICE.operation_model(operation).output_shape
    assert shape.name not in parsing.LIGHT_OUTPUTS
    document = {"requestId": "r", "unknown": None}
    botocores, ours = _both(document, shape)
    assert ours == botocores and "unknown" not in ours


def test_a_finding_with_nulls_where_they_stay_still_summarises() -> None:
    finding = {
        "severity": "HIGH", "inspectorScore": 7.5,
        "remediation": {"recommendation": None},
        "inspectorScoreDetails": {"adjustedCvss": {"score": 7.5, "adjustments": [None, {"metric": None}]}},
        "packageVulnerabilityDetails": {"vulnerabilityId": "CVE-2", "vulnerablePackages": [None, {"name": None}],
                                        "referenceUrls": None, "relatedVulnerabilities": [None]},
    }
    _, ours = _both({"findings": [finding]})
    summary = findings.summarize(ours["findings"][0])
    assert summary.vulnerability_id == "CVE-2" and summary.remediation is None
    assert summary.related_vulnerabilities is None
    assert summary.adjusted_cvss is not None and summary.adjusted_cvss.score == 7.5
