"""
Pytest fixtures around the emulated API server (import them into conftest.py).

Kept apart from :mod:`imagescan.apiserver` so that the server itself stays
free of pytest.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import kubernetes.client
import kubernetes.config
import pytest

from imagescan.apiserver import server


@pytest.fixture
def kube_api(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[server.ApiServer]:
    """A started server (namespace ``default`` exists) with ``KUBECONFIG`` pointing at it."""
    with server.ApiServer() as api:
        kubeconfig = api.write_kubeconfig(tmp_path / 'kubeconfig')
        monkeypatch.setenv('KUBECONFIG', str(kubeconfig))
        yield api


@pytest.fixture
def kube_client(kube_api: server.ApiServer, tmp_path: pathlib.Path) -> Iterator[kubernetes.client.ApiClient]:
    """A ``kubernetes`` client configured from the server's kubeconfig."""
    config = str(tmp_path / 'kubeconfig')
    client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=config)
    try:
        yield client
    finally:
        client.close()  # type: ignore[no-untyped-call]
