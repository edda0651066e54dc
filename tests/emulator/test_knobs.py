"""Fault injection, latency, call counters, concurrency and the command line."""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from imagescan.emulator import options, server

from .conftest import make_client


def test_call_counter(emu: server.Emulator, ib: Any) -> None:
    arn = emu.world.pipeline_arns()[0]
    ib.get_image_pipeline(imagePipelineArn=arn)
    ib.get_image_pipeline(imagePipelineArn=arn)
    ib.list_image_pipelines()
    assert emu.calls["GetImagePipeline"] == 2 and emu.calls["ListImagePipelines"] == 1
    emu.reset_calls()
    assert emu.calls["GetImagePipeline"] == 0


def test_throttle_fault_surfaces_as_client_error(emu: server.Emulator, ib: Any) -> None:
    emu.inject_faults(rate=1.0, codes=("CallRateLimitExceededException",))
    with pytest.raises(ClientError) as exc:
        ib.list_image_pipelines()
    assert exc.value.response["Error"]["Code"] == "CallRateLimitExceededException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    emu.clear_faults()
    ib.list_image_pipelines()


def test_count_fails_exactly_the_next_n_matching_calls(emu: server.Emulator, ib: Any) -> None:
    arn = emu.world.pipeline_arns()[0]
    emu.inject_faults(codes=("CallRateLimitExceededException",), operations=("GetImagePipeline",), count=2)
    ib.list_image_pipelines()  # not a matching operation
    for _ in range(2):
        with pytest.raises(ClientError):
            ib.get_image_pipeline(imagePipelineArn=arn)
    ib.get_image_pipeline(imagePipelineArn=arn)
    assert emu.calls["GetImagePipeline"] == 3


def test_transient_faults_are_retried_by_standard_mode(emu: server.Emulator, ib: Any) -> None:
    emu.inject_faults(codes=("ServiceUnavailableException",), count=2)
    response = ib.list_image_pipelines()
    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert emu.calls["ListImagePipelines"] == 3


def test_rate_is_probabilistic(emu: server.Emulator, ib: Any) -> None:
    emu.inject_faults(rate=0.5, codes=("CallRateLimitExceededException",))
    failures = 0
    for _ in range(40):
        try:
            ib.list_image_pipelines()
        except ClientError:
            failures += 1
    assert 5 < failures < 35


def test_latency_knob_is_live(emu: server.Emulator, ib: Any) -> None:
    ib.list_image_pipelines()  # warm the connection
    emu.latency_s = 0.2
    started = time.perf_counter()
    ib.list_image_pipelines()
    assert time.perf_counter() - started >= 0.2
    emu.latency_s = 0.0
    started = time.perf_counter()
    ib.list_image_pipelines()
    assert time.perf_counter() - started < 0.2


def test_concurrent_clients(emu: server.Emulator) -> None:
    assert emu.endpoint_url
    url = emu.endpoint_url
    emu.latency_s = 0.05
    arn = emu.world.pipeline_arns()[0]

    def work(_: int) -> int:
        client = make_client("imagebuilder", url)
        for _ in range(5):
            client.get_image_pipeline(imagePipelineArn=arn)
        return 5

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        assert sum(pool.map(work, range(20))) == 100
    assert emu.calls["GetImagePipeline"] == 100
    assert time.perf_counter() - started < 100 * 0.05 / 2  # calls overlapped


def test_inspector_and_imagebuilder_share_one_endpoint(emu: server.Emulator) -> None:
    assert emu.endpoint_url
    inspector = make_client("inspector2", emu.endpoint_url)
    ib = make_client("imagebuilder", emu.endpoint_url)
    assert inspector.batch_get_account_status()["accounts"][0]["state"]["status"] == "ENABLED"
    assert ib.list_image_pipelines()["imagePipelineList"]
    assert emu.calls["BatchGetAccountStatus"] == 1


def test_start_stop_and_restart_port() -> None:
    emu = server.Emulator(pipelines=1)
    url = emu.start()
    client = make_client("imagebuilder", url)
    assert len(client.list_image_pipelines()["imagePipelineList"]) == 1
    emu.stop()
    emu.stop()


def test_module_entry_point() -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagescan.emulator", "--port", "0", "--pipelines", "2"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("endpoint_url: http://127.0.0.1:")
        client = make_client("imagebuilder", line.split()[-1])
        assert len(client.list_image_pipelines()["imagePipelineList"]) == 2
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_command_line_accounts_and_inspector_flags() -> None:
    parser = argparse.ArgumentParser()
    options.add_arguments(parser)
    args = parser.parse_args(["--sts-endpoint-url", "http://sts.local", "--inspector-delay-s", "1.5"])
    assert (args.sts_endpoint_url, args.inspector_delay_s) == ("http://sts.local", 1.5)
    defaults = parser.parse_args([])
    assert (defaults.sts_endpoint_url, defaults.inspector_delay_s) == (None, 0.0)


def test_imagescan_emulator_passes_the_new_flags_through() -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagescan.cli", "emulator", "--port", "0", "--pipelines", "1", "--no-inspector",
         "--inspector-delay-s", "5"],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        inspector = make_client("inspector2", url)
        assert inspector.enable(resourceTypes=["ECR"])["accounts"][0]["resourceStatus"]["ecr"] == "ENABLING"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
