"""The operator's plain-HTTP endpoint: Kubernetes' probes and Prometheus' scrape (``imagescan run --http-port``).

One aiohttp server on the operator's own event loop, so an answer at all says the loop is not stuck:

- ``/healthz`` (liveness): 200 while kopf runs; the server itself lives only as long as kopf does.
- ``/readyz`` (readiness): 503 until kopf has listed every resource it watches and filled every index (its
  handlers, and admission, read those indexes), and, with the admission webhook on, until the webhook
  answers TLS; 200 after. The body says what is missing.
- ``/metrics``: the operator's own registry (``imagescan.metrics``), through prometheus_client's handler.

kopf says nothing public about its indexes being full, but it holds back every handler that is not an index
until they all are. So a handler on Namespaces, which every cluster has, is the signal (``register``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import kopf
from prometheus_client import aiohttp as prometheus_aiohttp
from prometheus_client import registry as prometheus_registry

logger = logging.getLogger(__name__)

TLS_CHECK_TIMEOUT = 1.0
_ANY_ADDRESS = ("", "0.0.0.0", "::")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where to serve (``imagescan run --http-port / --http-addr``)."""

    port: int
    addr: str = "0.0.0.0"


class Health:
    """What the probes answer; told by the runner and by kopf's handlers as the operator gets going."""

    def __init__(self, webhook: tuple[str, int] | None = None) -> None:
        self.running = False
        """kopf is running (set by the runner around it)."""
        self.listed = False
        """kopf has listed every watched resource and filled every index."""
        self.webhook = webhook
        """(address, port) of the admission webhook, if it is on."""
        self._webhook_serving = webhook is None

    async def not_ready(self) -> list[str]:
        """Why the operator is not ready yet; empty when it is."""
        missing = []
        if not self.running:
            missing.append("the operator is not running")
        if not self.listed:
            missing.append("kopf has not listed its resources and filled its indexes yet")
        if not self._webhook_serving and self.webhook is not None:
            # Once serving, the webhook stays up as long as kopf: its server is one of kopf's root tasks.
            self._webhook_serving = await serves_tls(*self.webhook)
            if not self._webhook_serving:
                missing.append(f"the admission webhook does not answer TLS on port {self.webhook[1]} yet")
        return missing


async def serves_tls(addr: str, port: int, timeout: float = TLS_CHECK_TIMEOUT) -> bool:
    """Whether a TLS handshake succeeds there. The certificate is not checked: the API server does that."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    host = "127.0.0.1" if addr in _ANY_ADDRESS else addr
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=context), timeout)
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return True


def register(registry: kopf.OperatorRegistry, health: Health) -> None:
    """The readiness signal: kopf runs this handler for the first Namespace it lists only once every index is
    full. ``when`` stops it after that, so it costs nothing for the operator's lifetime."""

    def listed(**_: Any) -> None:
        if not health.listed:
            logger.info("kopf has listed its resources and filled its indexes: ready")
        health.listed = True

    kopf.on.event("", "v1", "namespaces", registry=registry, id="readiness",
                  when=lambda **_: not health.listed)(listed)


def application(health: Health, metrics: prometheus_registry.Collector) -> aiohttp.web.Application:
    async def healthz(_: aiohttp.web.Request) -> aiohttp.web.Response:
        if health.running:
            return aiohttp.web.Response(text="ok\n")
        return aiohttp.web.Response(status=503, text="kopf is not running\n")

    async def readyz(_: aiohttp.web.Request) -> aiohttp.web.Response:
        missing = await health.not_ready()
        if missing:
            return aiohttp.web.Response(status=503, text="".join(f"{why}\n" for why in missing))
        return aiohttp.web.Response(text="ok\n")

    app = aiohttp.web.Application()
    app.add_routes([
        aiohttp.web.get("/healthz", healthz),
        aiohttp.web.get("/readyz", readyz),
        aiohttp.web.get("/metrics", prometheus_aiohttp.make_aiohttp_handler(metrics)),
    ])
    return app


@contextlib.asynccontextmanager
async def serving(settings: Settings | None, health: Health,
                  metrics: prometheus_registry.Collector) -> AsyncIterator[None]:
    """Serve for as long as the block runs; nothing at all without settings."""
    if settings is None:
        yield
        return
    runner = aiohttp.web.AppRunner(application(health, metrics), access_log=None)  # probes every few seconds
    await runner.setup()
    try:
        await aiohttp.web.TCPSite(runner, settings.addr, settings.port).start()
        logger.info("Serving /healthz, /readyz and /metrics on %s:%d", settings.addr, settings.port)
        yield
    finally:
        await runner.cleanup()
