"""moto's server for the AWS services it implements (STS here): real boto3 clients over HTTP, no stubs.

One server per test session; a test that counts what moto saw reads ``assumed_roles`` (moto's own record of
every AssumeRole, from its /moto-api/data.json) and may start from a clean slate with ``reset``.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest


class Moto:
    def __init__(self, url: str) -> None:
        self.url = url

    def data(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=10) as response:
            loaded: dict[str, Any] = json.loads(response.read())
        return loaded

    def assumed_roles(self) -> list[dict[str, Any]]:
        """Every AssumeRole moto answered: role_arn, session_name, external_id, access_key_id, account_id."""
        return list(self.data().get("sts", {}).get("AssumedRole", []))

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Moto]:
    """moto's threaded server on a free loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield Moto(f"http://{host}:{port}")
    finally:
        server.stop()
