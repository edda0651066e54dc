"""AWS's per-operation rate limits: past the quota a real boto3 client (retries off) gets the service's throttling
error, with the status and code botocore's model gives it, and each account, region and operation has its own
bucket. The buckets refill on the emulator's clock, which these tests step instead of sleeping (one test uses
real time, set over HTTP as the benchmark does)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from imagescan.emulator import server
from tests.emulator.conftest import ACCOUNT, Clock, client_as

TEAM = "210987654321"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emu(clock: Clock) -> Iterator[server.Emulator]:
    with server.Emulator(seed=7, pipelines=2, clock=clock, rate_limit_tps=5, rate_limit_burst=5) as emulator:
        emulator.world.add_pipeline("api", container=True, findings=3)
        yield emulator


def _client(emu: server.Emulator, service: str, **identity: Any) -> Any:
    """A real boto3 client that makes exactly one attempt per call."""
    return client_as(service, str(emu.endpoint_url), **identity)


def _control(emu: server.Emulator, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(f"{emu.endpoint_url}/_emulator/{path}", data=data, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _passes(call: Callable[[], Any], times: int) -> None:
    for _ in range(times):
        call()


def _throttled(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as refused:
        call()
    response: dict[str, Any] = refused.value.response
    return response


def test_image_builder_answers_call_rate_limit_exceeded_past_the_burst(emu: server.Emulator, clock: Clock) -> None:
    ib = _client(emu, "imagebuilder")
    arn = emu.world.pipeline_arns()[0]

    def get() -> Any:
        return ib.get_image_pipeline(imagePipelineArn=arn)

    _passes(get, 5)
    refused = _throttled(get)
    assert refused["Error"]["Code"] == "CallRateLimitExceededException"
    assert refused["ResponseMetadata"]["HTTPStatusCode"] == 429
    clock.advance(0.2)  # one token at 5 per second
    get()
    assert _throttled(get)["Error"]["Code"] == "CallRateLimitExceededException"
    clock.advance(1.0)
    _passes(get, 5)
    _throttled(get)
    assert emu.throttles == {"GetImagePipeline": 3}
    assert emu.calls["GetImagePipeline"] == 14, "refused calls were made all the same"


def test_each_operation_account_and_region_has_its_own_bucket(emu: server.Emulator) -> None:
    ib = _client(emu, "imagebuilder")
    arn = emu.world.pipeline_arns()[0]
    _passes(lambda: ib.get_image_pipeline(imagePipelineArn=arn), 5)
    _throttled(lambda: ib.get_image_pipeline(imagePipelineArn=arn))
    _passes(lambda: ib.list_image_pipeline_images(imagePipelineArn=arn), 5)  # another operation
    emu.identities["AKIATEAM"] = TEAM
    team = _client(emu, "imagebuilder", access_key_id="AKIATEAM")
    _passes(team.list_image_pipelines, 5)  # another account
    west = _client(emu, "imagebuilder", region="eu-west-1")
    _passes(west.list_image_pipelines, 5)  # another region
    _passes(ib.list_image_pipelines, 5)
    _throttled(ib.list_image_pipelines)
    assert emu.throttles == {"GetImagePipeline": 1, "ListImagePipelines": 1}


def test_inspector_answers_throttling_exception_with_retry_after(emu: server.Emulator, clock: Clock) -> None:
    inspector = _client(emu, "inspector2")

    def status() -> Any:
        return inspector.batch_get_account_status(accountIds=[ACCOUNT])

    _passes(status, 5)
    refused = _throttled(status)
    assert refused["Error"]["Code"] == "ThrottlingException"
    assert refused["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert refused["retryAfterSeconds"] == 1, "botocore reads the modeled Retry-After header"
    clock.advance(0.2)
    status()


def test_ecr_answers_throttling_exception(emu: server.Emulator) -> None:
    ecr = _client(emu, "ecr")
    repository = emu.world.container_uris()[-1].split("/", 1)[1].rsplit(":", 1)[0]
    _passes(lambda: ecr.describe_images(repositoryName=repository), 5)
    refused = _throttled(lambda: ecr.describe_images(repositoryName=repository))
    assert refused["Error"]["Code"] == "ThrottlingException"
    assert refused["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_operations_can_have_limits_of_their_own(emu: server.Emulator, clock: Clock) -> None:
    _control(emu, "POST", "rate-limit", {"tps": None, "operations": {"ListImagePipelines": {"tps": 2, "burst": 1}}})
    assert _control(emu, "GET", "rate-limit") == {
        "tps": None, "burst": None, "operations": {"ListImagePipelines": {"tps": 2.0, "burst": 1.0}},
    }
    ib = _client(emu, "imagebuilder")
    arn = emu.world.pipeline_arns()[0]
    _passes(lambda: ib.get_image_pipeline(imagePipelineArn=arn), 20)  # no limit but the override
    ib.list_image_pipelines()
    _throttled(ib.list_image_pipelines)
    clock.advance(0.5)
    ib.list_image_pipelines()
    assert _control(emu, "GET", "throttles") == {"ListImagePipelines": 1}
    _control(emu, "DELETE", "rate-limit")
    _passes(ib.list_image_pipelines, 10)


def test_over_http_on_the_real_clock() -> None:
    """As the benchmark sets it: 5 calls pass at once, the 6th is refused, one second later calls pass again."""
    with server.Emulator(seed=7, pipelines=1) as emu:
        _control(emu, "POST", "rate-limit", {"tps": 5, "burst": 5})
        ib = _client(emu, "imagebuilder")
        _passes(ib.list_image_pipelines, 5)
        _throttled(ib.list_image_pipelines)
        time.sleep(1.0)
        ib.list_image_pipelines()
        assert _control(emu, "GET", "throttles") == {"ListImagePipelines": 1}
        _control(emu, "POST", "calls/reset", {})
        assert _control(emu, "GET", "throttles") == {}


def test_a_limit_needs_a_positive_rate(emu: server.Emulator) -> None:
    request = urllib.request.Request(f"{emu.endpoint_url}/_emulator/rate-limit", method="POST",
                                     data=json.dumps({"tps": 0}).encode())
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
