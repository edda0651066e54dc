"""`imagescan sandbox` as a newcomer runs it: start, look with kubectl, apply an example, Ctrl-C."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ROOT

READY_LINE = "Ctrl-C stops everything."


class Running:
    def __init__(self, process: subprocess.Popen[str], output: list[str], kubeconfig: pathlib.Path) -> None:
        self.process = process
        self.output = output
        self.kubeconfig = kubeconfig

    def url(self, label: str) -> str:
        for line in self.output:
            if line.startswith(label):
                return line.split()[2]
        raise AssertionError(f"no {label!r} line in:\n" + "\n".join(self.output))

    def kubectl(self, *args: str) -> str:
        done = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        return done.stdout


def _start(tmp_path: pathlib.Path, *extra: str) -> Running:
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [sys.executable, "-m", "imagescan.cli", "sandbox", "--port", "0", "--api-port", "0",
         "--kubeconfig", str(kubeconfig), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output: list[str] = []
    deadline = time.monotonic() + 90
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line.rstrip("\n"))
        if line.strip() == READY_LINE:
            return Running(process, output, kubeconfig)
    process.kill()
    raise AssertionError("sandbox did not come up:\n" + "\n".join(output))


def _stop(running: Running) -> tuple[int, str]:
    running.process.send_signal(signal.SIGINT)
    rest, _ = running.process.communicate(timeout=30)
    return running.process.returncode, rest


@pytest.fixture
def sandbox(tmp_path: pathlib.Path) -> Iterator[Running]:
    running = _start(tmp_path)
    yield running
    if running.process.poll() is None:
        running.process.kill()


def test_sandbox_shows_ready_pipelines_and_serves_kubectl(sandbox: Running) -> None:
    text = "\n".join(sandbox.output)
    header = next(line for line in sandbox.output if line.startswith("NAME"))
    assert header.split()[:10] == ["NAME", "SCANNING", "CRITICAL", "HIGH", "TOTAL", "READY", "AGE", "MEDIUM",
                                   "LOW", "LATEST-IMAGE"]
    rows = [line.split() for line in sandbox.output if re.match(r"^(api|batch-worker|web-ami)\s", line)]
    assert sorted(row[0] for row in rows) == ["api", "batch-worker", "web-ami"]
    assert all(row[1] == "true" and row[5] == "True" for row in rows), text
    assert "kubectl --kubeconfig" in text and "get imagepipelines -o wide" in text

    listed = sandbox.kubectl("get", "imagepipelines")
    assert listed.split()[:7] == ["NAME", "SCANNING", "CRITICAL", "HIGH", "TOTAL", "READY", "AGE"]
    objects = json.loads(sandbox.kubectl("get", "imagepipelines", "-o", "json"))["items"]
    assert {o["metadata"]["name"] for o in objects} == {"api", "batch-worker", "web-ami"}
    assert "Latest Image" in sandbox.kubectl("describe", "imagepipeline", "web-ami")

    applied = sandbox.kubectl("apply", "-f", "examples/imagepipeline-ami.yaml")  # no --validate=false needed
    assert applied.strip() in {"imagepipeline.imagescan.io/batch-worker unchanged",
                               "imagepipeline.imagescan.io/batch-worker configured"}
    assert "pipelineArn" in sandbox.kubectl("explain", "imagepipeline.spec")
    # The cluster-scoped InspectorActivation from examples/, Ready with the emulator's Inspector on.
    deadline = time.monotonic() + 30
    while "True" not in (activation := sandbox.kubectl("get", "inspectoractivations")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert activation.split()[:7] == ["NAME", "REGION", "ACCOUNT", "EC2", "ECR", "READY", "AGE"]
    assert activation.split()[7:13] == ["default", "us-east-1", "123456789012", "ENABLED", "ENABLED", "True"]
    code, rest = _stop(sandbox)
    assert code == 0 and "stopped" in rest


def test_a_new_build_reaches_status_within_seconds_through_the_events_queue(sandbox: Running) -> None:
    """Push intake as the instructions show it: the emulator builds web-ami again (its control API), sends the
    events AWS would into the SQS queue it serves, and the operator's status names the build in seconds."""
    text = "\n".join(sandbox.output)
    assert "events queue (EventBridge -> SQS)" in text and "/_emulator/images" in text
    arn = json.loads(sandbox.kubectl("get", "imagepipeline", "web-ami", "-o", "json"))["spec"]["pipelineArn"]
    request = urllib.request.Request(
        sandbox.url("AWS emulator:") + "/_emulator/images", method="POST",
        data=json.dumps({"pipelineArn": arn, "findings": {"CRITICAL": 7, "HIGH": 1}}).encode(),
    )
    built_at = time.monotonic()
    with urllib.request.urlopen(request, timeout=10) as response:
        image = json.load(response)["imageArn"]

    def latest() -> dict[str, Any]:
        status = json.loads(sandbox.kubectl("get", "imagepipeline", "web-ami", "-o", "json")).get("status", {})
        return dict(status.get("findings", {}).get("latestImage") or {})

    while latest().get("arn") != image and time.monotonic() - built_at < 30:
        time.sleep(0.2)
    freshness = time.monotonic() - built_at
    assert latest().get("arn") == image, "the new build never reached status"
    counts = latest()["severityCounts"]
    assert counts["critical"] == 7 and counts["high"] == 1
    # The examples refresh findings every 15 min or more and the sandbox's tick is 2 s: only the event explains it.
    assert freshness <= 10.0, f"event -> status took {freshness:.1f}s"
    code, _ = _stop(sandbox)
    assert code == 0


def test_no_operator_serves_only_the_apis_for_imagescan_run(tmp_path: pathlib.Path) -> None:
    sandbox = _start(tmp_path, "--no-operator")
    try:
        printed = "\n".join(sandbox.output)
        assert "imagescan run" in printed and "--events-queue-url" in printed and "--sqs-endpoint-url" in printed
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "sandbox", "AWS_SECRET_ACCESS_KEY": "sandbox"}
        operator = subprocess.Popen(
            [sys.executable, "-m", "imagescan.cli", "run", "--kubeconfig", str(sandbox.kubeconfig),
             "--aws-endpoint-url", sandbox.url("AWS emulator:"), "--region", "us-east-1", "-n", "default"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                items = json.loads(sandbox.kubectl("get", "imagepipelines", "-o", "json"))["items"]
                ready = [o for o in items if any(c["type"] == "Ready" and c["status"] == "True"
                                                 for c in o.get("status", {}).get("conditions", []))]
                if len(ready) == 3:
                    break
                time.sleep(0.5)
            else:
                raise AssertionError("the separately run operator did not make the examples Ready")
        finally:
            operator.terminate()
            operator.wait(timeout=30)
    finally:
        code, _ = _stop(sandbox)
    assert code == 0


def test_port_in_use_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "imagescan.cli", "sandbox", "--port", str(port), "--api-port", "0",
             "--kubeconfig", str(tmp_path / "kc")],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 2
    assert f"port {port} is in use" in done.stderr and "--port" in done.stderr
    assert "Traceback" not in done.stderr
