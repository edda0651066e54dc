"""Fixtures for the reliability suites: the emulator, the operator in a thread (as the integration tests run
it: the shipped ServiceAccount, tick and intervals), and ImagePipelines through the admin's client."""

from __future__ import annotations

from collections.abc import Iterator

import kubernetes.client
import pytest

from imagescan import runner
from imagescan.aws import clients as aws_clients
from imagescan.emulator import server
from imagescan.handlers import runtime
from tests.integration import harness
from tests.support.fixtures import Cluster


@pytest.fixture
def emulator() -> Iterator[server.Emulator]:
    with server.Emulator(seed=7, pipelines=0) as emu:
        yield emu


@pytest.fixture
def operator(cluster: Cluster, emulator: server.Emulator) -> Iterator[runner.InThread]:
    """The operator in this process, at the shipped defaults (workers 10, tick 10 s)."""
    config = runtime.Config(
        aws=aws_clients.Settings(default_region="us-east-1", endpoint_url=emulator.endpoint_url),
        namespaces=(cluster.namespace,),
    )
    assert config.tick == 10.0, "the suites measure the shipped tick"
    with runner.InThread(config) as running:
        yield running


@pytest.fixture
def pipelines(cluster: Cluster, cluster_client: kubernetes.client.ApiClient) -> harness.Pipelines:
    return harness.Pipelines(cluster_client, cluster.namespace)
