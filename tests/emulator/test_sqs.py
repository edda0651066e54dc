"""The emulator's SQS, through the real boto3 client over HTTP: what the push intake and the event sink rely on.

Queues per account and region with URLs ``<endpoint>/<account>/<name>``, MD5s as SQS computes them, visibility
timeouts, long polls that wake on a send and block nobody else, redrive to a dead-letter queue, the modeled
errors as botocore's exception classes, and SQS calls counted apart from the AWS API calls benchmarks measure.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from imagescan.aws import errors as aws_errors
from imagescan.aws import queue as aws_queue
from imagescan.emulator import events, server

from .conftest import ACCOUNT, REGION, client_as, make_client


@pytest.fixture
def emu() -> Iterator[server.Emulator]:
    with server.Emulator(seed=3, pipelines=0, account_id=ACCOUNT, region=REGION) as emulator:
        yield emulator


@pytest.fixture
def sqs(emu: server.Emulator) -> Any:
    assert emu.endpoint_url
    return make_client("sqs", emu.endpoint_url)


def _attributes_md5(attributes: dict[str, dict[str, str]]) -> str:
    """MD5OfMessageAttributes per SQS's documentation, written out independently of the emulator's."""
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        value = attributes[name]
        for part in (name, value["DataType"]):
            digest.update(struct.pack(">I", len(part.encode())) + part.encode())
        digest.update(b"\x01" + struct.pack(">I", len(value["StringValue"].encode())) + value["StringValue"].encode())
    return digest.hexdigest()


def test_create_is_idempotent_and_urls_and_attributes_are_sqs_s(emu: server.Emulator, sqs: Any) -> None:
    redrive = {"deadLetterTargetArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:events-dlq", "maxReceiveCount": "5"}
    settings = {"VisibilityTimeout": "45", "MessageRetentionPeriod": "3600", "ReceiveMessageWaitTimeSeconds": "20",
                "RedrivePolicy": json.dumps(redrive)}
    url = sqs.create_queue(QueueName="events", Attributes=settings)["QueueUrl"]
    assert url == f"{emu.endpoint_url}/{ACCOUNT}/events"
    assert sqs.create_queue(QueueName="events", Attributes={"VisibilityTimeout": "45"})["QueueUrl"] == url
    with pytest.raises(sqs.exceptions.QueueNameExists):
        sqs.create_queue(QueueName="events", Attributes={"VisibilityTimeout": "10"})
    assert sqs.get_queue_url(QueueName="events")["QueueUrl"] == url

    every = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert every["QueueArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:events"
    assert (every["VisibilityTimeout"], every["MessageRetentionPeriod"], every["ReceiveMessageWaitTimeSeconds"]) == (
        "45", "3600", "20")
    assert json.loads(every["RedrivePolicy"]) == {**redrive, "maxReceiveCount": 5}
    assert every["ApproximateNumberOfMessages"] == every["ApproximateNumberOfMessagesNotVisible"] == "0"
    named = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn", "ApproximateNumberOfMessages"])
    assert set(named["Attributes"]) == {"QueueArn", "ApproximateNumberOfMessages"}

    plain = sqs.create_queue(QueueName="plain")["QueueUrl"]
    plain_attributes = sqs.get_queue_attributes(QueueUrl=plain, AttributeNames=["All"])["Attributes"]
    assert "RedrivePolicy" not in plain_attributes and plain_attributes["VisibilityTimeout"] == "30"
    with pytest.raises(sqs.exceptions.InvalidAttributeValue):
        sqs.create_queue(QueueName="bad", Attributes={"VisibilityTimeout": "50000"})


def test_queues_are_per_account_and_region(emu: server.Emulator) -> None:
    assert emu.endpoint_url
    emu.identities["AKIAOTHER"] = "210987654321"
    mine = client_as("sqs", emu.endpoint_url)
    theirs = client_as("sqs", emu.endpoint_url, access_key_id="AKIAOTHER")
    west = client_as("sqs", emu.endpoint_url, region="eu-west-1")
    url = mine.create_queue(QueueName="events")["QueueUrl"]
    assert theirs.create_queue(QueueName="events")["QueueUrl"] == f"{emu.endpoint_url}/210987654321/events"
    with pytest.raises(west.exceptions.QueueDoesNotExist):
        west.get_queue_url(QueueName="events")
    # Another account's queue is addressable by its URL (as a queue policy may allow) or owner.
    assert theirs.get_queue_url(QueueName="events", QueueOwnerAWSAccountId=ACCOUNT)["QueueUrl"] == url


def test_send_receive_delete_round_trip_with_sqs_md5s(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="events")["QueueUrl"]
    body = json.dumps({"detail-type": "EC2 Image Builder CVE Detected", "note": "naïve \u2013 ünïcode"},
                      ensure_ascii=False)  # multi-byte UTF-8: the MD5 is of the bytes
    assert len(body.encode()) > len(body)
    attributes = {"kind": {"DataType": "String", "StringValue": "cve"}, "count": {"DataType": "Number",
                                                                                "StringValue": "3"}}
    sent = sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes)
    assert sent["MD5OfMessageBody"] == hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()
    assert sent["MD5OfMessageAttributes"] == _attributes_md5(attributes)

    (message,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                     MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
                                     )["Messages"]
    assert (message["MessageId"], message["Body"], message["MD5OfBody"]) == (sent["MessageId"], body,
                                                                            sent["MD5OfMessageBody"])
    assert message["MessageAttributes"] == attributes
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    assert abs(int(message["Attributes"]["SentTimestamp"]) / 1000 - time.time()) < 60
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (counts["ApproximateNumberOfMessages"], counts["ApproximateNumberOfMessagesNotVisible"]) == ("0", "1")

    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])  # again: nothing to do, no error
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (counts["ApproximateNumberOfMessages"], counts["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")


def test_batches_send_and_delete_with_per_entry_failures(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="events")["QueueUrl"]
    bodies = {f"m{n}": f"body {n}" for n in range(3)}
    sent = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": key, "MessageBody": value}
                                                         for key, value in bodies.items()])
    assert sent["Failed"] == [] and {e["Id"] for e in sent["Successful"]} == set(bodies)
    for entry in sent["Successful"]:
        assert entry["MD5OfMessageBody"] == hashlib.md5(bodies[entry["Id"]].encode(),
                                                        usedforsecurity=False).hexdigest()

    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in received) == sorted(bodies.values())
    entries = [{"Id": f"d{n}", "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(received)]
    answer = sqs.delete_message_batch(QueueUrl=url, Entries=[*entries, {"Id": "bad", "ReceiptHandle": "bogus"}])
    assert sorted(e["Id"] for e in answer["Successful"]) == ["d0", "d1", "d2"]
    (failed,) = answer["Failed"]
    assert (failed["Id"], failed["Code"], failed["SenderFault"]) == ("bad", "ReceiptHandleIsInvalid", True)

    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": f"e{n}", "MessageBody": "x"} for n in range(11)])
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "same", "MessageBody": "x"}] * 2)
    with pytest.raises(sqs.exceptions.EmptyBatchRequest):
        sqs.delete_message_batch(QueueUrl=url, Entries=[])


def test_a_received_message_is_hidden_for_the_visibility_timeout_and_counts_its_receives(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="events", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="again and again")
    attributes = ["ApproximateReceiveCount"]

    first = sqs.receive_message(QueueUrl=url, MessageSystemAttributeNames=attributes)["Messages"][0]
    assert first["Attributes"]["ApproximateReceiveCount"] == "1"
    assert "Messages" not in sqs.receive_message(QueueUrl=url)  # in flight
    time.sleep(1.2)
    second = sqs.receive_message(QueueUrl=url, AttributeNames=["All"], VisibilityTimeout=0)["Messages"][0]
    assert second["MessageId"] == first["MessageId"] and second["ReceiptHandle"] != first["ReceiptHandle"]
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    # VisibilityTimeout=0 on the receive: visible again straight away.
    third = sqs.receive_message(QueueUrl=url, MessageSystemAttributeNames=attributes)["Messages"][0]
    assert third["Attributes"]["ApproximateReceiveCount"] == "3"
    # A message hidden by a wait-less receive comes back to a long poll when its timeout ends.
    started = time.monotonic()
    fourth = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5, MessageSystemAttributeNames=attributes)
    assert fourth["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "4"
    assert 0.5 < time.monotonic() - started < 2.5


def test_a_long_poll_returns_as_soon_as_a_message_is_sent_and_blocks_no_one(emu: server.Emulator,
                                                                            sqs: Any) -> None:
    assert emu.endpoint_url
    url = sqs.create_queue(QueueName="events")["QueueUrl"]
    sender, other = make_client("sqs", emu.endpoint_url), make_client("imagebuilder", emu.endpoint_url)
    emu.latency_s = 0.0
    answered: dict[str, float] = {}

    def poll() -> None:
        answer = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20)
        answered["at"] = time.monotonic()
        answered["count"] = len(answer.get("Messages", []))

    waiting = threading.Thread(target=poll)
    waiting.start()
    time.sleep(0.3)
    started = time.monotonic()  # other requests go through while the poll waits
    sender.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    other.list_image_pipelines()
    assert time.monotonic() - started < 1.0 and "at" not in answered
    sent_at = time.monotonic()
    sender.send_message(QueueUrl=url, MessageBody="wake up")
    waiting.join(5)
    assert answered["count"] == 1 and answered["at"] - sent_at < 1.0


def test_a_long_poll_on_an_empty_queue_returns_empty_after_its_wait(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="events")["QueueUrl"]
    started = time.monotonic()
    answer = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, MaxNumberOfMessages=10)
    assert "Messages" not in answer and 0.9 <= time.monotonic() - started < 2.0
    waits_by_default = sqs.create_queue(QueueName="waits", Attributes={"ReceiveMessageWaitTimeSeconds": "1"})
    started = time.monotonic()
    sqs.receive_message(QueueUrl=waits_by_default["QueueUrl"])  # the queue's own wait applies
    assert 0.9 <= time.monotonic() - started < 2.0


def test_after_max_receive_count_receives_a_message_moves_to_the_dead_letter_queue(sqs: Any) -> None:
    dlq = sqs.create_queue(QueueName="events-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    url = sqs.create_queue(QueueName="events", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    source_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sent = sqs.send_message(QueueUrl=url, MessageBody="poison")

    for _ in range(2):  # handled and not deleted, twice
        assert len(sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"]) == 1
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    (dead,) = sqs.receive_message(QueueUrl=dlq, AttributeNames=["All"])["Messages"]
    assert (dead["MessageId"], dead["Body"]) == (sent["MessageId"], "poison")
    assert dead["Attributes"]["DeadLetterQueueSourceArn"] == source_arn
    assert dead["Attributes"]["ApproximateReceiveCount"] == "3"


def test_a_missing_queue_raises_queue_does_not_exist(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="events")["QueueUrl"]
    sqs.delete_queue(QueueUrl=url)
    for call in (lambda: sqs.get_queue_url(QueueName="events"), lambda: sqs.receive_message(QueueUrl=url),
                 lambda: sqs.send_message(QueueUrl=url, MessageBody="x"), lambda: sqs.purge_queue(QueueUrl=url)):
        with pytest.raises(sqs.exceptions.QueueDoesNotExist) as missing:
            call()
        # What callers that compare codes see from real SQS: the Query code.
        assert missing.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    with pytest.raises(sqs.exceptions.InvalidAddress):
        sqs.receive_message(QueueUrl="http://elsewhere/not-a-queue-url")


def test_purge_empties_a_queue_once_a_minute(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="events")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="gone")
    sqs.purge_queue(QueueUrl=url)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    with pytest.raises(sqs.exceptions.PurgeQueueInProgress):
        sqs.purge_queue(QueueUrl=url)


def test_bad_parameter_values_are_refused_with_sqs_code(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="events")["QueueUrl"]
    for parameters in ({"MaxNumberOfMessages": 11}, {"WaitTimeSeconds": 21}, {"VisibilityTimeout": -1}):
        with pytest.raises(ClientError) as refused:
            sqs.receive_message(QueueUrl=url, **parameters)
        assert refused.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_sqs_calls_are_counted_apart_and_spared_by_faults_and_limits_at_large(emu: server.Emulator,
                                                                             sqs: Any) -> None:
    assert emu.endpoint_url
    ib = make_client("imagebuilder", emu.endpoint_url, retries={"mode": "standard", "total_max_attempts": 1})
    url = sqs.create_queue(QueueName="events")["QueueUrl"]
    emu.inject_faults(rate=1.0, codes=("ServiceUnavailableException",))
    emu.set_rate_limit(0.001, 1)
    sqs.send_message(QueueUrl=url, MessageBody="still delivered")
    sqs.send_message(QueueUrl=url, MessageBody="past the limit, still delivered")
    with pytest.raises(ClientError):
        ib.list_image_pipelines()
    emu.clear_faults()
    emu.set_rate_limit(None, operations={"SendMessage": (0.001, 1)})
    emu.inject_faults(codes=("RequestThrottled",), operations=["ReceiveMessage"], count=1)
    no_retry = make_client("sqs", emu.endpoint_url, retries={"mode": "standard", "total_max_attempts": 1})
    with pytest.raises(ClientError) as faulted:
        no_retry.receive_message(QueueUrl=url)
    assert faulted.value.response["Error"]["Code"] == "RequestThrottled"
    sqs.send_message(QueueUrl=url, MessageBody="one token")
    with pytest.raises(ClientError) as throttled:
        no_retry.send_message(QueueUrl=url, MessageBody="none left")
    assert throttled.value.response["Error"]["Code"] == "RequestThrottled"

    assert emu.calls == {"ListImagePipelines": 1}
    assert [call.operation for call in emu.call_log.entries()] == ["ListImagePipelines"]
    assert emu.queue_calls == {"CreateQueue": 1, "SendMessage": 4, "ReceiveMessage": 1}
    emu.reset_calls()
    assert not emu.queue_calls


def test_the_operators_queue_functions_work_against_it(sqs: Any) -> None:
    dlq_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:events-dlq"
    sqs.create_queue(QueueName="events-dlq")
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})
    url = sqs.create_queue(QueueName="events", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    assert aws_queue.region_of(url) is None  # an emulator's URL: the operator's own region applies
    assert json.loads(aws_queue.attributes(sqs, url)["RedrivePolicy"])["maxReceiveCount"] == 3
    for start in (0, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": f"e{n}"}
                                                      for n in range(start, min(start + 10, 12))])

    first = aws_queue.receive(sqs, url, wait=1)
    second = aws_queue.receive(sqs, url, wait=1)
    assert len(first) == 10 and len(second) == 2 and all(m.receives == 1 for m in first + second)
    assert sorted(m.body for m in first + second) == sorted(f"e{n}" for n in range(12))
    assert aws_queue.receive(sqs, url, wait=1) == []  # hidden for VISIBILITY_SECONDS
    bogus = aws_queue.Message(id="bogus", receipt="no-such-receipt", body="")
    assert aws_queue.delete(sqs, url, [*first, *second, bogus]) == ["bogus"]
    counts = aws_queue.attributes(sqs, url)
    assert counts["ApproximateNumberOfMessages"] == counts["ApproximateNumberOfMessagesNotVisible"] == "0"
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(aws_errors.AwsError) as missing:
        aws_queue.attributes(sqs, url)
    assert missing.value.code == "AWS.SimpleQueueService.NonExistentQueue"


def test_the_emulators_event_sink_delivers_into_an_emulator_queue(emu: server.Emulator, sqs: Any) -> None:
    assert emu.endpoint_url
    url = sqs.create_queue(QueueName="events")["QueueUrl"]
    emu.send_events_to(url, endpoint_url=emu.endpoint_url)
    pipeline = emu.world.add_pipeline("web", scanning_enabled=True, findings=3)
    image = emu.world.add_image(pipeline, findings={"CRITICAL": 1, "HIGH": 2})
    assert emu.flush_events(10)
    assert emu.event_counts()["sent"] == {events.IMAGE_STATE_CHANGE: 1, events.CVE_DETECTED: 1}

    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    bodies = {body["detail-type"]: body for body in (json.loads(m["Body"]) for m in messages)}
    assert set(bodies) == {events.IMAGE_STATE_CHANGE, events.CVE_DETECTED}
    assert bodies[events.IMAGE_STATE_CHANGE]["resources"] == [image]
    assert bodies[events.CVE_DETECTED]["account"] == ACCOUNT
    assert "SendMessage" in emu.queue_calls or "SendMessageBatch" in emu.queue_calls
    assert not set(emu.calls) & {"SendMessage", "SendMessageBatch"}
