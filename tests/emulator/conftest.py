"""Fixtures: a started emulator per test (creation takes milliseconds) and real boto3 clients for it, as any
caller in any region, and a clock tests step instead of sleeping."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
import pytest

from imagescan.emulator import server

ACCOUNT = "123456789012"
REGION = "us-east-1"


def make_client(service: str, endpoint_url: str, **config: Any) -> Any:
    """A real boto3 client with dummy credentials and the retry mode the operator uses."""
    settings: dict[str, Any] = {"retries": {"mode": "standard"}}
    settings.update(config)
    factory: Any = boto3.client  # boto3-stubs overloads need a literal service name
    return factory(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=botocore.config.Config(**settings),
    )


def client_as(
    service: str, endpoint_url: str, *, region: str = REGION, access_key_id: str = "test",
    secret_access_key: str = "test", session_token: str | None = None,
) -> Any:
    """A real boto3 client signing with these credentials for ``region``: the emulator's idea of the caller."""
    factory: Any = boto3.client
    return factory(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        aws_session_token=session_token,
        config=botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def emu() -> Iterator[server.Emulator]:
    with server.Emulator(seed=7, pipelines=4, account_id=ACCOUNT, region=REGION) as emulator:
        yield emulator


@pytest.fixture
def emu_no_inspector() -> Iterator[server.Emulator]:
    with server.Emulator(seed=7, pipelines=2, inspector_enabled=False) as emulator:
        yield emulator


@pytest.fixture
def ib(emu: server.Emulator) -> Any:
    assert emu.endpoint_url
    return make_client("imagebuilder", emu.endpoint_url)


@pytest.fixture
def ib_raw(emu: server.Emulator) -> Any:
    """No client-side validation, so the emulator's own validation is what answers."""
    assert emu.endpoint_url
    return make_client("imagebuilder", emu.endpoint_url, parameter_validation=False)
