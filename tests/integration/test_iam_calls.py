"""The AWS calls the running operator makes are the ones the IAM policy is derived from.

tests/unit/test_iam_from_code.py reads the operations from the code and checks deploy/iam-policy.json against
them; here the real operator (real control plane, emulator, moto STS) goes through every feature that calls
AWS, and the operations it actually called — the emulator's call log and moto's record of AssumeRole — must be
exactly those: nothing called that the scan missed, nothing in the scan never called.
"""

from __future__ import annotations

from collections.abc import Iterator

import botocore.session
import kubernetes.client
import pytest

from imagescan.emulator import protocol, server
from imagescan.reconcile import access
from tests.integration import harness
from tests.support.fixtures import Cluster
from tests.support.moto import Moto
from tests.unit.test_iam_from_code import called_in_code

TEAM = "210987654321"
TEAM_ROLE = f"arn:aws:iam::{TEAM}:role/imagescan-team"


@pytest.fixture
def emulator(moto_server: Moto) -> Iterator[server.Emulator]:
    with server.Emulator(seed=7, pipelines=0, inspector_enabled=False, sts_endpoint_url=moto_server.url) as emu:
        emu.world.set_inspector(TEAM, {"EC2": "ENABLED", "ECR": "ENABLED"})
        yield emu


@pytest.fixture
def sts_endpoint_url(moto_server: Moto) -> str:
    moto_server.reset()
    return moto_server.url


def _service_of(operation: str) -> str:
    session = botocore.session.get_session()
    (service,) = [s for s in protocol.SERVICES if operation in session.get_service_model(s).operation_names]
    return service


def test_every_call_the_operator_makes_is_in_the_policy_and_nothing_else(
        pipelines: harness.Pipelines, activations: harness.Activations, emulator: server.Emulator,
        cluster: Cluster, cluster_client: kubernetes.client.ApiClient, moto_server: Moto) -> None:
    # Inspector on (Enable, BatchGetAccountStatus), then a container pipeline found by name with scanning off:
    # ListImagePipelines, GetImagePipeline, UpdateImagePipeline, builds, image, ECR digests, findings.
    activations.create("iam-calls", {"resourceTypes": ["EC2", "ECR"], "deletionPolicy": "Disable"})
    activations.wait_condition("iam-calls", "Ready", "True", timeout=30)
    emulator.world.add_pipeline(name="by-name", container=True, findings={"CRITICAL": 2, "LOW": 3})
    pipelines.create("by-name", {"pipelineName": "by-name"})
    pipelines.wait_ready("by-name")
    # Another account through a granted role: sts:AssumeRole.
    kubernetes.client.CoreV1Api(cluster_client).patch_namespace(
        cluster.namespace, {"metadata": {"annotations": {access.DEFAULT_ANNOTATION: TEAM_ROLE}}})
    team = emulator.world.add_pipeline(name="team", account_id=TEAM)
    pipelines.create("team", {"pipelineArn": team})
    pipelines.wait_ready("team")
    # deletionPolicy Disable: inspector2 Disable.
    activations.delete("iam-calls")

    called = {f"{_service_of(operation)}:{operation}" for operation in emulator.calls}
    if any(r["role_arn"] == TEAM_ROLE for r in moto_server.assumed_roles()):
        called.add("sts:AssumeRole")
    in_code = set(called_in_code())
    assert called == in_code, f"called but not in the scan: {sorted(called - in_code)}; " \
                              f"in the scan but never called: {sorted(in_code - called)}"
