"""The HTTPS endpoint: kopf's webhook server, with its certificate, behind a guard for malformed requests.

kopf answers a request it cannot read with a bare HTTP 400 only for invalid JSON; a JSON document that is
not an AdmissionReview fails deeper inside kopf with a 500 and a traceback. The guard checks the envelope
first: without a request uid no AdmissionReview answer is possible, so that is an HTTP 400 with the reason;
with a uid, the answer is an AdmissionReview that refuses with code 400 and says what is missing.

The guard also drops kopf's "which handler" hint taken from the URL path: the handlers are chosen by the
reviewed resource alone, so the ValidatingWebhookConfiguration can use one path for every rule.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import kopf

logger = logging.getLogger(__name__)

REVIEW_VERSION = "admission.k8s.io/v1"
SERVICE_NAMES = (
    "imagescan-webhook.imagescan-system.svc",
    "imagescan-webhook.imagescan-system.svc.cluster.local",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How to serve the webhook (``imagescan run --webhook-port ...``)."""

    port: int
    addr: str = "0.0.0.0"
    cert: str | None = None
    """PEM serving certificate (e.g. cert-manager's tls.crt); None: generate a self-signed one."""
    key: str | None = None
    """Its private key (tls.key)."""
    dns_names: tuple[str, ...] = SERVICE_NAMES
    """Names a self-signed certificate is valid for (localhost and 127.0.0.1 are always added)."""
    cert_dir: str | None = None
    """Where a self-signed certificate, its key and CA (ca.crt) are written; None: a new temporary folder."""


class GuardedWebhookServer(kopf.WebhookServer):
    """kopf's aiohttp server, answering malformed admission requests itself."""

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        async def guarded(request: Any, *, webhook: str | None = None, headers: Any = None,
                          sslpeer: Any = None) -> Any:
            problem = envelope_problem(request)
            if problem is not None:
                raise aiohttp.web.HTTPBadRequest(text=f"not an {REVIEW_VERSION} AdmissionReview: {problem}")
            problem = request_problem(request["request"])
            if problem is not None:
                return refusal(request, 400, f"malformed AdmissionReview: {problem}")
            _default_namespace(request["request"])
            return await fn(request, webhook=None, headers=headers, sslpeer=sslpeer)

        async for config in super().__call__(guarded):
            yield config


def build(settings: Settings) -> GuardedWebhookServer:
    """The server with cert-manager's files, or with a freshly generated self-signed certificate."""
    if settings.cert and settings.key:
        return GuardedWebhookServer(addr=settings.addr, port=settings.port,
                                    certfile=settings.cert, pkeyfile=settings.key)
    from imagescan.admission import tls  # needs cryptography, which only this mode uses

    directory = pathlib.Path(settings.cert_dir or tempfile.mkdtemp(prefix="imagescan-webhook-"))
    names = list(dict.fromkeys([*settings.dns_names, "localhost", "127.0.0.1"]))
    files = tls.write_self_signed(directory, names)
    logger.info("Serving the admission webhook with a self-signed certificate; its CA is %s", files.ca)
    return GuardedWebhookServer(addr=settings.addr, port=settings.port, certfile=str(files.cert),
                                pkeyfile=str(files.key), cafile=str(files.ca))


def envelope_problem(review: Any) -> str | None:
    """Why the document is not an AdmissionReview that can be answered at all, or None."""
    if not isinstance(review, dict):
        return "the body is not a JSON object"
    if review.get("apiVersion") != REVIEW_VERSION or review.get("kind") != "AdmissionReview":
        return f"apiVersion/kind are {review.get('apiVersion')!r}/{review.get('kind')!r}"
    request = review.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str) or not request["uid"]:
        return "request.uid is missing"
    return None


def request_problem(request: dict[str, Any]) -> str | None:
    """What kopf needs and the request lacks, or None."""
    resource = request.get("resource")
    if not isinstance(resource, dict) or not all(isinstance(resource.get(k), str) for k in
                                                 ("group", "version", "resource")):
        return "request.resource needs group, version and resource"
    if not isinstance(request.get("operation"), str):
        return "request.operation is missing"
    if not isinstance(request.get("userInfo"), dict):
        return "request.userInfo is missing"
    new, old = request.get("object"), request.get("oldObject")
    if not isinstance(new, dict) and not isinstance(old, dict):
        return "request.object is missing"
    if any(value is not None and not isinstance(value, dict) for value in (new, old)):
        return "request.object and request.oldObject must be objects"
    return None


def refusal(review: dict[str, Any], code: int, message: str) -> dict[str, Any]:
    return {
        "apiVersion": REVIEW_VERSION, "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], "allowed": False,
                     "status": {"code": code, "message": message}},
    }


def _default_namespace(request: dict[str, Any]) -> None:
    """The object in a CREATE may leave its namespace to the URL; the request always names it."""
    namespace = request.get("namespace")
    for field in ("object", "oldObject"):
        obj = request.get(field)
        if isinstance(namespace, str) and namespace and isinstance(obj, dict):
            metadata = obj.setdefault("metadata", {})
            if isinstance(metadata, dict) and not metadata.get("namespace"):
                metadata["namespace"] = namespace
