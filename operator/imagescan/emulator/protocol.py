"""REST-JSON and JSON wire protocols, driven entirely by botocore's own service models.

Routing (HTTP method + ``requestUri`` for REST-JSON, the ``X-Amz-Target`` header for JSON services such as
ECR and SQS), where each input member travels (query string, header, body) and which
HTTP status an error code carries all come from ``botocore.session.get_session().get_service_model(...)``. That
way the emulator accepts exactly what the real boto3 client sends and nothing is hand-copied that could drift.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

import botocore.session
from botocore import model as bmodel

from imagescan.emulator import errors

IMAGEBUILDER = "imagebuilder"
INSPECTOR2 = "inspector2"
ECR = "ecr"
SQS = "sqs"
SERVICES = (IMAGEBUILDER, INSPECTOR2, ECR, SQS)

# Each service rejects malformed input with its own modeled code.
_VALIDATION_CODE = {
    IMAGEBUILDER: "InvalidRequestException", INSPECTOR2: "ValidationException", ECR: "InvalidParameterException",
    SQS: "InvalidParameterValue",  # SQS's JSON model names none; this is the code SQS answers bad values with
}
# SigV4: "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/imagebuilder/aws4_request, SignedHeaders=..."
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


class Service:
    """One botocore service model plus the lookup tables the server needs per request."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.model: bmodel.ServiceModel = botocore.session.get_session().get_service_model(name)
        self.routes: dict[tuple[str, str], bmodel.OperationModel] = {}
        self.targets: dict[str, bmodel.OperationModel] = {}
        self.json_protocol = self.model.metadata.get("protocol") == "json"
        for op_name in self.model.operation_names:
            op = self.model.operation_model(op_name)
            if self.json_protocol:
                self.targets[f"{self.model.metadata['targetPrefix']}.{op_name}"] = op
            else:
                path = op.http["requestUri"].split("?", 1)[0]
                self.routes[(op.http["method"], path)] = op
        self.error_status: dict[str, int] = {
            shape.name: int(shape.metadata.get("error", {}).get("httpStatusCode", 400))
            for shape in self.model.error_shapes
        }
        self.validation_code = _VALIDATION_CODE[name]

    def status_for(self, code: str) -> int:
        """HTTP status of an error code as modeled; unmodeled codes are client errors."""
        return self.error_status.get(code, 400)

    def route(self, method: str, path: str, target: str | None = None) -> bmodel.OperationModel | None:
        """The operation a request targets; path parameters are unused by the emulated operations."""
        if self.json_protocol:
            return self.targets.get(target or "") if method == "POST" and path in ("", "/") else None
        return self.routes.get((method, path.rstrip("/") or "/"))


@functools.cache
def service(name: str) -> Service:
    """Load each model once per process: parsing the JSON models takes tens of milliseconds."""
    return Service(name)


def service_from_authorization(header: str | None) -> str | None:
    """The signing service in a SigV4 credential scope (signatures are deliberately not verified; the access key
    and region in the same scope are ``identity``'s business)."""
    if not header:
        return None
    match = _SCOPE.search(header)
    if match is None or match.group(2) not in SERVICES:
        return None
    return match.group(2)


def decode_request(
    svc: Service,
    op: bmodel.OperationModel,
    query: Mapping[str, list[str]],
    headers: Mapping[str, str],
    body: bytes,
) -> dict[str, Any]:
    """Rebuild the operation's input dict from the query string, headers and JSON body."""
    params: dict[str, Any] = {}
    shape = op.input_shape
    if shape is None:
        return params
    if body.strip():
        try:
            loaded = json.loads(body)
        except ValueError as exc:
            raise errors.ApiError(svc.validation_code, f"Could not parse request body: {exc}") from exc
        if not isinstance(loaded, dict):
            raise errors.ApiError(svc.validation_code, "Request body must be a JSON object.")
        params.update(loaded)
    assert isinstance(shape, bmodel.StructureShape)
    for member_name, member in shape.members.items():
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", member_name)
        if location == "querystring" and wire_name in query:
            params[member_name] = _from_text(svc, member, query[wire_name], wire_name)
        elif location == "header" and wire_name.lower() in headers:
            params[member_name] = _from_text(svc, member, [headers[wire_name.lower()]], wire_name)
    return params


def _from_text(svc: Service, shape: bmodel.Shape, values: list[str], where: str) -> Any:
    """Convert query-string/header text back to the member's modeled type."""
    if isinstance(shape, bmodel.ListShape):
        return [_from_text(svc, shape.member, [value], where) for value in values]
    text = values[-1]
    try:
        if shape.type_name in ("integer", "long"):
            return int(text)
        if shape.type_name in ("double", "float"):
            return float(text)
    except ValueError as exc:
        raise errors.ApiError(svc.validation_code, f"Value '{text}' at '{where}' is not a number.") from exc
    if shape.type_name == "boolean":
        return text.lower() == "true"
    return text


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact JSON: the benchmarks push thousands of responses through this."""
    return json.dumps(payload, separators=(",", ":")).encode()
