"""Inspector activation as the real service does it: per account and region, through ENABLING and DISABLING."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from imagescan.emulator import server

from .conftest import ACCOUNT, REGION, Clock, client_as

OTHER = "210987654321"
WEST = "us-west-2"
DELAY = 30.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emu(clock: Clock) -> Iterator[server.Emulator]:
    """Inspector off everywhere, activation taking DELAY seconds on a clock the test steps."""
    with server.Emulator(pipelines=2, inspector_enabled=False, inspector_delay_s=DELAY, clock=clock) as emulator:
        emulator.identities["AKIAOTHER"] = OTHER
        yield emulator


def _client(emu: server.Emulator, service: str = "inspector2", *, key: str = "test", region: str = REGION) -> Any:
    assert emu.endpoint_url
    return client_as(service, emu.endpoint_url, region=region, access_key_id=key)


def _status(inspector: Any) -> dict[str, Any]:
    accounts = inspector.batch_get_account_status()["accounts"]
    assert len(accounts) == 1
    return dict(accounts[0])


def _types(inspector: Any) -> dict[str, str]:
    return {kind: state["status"] for kind, state in _status(inspector)["resourceState"].items()}


def test_enable_goes_through_enabling(emu: server.Emulator, clock: Clock) -> None:
    inspector = _client(emu)
    answer = inspector.enable(resourceTypes=["ECR"])
    assert answer["failedAccounts"] == []
    assert answer["accounts"] == [{
        "accountId": ACCOUNT, "status": "ENABLING",
        "resourceStatus": {"ec2": "DISABLED", "ecr": "ENABLING", "lambda": "DISABLED", "lambdaCode": "DISABLED",
                           "codeRepository": "DISABLED"},
    }]
    clock.advance(DELAY - 1)
    assert _types(inspector)["ecr"] == "ENABLING"
    inspector.enable(resourceTypes=["ECR"])  # enabling again neither fails nor restarts the wait
    clock.advance(1)
    status = _status(inspector)
    assert status["state"] == {"status": "ENABLED"}
    assert status["resourceState"]["ecr"] == {"status": "ENABLED"}
    assert emu.world.inspector_status(ACCOUNT) == {
        "EC2": "DISABLED", "ECR": "ENABLED", "LAMBDA": "DISABLED", "LAMBDA_CODE": "DISABLED",
        "CODE_REPOSITORY": "DISABLED",
    }


def test_disable_goes_through_disabling(emu: server.Emulator, clock: Clock) -> None:
    emu.world.set_inspector(ACCOUNT, {"EC2": "ENABLED", "ECR": "ENABLED"})
    inspector = _client(emu)
    answer = inspector.disable(resourceTypes=["EC2"])["accounts"][0]
    assert (answer["status"], answer["resourceStatus"]["ec2"], answer["resourceStatus"]["ecr"]) == (
        "ENABLED", "DISABLING", "ENABLED")
    inspector.disable()
    assert _status(inspector)["state"]["status"] == "DISABLING"
    clock.advance(DELAY)
    assert set(_types(inspector).values()) == {"DISABLED"}
    assert _status(inspector)["state"] == {"status": "DISABLED"}


def test_zero_delay_is_immediate() -> None:
    with server.Emulator(pipelines=0, inspector_enabled=False) as emu:
        assert emu.inspector_delay_s == 0.0
        inspector = _client(emu)
        assert inspector.enable(resourceTypes=["EC2"])["accounts"][0]["resourceStatus"]["ec2"] == "ENABLED"
        assert inspector.disable(resourceTypes=["EC2"])["accounts"][0]["resourceStatus"]["ec2"] == "DISABLED"


def test_real_clock_delay_set_over_http() -> None:
    with server.Emulator(pipelines=0, inspector_enabled=False) as emu:
        request = urllib.request.Request(f"{emu.endpoint_url}/_emulator/inspector/delay",
                                         data=json.dumps({"s": 0.3}).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass
        assert emu.inspector_delay_s == 0.3
        inspector = _client(emu)
        started = time.monotonic()
        assert inspector.enable(resourceTypes=["ECR"])["accounts"][0]["status"] == "ENABLING"
        while _types(inspector)["ecr"] != "ENABLED":
            assert time.monotonic() - started < 5
            time.sleep(0.05)
        assert time.monotonic() - started >= 0.3


def test_suspended_states_are_reported(emu: server.Emulator) -> None:
    emu.world.set_inspector(ACCOUNT, {"EC2": "SUSPENDED", "ECR": "SUSPENDING"})
    inspector = _client(emu)
    types = _types(inspector)
    assert (types["ec2"], types["ecr"]) == ("SUSPENDED", "SUSPENDING")
    assert _status(inspector)["state"]["status"] == "SUSPENDING"
    failed = inspector.enable(resourceTypes=["ECR"])["failedAccounts"]
    assert [(f["accountId"], f["errorCode"]) for f in failed] == [(ACCOUNT, "SUSPEND_IN_PROGRESS")]
    emu.world.set_inspector(ACCOUNT, {"ECR": "SUSPENDED"})
    assert _status(inspector)["state"]["status"] == "SUSPENDED"


def test_a_type_that_fails_to_enable(emu: server.Emulator, clock: Clock) -> None:
    emu.fail_inspector_type(ACCOUNT, REGION, "ECR", "ACCESS_DENIED", "Service-linked role could not be created.")
    inspector = _client(emu)
    answer = inspector.enable(resourceTypes=["EC2", "ECR"])
    assert answer["accounts"] == []
    failed = answer["failedAccounts"][0]
    assert (failed["accountId"], failed["errorCode"], failed["errorMessage"]) == (
        ACCOUNT, "ACCESS_DENIED", "Service-linked role could not be created.")
    assert (failed["resourceStatus"]["ec2"], failed["resourceStatus"]["ecr"]) == ("ENABLING", "DISABLED")
    clock.advance(DELAY)
    status = _status(inspector)
    assert status["resourceState"]["ecr"] == {
        "status": "DISABLED", "errorCode": "ACCESS_DENIED", "errorMessage": "Service-linked role could not be created.",
    }
    assert status["resourceState"]["ec2"] == {"status": "ENABLED"}
    assert status["state"] == {"status": "ENABLED"}  # an account with one type ENABLED is ENABLED

    emu.heal_inspector_type(ACCOUNT, REGION, "ECR")
    assert inspector.enable(resourceTypes=["ECR"])["accounts"][0]["resourceStatus"]["ecr"] == "ENABLING"
    assert _status(inspector)["resourceState"]["ecr"] == {"status": "ENABLING"}


def test_an_account_where_nothing_enabled_carries_the_error(emu: server.Emulator) -> None:
    emu.fail_inspector_type(ACCOUNT, REGION, "EC2", "SSM_UNAVAILABLE", "SSM is not available.")
    inspector = _client(emu)
    inspector.enable(resourceTypes=["EC2"])
    assert _status(inspector)["state"] == {
        "status": "DISABLED", "errorCode": "SSM_UNAVAILABLE", "errorMessage": "SSM is not available."
    }
    inspector.disable(resourceTypes=["EC2"])  # disabling a failed type clears its error
    assert _status(inspector)["resourceState"]["ec2"] == {"status": "DISABLED"}


def test_other_accounts_are_access_denied(emu: server.Emulator) -> None:
    inspector = _client(emu)
    for call, kwargs in (
        (inspector.enable, {"resourceTypes": ["ECR"]}),
        (inspector.disable, {}),
        (inspector.batch_get_account_status, {}),
    ):
        answer = call(accountIds=[ACCOUNT, OTHER], **kwargs)
        assert [a["accountId"] for a in answer["accounts"]] == [ACCOUNT]
        assert [(f["accountId"], f["errorCode"]) for f in answer["failedAccounts"]] == [(OTHER, "ACCESS_DENIED")]
    assert emu.world.inspector_status(OTHER) == dict.fromkeys(emu.world.inspector_status(OTHER), "DISABLED")


def test_each_account_and_region_has_its_own_inspector(emu: server.Emulator, clock: Clock) -> None:
    _client(emu, key="AKIAOTHER").enable(resourceTypes=["ECR"])
    _client(emu, region=WEST).enable(resourceTypes=["EC2"])
    clock.advance(DELAY)
    assert emu.world.inspector_status(OTHER)["ECR"] == "ENABLED"
    assert emu.world.inspector_status(ACCOUNT, region=WEST)["EC2"] == "ENABLED"
    assert set(emu.world.inspector_status(ACCOUNT).values()) == {"DISABLED"}
    assert _types(_client(emu, key="AKIAOTHER", region=WEST))["ecr"] == "DISABLED"
    assert _status(_client(emu, key="AKIAOTHER"))["accountId"] == OTHER


def _scan(emu: server.Emulator, arn: str, *, key: str = "test", region: str = REGION) -> None:
    pipeline = emu.world.pipeline(arn)
    recipe = "containerRecipeArn" if "containerRecipeArn" in pipeline else "imageRecipeArn"
    _client(emu, "imagebuilder", key=key, region=region).update_image_pipeline(
        imagePipelineArn=arn, infrastructureConfigurationArn=pipeline["infrastructureConfigurationArn"],
        **{recipe: pipeline[recipe]}, imageScanningConfiguration={"imageScanningEnabled": True},
    )


def _dependency_error(emu: server.Emulator, arn: str, **caller: str) -> str:
    with pytest.raises(ClientError) as exc:
        _scan(emu, arn, **caller)
    assert exc.value.response["Error"]["Code"] == "ResourceDependencyException"
    return str(exc.value.response["Error"]["Message"])


def test_image_builder_waits_for_enabled_not_enabling(emu: server.Emulator, clock: Clock) -> None:
    container = next(p["arn"] for p in emu.world.pipelines() if "containerRecipeArn" in p)
    _client(emu).enable(resourceTypes=["ECR"])
    assert "(status ENABLING)" in _dependency_error(emu, container)
    clock.advance(DELAY)
    _scan(emu, container)
    assert emu.world.pipeline(container)["imageScanningConfiguration"]["imageScanningEnabled"] is True


def test_image_builder_checks_the_pipelines_own_account_and_region(emu: server.Emulator, clock: Clock) -> None:
    other = emu.world.add_pipeline("other-ami", account_id=OTHER)
    west = emu.world.add_pipeline("west-ami", region=WEST)
    emu.world.set_inspector(ACCOUNT, {"EC2": "ENABLED"})  # the default account in the default region only
    message = _dependency_error(emu, other, key="AKIAOTHER")
    assert f"account '{OTHER}' in region '{REGION}'" in message
    _dependency_error(emu, west, region=WEST)
    emu.world.set_inspector(OTHER, {"EC2": "ENABLED"})
    emu.world.set_inspector(ACCOUNT, {"EC2": "ENABLED"}, region=WEST)
    _scan(emu, other, key="AKIAOTHER")
    _scan(emu, west, region=WEST)


def test_set_inspector_refuses_unknown_statuses(emu: server.Emulator) -> None:
    with pytest.raises(ValueError, match="unknown Inspector status"):
        emu.world.set_inspector(ACCOUNT, {"EC2": "ON"})
    with pytest.raises(ValueError, match="unknown Inspector resource type"):
        emu.fail_inspector_type(ACCOUNT, REGION, "S3", "ACCESS_DENIED", "no")
