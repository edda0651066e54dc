"""Push intake end to end: AWS's events reach status in seconds, with no timer and no annotation involved.

The real operator (kopf, shipped tick, shipped intervals: resync 10m, findings 15m) on the real kube-apiserver;
the emulator builds images and sends the EventBridge events AWS would (Image State Change, CVE Detected,
Inspector2 Scan) into an SQS queue on moto's server, as an EventBridge rule with an SQS target delivers them;
one test sends them through moto's EventBridge with the deployed rule's pattern (deploy/aws/). The operator reads
the queue with a real boto3 client (--events-queue-url, --sqs-endpoint-url).
"""

from __future__ import annotations

import collections
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from imagescan import runner
from imagescan.aws import clients as aws_clients
from imagescan.emulator import events as emulated_events
from imagescan.emulator import server
from imagescan.handlers import runtime
from imagescan.reconcile import schedule
from tests.integration import harness
from tests.integration.harness import wait_for
from tests.support import eventbridge
from tests.support.fixtures import Cluster
from tests.support.moto import Moto

REGION = "us-east-1"
FRESH_WITHIN = 15.0
"""How long a test waits for an event to show; the freshness itself is measured and asserted below it."""


def _sqs(moto: Moto) -> Any:
    return boto3.client("sqs", region_name=REGION, endpoint_url=moto.url,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def queue_url(moto_server: Moto) -> Iterator[str]:
    sqs = _sqs(moto_server)
    url = str(sqs.create_queue(QueueName=f"imagescan-events-{uuid.uuid4().hex[:8]}")["QueueUrl"])
    yield url
    with contextlib.suppress(sqs.exceptions.QueueDoesNotExist):
        sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def emulator(moto_server: Moto, queue_url: str) -> Iterator[server.Emulator]:
    with server.Emulator(seed=11, pipelines=0) as emu:
        emu.send_events_to(queue_url, endpoint_url=moto_server.url, region=REGION)
        yield emu


@pytest.fixture
def operator(cluster: Cluster, emulator: server.Emulator, moto_server: Moto,
             queue_url: str) -> Iterator[runner.InThread]:
    """The operator at the shipped defaults, reading the test's queue."""
    config = runtime.Config(
        aws=aws_clients.Settings(default_region=REGION, endpoint_url=emulator.endpoint_url,
                                 sqs_endpoint_url=moto_server.url),
        namespaces=(cluster.namespace,),
        events=runtime.Events(queue_url=queue_url),
    )
    assert config.tick == 10.0 and config.events is not None and config.events.safety_net == runtime.SAFETY_NET
    with runner.InThread(config) as running:
        yield running


def _latest(pipelines: harness.Pipelines, name: str) -> dict[str, Any]:
    return dict(((pipelines.get(name) or {}).get("status") or {}).get("findings", {}).get("latestImage") or {})


def _ready_pipeline(emulator: server.Emulator, pipelines: harness.Pipelines, name: str, **world: Any) -> str:
    arn = emulator.world.add_pipeline(name=name, findings={"HIGH": 2, "LOW": 3}, **world)
    pipelines.create(name, {"pipelineArn": arn})
    pipelines.wait_ready(name)
    return arn


def _queue_up(operator: runner.InThread) -> float | None:
    events = operator.config.events
    assert events is not None
    return operator.metrics.registry.get_sample_value("imagescan_events_queue_up", {"queue": events.queue_url})


def _intake_up(operator: runner.InThread) -> bool:
    return _queue_up(operator) == 1.0


def test_a_new_build_with_new_criticals_shows_in_status_within_seconds(
        emulator: server.Emulator, pipelines: harness.Pipelines, operator: runner.InThread) -> None:
    arn = _ready_pipeline(emulator, pipelines, "web")
    wait_for(lambda: _intake_up(operator), what="the intake reading the queue")
    old = _latest(pipelines, "web")["arn"]

    built_at = time.monotonic()
    image = emulator.world.add_image(arn, findings={"CRITICAL": 4, "HIGH": 1})
    wait_for(lambda: _latest(pipelines, "web").get("arn") == image, timeout=FRESH_WITHIN, what="the new build")
    freshness = time.monotonic() - built_at

    latest = _latest(pipelines, "web")
    assert latest["arn"] != old
    assert latest["severityCounts"]["critical"] == 4
    assert freshness <= 10.0, f"event -> status took {freshness:.1f}s"
    assert emulator.event_counts()["sent"].get("EC2 Image Builder CVE Detected", 0) >= 1
    warnings = [e.reason for e in pipelines.events("web")]
    assert "CriticalFindingsIncreased" in warnings


def test_changed_findings_of_the_same_build_show_within_seconds(
        emulator: server.Emulator, pipelines: harness.Pipelines, operator: runner.InThread) -> None:
    _ready_pipeline(emulator, pipelines, "api", container=True)
    wait_for(lambda: _intake_up(operator), what="the intake reading the queue")
    image = _latest(pipelines, "api")["arn"]

    emulator.world.set_findings(image, {"CRITICAL": 2, "MEDIUM": 5})
    wait_for(lambda: _latest(pipelines, "api").get("severityCounts", {}).get("critical") == 2,
             timeout=FRESH_WITHIN, what="the new counts")
    assert _latest(pipelines, "api")["severityCounts"]["medium"] == 5
    assert _latest(pipelines, "api")["arn"] == image


def test_an_event_through_eventbridge_and_the_deployed_rules_reaches_status(
        emulator: server.Emulator, pipelines: harness.Pipelines, operator: runner.InThread,
        moto_server: Moto, queue_url: str) -> None:
    """The whole chain: Image Builder's event put on a bus whose rules are the template's (moto's EventBridge
    matches them), delivered by the rule's SQS target, read by the operator."""
    _ready_pipeline(emulator, pipelines, "web")
    wait_for(lambda: _intake_up(operator), what="the intake reading the queue")
    image = _latest(pipelines, "web")["arn"]
    emulator.stop_events()  # this time AWS's event goes through EventBridge, not straight into the queue
    counts = emulator.world.set_findings(image, {"CRITICAL": 5, "HIGH": 1})

    events = boto3.client("events", region_name=REGION, endpoint_url=moto_server.url,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    bus = f"imagescan-push-{uuid.uuid4().hex[:8]}"
    events.create_event_bus(Name=bus)
    queue_arn = _sqs(moto_server).get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    try:
        eventbridge.create_rules(events, eventbridge.template_resources(), bus, queue_arn)
        cve = emulated_events.cve_detected(emulator.world.image(image) or {}, counts)
        eventbridge.put(events, [eventbridge.entry(cve, bus)])
        wait_for(lambda: _latest(pipelines, "web").get("severityCounts", {}).get("critical") == 5,
                 timeout=FRESH_WITHIN, what="the counts the event announced")
    finally:
        for rule in events.list_rules(EventBusName=bus)["Rules"]:
            events.remove_targets(Rule=rule["Name"], EventBusName=bus, Ids=["imagescan-queue"])
            events.delete_rule(Name=rule["Name"], EventBusName=bus)
        events.delete_event_bus(Name=bus)


def test_a_burst_of_1000_events_for_100_pipelines_is_one_refresh_each(
        emulator: server.Emulator, pipelines: harness.Pipelines, operator: runner.InThread,
        moto_server: Moto, queue_url: str) -> None:
    arns = {f"p{i:03}": emulator.world.add_pipeline(name=f"p{i:03}", findings={"HIGH": 1}) for i in range(100)}
    for name, arn in arns.items():
        pipelines.create(name, {"pipelineArn": arn})
    for name in arns:
        pipelines.wait_ready(name, timeout=120)
    wait_for(lambda: _intake_up(operator), what="the intake reading the queue")
    images = [emulator.world.image_arns(arn)[-1] for arn in arns.values()]
    burst = [emulated_events.cve_detected(emulator.world.image(images[n % 100]) or {},
                                          emulator.world.severity_counts(image_arn=images[n % 100]))
             for n in range(1000)]
    started = time.monotonic()  # the emulator's call log's clock
    _arrive_at_once(_sqs(moto_server), queue_url, burst)
    visible = time.monotonic()

    def listed() -> collections.Counter[str | None]:
        return collections.Counter(c.arn for c in emulator.call_log.entries(since=started)
                                   if c.operation == "ListImagePipelineImages")

    wait_for(lambda: set(listed()) >= set(arns.values()) or None, timeout=90, what="every pipeline refreshed")
    refreshed_in = time.monotonic() - visible
    # A burst holds a refresh back EVENT_MAX_WAIT at most; wait that out (and a tick) for any second refresh.
    time.sleep(schedule.EVENT_MAX_WAIT + operator.config.tick)
    counts = listed()
    repeated = {arn: n for arn, n in counts.items() if n > 1}
    assert not repeated, f"refreshed more than once in one burst (all refreshed in {refreshed_in:.1f}s): {repeated}"
    matched = operator.metrics.registry.get_sample_value(
        "imagescan_events_total", {"type": "EC2 Image Builder CVE Detected", "result": "matched"})
    assert matched == 1000


def _arrive_at_once(sqs: Any, queue_url: str, envelopes: list[dict[str, Any]]) -> None:
    """Put events in the queue so that they all become visible within a second, as AWS delivers a burst: this
    process (operator, moto, emulator on two cores) enqueues a thousand messages far slower than EventBridge,
    so each batch is delayed to a common moment."""
    visible_at = time.monotonic() + 30
    for start in range(0, len(envelopes), 10):
        delay = max(0, round(visible_at - time.monotonic()))
        sqs.send_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(n), "MessageBody": json.dumps(e), "DelaySeconds": delay}
            for n, e in enumerate(envelopes[start:start + 10])])
    time.sleep(max(0.0, visible_at - time.monotonic()))


