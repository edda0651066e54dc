"""The emulator sends the EventBridge events AWS sends, to a real SQS queue (moto's server), as a rule would.

What a consumer of the queue sees: one message per event, its body the EventBridge envelope, naming the image,
the pipeline, their account and region, and counts that agree with what the Image Builder API answers.
"""

from __future__ import annotations

import json
import pathlib
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from imagescan.emulator import events, server
from tests.emulator.conftest import client_as
from tests.support.moto import Moto

TEAM = "210987654321"
WEST = "eu-west-1"
SAMPLES = pathlib.Path(__file__).resolve().parents[1] / "data" / "events"


class Queue:
    """An SQS queue on moto's server, read with a real boto3 client."""

    def __init__(self, moto: Moto, region: str = "us-east-1") -> None:
        self.endpoint_url = moto.url
        self.region = region
        self.sqs = client_as("sqs", moto.url, region=region)
        self.url: str = self.sqs.create_queue(QueueName=f"events-{uuid.uuid4().hex[:12]}")["QueueUrl"]

    def receive(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The bodies of ``count`` messages (deleted once read), failing if fewer arrive in time."""
        bodies: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(bodies) < count and time.monotonic() < deadline:
            answer = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for message in answer.get("Messages", []):
                bodies.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        assert len(bodies) == count, f"expected {count} messages, got {len(bodies)}"
        return bodies

    def is_empty(self) -> bool:
        answer = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        return not answer.get("Messages")


@pytest.fixture
def queue(moto_server: Moto) -> Queue:
    return Queue(moto_server)


@pytest.fixture
def emu(queue: Queue) -> Iterator[server.Emulator]:
    """An emulator sending its events to ``queue``, configured as the benchmark does: over HTTP."""
    with server.Emulator(seed=3, pipelines=0) as emulator:
        _control(emulator, "POST", "events", {"queueUrl": queue.url, "endpointUrl": queue.endpoint_url})
        yield emulator


def _control(emu: server.Emulator, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(f"{emu.endpoint_url}/_emulator/{path}", data=data, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _by_type(bodies: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {body["detail-type"]: body for body in bodies}
    assert len(found) == len(bodies), "one event of each type"
    return found


def _pipeline(emu: server.Emulator, *, container: bool, scanning: bool = True) -> str:
    """A pipeline in another account and region than the emulator's own, with Inspector scanning ECR there."""
    emu.world.set_inspector(TEAM, {"EC2": "ENABLED", "ECR": "ENABLED"}, region=WEST)
    return emu.world.add_pipeline("web", container=container, scanning_enabled=scanning, findings=5,
                                  account_id=TEAM, region=WEST)


def test_a_finished_ami_build_sends_state_change_and_cve_detected(emu: server.Emulator, queue: Queue) -> None:
    pipeline = _pipeline(emu, container=False)
    image = _control(emu, "POST", "images", {"pipelineArn": pipeline, "findings": {"CRITICAL": 2, "HIGH": 1,
                                                                                 "LOW": 4}})["imageArn"]
    sent = _by_type(queue.receive(2))
    assert set(sent) == {events.IMAGE_STATE_CHANGE, events.CVE_DETECTED}
    for body in sent.values():
        assert (body["version"], body["account"], body["region"], body["source"]) == ("0", TEAM, WEST,
                                                                                       "aws.imagebuilder")
        assert time.strptime(body["time"], "%Y-%m-%dT%H:%M:%SZ") and uuid.UUID(body["id"])
    change = sent[events.IMAGE_STATE_CHANGE]
    assert change["resources"] == [image]
    assert change["detail"] == {"previous-state": {"status": "TESTING"}, "state": {"status": "AVAILABLE"}}
    cve = sent[events.CVE_DETECTED]
    assert cve["resources"] == [image, pipeline]
    assert cve["detail"]["finding-severity-counts"] == {"all": 7, "critical": 2, "high": 1, "medium": 0}
    assert cve["detail"]["resource-id"].startswith("i-")


def test_the_counts_in_cve_detected_are_what_image_builder_answers(emu: server.Emulator, queue: Queue) -> None:
    pipeline = _pipeline(emu, container=False)
    image = emu.world.add_image(pipeline)  # findings drawn at random
    cve = _by_type(queue.receive(2))[events.CVE_DETECTED]
    ib = client_as("imagebuilder", str(emu.endpoint_url), region=WEST, access_key_id="AKIATEAM")
    emu.identities["AKIATEAM"] = TEAM
    answer = ib.list_image_scan_finding_aggregations(filter={"name": "imageBuildVersionArn", "values": [image]})
    assert cve["detail"]["finding-severity-counts"] == answer["responses"][0]["imageAggregation"]["severityCounts"]


def test_a_container_build_also_sends_inspectors_scan_of_the_ecr_image(emu: server.Emulator, queue: Queue) -> None:
    pipeline = _pipeline(emu, container=True)
    emu.world.add_image(pipeline, findings={"CRITICAL": 1, "MEDIUM": 3, "UNTRIAGED": 2})
    sent = _by_type(queue.receive(3))
    scan = sent[events.INSPECTOR_SCAN]
    assert (scan["source"], scan["account"], scan["region"]) == ("aws.inspector2", TEAM, WEST)
    detail = scan["detail"]
    assert detail["scan-status"] == "INITIAL_SCAN_COMPLETE"
    assert detail["finding-severity-counts"] == {"CRITICAL": 1, "HIGH": 0, "MEDIUM": 3, "TOTAL": 6}
    assert scan["resources"] == [detail["repository-name"]]
    repository = detail["repository-name"].split(":repository/")[1]
    assert detail["repository-name"] == f"arn:aws:ecr:{WEST}:{TEAM}:repository/{repository}"
    # The digest and tag are those ECR reports for the image the build pushed.
    ecr = client_as("ecr", str(emu.endpoint_url), region=WEST, access_key_id="AKIATEAM")
    emu.identities["AKIATEAM"] = TEAM
    found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageDigest": detail["image-digest"]}])
    assert found["imageDetails"][0]["imageTags"] == detail["image-tags"]


def test_without_scanning_a_build_sends_only_its_state_change(emu: server.Emulator, queue: Queue) -> None:
    """Image Builder sends CVE Detected only for builds it scanned; Inspector's own ECR scan is separate."""
    ami, container = _pipeline(emu, container=False, scanning=False), emu.world.add_pipeline(
        "app", container=True, scanning_enabled=False, account_id=TEAM, region=WEST)
    emu.world.add_image(ami)
    emu.world.add_image(container)
    kinds = sorted(body["detail-type"] for body in queue.receive(3))
    assert kinds == [events.IMAGE_STATE_CHANGE, events.IMAGE_STATE_CHANGE, events.INSPECTOR_SCAN]


def test_changed_findings_send_cve_detected_with_the_new_counts(emu: server.Emulator, queue: Queue) -> None:
    pipeline = _pipeline(emu, container=False)
    image = emu.world.add_image(pipeline, findings={"LOW": 1})
    queue.receive(2)
    answer = _control(emu, "POST", "findings", {"imageArn": image, "findings": {"CRITICAL": 3, "HIGH": 2}})
    assert answer["counts"]["CRITICAL"] == 3
    (cve,) = queue.receive(1)
    assert cve["detail-type"] == events.CVE_DETECTED and cve["resources"][0] == image
    assert cve["detail"]["finding-severity-counts"] == {"all": 5, "critical": 3, "high": 2, "medium": 0}
    assert emu.world.severity_counts(image_arn=image)["CRITICAL"] == 3, "the API serves the new findings"


def test_a_burst_of_n_sends_n_messages_spread_over_the_images(emu: server.Emulator, queue: Queue) -> None:
    arns = [emu.world.add_pipeline(f"p{index}", findings=2) for index in range(3)]
    images = [emu.world.image_arns(arn)[-1] for arn in arns]  # seeded builds: no events
    assert _control(emu, "POST", "events/burst", {"imageArns": images, "count": 25}) == {"queued": 25}
    assert _control(emu, "POST", "events/flush", {"timeoutS": 30})["idle"] is True
    bodies = queue.receive(25)
    assert {body["detail-type"] for body in bodies} == {events.CVE_DETECTED}
    per_image = [sum(body["resources"][0] == image for body in bodies) for image in images]
    assert per_image == [9, 8, 8]
    assert len({body["id"] for body in bodies}) == 25, "every event has its own id, as EventBridge's do"
    assert _control(emu, "GET", "events") == {"sent": {events.CVE_DETECTED: 25}, "failed": {}, "pending": 0,
                                              "queueUrl": queue.url}


def test_after_delete_nothing_is_sent(emu: server.Emulator, queue: Queue) -> None:
    pipeline = _pipeline(emu, container=False)
    _control(emu, "DELETE", "events")
    emu.world.add_image(pipeline)
    assert queue.is_empty()
    assert _control(emu, "GET", "events")["queueUrl"] is None


def test_the_queue_can_be_given_at_start(moto_server: Moto) -> None:
    """``Emulator(events_queue_url=...)``, as ``--events-queue-url`` does for the emulator's process."""
    queue = Queue(moto_server, region=WEST)
    with server.Emulator(seed=3, pipelines=0, region=WEST, events_queue_url=queue.url,
                         events_endpoint_url=moto_server.url) as emu:
        emu.world.add_image(emu.world.add_pipeline("web", scanning_enabled=True))
        assert {body["region"] for body in queue.receive(2)} == {WEST}


def test_a_queue_that_is_down_slows_no_build_and_is_counted() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with server.Emulator(seed=3, pipelines=0, events_queue_url=f"{closed}/123456789012/gone",
                         events_endpoint_url=closed) as emu:
        pipeline = emu.world.add_pipeline("web", scanning_enabled=True)
        started = time.monotonic()
        emu.world.add_image(pipeline)
        assert time.monotonic() - started < 0.5
        assert emu.flush_events(timeout=20)
        assert emu.event_counts()["failed"] == {events.IMAGE_STATE_CHANGE: 1, events.CVE_DETECTED: 1}


def test_with_no_queue_no_event_is_built() -> None:
    with server.Emulator(seed=3, pipelines=1) as emu:
        assert emu.world.on_event is None
        emu.world.add_image(emu.world.pipeline_arns()[0])
        assert emu.emit_burst(emu.world.image_arns(emu.world.pipeline_arns()[0]), 10) == 0
        assert emu.event_counts() == {"sent": {}, "failed": {}, "pending": 0, "queueUrl": None}


# --- shapes against AWS's documented samples (tests/data/events) ------------------------------------------


def _key_paths(value: Any, prefix: str = "") -> set[str]:
    """Every key of a JSON document as a dotted path (``detail.state.status``; list items as ``[]``)."""
    if isinstance(value, dict):
        return {
            path for key, item in value.items() for path in {f"{prefix}{key}"} | _key_paths(item, f"{prefix}{key}.")
        }
    if isinstance(value, list):
        return {path for item in value for path in _key_paths(item, f"{prefix}[].")}
    return set()


def _samples(detail_type: str) -> list[pathlib.Path]:
    """Sample events of this type; for Inspector2 Scan only those of ECR images (EC2 ones name an instance)."""
    found = []
    for path in sorted(SAMPLES.glob("*.json")):
        loaded = json.loads(path.read_text())
        if not isinstance(loaded, dict) or loaded.get("detail-type") != detail_type:
            continue
        if detail_type == events.INSPECTOR_SCAN and "repository-name" not in loaded.get("detail", {}):
            continue
        found.append(path)
    return found


@pytest.mark.parametrize("detail_type", events.DETAIL_TYPES)
def test_every_key_of_awss_sample_is_in_what_the_emulator_sends(detail_type: str) -> None:
    samples = _samples(detail_type)
    if not samples:
        pytest.skip(f"no sample of {detail_type!r} in {SAMPLES} yet")
    with server.Emulator(seed=3, pipelines=0) as emu:
        sent: list[events.Envelope] = []
        emu.world.on_event = sent.append
        emu.world.add_image(emu.world.add_pipeline("web", container=True, scanning_enabled=True))
    (emitted,) = [event for event in sent if event["detail-type"] == detail_type]
    for path in samples:
        documented = _key_paths(json.loads(path.read_text()))
        missing, invented = documented - _key_paths(emitted), _key_paths(emitted) - documented
        assert not missing, f"{path.name}: the emulator's {detail_type!r} lacks {sorted(missing)}"
        assert not invented, f"the emulator's {detail_type!r} has keys no sample shows: {sorted(invented)}"
