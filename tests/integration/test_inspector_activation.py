"""InspectorActivation end to end: the real operator on the real control plane, Inspector in the emulator.

Inspector starts off in every test here, and activation takes 20 s (ENABLING, then ENABLED), as the console's
"step 1" does on real AWS; the operator runs at its shipped tick and intervals.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from imagescan.emulator import server
from tests.integration import harness

ACCOUNT = "123456789012"
REGION = "us-east-1"
ACTIVATION_DELAY = 20.0


@pytest.fixture
def emulator() -> Iterator[server.Emulator]:
    with server.Emulator(seed=7, pipelines=0, inspector_enabled=False, inspector_delay_s=ACTIVATION_DELAY) as emu:
        yield emu


def states(emulator: server.Emulator, region: str = REGION) -> dict[str, str]:
    return emulator.world.inspector_status(ACCOUNT, region)


def test_activation_goes_through_enabling_to_ready_reading_with_backoff(
        activations: harness.Activations, emulator: server.Emulator) -> None:
    activations.create("step-one", {"resourceTypes": ["EC2", "ECR"]})
    progressing = activations.wait_condition("step-one", "Reconciling", "True", "Progressing")
    assert "ECR is ENABLING" in progressing["message"]
    obj = activations.get("step-one")
    assert obj is not None
    assert obj["status"]["resourceState"]["ecr"]["status"] == "ENABLING"
    assert (obj["status"]["accountId"], obj["status"]["region"]) == (ACCOUNT, REGION)
    assert activations.condition("step-one")["reason"] == "Progressing"  # type: ignore[index]
    emulator.reset_calls()
    ready = activations.wait_condition("step-one", "Ready", "True", "Enabled", timeout=ACTIVATION_DELAY + 30)
    assert "Inspector scans EC2, ECR in account 123456789012 in us-east-1" in ready["message"]
    obj = activations.get("step-one")
    assert obj is not None
    status = obj["status"]
    assert status["resourceState"]["ec2"]["status"] == status["resourceState"]["ecr"]["status"] == "ENABLED"
    assert status["state"] == "ENABLED" and status["observedGeneration"] == obj["metadata"]["generation"]
    assert "Reconciling" not in {c["type"] for c in status["conditions"]}
    # Re-read with back-off while ENABLING (2 s, 4 s, 8 s ... rounded up to the 10 s tick), never Enable again.
    assert emulator.calls["Enable"] == 0
    assert 1 <= emulator.calls["BatchGetAccountStatus"] <= 4
    # Then quiet until the resync (10 min).
    emulator.reset_calls()
    time.sleep(25)
    assert emulator.calls["BatchGetAccountStatus"] == 0


def test_a_waiting_pipeline_names_the_activation_and_is_ready_within_seconds_of_enabled(
        activations: harness.Activations, pipelines: harness.Pipelines, emulator: server.Emulator) -> None:
    arn = emulator.world.add_pipeline(name="waits", container=True, scanning_enabled=False)
    pipelines.create("waits", {"pipelineArn": arn, "scanning": {"enabled": True}})
    waiting = pipelines.wait_condition("waits", "Ready", "False", "InspectorNotEnabled")
    assert f"No InspectorActivation covers ECR in account {ACCOUNT}, region {REGION}" in waiting["message"]

    activations.create("for-waits", {"resourceTypes": ["ECR"]})
    activations.wait_condition("for-waits", "Reconciling", "True", "Progressing")
    pipelines.reconcile_now("waits", "while-enabling")  # what a user asking "why?" sees meanwhile
    named = pipelines.condition("waits")
    assert named is not None and named["reason"] == "InspectorNotEnabled"
    assert "InspectorActivation for-waits requests it: ENABLING" in named["message"]

    activations.wait_condition("for-waits", "Ready", "True", timeout=ACTIVATION_DELAY + 30)
    enabled_at = time.monotonic()
    pipelines.wait_ready("waits", timeout=15)
    assert time.monotonic() - enabled_at <= 15, "woken by the activation, not at its back-off or resync"
    assert emulator.world.pipeline(arn)["imageScanningConfiguration"]["imageScanningEnabled"] is True


def test_an_activation_without_the_needed_type_is_named_with_what_to_add(
        activations: harness.Activations, pipelines: harness.Pipelines, emulator: server.Emulator) -> None:
    emulator.inspector_delay_s = 0.0
    activations.create("ec2-only", {"resourceTypes": ["EC2"]})
    activations.wait_condition("ec2-only", "Ready", "True")
    arn = emulator.world.add_pipeline(name="container", container=True, scanning_enabled=False)
    pipelines.create("container", {"pipelineArn": arn})
    waiting = pipelines.wait_condition("container", "Ready", "False", "InspectorNotEnabled")
    assert "InspectorActivation ec2-only covers account 123456789012 in us-east-1 but not ECR" in waiting["message"]


def test_observe_reports_and_never_enables(activations: harness.Activations, emulator: server.Emulator) -> None:
    activations.create("watch-only", {"resourceTypes": ["EC2", "ECR"], "managementPolicy": "Observe"})
    condition = activations.wait_condition("watch-only", "Ready", "False", "NotEnabled")
    assert "Observe mode: nothing written" in condition["message"] and "ECR is DISABLED" in condition["message"]
    assert activations.condition("watch-only", "Stalled") is None
    emulator.world.set_inspector(ACCOUNT, {"EC2": "ENABLED", "ECR": "ENABLED"})
    activations.patch("watch-only", {"metadata": {"annotations": {"imagescan.io/reconcile-requested-at": "1"}}})
    activations.wait_condition("watch-only", "Ready", "True", "Observed")
    assert emulator.calls["Enable"] == 0 and emulator.calls["Disable"] == 0


def test_suspended_types_are_enabled_again_and_every_state_is_reported(
        activations: harness.Activations, emulator: server.Emulator) -> None:
    emulator.inspector_delay_s = 0.0
    emulator.world.set_inspector(ACCOUNT, {"EC2": "SUSPENDED", "ECR": "DISABLING", "LAMBDA": "SUSPENDING"})
    activations.create("states", {"resourceTypes": ["EC2", "ECR", "LAMBDA"]})
    progressing = activations.wait_condition("states", "Reconciling", "True", "Progressing")
    assert "ECR is DISABLING" in progressing["message"] and "LAMBDA is SUSPENDING" in progressing["message"]
    obj = activations.get("states")
    assert obj is not None and obj["status"]["resourceState"]["ec2"]["status"] in ("ENABLING", "ENABLED")
    emulator.world.set_inspector(ACCOUNT, {"ECR": "DISABLED", "LAMBDA": "SUSPENDED"})
    activations.wait_condition("states", "Ready", "True", "Enabled", timeout=45)
    assert set(states(emulator).values()) >= {"ENABLED"}
    assert all(states(emulator)[t] == "ENABLED" for t in ("EC2", "ECR", "LAMBDA"))


def test_a_type_inspector_refuses_is_stalled_or_retried_by_its_error_code(
        activations: harness.Activations, emulator: server.Emulator) -> None:
    emulator.inspector_delay_s = 0.0
    emulator.fail_inspector_type(ACCOUNT, REGION, "ECR", "ACCESS_DENIED", "Not authorized to enable ECR scanning")
    activations.create("denied", {"resourceTypes": ["EC2", "ECR"]})
    stalled = activations.wait_condition("denied", "Stalled", "True", "ActivationFailed")
    assert "ACCESS_DENIED" in stalled["message"] and "Not authorized" in stalled["message"]
    obj = activations.get("denied")
    assert obj is not None and obj["status"]["resourceState"]["ecr"]["errorCode"] == "ACCESS_DENIED"
    # Terminal: no retry loop; re-read at the resync (10 min) only.
    emulator.reset_calls()
    time.sleep(25)
    assert emulator.calls["Enable"] == 0

    emulator.heal_inspector_type(ACCOUNT, REGION, "ECR")
    emulator.fail_inspector_type(ACCOUNT, REGION, "LAMBDA", "SSM_THROTTLED", "Try again")
    activations.patch("denied", {"spec": {"resourceTypes": ["EC2", "ECR", "LAMBDA"]}})
    retrying = activations.wait_condition("denied", "Reconciling", "True", "ActivationFailed")
    assert "SSM_THROTTLED" in retrying["message"]
    emulator.heal_inspector_type(ACCOUNT, REGION, "LAMBDA")
    activations.wait_condition("denied", "Ready", "True", "Enabled", timeout=45)


def test_deletion_retain_leaves_inspector_on(activations: harness.Activations, emulator: server.Emulator) -> None:
    emulator.inspector_delay_s = 0.0
    activations.create("kept", {"resourceTypes": ["EC2", "ECR"]})
    activations.wait_condition("kept", "Ready", "True")
    activations.delete("kept")
    assert states(emulator)["EC2"] == states(emulator)["ECR"] == "ENABLED"
    assert emulator.calls["Disable"] == 0


def test_deletion_disable_turns_off_only_what_no_other_activation_wants(
        activations: harness.Activations, emulator: server.Emulator) -> None:
    emulator.inspector_delay_s = 0.0
    activations.create("team-a", {"resourceTypes": ["EC2", "ECR"], "deletionPolicy": "Disable"})
    activations.create("team-b", {"resourceTypes": ["ECR"]})
    activations.wait_condition("team-a", "Ready", "True")
    activations.wait_condition("team-b", "Ready", "True")
    activations.delete("team-a")
    assert states(emulator)["EC2"] == "DISABLED"
    assert states(emulator)["ECR"] == "ENABLED", "team-b still wants ECR"
    assert emulator.calls["Disable"] == 1
