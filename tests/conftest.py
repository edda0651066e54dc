"""Shared fixtures: the test API server, the AWS emulator, and the real operator running against both."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import controlplane, fixtures
from tests.support.fixtures import cluster, cluster_client, control_plane, kube_api, kube_client
from tests.support.moto import moto_server

__all__ = ["cluster", "cluster_client", "control_plane", "kube_api", "kube_client", "moto_server"]

ROOT = pathlib.Path(__file__).resolve().parents[1]


def pytest_report_header(config: pytest.Config) -> str:
    """Say up front where the end-to-end tests' control plane comes from (a first build takes minutes)."""
    return controlplane.status_line()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line, not one per test, when the control-plane tests were skipped."""
    if fixtures.control_plane_skipped() is not None:
        terminalreporter.write_line(fixtures.control_plane_skipped(), yellow=True)


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
