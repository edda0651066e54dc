"""The real operator (kopf) against a real kube-apiserver and the Image Builder emulator, over HTTP.

The operator authenticates as the shipped ServiceAccount with the shipped ClusterRole only; each test has a
namespace of its own on the session's control plane (see tests/support/fixtures.py).

The operator runs with the shipped tick (10 s) and the tests with the shipped intervals: a test that needs
something to happen sooner asks for it as a user would, with the imagescan.io/reconcile-requested-at annotation.
"""

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
def sts_endpoint_url() -> str | None:
    """Where the operator assumes roles: nowhere by default; tests of several accounts point it at moto."""
    return None


@pytest.fixture
def operator(cluster: Cluster, emulator: server.Emulator,
             sts_endpoint_url: str | None) -> Iterator[runner.InThread]:
    """The operator in this process, at the shipped defaults (workers 10, tick 10 s), watching the test's
    namespace; tests/reliability uses it too."""
    config = runtime.Config(
        aws=aws_clients.Settings(default_region="us-east-1", endpoint_url=emulator.endpoint_url,
                                 sts_endpoint_url=sts_endpoint_url),
        namespaces=(cluster.namespace,),
    )
    assert config.tick == 10.0, "the end-to-end tests run at the shipped tick"
    with runner.InThread(config) as running:
        yield running


@pytest.fixture
def activations(operator: runner.InThread,
                cluster_client: kubernetes.client.ApiClient) -> Iterator[harness.Activations]:
    """InspectorActivations this test creates, deleted (and their deletion policy run) while its operator
    runs."""
    made = harness.Activations(cluster_client)
    try:
        yield made
    finally:
        made.delete_all()


@pytest.fixture
def pipelines(operator: runner.InThread, cluster: Cluster,
              cluster_client: kubernetes.client.ApiClient) -> harness.Pipelines:
    return harness.Pipelines(cluster_client, cluster.namespace)
