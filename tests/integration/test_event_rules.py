"""The EventBridge rules of deploy/aws/imagescan-events.yaml let through the events the operator needs and
nothing else, each exactly once: checked by a real matcher, moto's EventBridge, over HTTP with real boto3
clients, not by reading the patterns.

The rules are created with the template's exact EventPattern, each targeting a queue set up with the
template's attributes and redrive policy. Every sample in tests/data/events/ (shaped like AWS's documented
events) is put on the bus and must arrive once, as an EventBridge envelope with its detail intact; events the
operator has no use for (another service, a Lambda finding, a failed or read-only Image Builder call) must not.

What moto does not check, and this test therefore cannot: the queue policy (moto's EventBridge writes to a
queue whatever its policy says). tests/unit/test_deploy_aws.py checks that policy's content.

The rules go on a bus of their own rather than moto's default bus, so that other tests sharing the session's
moto server neither receive these events nor send theirs here; matching does not depend on the bus.
"""

from __future__ import annotations

import json
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.support import eventbridge
from tests.support.moto import Moto

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "deploy" / "aws" / "imagescan-events.yaml"
SAMPLES = sorted((ROOT / "tests" / "data" / "events").glob("*.json"))
REGION = "us-east-1"
# The EventBridge envelope as moto 5.2 delivers it to SQS: AWS's, less "account", which moto's default
# delivery template leaves out.
ENVELOPE_KEYS = {"version", "id", "detail-type", "source", "time", "region", "resources", "detail"}
# CloudFormation properties of AWS::SQS::Queue that are SQS queue attributes of the same name.
QUEUE_ATTRIBUTES = ("MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds", "VisibilityTimeout",
                    "SqsManagedSseEnabled")


def _sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "tests" / "data" / "events" / name).read_text())
    return loaded


def _ec2_state_change() -> dict[str, Any]:
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2", "account": "123456789012", "time": "2024-09-10T09:08:00Z", "region": REGION,
            "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-0b2c4d6e8f0a1b3c5"],
            "detail": {"instance-id": "i-0b2c4d6e8f0a1b3c5", "state": "terminated"}}


def _lambda_finding() -> dict[str, Any]:
    event = _sample("inspector2-finding-ecr.json")
    function = "arn:aws:lambda:us-east-1:123456789012:function:web-api-fn:$LATEST"
    event["resources"] = [function]
    event["detail"]["resources"] = [{"id": function, "partition": "aws", "region": REGION,
                                     "type": "AWS_LAMBDA_FUNCTION", "details": {}}]
    return event


def _pipeline_call(**detail: Any) -> dict[str, Any]:
    event = _sample("cloudtrail-update-image-pipeline.json")
    event["detail"].update(detail)
    return event


def _workflow_step_waiting() -> dict[str, Any]:
    event = _sample("imagebuilder-image-state-change.json")
    event["detail-type"] = "EC2 Image Builder Workflow Step Waiting"
    event["detail"] = {"workflow-execution-id": "wf-1", "workflow-step-execution-id": "step-1",
                       "workflow-step-name": "Approve"}
    return event


# Events that reach the same default bus in a real account, which the operator has no use for.
UNWANTED = {
    "aws.ec2 state change": _ec2_state_change(),
    "Inspector2 finding on a Lambda function": _lambda_finding(),
    "failed UpdateImagePipeline": _pipeline_call(errorCode="AccessDenied", errorMessage="not authorized",
                                                 responseElements=None),
    "read-only GetImagePipeline": _pipeline_call(eventName="GetImagePipeline", readOnly=True),
    "Image Builder workflow step waiting": _workflow_step_waiting(),
}


