"""The emulator's HTTP control endpoints, used when it runs in another process (benchmarks)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from imagescan.emulator import server


def _call(emu: server.Emulator, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(f"{emu.endpoint_url}/_emulator/{path}", data=data, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_control_endpoints_drive_the_emulator_over_http() -> None:
    with server.Emulator(seed=1, pipelines=0) as emu:
        arns = _call(emu, "POST", "pipelines", {"names": ["a", "b"], "container": [False, True], "findings": 5})["arns"]
        assert [emu.world.pipeline(arn)["name"] for arn in arns] == ["a", "b"]
        assert "containerRecipeArn" in emu.world.pipeline(arns[1])
        _call(emu, "POST", "latency", {"ms": 20})
        assert emu.latency_s == 0.02
        emu.handle("GET", f"/GetImagePipeline?imagePipelineArn={arns[0]}", {}, b"")
        assert _call(emu, "GET", "calls") == {"GetImagePipeline": 1}
        _call(emu, "POST", "calls/reset", {})
        assert _call(emu, "GET", "calls") == {}


def test_unknown_control_path_is_a_404_not_an_aws_error() -> None:
    with server.Emulator(seed=1, pipelines=0) as emu:
        status, _, body = emu.handle("GET", "/_emulator/nothing", {}, b"")
        assert status == 404 and b"no emulator control" in body


def test_accounts_and_inspector_over_http() -> None:
    with server.Emulator(seed=1, pipelines=0, inspector_enabled=False) as emu:
        arn = _call(emu, "POST", "pipelines", {"names": ["far"], "accountId": "210987654321", "region": "eu-west-1"})
        assert arn["arns"] == ["arn:aws:imagebuilder:eu-west-1:210987654321:image-pipeline/far"]
        _call(emu, "POST", "identities", {"accessKeyId": "AKIAFAR", "accountId": "210987654321"})
        assert "AKIAFAR" in emu.identities
        _call(emu, "POST", "inspector", {"accountId": "210987654321", "region": "eu-west-1",
                                         "states": {"ECR": "SUSPENDED"}})
        assert emu.world.inspector_status("210987654321", region="eu-west-1")["ECR"] == "SUSPENDED"
        _call(emu, "POST", "inspector/delay", {"s": 2.5})
        assert emu.inspector_delay_s == 2.5
        failure = {"accountId": "123456789012", "resourceType": "EC2"}
        _call(emu, "POST", "inspector/fail", {**failure, "errorCode": "SSM_THROTTLED", "message": "Slow down."})
        emu.world.inspector.enable(("123456789012", "us-east-1"), ["EC2"])
        assert emu.world.inspector.states(("123456789012", "us-east-1"))["EC2"].error_code == "SSM_THROTTLED"
        _call(emu, "POST", "inspector/heal", failure)
        assert emu.world.inspector.enable(("123456789012", "us-east-1"), ["EC2"]) == {}
