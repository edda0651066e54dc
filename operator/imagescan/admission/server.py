"""The HTTPS endpoint: kopf's webhook server, with its certificate, behind a guard for malformed requests.

kopf reads requests with aiohttp's 1 MiB limit (an HTTP 413) and fails on odd shapes deep inside with an
HTTP 500; with ``failurePolicy: Ignore`` the API server admits whatever the webhook fails on. The guard
reads and screens every request first (``intake``): what is not an AdmissionReview at all is an HTTP 400
with the reason; anything else gets an AdmissionReview answer, refusing what is oversized or malformed.

The guard also drops kopf's "which handler" hint taken from the URL path: the handlers are chosen by the
reviewed resource alone, so the ValidatingWebhookConfiguration can use one path for every rule.
"""
from __future__ import annotations

import dataclasses
import logging
import pathlib
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any, cast

import aiohttp.web
import kopf

from imagescan.admission import intake

logger = logging.getLogger(__name__)

CHUNK = 256 * 1024
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
    """kopf's aiohttp server, reading and screening requests itself (``intake``) so that every one gets an
    answer: kopf's reading stops at aiohttp's 1 MiB limit with an HTTP 413 and fails on odd shapes with an
    HTTP 500, both of which ``failurePolicy: Ignore`` turns into admission unjudged."""

    def __init__(self, *, reviewed: Collection[intake.Resource] = (), observe: Callable[[float], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reviewed = frozenset(reviewed)
        self.observe = observe
        """Told each parsed request's seconds, from screening it to the answer (the latency histogram)."""

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        reviewed, observe = self.reviewed, self.observe

        async def screened(request: Any, *, webhook: str | None = None, headers: Any = None,
                           sslpeer: Any = None) -> Any:
            started = time.monotonic()
            try:
                answer = intake.screen(request, reviewed)
                return answer if answer is not None else await _judge(fn, request, headers, sslpeer)
            finally:
                if observe is not None:
                    observe(time.monotonic() - started)

        async for config in super().__call__(screened):
            yield config

    @staticmethod
    async def _serve(fn: kopf.WebhookFn, request: aiohttp.web.Request) -> aiohttp.web.Response:
        """Each request (kopf's server loop calls this with ``screened``): read, parse, answer."""
        body, oversized = await read_body(request)
        try:
            review = intake.parse(body, oversized=oversized)
        except intake.Unreadable as exc:
            if exc.uid is None:
                return aiohttp.web.Response(status=400, text=exc.reason)
            logger.warning("refused an unreadable admission request %s: %s", exc.uid, exc.reason)
            return aiohttp.web.json_response(intake.refusal(exc.uid, exc.code, exc.reason))
        sslpeer = request.transport.get_extra_info("peercert") if request.transport else None
        answer = await fn(cast(Any, review), headers=dict(request.headers), sslpeer=sslpeer)
        return aiohttp.web.json_response(answer)


async def read_body(request: aiohttp.web.Request) -> tuple[bytes, bool]:
    """The body, and whether it is over ``intake.MAX_BODY``. Reading the stream bypasses aiohttp's own
    limit. Of an oversized body only the head is needed (for the uid); the rest is read and dropped, since
    the client sends it all before it reads the answer."""
    kept = bytearray()
    size = 0
    async for chunk in request.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size <= intake.MAX_BODY:
            kept += chunk
        elif size > intake.MAX_DRAIN:
            break
    return bytes(kept), size > intake.MAX_BODY


async def _judge(fn: kopf.WebhookFn, review: intake.Review, headers: Any, sslpeer: Any) -> Any:
    """kopf's answer. The webhook name from the URL path is not passed on: handlers are chosen by the
    reviewed resource alone, so the ValidatingWebhookConfiguration can use one path for every rule."""
    try:
        return await fn(cast(Any, review), webhook=None, headers=headers, sslpeer=sslpeer)
    except Exception:  # the request passed intake, so this is a bug; refused, as Ignore would admit it
        uid = intake.uid_of(review)
        logger.exception("could not review admission request %s", uid)
        return intake.refusal(uid, 500, "imagescan could not review the request (the operator logged why)")


def build(settings: Settings, reviewed: Collection[intake.Resource] = (),
          observe: Callable[[float], None] | None = None) -> GuardedWebhookServer:
    """The server with cert-manager's files, or with a freshly generated self-signed certificate.

    ``reviewed``: the (group, version, plural) the handlers judge; requests for others are allowed.
    ``observe``: told each request's seconds.
    """
    if settings.cert and settings.key:
        return GuardedWebhookServer(addr=settings.addr, port=settings.port, reviewed=reviewed, observe=observe,
                                    certfile=settings.cert, pkeyfile=settings.key)
    from imagescan.admission import tls  # needs cryptography, which only this mode uses

    directory = pathlib.Path(settings.cert_dir or tempfile.mkdtemp(prefix="imagescan-webhook-"))
    names = list(dict.fromkeys([*settings.dns_names, "localhost", "127.0.0.1"]))
    files = tls.write_self_signed(directory, names)
    logger.info("Serving the admission webhook with a self-signed certificate; its CA is %s", files.ca)
    return GuardedWebhookServer(addr=settings.addr, port=settings.port, reviewed=reviewed, observe=observe,
                                certfile=str(files.cert), pkeyfile=str(files.key), cafile=str(files.ca))
