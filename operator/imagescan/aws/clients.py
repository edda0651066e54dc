"""boto3 clients built once and shared by every worker thread.

Clients are thread-safe, sessions are not: one session creates every client, under a lock, and each client
is cached per (service, region) for the operator's lifetime. The connection pool is sized to the worker
count so that threads do not queue for connections.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Literal

import boto3
from botocore import config as botocore_config

from imagescan.aws import retries


@dataclasses.dataclass(frozen=True)
class Settings:
    default_region: str | None = None
    """Region for pipelines named without one; None: the boto3 chain (AWS_REGION, profile...)."""
    endpoint_url: str | None = None
    """Point every client here (an emulator); None: botocore's own resolution (AWS_ENDPOINT_URL_* too)."""
    workers: int = 10
    connect_timeout: float = 5.0
    read_timeout: float = 30.0


class Clients:
    """A cache of boto3 clients and their throttle gates."""

    def __init__(self, settings: Settings, session: boto3.session.Session | None = None) -> None:
        self.settings = settings
        self._session = session or boto3.session.Session(region_name=settings.default_region)
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}  # botocore clients are dynamically typed
        self.gates: dict[tuple[str, str], retries.ThrottleGate] = {}

    @property
    def default_region(self) -> str:
        region = self.settings.default_region or self._session.region_name
        if not region:
            raise ValueError("no AWS region: set AWS_REGION, --region, or spec.region / spec.pipelineArn")
        return str(region)

    def imagebuilder(self, region: str | None = None) -> Any:
        return self._get("imagebuilder", region or self.default_region)

    def ecr(self, region: str | None = None) -> Any:
        return self._get("ecr", region or self.default_region)

    def _get(self, service: Literal["imagebuilder", "ecr"], region: str) -> Any:
        key = (service, region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._session.client(
                    service, region_name=region, endpoint_url=self.settings.endpoint_url,
                    config=botocore_config.Config(
                        retries={"mode": "standard", "max_attempts": 3},
                        max_pool_connections=max(10, self.settings.workers),
                        connect_timeout=self.settings.connect_timeout,
                        read_timeout=self.settings.read_timeout,
                    ),
                )
                gate = retries.ThrottleGate()
                retries.install(client, gate)
                self._clients[key] = client
                self.gates[key] = gate
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
