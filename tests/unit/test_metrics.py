"""The metrics module: per-object gauges computed at scrape time, AWS calls counted by botocore's event hooks,
reconcile timing and per-reconcile call tallies, admission decisions; one registry per operator."""

from __future__ import annotations

import concurrent.futures
import contextvars
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import prometheus_client
import pytest
from botocore import config as botocore_config
from botocore import exceptions as botocore_exceptions
from botocore import stub

from imagescan import metrics
from imagescan.aws import clients
from imagescan.models import findingspolicy as fp
from imagescan.models import imagepipeline as ip
from imagescan.models import kstatus


def _value(observed: metrics.Metrics, metric: str, /, **labels: str) -> float | None:
    return observed.registry.get_sample_value(metric, labels)


def _ready(status: str, reason: str) -> list[kstatus.Condition]:
    return [kstatus.make(kstatus.Type.READY, status, reason, "", 1)]  # type: ignore[arg-type]


def _with_latest(**counts: int) -> ip.ImagePipelineStatus:
    latest = ip.LatestImage(arn="arn:aws:imagebuilder:us-east-1:1:image/x/1.0.0/1",
                            severity_counts=ip.SeverityCounts(**counts))
    return ip.ImagePipelineStatus(findings=ip.FindingsStatus(latest_image=latest))


def test_findings_per_severity_of_the_latest_image_and_gone_with_the_object() -> None:
    observed = metrics.Metrics()
    observed.findings("uid-1", "team", "web", _with_latest(critical=3, high=7, total=10))
    assert _value(observed, "imagescan_findings", namespace="team", name="web", severity="critical") == 3
    assert _value(observed, "imagescan_findings", namespace="team", name="web", severity="high") == 7
    assert _value(observed, "imagescan_findings", namespace="team", name="web", severity="untriaged") == 0
    assert _value(observed, "imagescan_findings", namespace="team", name="web", severity="total") is None
    observed.forget("uid-1")
    assert _value(observed, "imagescan_findings", namespace="team", name="web", severity="critical") is None


def test_a_pipeline_without_a_build_has_no_findings_series_rather_than_zeros() -> None:
    observed = metrics.Metrics()
    observed.findings("uid-1", "team", "web", _with_latest(critical=1))
    observed.findings("uid-1", "team", "web", ip.ImagePipelineStatus())
    assert _value(observed, "imagescan_findings", namespace="team", name="web", severity="critical") is None


def test_objects_by_kind_and_ready_reason_follow_each_objects_latest_status() -> None:
    observed = metrics.Metrics()
    observed.settled("ImagePipeline", "a", _ready("True", "Reconciled"))
    observed.settled("ImagePipeline", "b", _ready("True", "Reconciled"))
    observed.settled("ImagePipeline", "c", _ready("False", "AccessDenied"))
    observed.settled("FindingsPolicy", "p", _ready("True", "Evaluated"))
    observed.settled("InspectorActivation", "i", [])
    assert _value(observed, "imagescan_objects", kind="ImagePipeline", ready="True", reason="Reconciled") == 2
    assert _value(observed, "imagescan_objects", kind="ImagePipeline", ready="False", reason="AccessDenied") == 1
    assert _value(observed, "imagescan_objects", kind="FindingsPolicy", ready="True", reason="Evaluated") == 1
    assert _value(observed, "imagescan_objects", kind="InspectorActivation", ready="Unknown", reason="") == 1
    observed.settled("ImagePipeline", "c", _ready("True", "Reconciled"))  # moves, not adds
    observed.forget("a")
    assert _value(observed, "imagescan_objects", kind="ImagePipeline", ready="True", reason="Reconciled") == 2
    assert _value(observed, "imagescan_objects", kind="ImagePipeline", ready="False", reason="AccessDenied") is None


def test_policy_verdicts_count_compliant_and_violating_and_name_the_violating() -> None:
    observed = metrics.Metrics()
    verdicts = {"web": fp.PipelineVerdict(name="web", compliant=False),
                "api": fp.PipelineVerdict(name="api", compliant=True),
                "new": None}  # no findings yet: in neither
    observed.verdicts("team", "no-criticals", verdicts)
    assert _value(observed, "imagescan_policy_pipelines", namespace="team", policy="no-criticals",
                  verdict="compliant") == 1
    assert _value(observed, "imagescan_policy_pipelines", namespace="team", policy="no-criticals",
                  verdict="violating") == 1
    violating = "imagescan_policy_violating"
    assert _value(observed, violating, namespace="team", policy="no-criticals", pipeline="web") == 1
    assert _value(observed, violating, namespace="team", policy="no-criticals", pipeline="api") is None
    observed.forget_policy("team", "no-criticals")
    assert _value(observed, "imagescan_policy_pipelines", namespace="team", policy="no-criticals",
                  verdict="violating") is None


def test_every_metric_has_help_and_the_prefix() -> None:
    text = prometheus_client.generate_latest(metrics.Metrics().registry).decode()
    helps = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP")]
    assert len(helps) >= 9 and all(name.startswith("imagescan_") for name in helps)


def test_operators_do_not_share_series() -> None:
    one, other = metrics.Metrics(), metrics.Metrics()
    one.admission("Deny", "denied")
    assert _value(one, "imagescan_admission_decisions_total", enforcement="Deny", result="denied") == 1
    assert _value(other, "imagescan_admission_decisions_total", enforcement="Deny", result="denied") is None


