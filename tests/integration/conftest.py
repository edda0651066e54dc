"""The real operator (kopf) against the test API server and the Image Builder emulator, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import kubernetes.client
import pytest

from imagescan import apiserver, runner
from imagescan.aws import clients as aws_clients
from imagescan.emulator import server
from imagescan.handlers import runtime
from tests.conftest import ROOT
from tests.integration import harness


@pytest.fixture
def emulator() -> Iterator[server.Emulator]:
    with server.Emulator(seed=7, pipelines=0) as emu:
        yield emu


@pytest.fixture
def operator(kube_api: apiserver.ApiServer, emulator: server.Emulator) -> Iterator[runner.InThread]:
    for crd in sorted((ROOT / "crds").glob("*.imagescan.io.yaml")):
        kube_api.apply_yaml(crd)
    config = runtime.Config(
        aws=aws_clients.Settings(default_region="us-east-1", endpoint_url=emulator.endpoint_url, workers=4),
        tick=0.2,
        namespaces=(harness.NAMESPACE,),
    )
    with runner.InThread(config) as running:
        yield running


@pytest.fixture
def pipelines(operator: runner.InThread, kube_client: kubernetes.client.ApiClient) -> harness.Pipelines:
    return harness.Pipelines(kube_client)
