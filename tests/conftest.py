"""Shared fixtures: the test API server, the AWS emulator, and the real operator running against both."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from tests.support.fixtures import cluster, cluster_client, control_plane, kube_api, kube_client

__all__ = ["cluster", "cluster_client", "control_plane", "kube_api", "kube_client"]

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Dummy credentials and a region, and nothing from the developer's own AWS set-up."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_IMAGEBUILDER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    yield
