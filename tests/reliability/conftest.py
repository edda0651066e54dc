"""Fixtures for the reliability suites: the emulator and the operator in a thread exactly as the integration
tests run them (the shipped ServiceAccount, tick and intervals), and ImagePipelines through the admin's client
— without starting an operator, since the restart suite runs its own as a subprocess."""

from __future__ import annotations

import kubernetes.client
import pytest

from tests.integration import harness
from tests.integration.conftest import emulator, operator, sts_endpoint_url
from tests.support.fixtures import Cluster

__all__ = ["emulator", "operator", "pipelines", "sts_endpoint_url"]


@pytest.fixture
def pipelines(cluster: Cluster, cluster_client: kubernetes.client.ApiClient) -> harness.Pipelines:
    return harness.Pipelines(cluster_client, cluster.namespace)
