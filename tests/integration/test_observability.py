"""Metrics, logs and probes of the running operator, end to end: /readyz turns 200 once kopf has listed and
indexed, /metrics agrees with what the emulator holds and was asked, and the JSON log has one INFO line per
reconcile that did something and none for a resync that found everything as it was."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest
from prometheus_client import parser

from imagescan import logs, probes, runner
from imagescan.aws import clients as aws_clients
from imagescan.emulator import server
from imagescan.handlers import runtime
from tests.integration import harness
from tests.integration.harness import wait_for
from tests.support.fixtures import Cluster

SEVERITIES = ("critical", "high", "medium", "low", "informational", "untriaged")
FINDINGS = {"CRITICAL": 2, "HIGH": 5, "MEDIUM": 3, "LOW": 1, "INFORMATIONAL": 4, "UNTRIAGED": 1}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class Readiness:
    """/readyz, asked every few milliseconds from before the operator starts: every answer, in order."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set() and 200 not in self.answers:
            with contextlib.suppress(OSError):  # not listening yet
                self.answers.append(_get(self.port, "/readyz")[0])
            time.sleep(0.005)

    def __enter__(self) -> Readiness:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class Operator:
    """The running operator's port, and its log as the JSON lines ``--log-format=json`` writes."""

    def __init__(self, port: int, log: io.StringIO, readiness: Readiness) -> None:
        self.port = port
        self.log = log
        self.readiness = readiness

    def scrape(self) -> Samples:
        status, text = _get(self.port, "/metrics")
        assert status == 200
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in parser.text_string_to_metric_families(text) for s in family.samples}

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]


def _value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, tuple(sorted(labels.items()))))


def _sum(samples: Samples, metric: str, /, **labels: str) -> float:
    """Summed over every series of ``metric`` that has these labels (whatever its others)."""
    return sum(value for (found, have), value in samples.items()
               if found == metric and set(labels.items()) <= set(have))


@pytest.fixture
def observed(cluster: Cluster, emulator: server.Emulator,
             caplog: pytest.LogCaptureFixture) -> Iterator[Operator]:
    """The operator with its HTTP endpoint on a free port, logging JSON (object lines down to DEBUG)."""
    port = _free_port()
    config = runtime.Config(
        aws=aws_clients.Settings(default_region="us-east-1", endpoint_url=emulator.endpoint_url),
        namespaces=(cluster.namespace,), http=probes.Settings(port=port, addr="127.0.0.1"),
    )
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.formatter("json"))
    caplog.set_level(logging.DEBUG, logger="kopf.objects")
    caplog.set_level(logging.INFO, logger="kopf")
    logging.getLogger().addHandler(handler)
    try:
        with Readiness(port) as readiness, runner.InThread(config):
            wait_for(lambda: 200 in readiness.answers, what="/readyz 200")
            yield Operator(port, out, readiness)
    finally:
        logging.getLogger().removeHandler(handler)


@pytest.fixture
def pipelines(observed: Operator, cluster: Cluster,
              cluster_client: kubernetes.client.ApiClient) -> harness.Pipelines:
    return harness.Pipelines(cluster_client, cluster.namespace)


def test_readyz_is_503_until_kopf_has_listed_and_healthz_is_200(observed: Operator) -> None:
    answers = observed.readiness.answers
    assert answers[0] == 503 and answers[-1] == 200 and set(answers) == {503, 200}
    assert answers.index(200) == len(answers) - 1  # never back to 503
    assert _get(observed.port, "/healthz") == (200, "ok\n")