def test_poison_messages_are_deleted_and_never_stop_intake(
        emulator: server.Emulator, pipelines: harness.Pipelines, operator: runner.InThread,
        moto_server: Moto, queue_url: str) -> None:
    arn = _ready_pipeline(emulator, pipelines, "web")
    sqs = _sqs(moto_server)
    for body in ("not json", "[]", json.dumps({"source": "aws.ec2", "detail-type": "EC2 Spot", "detail": {}}),
                 json.dumps({"source": "aws.imagebuilder", "detail-type": "EC2 Image Builder CVE Detected"}),
                 "{" * 100_000):
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)

    image = emulator.world.add_image(arn, findings={"CRITICAL": 1})
    wait_for(lambda: _latest(pipelines, "web").get("arn") == image, timeout=FRESH_WITHIN, what="the new build")

    def drained() -> bool:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return all(int(v) == 0 for v in attributes.values())

    wait_for(drained, what="every message deleted, the poison ones too")
    unusable = operator.metrics.registry.get_sample_value(
        "imagescan_events_total", {"type": "not-json", "result": "unusable"})
    assert unusable == 2  # "not json" and the 100,000 braces


def test_a_queue_that_is_down_means_polling_until_it_answers_again(
        cluster: Cluster, emulator: server.Emulator, moto_server: Moto,
        cluster_client: Any) -> None:
    """The operator starts on a queue that does not exist yet: objects reconcile as without push (their own
    intervals), the intake backs off; once the queue exists, events flow."""
    missing = f"{moto_server.url}/123456789012/imagescan-late-{uuid.uuid4().hex[:8]}"
    config = runtime.Config(
        aws=aws_clients.Settings(default_region=REGION, endpoint_url=emulator.endpoint_url,
                                 sqs_endpoint_url=moto_server.url),
        namespaces=(cluster.namespace,), events=runtime.Events(queue_url=missing),
    )
    pipelines = harness.Pipelines(cluster_client, cluster.namespace)
    with runner.InThread(config) as running:
        arn = _ready_pipeline(emulator, pipelines, "web")
        assert _queue_up(running) == 0.0
        sqs = _sqs(moto_server)
        url = sqs.create_queue(QueueName=missing.rsplit("/", 1)[1])["QueueUrl"]
        emulator.send_events_to(url, endpoint_url=moto_server.url, region=REGION)
        # Back-off: 2, 4, 8, 16 s steps (each drawn from its upper half); within a minute it reads again.
        wait_for(lambda: _intake_up(running), timeout=60, what="the intake reading the queue again")
        image = emulator.world.add_image(arn, findings={"CRITICAL": 3})
        wait_for(lambda: _latest(pipelines, "web").get("arn") == image, timeout=FRESH_WITHIN, what="the new build")
        sqs.delete_queue(QueueUrl=url)
