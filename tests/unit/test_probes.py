"""The HTTP endpoint: liveness, readiness (kopf listed and indexed, the webhook answering TLS) and /metrics."""

from __future__ import annotations

import asyncio
import pathlib
import socket
import ssl
from collections.abc import AsyncIterator

import aiohttp.test_utils
import kopf
import pytest

from imagescan import metrics, probes
from imagescan.admission import tls


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def tls_port(tmp_path: pathlib.Path) -> AsyncIterator[int]:
    """A TLS server with the webhook's kind of self-signed certificate."""
    files = tls.write_self_signed(tmp_path, ["localhost", "127.0.0.1"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0, ssl=context)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_tls_is_told_from_plain_tcp_and_from_nothing(tls_port: int) -> None:
    assert await probes.serves_tls("0.0.0.0", tls_port)  # any address: asked on loopback
    plain = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    async with plain:
        assert not await probes.serves_tls("127.0.0.1", plain.sockets[0].getsockname()[1])
    assert not await probes.serves_tls("127.0.0.1", _free_port())


async def test_ready_once_running_and_listed() -> None:
    health = probes.Health()
    assert len(await health.not_ready()) == 2
    health.running = True
    assert await health.not_ready() == ["kopf has not listed its resources and filled its indexes yet"]
    health.listed = True
    assert await health.not_ready() == []


async def test_with_the_webhook_ready_only_once_it_answers_tls(tls_port: int) -> None:
    health = probes.Health(webhook=("127.0.0.1", _free_port()))
    health.running = health.listed = True
    (why,) = await health.not_ready()
    assert "admission webhook" in why
    health.webhook = ("0.0.0.0", tls_port)
    assert await health.not_ready() == []


def test_readiness_handler_is_a_namespaces_event_handler_that_stops_once_listed() -> None:
    registry = kopf.OperatorRegistry()
    health = probes.Health()
    probes.register(registry, health)
    (handler,) = [h for h in registry._watching.get_all_handlers() if h.id == "readiness"]
    assert handler.when is not None and handler.when()
    handler.fn()
    assert health.listed and not handler.when()


async def _get(app: aiohttp.web.Application, path: str) -> tuple[int, str, str]:
    async with aiohttp.test_utils.TestClient(aiohttp.test_utils.TestServer(app)) as client:
        response = await client.get(path)
        return response.status, response.headers["Content-Type"], await response.text()


async def test_endpoints_answer_what_health_says() -> None:
    health = probes.Health()
    observed = metrics.Metrics()
    app = probes.application(health, observed.registry)
    assert (await _get(app, "/healthz"))[0] == 503
    assert (await _get(app, "/readyz"))[0] == 503
    health.running = True
    assert (await _get(app, "/healthz"))[:1] == (200,)
    status, _, body = await _get(app, "/readyz")
    assert status == 503 and "listed" in body
    health.listed = True
    assert (await _get(app, "/readyz"))[0] == 200


async def test_metrics_are_the_operators_registry_in_prometheus_text() -> None:
    observed = metrics.Metrics()
    observed.admission("Warn", "warned")
    status, content_type, body = await _get(probes.application(probes.Health(), observed.registry), "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert 'imagescan_admission_decisions_total{enforcement="Warn",result="warned"} 1.0' in body


async def test_serving_opens_the_port_only_with_settings() -> None:
    port = _free_port()
    health = probes.Health()
    health.running = True
    settings = probes.Settings(port=port, addr="127.0.0.1")
    async with probes.serving(settings, health, metrics.Metrics().registry), aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{port}/healthz") as response:
        assert response.status == 200
    async with probes.serving(None, health, metrics.Metrics().registry):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