@pytest.mark.parametrize(("status", "code", "expected"), [
    (200, None, "ok"), (400, "ThrottlingException", "throttled"), (429, None, "throttled"),
    (400, "CallRateLimitExceededException", "throttled"), (403, "AccessDeniedException", "4xx"),
    (404, "ResourceNotFoundException", "4xx"), (503, "ServiceUnavailableException", "5xx"),
])
def test_outcome_is_a_bounded_class_not_the_error_code(status: int, code: str | None, expected: str) -> None:
    assert metrics.outcome(status, code) == expected


def _client(observed: metrics.Metrics) -> Any:
    client = boto3.client("imagebuilder", region_name="us-east-1")
    observed.instrument(client)
    return client


def test_aws_calls_are_counted_by_service_operation_and_outcome() -> None:
    observed = metrics.Metrics()
    client = _client(observed)
    with stub.Stubber(client) as stubber:
        stubber.add_response("list_image_pipelines", {"imagePipelineList": []})
        stubber.add_client_error("get_image_pipeline", "ResourceNotFoundException", http_status_code=404)
        stubber.add_client_error("get_image_pipeline", "ThrottlingException", http_status_code=400)
        client.list_image_pipelines()
        for _ in range(2):
            with pytest.raises(botocore_exceptions.ClientError):
                client.get_image_pipeline(imagePipelineArn="arn:aws:imagebuilder:us-east-1:1:image-pipeline/x")
    calls = "imagescan_aws_calls_total"
    assert _value(observed, calls, service="imagebuilder", operation="ListImagePipelines", outcome="ok") == 1
    assert _value(observed, calls, service="imagebuilder", operation="GetImagePipeline", outcome="4xx") == 1
    assert _value(observed, calls, service="imagebuilder", operation="GetImagePipeline", outcome="throttled") == 1


def test_paginated_calls_count_every_page() -> None:
    observed = metrics.Metrics()
    client = _client(observed)
    with stub.Stubber(client) as stubber:
        stubber.add_response("list_image_pipelines", {"imagePipelineList": [], "nextToken": "2"})
        stubber.add_response("list_image_pipelines", {"imagePipelineList": []})
        list(client.get_paginator("list_image_pipelines").paginate())
    assert _value(observed, "imagescan_aws_calls_total", service="imagebuilder", operation="ListImagePipelines",
                  outcome="ok") == 2


class _Throttling(http.server.BaseHTTPRequestHandler):
    """Image Builder's answer when it throttles, to every request."""

    answered: list[str] = []

    def do_POST(self) -> None:
        self.answered.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
        self.send_response(400)
        self.send_header("x-amzn-ErrorType", "ThrottlingException")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def throttling() -> Iterator[str]:
    _Throttling.answered.clear()
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Throttling) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
        httpd.shutdown()


def test_every_throttled_answer_counts_as_a_throttle_and_the_call_once(throttling: str) -> None:
    observed = metrics.Metrics()
    config = botocore_config.Config(retries={"mode": "standard", "max_attempts": 2})
    client = boto3.client("imagebuilder", region_name="us-east-1", endpoint_url=throttling, config=config)
    observed.instrument(client)
    with pytest.raises(botocore_exceptions.ClientError):
        client.list_image_pipelines()
    labels = {"service": "imagebuilder", "operation": "ListImagePipelines"}
    assert len(_Throttling.answered) > 1  # botocore retried
    assert _value(observed, "imagescan_aws_throttles_total", **labels) == len(_Throttling.answered)
    assert _value(observed, "imagescan_aws_calls_total", **labels, outcome="throttled") == 1


def test_a_call_that_gets_no_answer_is_a_network_outcome() -> None:
    observed = metrics.Metrics()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = botocore_config.Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=1)
    client = boto3.client("imagebuilder", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{port}",
                          config=config)
    observed.instrument(client)
    with pytest.raises(botocore_exceptions.EndpointConnectionError):
        client.list_image_pipelines()
    assert _value(observed, "imagescan_aws_calls_total", service="imagebuilder", operation="ListImagePipelines",
                  outcome="network") == 1


def test_the_clients_cache_hooks_every_client_it_builds() -> None:
    hooked: list[str] = []
    built = clients.Clients(clients.Settings(default_region="us-east-1"),
                            instrument=lambda client: hooked.append(client.meta.service_model.service_name))
    built.imagebuilder()
    built.imagebuilder()  # cached: hooked once
    built.inspector2("eu-west-1")
    built.ecr()
    assert hooked == ["imagebuilder", "inspector2", "ecr"]


def test_a_reconcile_is_timed_and_tallies_the_calls_made_for_it_in_worker_threads() -> None:
    observed = metrics.Metrics()
    client = _client(observed)
    with stub.Stubber(client) as stubber, concurrent.futures.ThreadPoolExecutor(1) as pool:
        stubber.add_response("list_image_pipelines", {"imagePipelineList": []})
        stubber.add_response("list_image_pipelines", {"imagePipelineList": []})
        with observed.reconcile("ImagePipeline") as tally:
            # As Runtime.run_blocking hands work to its pool: in a copy of the handler's context.
            pool.submit(contextvars.copy_context().run, client.list_image_pipelines).result()
        client.list_image_pipelines()  # outside any reconcile: counted, but in no tally
    assert tally.calls == 1
    assert _value(observed, "imagescan_reconcile_duration_seconds_count", kind="ImagePipeline") == 1
    assert _value(observed, "imagescan_aws_calls_total", service="imagebuilder", operation="ListImagePipelines",
                  outcome="ok") == 2
