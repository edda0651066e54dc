"""Pipelines in other AWS accounts and regions, safely: the real operator on the real control plane, STS in
moto's server, Image Builder in the emulator (which tells accounts apart by the credentials a call is signed
with, asking moto whose they are).

The operator's own credentials are account 123456789012's; team pipelines live in 210987654321, reached
through a role that a cluster admin grants to the test's namespace with Namespace annotations.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest

from imagescan.emulator import server
from imagescan.reconcile import access
from tests.integration import harness
from tests.support.fixtures import Cluster
from tests.support.moto import Moto

HOME = "123456789012"
TEAM = "210987654321"
TEAM_ROLE = f"arn:aws:iam::{TEAM}:role/imagescan-team"
OTHER_ROLE = f"arn:aws:iam::{TEAM}:role/imagescan-other-team"


@pytest.fixture
def emulator(moto_server: Moto) -> Iterator[server.Emulator]:
    with server.Emulator(seed=7, pipelines=0, account_id=HOME, sts_endpoint_url=moto_server.url) as emu:
        emu.world.set_inspector(TEAM, {"EC2": "ENABLED", "ECR": "ENABLED"})
        emu.world.set_inspector(TEAM, {"EC2": "ENABLED", "ECR": "ENABLED"}, region="eu-west-1")
        yield emu


@pytest.fixture
def sts_endpoint_url(moto_server: Moto) -> str:
    moto_server.reset()
    return moto_server.url


def grant(cluster_client: kubernetes.client.ApiClient, namespace: str, annotations: dict[str, str | None]) -> None:
    """What a cluster admin does: annotate the Namespace (its own users cannot)."""
    kubernetes.client.CoreV1Api(cluster_client).patch_namespace(namespace, {"metadata": {"annotations": annotations}})


def assumed(moto: Moto, role_arn: str) -> list[dict[str, Any]]:
    return [r for r in moto.assumed_roles() if r["role_arn"] == role_arn]


def test_a_pipeline_in_another_account_is_reached_through_an_allowed_role(
        pipelines: harness.Pipelines, emulator: server.Emulator, cluster: Cluster,
        cluster_client: kubernetes.client.ApiClient, moto_server: Moto) -> None:
    grant(cluster_client, cluster.namespace, {access.ALLOWED_ANNOTATION: f"{OTHER_ROLE}, {TEAM_ROLE}",
                                              access.EXTERNAL_ID_ANNOTATION: "team-7f3c"})
    arn = emulator.world.add_pipeline(name="team-web", container=True, account_id=TEAM)
    pipelines.create("team-web", {"pipelineArn": arn, "roleArn": TEAM_ROLE})
    ready = pipelines.wait_ready("team-web")
    assert (ready["status"]["pipeline"]["accountId"], ready["status"]["pipeline"]["region"]) == (TEAM, "us-east-1")
    assert emulator.world.pipeline(arn)["imageScanningConfiguration"]["imageScanningEnabled"] is True
    assert ready["status"]["findings"]["latestImage"]["severityCounts"]["total"] > 0
    sessions = assumed(moto_server, TEAM_ROLE)
    assert [(s["session_name"], s["external_id"]) for s in sessions] == [
        (f"imagescan@{cluster.namespace}", "team-7f3c")], "one AssumeRole, naming the namespace"
    assert not assumed(moto_server, OTHER_ROLE)


def test_without_a_role_the_other_accounts_pipeline_is_out_of_reach(
        pipelines: harness.Pipelines, emulator: server.Emulator) -> None:
    arn = emulator.world.add_pipeline(name="team-api", account_id=TEAM)
    pipelines.create("team-api", {"pipelineArn": arn})
    stalled = pipelines.wait_condition("team-api", "Stalled", "True", "AccessDenied")
    assert "AccessDeniedException" in stalled["message"]


def test_a_role_the_namespace_was_not_granted_is_never_assumed(
        pipelines: harness.Pipelines, emulator: server.Emulator, cluster: Cluster,
        cluster_client: kubernetes.client.ApiClient, moto_server: Moto) -> None:
    grant(cluster_client, cluster.namespace, {access.ALLOWED_ANNOTATION: OTHER_ROLE})
    arn = emulator.world.add_pipeline(name="sneaky", account_id=TEAM)
    emulator.reset_calls()
    pipelines.create("sneaky", {"pipelineArn": arn, "roleArn": TEAM_ROLE})
    stalled = pipelines.wait_condition("sneaky", "Stalled", "True", "RoleNotAllowed")
    assert TEAM_ROLE in stalled["message"] and access.ALLOWED_ANNOTATION in stalled["message"]
    ready = pipelines.condition("sneaky")
    assert ready is not None and ready["status"] == "False" and ready["reason"] == "RoleNotAllowed"
    events = [e for e in pipelines.events("sneaky") if e.reason == "RoleNotAllowed"]
    assert events and events[0].type == "Warning"
    assert not assumed(moto_server, TEAM_ROLE), "nothing may be called with a role the namespace was not granted"
    assert sum(emulator.calls.values()) == 0
    assert emulator.world.pipeline(arn)["imageScanningConfiguration"]["imageScanningEnabled"] is False

    # A cluster admin grants it: the next reconcile goes through.
    grant(cluster_client, cluster.namespace, {access.ALLOWED_ANNOTATION: f"{OTHER_ROLE},{TEAM_ROLE}"})
    pipelines.reconcile_now("sneaky", "granted")
    pipelines.wait_ready("sneaky")

    # And revoking it stops the next reconcile before any call.
    grant(cluster_client, cluster.namespace, {access.ALLOWED_ANNOTATION: None})
    emulator.reset_calls()
    pipelines.reconcile_now("sneaky", "revoked")
    assert pipelines.condition("sneaky", "Stalled")["reason"] == "RoleNotAllowed"  # type: ignore[index]
    assert sum(emulator.calls.values()) == 0


def test_the_namespace_default_role_and_region_from_the_arn_or_the_spec(
        pipelines: harness.Pipelines, emulator: server.Emulator, cluster: Cluster,
        cluster_client: kubernetes.client.ApiClient, moto_server: Moto) -> None:
    grant(cluster_client, cluster.namespace, {access.DEFAULT_ANNOTATION: TEAM_ROLE})
    eu = emulator.world.add_pipeline(name="eu-ami", account_id=TEAM, region="eu-west-1")
    emulator.world.add_pipeline(name="eu-by-name", account_id=TEAM, region="eu-west-1")
    emulator.world.add_pipeline(name="eu-by-name", account_id=TEAM)  # same name in us-east-1: not this one
    pipelines.create("by-arn", {"pipelineArn": eu})
    pipelines.create("by-name", {"pipelineName": "eu-by-name", "region": "eu-west-1"})
    by_arn = pipelines.wait_ready("by-arn")["status"]["pipeline"]
    by_name = pipelines.wait_ready("by-name")["status"]["pipeline"]
    assert (by_arn["accountId"], by_arn["region"], by_arn["arn"]) == (TEAM, "eu-west-1", eu)
    assert (by_name["accountId"], by_name["region"]) == (TEAM, "eu-west-1")
    assert by_name["arn"] == f"arn:aws:imagebuilder:eu-west-1:{TEAM}:image-pipeline/eu-by-name"
    assert len(assumed(moto_server, TEAM_ROLE)) == 1, "one role, one set of credentials for every region"


def test_a_cross_account_pipeline_waits_for_inspector_in_its_own_account(
        pipelines: harness.Pipelines, activations: harness.Activations, emulator: server.Emulator,
        cluster: Cluster, cluster_client: kubernetes.client.ApiClient) -> None:
    grant(cluster_client, cluster.namespace, {access.DEFAULT_ANNOTATION: TEAM_ROLE})
    emulator.world.set_inspector(TEAM, {"ECR": "DISABLED"})
    emulator.world.set_inspector(HOME, {"ECR": "DISABLED"})
    arn = emulator.world.add_pipeline(name="team-container", container=True, account_id=TEAM)
    pipelines.create("team-container", {"pipelineArn": arn})
    waiting = pipelines.wait_condition("team-container", "Ready", "False", "InspectorNotEnabled")
    assert f"No InspectorActivation covers ECR in account {TEAM}, region us-east-1" in waiting["message"]
    activations.create("team-account", {"roleArn": TEAM_ROLE, "resourceTypes": ["ECR"]})
    ready = activations.wait_condition("team-account", "Ready", "True", timeout=30)
    assert TEAM in ready["message"]
    assert emulator.world.inspector_status(HOME)["ECR"] == "DISABLED", "only the role's account was activated"
    pipelines.wait_ready("team-container", timeout=15)


def test_imagescan_findings_shows_the_account(
        pipelines: harness.Pipelines, emulator: server.Emulator, cluster: Cluster,
        cluster_client: kubernetes.client.ApiClient) -> None:
    grant(cluster_client, cluster.namespace, {access.DEFAULT_ANNOTATION: TEAM_ROLE})
    arn = emulator.world.add_pipeline(name="shown", account_id=TEAM, findings={"CRITICAL": 2, "HIGH": 3})
    pipelines.create("shown", {"pipelineArn": arn})
    pipelines.wait_ready("shown")
    shown = subprocess.run(
        [sys.executable, "-m", "imagescan.cli", "findings", "--by", "pipeline", "-n", cluster.namespace,
         "--kubeconfig", str(cluster.kubeconfig), "-o", "json"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    rows = json.loads(shown.stdout)
    assert any(TEAM in json.dumps(row) for row in rows), rows
    table = subprocess.run(
        [sys.executable, "-m", "imagescan.cli", "findings", "--by", "pipeline", "-n", cluster.namespace,
         "--kubeconfig", str(cluster.kubeconfig)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    assert "ACCOUNT" in table.splitlines()[0] and TEAM in table
