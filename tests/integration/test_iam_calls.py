"""The AWS calls the running operator makes are the ones the IAM policy is derived from.

tests/unit/test_iam_from_code.py reads the operations from the code and checks deploy/iam-policy.json against
them; here the real operator (real control plane, emulator, moto STS) goes through every feature that calls
AWS, and the operations it actually called — the emulator's call log, moto's record of AssumeRole and, for the
events queue on moto's SQS, the operator's own count of its calls — must be exactly those: nothing called that
the scan missed, nothing in the scan never called.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import boto3
import botocore.session
import kubernetes.client
import pytest

from imagescan import runner
from imagescan.aws import clients as aws_clients
from imagescan.emulator import protocol, server
from imagescan.handlers import runtime
from imagescan.reconcile import access
from tests.integration import harness
from tests.integration.harness import wait_for
from tests.support.fixtures import Cluster
from tests.support.moto import Moto
from tests.unit.test_iam_from_code import AUTHORIZED_AS, called_in_code

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


@pytest.fixture
def queue_url(moto_server: Moto) -> Iterator[str]:
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_server.url,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    url = str(sqs.create_queue(QueueName=f"imagescan-iam-{uuid.uuid4().hex[:8]}")["QueueUrl"])
    yield url
    sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def operator(cluster: Cluster, emulator: server.Emulator, sts_endpoint_url: str, moto_server: Moto,
             queue_url: str) -> Iterator[runner.InThread]:
    """The operator at the shipped defaults with every feature that calls AWS on, push intake included."""
    config = runtime.Config(
        aws=aws_clients.Settings(default_region="us-east-1", endpoint_url=emulator.endpoint_url,
                                 sts_endpoint_url=sts_endpoint_url, sqs_endpoint_url=moto_server.url),
        namespaces=(cluster.namespace,), events=runtime.Events(queue_url=queue_url),
    )
    with runner.InThread(config) as running:
        yield running


def _queue_calls(operator: runner.InThread) -> set[str]:
    """The SQS operations the operator called, as IAM authorizes them (its own metric: moto keeps no call log)."""
    called = set()
    for metric in operator.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "imagescan_aws_calls_total" and sample.labels.get("service") == "sqs":
                action = f"sqs:{sample.labels['operation']}"
                called.add(AUTHORIZED_AS.get(action, action))
    return called


def _service_of(operation: str) -> str:
    session = botocore.session.get_session()
    (service,) = [s for s in protocol.SERVICES if operation in session.get_service_model(s).operation_names]
    return service


def test_every_call_the_operator_makes_is_in_the_policy_and_nothing_else(
        pipelines: harness.Pipelines, activations: harness.Activations, emulator: server.Emulator,
        cluster: Cluster, cluster_client: kubernetes.client.ApiClient, moto_server: Moto,
        operator: runner.InThread, queue_url: str) -> None:
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
    # Push intake: the queue checked and long-polled, an event about a new build read and deleted.
    emulator.send_events_to(queue_url, endpoint_url=moto_server.url, region="us-east-1")
    emulator.world.add_image(team)
    wait_for(lambda: "sqs:DeleteMessage" in _queue_calls(operator), what="an event read and deleted")
    # deletionPolicy Disable: inspector2 Disable.
    activations.delete("iam-calls")

    called = {f"{_service_of(operation)}:{operation}" for operation in emulator.calls} | _queue_calls(operator)
    if any(r["role_arn"] == TEAM_ROLE for r in moto_server.assumed_roles()):
        called.add("sts:AssumeRole")
    in_code = set(called_in_code())
    assert called == in_code, f"called but not in the scan: {sorted(called - in_code)}; " \
                              f"in the scan but never called: {sorted(in_code - called)}"
