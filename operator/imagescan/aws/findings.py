"""Image Builder's view of Inspector findings: aggregations, finding pages, and the images they belong to.

Calls are lazy where pages are involved, so a caller that needs only the first few findings reads only the
pages it needs. Errors come out as ``errors.AwsError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from imagescan.aws import errors


def page_size(client: Any) -> int:
    """The largest ListImageScanFindings page the service model allows (25 in older models, 100 now)."""
    shape = client.meta.service_model.operation_model("ListImageScanFindings").input_shape
    return int(shape.members["maxResults"].metadata.get("max", 25))


def severity_counts(client: Any, filter_name: str | None = None, value: str | None = None) -> dict[str, int]:
    """Counts {all, critical, high, medium} from ListImageScanFindingAggregations.

    With a filter, the answer for exactly that key is returned (summed over groups if AWS splits it);
    without one, the account's counts.
    """
    params: dict[str, Any] = {}
    if filter_name and value:
        params["filter"] = {"name": filter_name, "values": [value]}
    totals = {"all": 0, "critical": 0, "high": 0, "medium": 0}
    try:
        for page in client.get_paginator("list_image_scan_finding_aggregations").paginate(**params):
            for response in page.get("responses", []):
                for aggregation in response.values():
                    counts = aggregation.get("severityCounts", {}) if isinstance(aggregation, dict) else {}
                    for key in totals:
                        totals[key] += int(counts.get(key, 0) or 0)
    except Exception as exc:
        raise errors.from_exception(exc) from None
    return totals


def iter_findings(client: Any, filter_name: str, value: str) -> Iterator[dict[str, Any]]:
    """Findings matching one filter, a page at a time (stop iterating to stop fetching)."""
    paginator = client.get_paginator("list_image_scan_findings")
    pages = paginator.paginate(
        filters=[{"name": filter_name, "values": [value]}],
        PaginationConfig={"PageSize": page_size(client)},
    )
    try:
        for page in pages:
            yield from page.get("findings", [])
    except Exception as exc:
        raise errors.from_exception(exc) from None


def pipeline_images(client: Any, pipeline_arn: str) -> list[dict[str, Any]]:
    """Summaries of every image build the pipeline has."""
    images: list[dict[str, Any]] = []
    try:
        for page in client.get_paginator("list_image_pipeline_images").paginate(imagePipelineArn=pipeline_arn):
            images.extend(page.get("imageSummaryList", []))
    except Exception as exc:
        raise errors.from_exception(exc) from None
    return images


def get_image(client: Any, image_arn: str) -> dict[str, Any]:
    try:
        return dict(client.get_image(imageBuildVersionArn=image_arn)["image"])
    except Exception as exc:
        raise errors.from_exception(exc) from None