def _attribute(value: object) -> str:
    """A CloudFormation property value as the SQS API's attribute string ("true", not "True")."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _create_queues(sqs: Any, resources: dict[str, Any], suffix: str) -> tuple[str, str]:
    """The queue and its dead-letter queue, with the template's attributes; returns (queue URL, DLQ URL)."""
    dlq_url = sqs.create_queue(QueueName=f"imagescan-events-{suffix}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    properties = resources["Queue"]["Properties"]
    attributes = {name: _attribute(properties[name]) for name in QUEUE_ATTRIBUTES}
    redrive = dict(properties["RedrivePolicy"], deadLetterTargetArn=dlq_arn)
    attributes["RedrivePolicy"] = json.dumps(redrive)
    queue_url = sqs.create_queue(QueueName=f"imagescan-events-{suffix}", Attributes=attributes)["QueueUrl"]
    return queue_url, dlq_url


def _drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message now in the queue (moto delivers during PutEvents), deleted as it is read."""
    bodies: list[dict[str, Any]] = []
    while True:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = answer.get("Messages", [])
        if not messages:
            return bodies
        bodies.extend(json.loads(message["Body"]) for message in messages)
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]} for index, message in enumerate(messages)])


class Intake:
    """The template's queues and rules on a bus of their own in moto."""

    def __init__(self, moto: Moto) -> None:
        self.sqs: Any = boto3.client("sqs", endpoint_url=moto.url, region_name=REGION,
                                     aws_access_key_id="testing", aws_secret_access_key="testing")
        self.events: Any = boto3.client("events", endpoint_url=moto.url, region_name=REGION,
                                        aws_access_key_id="testing", aws_secret_access_key="testing")
        suffix = uuid.uuid4().hex[:8]
        self.bus = f"imagescan-test-{suffix}"
        resources = eventbridge.template_resources()
        self.queue_url, self.dlq_url = _create_queues(self.sqs, resources, suffix)
        queue_arn = self._arn(self.queue_url)
        self.events.create_event_bus(Name=self.bus)
        self.rules = eventbridge.create_rules(self.events, resources, self.bus, queue_arn)

    def _arn(self, url: str) -> str:
        arn: str = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return arn

    def deliver(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        eventbridge.put(self.events, [eventbridge.entry(event, self.bus) for event in events])
        return _drain(self.sqs, self.queue_url)

    def close(self) -> None:
        for rule in self.rules:
            self.events.remove_targets(Rule=rule, EventBusName=self.bus, Ids=["imagescan-queue"])
            self.events.delete_rule(Name=rule, EventBusName=self.bus)
        self.events.delete_event_bus(Name=self.bus)
        for url in (self.queue_url, self.dlq_url):
            self.sqs.delete_queue(QueueUrl=url)


@pytest.fixture(scope="module")
def intake(moto_server: Moto) -> Iterator[Intake]:
    made = Intake(moto_server)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def delivered(intake: Intake) -> list[dict[str, Any]]:
    """What the queue received when every sample and every unwanted event was put on the bus, mixed."""
    samples = [json.loads(path.read_text()) for path in SAMPLES]
    return intake.deliver(samples + list(UNWANTED.values()))


def test_the_template_has_the_three_rules(intake: Intake) -> None:
    assert sorted(intake.rules) == ["CloudTrailDriftRule", "ImageBuilderRule", "InspectorRule"]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.stem)
def test_each_sample_arrives_once_as_an_envelope_with_its_detail(
        path: pathlib.Path, delivered: list[dict[str, Any]]) -> None:
    sample = json.loads(path.read_text())
    arrived = [body for body in delivered
               if body.get("detail-type") == sample["detail-type"] and body.get("detail") == sample["detail"]]
    assert len(arrived) == 1, f"{path.name} arrived {len(arrived)} times"
    (body,) = arrived
    assert set(body) >= ENVELOPE_KEYS
    assert body["version"] == "0"
    for key in ("source", "region", "resources", "time"):
        assert body[key] == sample[key], key


def test_events_the_operator_has_no_use_for_do_not_arrive(delivered: list[dict[str, Any]]) -> None:
    assert len(delivered) == len(SAMPLES), [body["detail-type"] for body in delivered]
    for name, event in UNWANTED.items():
        assert event["detail"] not in [body["detail"] for body in delivered], name


def test_a_message_received_five_times_without_delete_goes_to_the_dead_letter_queue(intake: Intake) -> None:
    """What the operator relies on for a message whose handling keeps failing: it comes back after the
    visibility timeout (here cut to 0 per receive) and after 5 receives it is in the dead-letter queue."""
    event = _sample("imagebuilder-image-state-change.json")
    eventbridge.put(intake.events, [eventbridge.entry(event, intake.bus)])
    for _ in range(5):
        answer = intake.sqs.receive_message(QueueUrl=intake.queue_url, VisibilityTimeout=0, WaitTimeSeconds=0)
        assert len(answer.get("Messages", [])) == 1
    assert not intake.sqs.receive_message(QueueUrl=intake.queue_url, WaitTimeSeconds=0).get("Messages")
    dead = _drain(intake.sqs, intake.dlq_url)
    assert [body["detail"] for body in dead] == [event["detail"]]