def test_metrics_agree_with_the_emulator(emulator: server.Emulator, pipelines: harness.Pipelines,
                                         observed: Operator) -> None:
    emulator.inject_faults(count=2, operations=["GetImagePipeline"])  # throttled twice, then answered
    web = emulator.world.add_pipeline(name="web-ami", scanning_enabled=False, findings=FINDINGS)
    api = emulator.world.add_pipeline(name="api-ctr", container=True, scanning_enabled=True, findings={"HIGH": 9})
    pipelines.create("web", {"pipelineArn": web})
    pipelines.create("api", {"pipelineArn": api})
    pipelines.create("ghost", {"pipelineArn": web.replace("web-ami", "ghost")})
    latest = {name: pipelines.wait_ready(name)["status"]["findings"]["latestImage"]["arn"] for name in ("web", "api")}
    pipelines.wait_condition("ghost", "Ready", "False", "PipelineNotFound")

    def settled() -> Samples | None:
        samples = observed.scrape()
        # The emulator counts requests; a call is counted once, after botocore's retries, and each throttled
        # answer (all retried here) once more as a throttle.
        requests = {op: _sum(samples, "imagescan_aws_calls_total", operation=op)
                    + _sum(samples, "imagescan_aws_throttles_total", operation=op) for op in emulator.calls}
        objects = _sum(samples, "imagescan_objects", kind="ImagePipeline")
        return samples if requests == dict(emulator.calls) and objects == 3 else None

    samples = wait_for(settled, what="every AWS request the emulator answered counted, every pipeline settled")
    for name, image in latest.items():
        expected = emulator.world.severity_counts(image_arn=image)
        found = {s: _value(samples, "imagescan_findings", namespace=pipelines.namespace, name=name, severity=s)
                 for s in SEVERITIES}
        assert found == {severity.lower(): count for severity, count in expected.items()}
    assert _value(samples, "imagescan_findings", namespace=pipelines.namespace, name="ghost", severity="high") is None
    assert _value(samples, "imagescan_objects", kind="ImagePipeline", ready="True", reason="Reconciled") == 2
    assert _value(samples, "imagescan_objects", kind="ImagePipeline", ready="False", reason="PipelineNotFound") == 1
    get = {"service": "imagebuilder", "operation": "GetImagePipeline"}
    assert _value(samples, "imagescan_aws_throttles_total", **get) == 2
    assert _value(samples, "imagescan_aws_calls_total", **get, outcome="4xx") == 1  # the ghost
    assert _value(samples, "imagescan_aws_calls_total", service="imagebuilder", operation="UpdateImagePipeline",
                  outcome="ok") == emulator.calls["UpdateImagePipeline"] == 1
    assert _value(samples, "imagescan_reconcile_duration_seconds_count", kind="ImagePipeline") >= 3  # type: ignore[operator]

    pipelines.delete("api")
    wait_for(lambda: pipelines.get("api") is None, what="api deleted")
    after = observed.scrape()
    assert _value(after, "imagescan_findings", namespace=pipelines.namespace, name="api", severity="high") is None
    assert _value(after, "imagescan_objects", kind="ImagePipeline", ready="True", reason="Reconciled") == 1


def test_json_log_has_one_line_per_reconcile_and_a_resync_that_changes_nothing_is_debug(
        emulator: server.Emulator, pipelines: harness.Pipelines, observed: Operator) -> None:
    arn = emulator.world.add_pipeline(name="quiet-ami", scanning_enabled=False, findings=FINDINGS)
    pipelines.create("quiet", {"pipelineArn": arn, "resyncInterval": "1m"})
    synced = pipelines.wait_ready("quiet")["status"]["lastSynced"]
    lines = observed.lines()  # every line parses as JSON
    assert all({"timestamp", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line["logger"].startswith("kopf.") and "kind" not in line for line in lines)  # kopf's own, too
    ours = [line for line in lines if line.get("name") == "quiet" and line["level"] == "INFO"]
    (created,) = [line for line in ours if line.get("trigger") == "created"]
    assert created["kind"] == "ImagePipeline" and created["namespace"] == pipelines.namespace
    assert "turned image scanning on" in created["action"] and created["aws_calls"] >= 2
    assert created["duration_seconds"] > 0

    # The next resync (1m ± 10 %, at a 10 s tick) finds everything as it was: DEBUG only; so are the ticks.
    seen = len(lines)
    wait_for(lambda: (pipelines.get("quiet") or {})["status"]["lastSynced"] != synced, timeout=90,
             what="a resync")
    resync = wait_for(lambda: [line for line in observed.lines()[seen:]
                               if line.get("name") == "quiet" and line.get("trigger") == "resync"], what="its line")
    assert [(line["level"], line["action"]) for line in resync] == [("DEBUG", "no change")]
    assert [line["message"] for line in observed.lines()[seen:]
            if line.get("name") == "quiet" and line["level"] != "DEBUG"] == []
